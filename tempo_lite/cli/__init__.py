"""The `tempo-lite` command (`[project.scripts]` in pyproject.toml and `python -m tempo_lite` call `main`).

- `main.py`: the top-level parser, `serve` and `check-config`;
- `commands/`: query, trace, import and export, clients of a running server's HTTP API (`client.py`);
- `capture/`: `tempo-lite capture`, a throw-away in-process instance asserting on a CI run's traces;
- `process.py`: logging and exit handling shared by `serve` and `capture`.
"""

from tempo_lite.cli.main import main

__all__ = ["main"]

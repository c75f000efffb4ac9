"""Configuration mistakes are reported all at once, each naming the file, the line and the key; a backend
whose package is missing is one line naming the key and the fix (exit 2), never a traceback."""

from __future__ import annotations

import importlib.util
import textwrap
from pathlib import Path

import pytest

from tempo_lite.cli import main
from tempo_lite.config import load_config_text
from tempo_lite.errors import ConfigError

BAD = textwrap.dedent("""\
    server:
      http_listen_prot: 3200
      log_level: loud
    storage:
      trace:
        backend: tape
        wal:
          partitions: many
    block_builder:
      consume_cycle_duration: soon
""")


def test_every_problem_of_a_file_is_reported_with_its_line() -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text(BAD, "tempo.yaml")
    lines = info.value.message.splitlines()
    assert lines == [
        "tempo.yaml:2: unknown configuration key 'server.http_listen_prot'",
        "tempo.yaml:8: invalid value for 'storage.trace.wal.partitions': expected an integer, got 'many'",
        "tempo.yaml:10: invalid value for 'block_builder.consume_cycle_duration': invalid duration 'soon' "
        "(use e.g. 30s, 5m, 1h30m, 500ms)",
    ], lines


def test_choice_problems_are_reported_together_once_types_bind() -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text("server:\n  log_level: loud\nstorage:\n  trace:\n    backend: tape\n", "t.yaml")
    lines = info.value.message.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("t.yaml:5: invalid value for 'storage.trace.backend': 'tape'")
    assert lines[1].startswith("t.yaml:2: invalid value for 'server.log_level': 'loud'")


def test_check_config_prints_every_problem_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "tempo.yaml"
    path.write_text(BAD)
    assert main(["check-config", "--config", str(path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3
    assert all(line.startswith(f"tempo-lite: configuration error: {path}:") for line in err)
    assert "http_listen_prot" in err[0] and "partitions" in err[1] and "consume_cycle_duration" in err[2]


def test_good_file_checks_ok(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "tempo.yaml"
    path.write_text("server:\n  http_listen_port: 3201\n")
    assert main(["check-config", "--config", str(path)]) == 0
    assert capsys.readouterr().out.strip() == f"{path}: ok"


@pytest.mark.parametrize(("yaml_text", "module", "line"), [
    ("storage:\n  trace:\n    backend: s3\n    s3: {bucket: b}\n", "s3fs",
     "storage.trace.backend: s3 needs the Python package s3fs, which is not installed (pip install s3fs)"),
    ("storage:\n  trace:\n    wal:\n      backend: kafka\n", "confluent_kafka",
     "storage.trace.wal.backend: kafka needs the Python package confluent-kafka, which is not installed "
     "(pip install confluent-kafka)"),
])
def test_missing_backend_package_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch,
    yaml_text: str, module: str, line: str,
) -> None:
    # A package missing from the environment cannot be provoked inside the test venv: hide it from lookups.
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == module else real(name, *a))
    path = tmp_path / "tempo.yaml"
    path.write_text(yaml_text)
    for command in ("check-config", "serve"):
        assert main([command, "--config", str(path)]) == 2
        assert capsys.readouterr().err == f"tempo-lite: {line}\n"

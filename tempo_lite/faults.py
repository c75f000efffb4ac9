"""Fault points for crash tests: `TEMPO_LITE_FAULT=<name>` makes the process SIGKILL itself at that point.

Used where a window is too short to hit with an outside `kill -9` (e.g. between a block's meta.json
and the WAL commit). Unset in production: the check is one dictionary lookup at import time.
"""

from __future__ import annotations

import os
import signal

_ACTIVE = frozenset(filter(None, os.environ.get("TEMPO_LITE_FAULT", "").split(",")))

# Names the code checks; a test naming another one would never fire, so it is refused.
POINTS = ("after-block-meta", "after-wal-commit", "after-compacted-block")


def fault_point(name: str) -> None:
    """SIGKILL this process if `name` is among the faults the environment asks for."""
    if name in _ACTIVE:
        os.kill(os.getpid(), signal.SIGKILL)


for _name in _ACTIVE:
    if _name not in POINTS:
        raise RuntimeError(f"TEMPO_LITE_FAULT names unknown fault point {_name!r}; known: {', '.join(POINTS)}")

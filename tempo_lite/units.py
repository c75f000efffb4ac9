"""Duration and size values as configuration files write them (`30s`, `1h30m`, `64MiB`): types and parsers.

Kept apart from `config/` so that any layer can use them without
importing the whole configuration schema.
"""

from __future__ import annotations

import re

_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d|w))+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d|w)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?$", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12, "kib": 1 << 10, "mib": 1 << 20,
               "gib": 1 << 30, "tib": 1 << 40}


class Duration(float):
    """Seconds; YAML accepts Go/Prometheus duration strings (`30s`, `1h30m`, `500ms`) or numbers."""


class ByteSize(int):
    """Bytes; YAML accepts integers or sizes with units (`64MiB`, `1GB`)."""


def parse_duration(text: str) -> float:
    text = text.strip()
    if not _DURATION.match(text):
        raise ValueError(f"invalid duration {text!r} (use e.g. 30s, 5m, 1h30m, 500ms)")
    return sum(float(n) * _UNITS[u] for n, u in _DURATION_PART.findall(text))


def parse_size(text: str) -> int:
    m = _SIZE.match(text.strip())
    if not m:
        raise ValueError(f"invalid size {text!r} (use e.g. 1048576, 64MiB, 1GB)")
    return int(float(m.group(1)) * _SIZE_UNITS[(m.group(2) or "b").lower()])

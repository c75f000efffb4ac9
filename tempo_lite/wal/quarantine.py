"""Set-aside WAL records: what a consumer could not decode or build is kept here, and the consumer moves on.

A directory (`<wal.path>/quarantine`, for either WAL backend) with two files per record:
`p<partition>-o<offset>.json` (partition, offset, tenant, timestamp, stage, error, when) and
`p<partition>-o<offset>.payload` (the record's bytes, as the WAL held them). Written atomically (temp
file, then rename; the JSON last, so a listed record always has its payload). Inspected and dropped
with `tempo-lite wal quarantine list|show|drop` (tempo_lite/cli/wal_quarantine.py).
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from tempo_lite.wal import WalRecord

DIRECTORY = "quarantine"
_NAME = re.compile(r"^p(\d+)-o(\d+)\.json$")


@dataclass(frozen=True)
class SetAside:
    partition: int
    offset: int
    tenant: str
    timestamp_ns: int
    stage: str  # livestore-decode, generator, block-builder
    error: str
    set_aside_unix: float
    payload_bytes: int

    @property
    def key(self) -> str:
        return f"p{self.partition}-o{self.offset}"


def quarantine_dir(wal_path: str) -> Path:
    return Path(wal_path) / DIRECTORY


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def set_aside(directory: Path, record: WalRecord, stage: str, error: str) -> SetAside:
    """Keep `record` (blocking file I/O: call it from a worker thread)."""
    directory.mkdir(parents=True, exist_ok=True)
    entry = SetAside(record.partition, record.offset, record.tenant, record.timestamp_ns, stage, error[:2000],
                     time.time(), len(record.payload))
    _write_atomic(directory / f"{entry.key}.payload", record.payload)
    _write_atomic(directory / f"{entry.key}.json", json.dumps(asdict(entry), indent=1).encode())
    return entry


def list_set_aside(directory: Path) -> list[SetAside]:
    if not directory.is_dir():
        return []
    out = []
    for path in directory.iterdir():
        if _NAME.match(path.name):
            out.append(SetAside(**json.loads(path.read_text())))
    return sorted(out, key=lambda e: (e.partition, e.offset))


def payload_of(directory: Path, key: str) -> bytes:
    return (directory / f"{key}.payload").read_bytes()


def drop(directory: Path, key: str) -> bool:
    """Delete one set-aside record; False when there is none under `key`."""
    meta = directory / f"{key}.json"
    if not meta.exists():
        return False
    meta.unlink()
    (directory / f"{key}.payload").unlink(missing_ok=True)
    return True

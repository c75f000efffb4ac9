"""`BlockMeta`: the contents of a block's `meta.json` (written last; its presence makes the block exist)."""

from __future__ import annotations

import bisect
import json
import uuid
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

from tempo_lite.block.paths import (  # noqa: F401 - file names re-exported for code that imported them here
    BLOOM,
    COMPACTED_META,
    DATA,
    META,
    RESOURCES,
    TRACES,
    VALUES,
)
from tempo_lite.errors import TempoLiteError

# Block format versions this tempo-lite reads (docs/block-format.md), oldest first; new blocks are written
# in FORMAT_VERSION. `block.versions` maps each to its reader and writer layout.
FORMATS = ("tl1", "tl2")
FORMAT_VERSION = "tl2"

# Namespace for deterministic block IDs: replaying the same WAL range names the same block.
_BLOCK_NAMESPACE = uuid.UUID("8f3c7a52-4c1e-4a8e-9b7d-2f0e6c9d1a35")


def block_id_for(tenant: str, partition: int, first_offset: int, *, wal_id: str = "") -> str:
    """The ID of the block holding `tenant`'s records of a WAL range that starts at `first_offset`.

    `wal_id` is the identity the WAL was created with (`WriteAheadLog.identity`): the same range of
    the same WAL always gets the same ID (a replay finds the block it wrote before), a range of
    another WAL never does. Without `wal_id` (benchmarks, tools) the ID is the pre-identity form.
    """
    name = f"{tenant}/{partition}/{first_offset}"
    return str(uuid.uuid5(_BLOCK_NAMESPACE, f"{wal_id}/{name}" if wal_id else name))


class BlockConflict(TempoLiteError):
    """A block ID already names a block of another source: writing it would replace stored data.

    Not a `StorageError`: retrying cannot help, the block-builder stops (and with it the server)."""


def compacted_block_id(tenant: str, inputs: list[str]) -> str:
    return str(uuid.uuid5(_BLOCK_NAMESPACE, f"{tenant}/compacted/{','.join(sorted(inputs))}"))


@dataclass(frozen=True)
class RowGroupRange:
    min_trace_id: str  # hex
    max_trace_id: str
    rows: int


@dataclass(frozen=True)
class BlockMeta:
    block_id: str
    tenant: str
    start_unix_nano: int  # min span start
    end_unix_nano: int  # max span end
    total_traces: int
    total_spans: int
    size_bytes: int
    compaction_level: int = 0
    dedicated_columns: dict[str, str] = field(default_factory=dict)
    row_groups: list[RowGroupRange] = field(default_factory=list)
    # WAL (identity) and range this block was built from (block-builder blocks): a replay reuses the
    # block, and a block of another source is never replaced (docs/reliability.md).
    source_wal: str = ""
    source_partition: int = -1
    source_first_offset: int = -1
    source_end_offset: int = -1
    # Sum of the range's record fingerprints (livestore.record_digest): tells a replay of this range
    # from the same offsets of a copy of the WAL holding other records.
    source_digest: str = ""
    created_unix: float = 0.0
    compacted_unix: float = 0.0
    format: str = FORMAT_VERSION
    # Attribute keys the block holds, per scope ("span", "resource", "scope", "event", "link"), each with
    # the attribute types seen (spantable.STRING...); search skips a block whose keys rule a query out.
    # Empty: unknown (blocks written before it existed).
    attribute_keys: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    # The block's tag-value catalogue (values.parquet): {"max_bytes_per_key": N, "capped": {scope: [keys]}},
    # keys whose values took more than N bytes being left out. Empty: no catalogue (older blocks).
    value_catalogue: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> BlockMeta:
        raw = json.loads(data)
        if not isinstance(raw, dict):
            raise ValueError("meta.json is not a JSON object")
        if raw.get("format") not in FORMATS:
            # A newer format must not be misread: refuse it, naming what this version reads.
            raise ValueError(f"unsupported block format {raw.get('format')!r} (this tempo-lite reads "
                             f"{', '.join(FORMATS)})")
        raw["row_groups"] = [RowGroupRange(**rg) for rg in raw.get("row_groups", [])]
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in raw.items() if k in known})

    def overlaps(self, start_ns: int, end_ns: int) -> bool:
        return self.start_unix_nano <= end_ns and self.end_unix_nano >= start_ns

    @cached_property
    def _row_group_bounds(self) -> tuple[list[str], list[str]]:
        return [rg.min_trace_id for rg in self.row_groups], [rg.max_trace_id for rg in self.row_groups]

    def row_groups_for(self, trace_id: bytes) -> list[int]:
        """Row groups whose trace-ID range holds the ID (ranges are sorted; a trace may straddle two)."""
        h = trace_id.hex()
        mins, maxs = self._row_group_bounds
        first = bisect.bisect_left(maxs, h)
        end = bisect.bisect_right(mins, h)
        return list(range(first, end))


def source_of(meta: BlockMeta) -> str:
    """A block's source for messages: `wal <id> partition <p> offsets [first, end)`."""
    if meta.source_partition < 0:
        return f"no WAL range (compaction level {meta.compaction_level})"
    wal = meta.source_wal or "<no identity: written before WAL identities>"
    return (f"wal {wal} partition {meta.source_partition} offsets [{meta.source_first_offset}, "
            f"{meta.source_end_offset}) digest {meta.source_digest or '-'}")

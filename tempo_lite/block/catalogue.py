"""A block's tag-value catalogue (`values.parquet`): every distinct typed value of every attribute key (and of
the `name` and `statusMessage` intrinsics), written with the block and loaded with its other metadata, so
tag-value lookups (Grafana's autocomplete) answer from it without reading spans. Format and bounds:
docs/block-format.md. Keys whose values took more bytes than the block's bound are listed as capped and
have no rows: for those (and for blocks written without a catalogue) readers read the spans."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tempo_lite.spantable import SpanTable
from tempo_lite.traceql.tag_values import CATALOGUE_SCHEMA, value_catalogue

# Values of one key in one block beyond this many bytes (type + value, Tempo's measure) are not catalogued:
# a tag-values answer stops at 1,000,000 bytes by default (`max_bytes_per_tag_values_query`), so a key
# over it is one whose answer is cut anyway, read from the spans.
MAX_BYTES_PER_KEY = 1_000_000
_VALUES = pa.schema([("type", pa.string()), ("value", pa.string())])


def encode_catalogue(table: SpanTable, keys: dict, max_bytes_per_key: int = MAX_BYTES_PER_KEY) -> tuple[bytes, dict]:
    """values.parquet (rows grouped by scope and key, values sorted) of an (undedicated) span table, and the
    `value_catalogue` entry of its meta.json."""
    rows, capped = value_catalogue(table, keys, max_bytes_per_key)
    sink = io.BytesIO()
    pq.write_table(rows, sink, compression="zstd", compression_level=3, row_group_size=1 << 20)
    return sink.getvalue(), {"max_bytes_per_key": max_bytes_per_key, "capped": capped}


@dataclass(frozen=True)
class ValueCatalogue:
    """The decoded catalogue: `values(scope, key)` is the key's distinct (type, value) rows, or None when the
    key was capped (unknown: read the spans)."""

    rows: pa.Table
    ranges: dict[tuple[str, str], tuple[int, int]]
    capped: frozenset[tuple[str, str]]

    @classmethod
    def decode(cls, data: bytes, info: dict) -> ValueCatalogue:
        rows = pq.read_table(pa.BufferReader(data)).cast(CATALOGUE_SCHEMA)
        ranges: dict[tuple[str, str], tuple[int, int]] = {}
        if rows.num_rows:
            scope = rows.column("scope").combine_chunks()
            key = rows.column("key").combine_chunks()
            changed = np.zeros(rows.num_rows, dtype=bool)
            changed[0] = True
            if rows.num_rows > 1:
                for col in (scope, key):
                    changed[1:] |= pc.not_equal(col.slice(1), col.slice(0, len(col) - 1)).to_numpy(
                        zero_copy_only=False)
            starts = np.flatnonzero(changed)
            ends = np.append(starts[1:], rows.num_rows)
            names = zip(scope.take(pa.array(starts)).to_pylist(), key.take(pa.array(starts)).to_pylist(), strict=True)
            ranges = {name: (int(lo), int(hi)) for name, lo, hi in zip(names, starts, ends, strict=True)}
        capped = frozenset((s, k) for s, keys in (info.get("capped") or {}).items() for k in keys)
        return cls(rows.select(["type", "value"]), ranges, capped)

    def values(self, scope: str, key: str) -> pa.Table | None:
        if (scope, key) in self.capped:
            return None
        span = self.ranges.get((scope, key))
        if span is None:
            return _VALUES.empty_table()
        return self.rows.slice(span[0], span[1] - span[0])

    @property
    def nbytes(self) -> int:
        return self.rows.nbytes + 200 * len(self.ranges) + 64

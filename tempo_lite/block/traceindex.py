"""`TraceIndex`: where each trace's rows are in a block's data.parquet, from traces.parquet.

Span rows are sorted by trace ID and traces.parquet lists every trace, sorted the same way, with its
span count, so the running sum of the counts is each trace's first row. A lookup is then a binary search
over the IDs (exact: no false positives) and names the trace's rows, hence the 1-2 row groups to read;
and a block format without a `trace_id` column in data.parquet (`tl2`) rebuilds it for any rows read.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa


def id_array(ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """16-byte IDs as a numpy `S16` array (zero-copy on a fixed_size_binary(16) array)."""
    arr = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
    arr = arr.cast(pa.binary(16))
    return np.frombuffer(arr.buffers()[1], dtype="S16", count=len(arr), offset=arr.offset * 16)


@dataclass(frozen=True)
class TraceIndex:
    ids: pa.Array  # fixed_size_binary(16), sorted ascending
    keys: np.ndarray  # the same IDs as S16, for searchsorted
    first_row: np.ndarray  # (traces + 1,) int64: first data.parquet row of each trace, then the row count

    @classmethod
    def from_table(cls, traces: pa.Table) -> TraceIndex:
        """From traces.parquet's `trace_id` and `span_count` columns."""
        ids = traces.column("trace_id").combine_chunks().cast(pa.binary(16))
        counts = traces.column("span_count").to_numpy().astype(np.int64)
        first = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=first[1:])
        return cls(ids, id_array(ids), first)

    @property
    def num_rows(self) -> int:
        return int(self.first_row[-1])

    def rows_of(self, trace_id: bytes) -> tuple[int, int] | None:
        """The trace's rows [lo, hi) in data.parquet, or None when the block does not hold it."""
        i = int(np.searchsorted(self.keys, np.bytes_(trace_id)))
        # numpy drops trailing zero bytes of S16 items: pad back before comparing.
        if i >= len(self.keys) or self.keys[i].ljust(16, b"\0") != trace_id:
            return None
        return int(self.first_row[i]), int(self.first_row[i + 1])

    def ids_of_rows(self, rows: np.ndarray) -> pa.Array:
        """The trace ID of each given row (row numbers of data.parquet)."""
        trace = np.searchsorted(self.first_row, rows, side="right") - 1
        return self.ids.take(pa.array(trace, pa.int64()))

    @property
    def nbytes(self) -> int:
        return len(self.keys) * 16 * 2 + self.first_row.nbytes + 128

"""Attribute lookups for the TraceQL engine: a `list<ATTR>` column (span, resource, scope, event or link
attributes) flattened once and indexed for per-key lookups (`AttrIndex`), and the Arrow-to-numpy helpers
the engine's column code shares (`np_int`, `take_or_null`, `hex_ids`)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tempo_lite.traceql.engine_values import Col, col_from_attr_structs

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def hex_ids(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Lowercase hex strings of binary IDs (vectorized for fixed-size binary)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_fixed_size_binary(arr.type) and arr.null_count == 0:
        w = arr.type.byte_width
        n = len(arr)
        if n == 0:
            return pa.array([], pa.string())
        raw = np.frombuffer(arr.buffers()[1], dtype=np.uint8)
        data = raw[arr.offset * w : (arr.offset + n) * w].reshape(n, w)
        out = np.empty((n, 2 * w), dtype=np.uint8)
        out[:, 0::2] = _HEX[data >> 4]
        out[:, 1::2] = _HEX[data & 15]
        return pa.array(out.view(f"S{2 * w}").ravel(), pa.binary()).cast(pa.string())
    return pa.array([None if b is None else b.hex() for b in arr.to_pylist()], pa.string())


def np_int(a: pa.Array | pa.ChunkedArray, dtype: type = np.int64) -> np.ndarray:
    """An Arrow array as numpy (`dtype`), nulls as 0 (False for booleans)."""
    if isinstance(a, pa.ChunkedArray):
        a = a.combine_chunks()
    fill = False if pa.types.is_boolean(a.type) else 0
    return a.fill_null(fill).to_numpy(zero_copy_only=False).astype(dtype, copy=False)


def take_or_null(values: pa.Array, idx: np.ndarray) -> pa.Array:
    """`values` at rows `idx`, null where idx is -1."""
    missing = idx < 0
    return values.take(pa.array(np.where(missing, 0, idx), mask=missing if missing.any() else None))


class AttrIndex:
    """Flattened `list<ATTR>` column for fast per-key lookups."""

    def __init__(self, lists: pa.Array | pa.ChunkedArray, n: int) -> None:
        if isinstance(lists, pa.ChunkedArray):
            lists = lists.combine_chunks()
        self.n = n
        self.flat = pc.list_flatten(lists)
        self.parents = np_int(pc.list_parent_indices(lists)) if len(self.flat) else np.zeros(0, np.int64)
        self.keys = pc.struct_field(self.flat, "key") if len(self.flat) else pa.array([], pa.string())

    def lookup(self, key: str) -> Col:
        """The value of attribute `key` per row (the first one where a row holds the key twice)."""
        if len(self.flat) == 0:
            return Col(self.n)
        sel = np.flatnonzero(np_int(pc.equal(self.keys, key), bool))
        pos = np.full(self.n, -1, dtype=np.int64)
        # Duplicate keys on one row: the first one wins.
        pos[self.parents[sel][::-1]] = sel[::-1]
        return col_from_attr_structs(take_or_null(self.flat, pos))

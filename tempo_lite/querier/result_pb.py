"""Search results as protobuf wire bytes, column-wise: one binary value per trace, built from whole columns.

Each trace's value is a `SearchResponse.traces` field (tag, length, `TraceSearchMetadata`), so an answer is
the values concatenated followed by the metrics field: what `SearchResponse(...).SerializeToString()`
gives for the messages the per-trace path builds (`search_pb.trace_metadata`), field for field, without a
Python object per trace. Varints are encoded with numpy; rare values (floats, durations, status and
kind names, arrays) are encoded once per distinct value by `search_pb.any_value`, the reference.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tempo_lite._gen import tempopb_pb2 as pb
from tempo_lite.querier.result_json import codes_of, first_typed, grouped, hex_column
from tempo_lite.querier.search_pb import any_value, plain_typed
from tempo_lite.traceql.engine import SpansetColumns
from tempo_lite.traceql.engine_values import Col

_NULL = pa.scalar(None, pa.binary())
_EMPTY = pa.scalar(b"", pa.binary())


def varints(values: np.ndarray) -> pa.Array:
    """Each value (read as uint64: negative int64 in two's complement) as its varint bytes."""
    v = np.ascontiguousarray(values).astype(np.int64).view(np.uint64)
    n = len(v)
    size = np.ones(n, dtype=np.int64)
    rest = v >> np.uint64(7)
    while rest.any():
        size += rest > 0
        rest >>= np.uint64(7)
    width = int(size.max()) if n else 1
    groups = np.empty((n, width), dtype=np.uint8)
    rest = v.copy()
    for i in range(width):
        more = (i < size - 1).astype(np.uint8) << 7
        groups[:, i] = (rest & np.uint64(0x7F)).astype(np.uint8) | more
        rest >>= np.uint64(7)
    data = groups[np.arange(width) < size[:, None]]
    offsets = np.concatenate([[0], np.cumsum(size)]).astype(np.int32)
    return pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _binary(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return values if pa.types.is_binary(values.type) else values.cast(pa.binary())


def _b(piece: pa.Array | bytes) -> pa.Array | pa.Scalar:
    return pa.scalar(piece, pa.binary()) if isinstance(piece, bytes) else piece


def concat(*pieces: pa.Array | bytes) -> pa.Array:
    """Element-wise concatenation; null wherever an array piece is null."""
    return pc.binary_join_element_wise(*map(_b, pieces), _EMPTY, null_handling="emit_null")


def assemble(pieces: Sequence[pa.Array | bytes]) -> pa.Array:
    """Element-wise concatenation, null pieces (absent fields) left out; one piece must be a constant."""
    assert any(isinstance(p, bytes) for p in pieces)
    return pc.binary_join_element_wise(*map(_b, pieces), _EMPTY, null_handling="skip")


def where(mask: np.ndarray | pa.Array, values: pa.Array) -> pa.Array:
    m = mask if isinstance(mask, pa.Array) else pa.array(mask, pa.bool_())
    return pc.if_else(m, values, _NULL)


def delimited(tag: bytes, payload: pa.Array) -> pa.Array:
    """A length-delimited field per row (null where `payload` is null)."""
    payload = _binary(payload)
    lengths = pc.fill_null(pc.binary_length(payload), 0).to_numpy(zero_copy_only=False)
    return concat(tag, varints(lengths), payload)


def string_field(tag: bytes, values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """A string field per row, absent (null) where the string is null or empty (proto3 default)."""
    text = _binary(values)
    return where(pc.fill_null(pc.greater(pc.binary_length(text), 0), False), delimited(tag, text))


def uint_field(tag: bytes, values: pa.Array | pa.ChunkedArray | np.ndarray) -> pa.Array:
    """A varint field per row, absent where the value is 0 (or null)."""
    if not isinstance(values, np.ndarray):
        values = pc.fill_null(values, 0).to_numpy(zero_copy_only=False)
    values = np.asarray(values, dtype=np.int64)
    return where(values != 0, concat(tag, varints(values)))


def _per_distinct(values: pa.Array, encode) -> pa.Array:  # noqa: ANN001 - value -> bytes
    enc = pc.dictionary_encode(values)
    return pa.array([encode(x) for x in enc.dictionary.to_pylist()], pa.binary()).take(enc.indices)


def _slot_pb(slot: str, values: pa.Array) -> pa.Array:
    """AnyValue bytes of one typed slot, null where the slot has no value."""
    valid = pc.is_valid(values)
    if slot == "str":
        return delimited(b"\x0a", values)
    if slot == "int":
        return where(valid, concat(b"\x18", varints(pc.fill_null(values, 0).to_numpy(zero_copy_only=False))))
    if slot == "bool":
        return pc.if_else(values, pa.scalar(b"\x10\x01", pa.binary()), pa.scalar(b"\x10\x00", pa.binary()))
    if slot in ("float", "dur", "status", "kind"):
        return _per_distinct(values, lambda x: any_value((slot, x)).SerializeToString())
    raise ValueError(f"unknown value type {slot}")


def any_values(col: Col) -> pa.Array:
    """Per row of `col`, its first present typed value as AnyValue bytes (arrays as array_value), or null:
    `result_json.typed_json` in protobuf."""
    return first_typed(col, pa.binary(), _slot_pb, _array_pb)


def _array_pb(elems: list[object]) -> bytes:
    return pb.AnyValue(array_value=pb.ArrayValue(values=[any_value(plain_typed(x)) for x in elems])).SerializeToString()


def _key_values(tag: bytes, pairs: list[tuple[str, pa.Array]]) -> list[pa.Array]:
    """Repeated KeyValue fields (`tag`) per row, one array per key (null where the value is absent)."""
    out = []
    for key, value in pairs:
        raw = key.encode()
        key_field = b"\x0a" + _varint(len(raw)) + raw if key else b""  # proto3 leaves an empty key out
        out.append(delimited(tag, concat(key_field, delimited(b"\x12", value))))
    return out


def _python_key_values(attrs: list) -> bytes | None:  # noqa: ANN001 - (key, typed value) pairs
    """A spanset's attributes (field 3 of SpanSet, repeated), by the reference encoder."""
    if not attrs:
        return None
    return pb.SpanSet(attributes=[pb.KeyValue(key=k, value=any_value(v)) for k, v in attrs]).SerializeToString()


def spanset_pb(m: SpansetColumns) -> tuple[pa.Array, pa.Array]:
    """(spanSet field per trace, spanSets fields per trace) of column-wise matches."""
    n_spans = len(m.shown_set)
    if n_spans:
        pieces: list[pa.Array | bytes] = [delimited(b"\x0a", hex_column(m.span_id, 16))]
        if m.name is not None:
            pieces.append(string_field(b"\x12", m.name))
        pieces += [uint_field(b"\x18", m.start), uint_field(b"\x20", m.duration)]
        pieces += _key_values(b"\x2a", [(k, any_values(c)) for k, c in m.values])
        spans = delimited(b"\x0a", assemble([*pieces, b""]))  # SpanSet.spans
    else:
        spans = pa.array([], pa.binary())
    n_sets = len(m.set_trace)
    span_lists = grouped(spans, m.shown_set, n_sets, "") if n_sets else pa.array([], pa.binary())
    set_pieces: list[pa.Array | bytes] = [
        where(pc.greater(pc.binary_length(_binary(span_lists)), 0), _binary(span_lists)),
        uint_field(b"\x10", np.asarray(m.set_matched, dtype=np.int64)),
    ]
    if m.set_attrs is not None:
        set_pieces.append(pa.array([_python_key_values(a) for a in m.set_attrs], pa.binary()))
    sets = assemble([*set_pieces, b""]) if n_sets else pa.array([], pa.binary())
    n = m.num_traces
    if not n_sets:
        return pa.nulls(n, pa.binary()), pa.nulls(n, pa.binary())
    first_of = np.searchsorted(m.set_trace, np.arange(n))
    has = (first_of < n_sets) & (m.set_trace[np.minimum(first_of, n_sets - 1)] == np.arange(n))
    first = where(has, delimited(b"\x32", sets.take(pa.array(np.where(has, first_of, 0), pa.int64()))))
    every = grouped(delimited(b"\x3a", sets), m.set_trace, n, "")
    return first, where(has, _binary(every))


def service_stats_pb(trace_pos: np.ndarray, names: pa.Array, spans: pa.Array, errors: pa.Array, n: int) -> pa.Array:
    """The serviceStats map entries per trace (rows ordered by trace position); null for none."""
    if not len(trace_pos):
        return pa.nulls(n, pa.binary())
    name_codes, distinct = codes_of(names)
    stats = assemble([uint_field(b"\x08", spans), uint_field(b"\x10", errors), b""])
    entry = concat(delimited(b"\x0a", pa.array([distinct[c] or "" for c in range(len(distinct))], pa.string())
                             .take(pa.array(name_codes))), delimited(b"\x12", stats))
    per_trace = grouped(delimited(b"\x42", entry), trace_pos, n, "")
    return where(pc.greater(pc.binary_length(_binary(per_trace)), 0), _binary(per_trace))


def trace_pb(
    hex_ids: pa.Array, starts: pa.Array, duration_ms: pa.Array, root_service: pa.Array, root_name: pa.Array,
    spansets: tuple[pa.Array, pa.Array] | None, service_stats: pa.Array, order: np.ndarray | None = None,
) -> pa.Array:
    """Per trace, the `SearchResponse.traces` field holding its TraceSearchMetadata (`result_json.trace_json`
    in protobuf; `hex_ids` already in `order`, the other per-trace arrays taken into it)."""
    if not len(hex_ids):
        return pa.array([], pa.binary())
    positions = None if order is None else pa.array(order, pa.int64())

    def ordered(values: pa.Array) -> pa.Array:
        return values if positions is None else values.take(positions)

    pieces: list[pa.Array | bytes] = [
        delimited(b"\x0a", hex_ids),
        ordered(string_field(b"\x12", root_service)),
        ordered(string_field(b"\x1a", root_name)),
        ordered(uint_field(b"\x20", starts)),
        ordered(uint_field(b"\x28", duration_ms)),
    ]
    if spansets is not None:
        pieces += [ordered(spansets[0]), ordered(spansets[1])]
    pieces += [ordered(service_stats), b""]
    return delimited(b"\x0a", assemble(pieces))

"""Search results rendered to JSON column-wise: one Arrow string per trace, built from whole columns.

The document is what `json_format.MessageToDict` gives for the `TraceSearchMetadata` the per-trace path
builds (`results.trace_metadata`): proto3 JSON names, 64-bit integers as strings, default values left
out, fields in declaration order. Each piece (`"durationMs":12`, a span's attributes, ...) is a string
column with nulls where the field is left out, and `binary_join_element_wise` (nulls skipped) joins
them; strings are JSON-escaped once per distinct value (`json.dumps`, as the per-trace path's encoder).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tempo_lite.querier.search_pb import KIND_TEXT, STATUS_TEXT, plain_typed, render_go_duration
from tempo_lite.traceql.engine_columns import SpansetColumns
from tempo_lite.traceql.engine_values import Col, TypedValue

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def join(pieces: Sequence[pa.Array | str], sep: str = ",") -> pa.Array:
    """Element-wise join of string pieces (arrays or constants), null pieces left out ("" if all are).

    pyarrow 26 drops the rows (the result is shorter) where every piece is a null array value, so such
    rows get a constant last piece, cut off again afterwards."""
    arrays = [p for p in pieces if not isinstance(p, str)]
    if len(arrays) == len(pieces):
        some = pc.is_valid(arrays[0])
        for a in arrays[1:]:
            some = pc.or_(some, pc.is_valid(a))
        if not pc.all(some).as_py() and len(some):
            joined = pc.binary_join_element_wise(*pieces, "\x01", sep, null_handling="skip")
            return pc.if_else(some, pc.utf8_slice_codeunits(joined, 0, -1 - len(sep)), "")
    return pc.binary_join_element_wise(*pieces, sep, null_handling="skip")


def concat(*pieces: pa.Array | str) -> pa.Array:
    """Element-wise concatenation; null wherever an array piece is null."""
    return pc.binary_join_element_wise(*pieces, "", null_handling="emit_null")


def assemble(pieces: Sequence[pa.Array | str]) -> pa.Array:
    """Element-wise concatenation with null pieces left out, in one pass: an object's fields each carry
    their own leading comma, so optional (null) ones vanish. At least one piece must be a constant (a
    row whose pieces are all null would be dropped, see `join`)."""
    assert any(isinstance(p, str) for p in pieces)
    return pc.binary_join_element_wise(*pieces, "", null_handling="skip")


def where(mask: np.ndarray | pa.Array, values: pa.Array) -> pa.Array:
    """`values` where `mask`, null elsewhere."""
    m = mask if isinstance(mask, pa.Array) else pa.array(mask, pa.bool_())
    return pc.if_else(m, values, pa.scalar(None, pa.string()))


def json_strings(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Each string as a JSON string literal (quoted, escaped as `json.dumps`); nulls stay null.
    Escaped once per distinct value."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not pa.types.is_string(values.type) and not pa.types.is_large_string(values.type):
        values = values.cast(pa.string())
    enc = pc.dictionary_encode(values)
    quoted = pa.array([json.dumps(x) for x in enc.dictionary.to_pylist()], pa.string())
    return quoted.take(enc.indices)


def by_code(codes: np.ndarray, render: Callable[[int], str | None]) -> pa.Array:
    """Per row, `render(code)` of its integer code, rendered once per distinct code (None gives null)."""
    if not len(codes):
        return pa.array([], pa.string())
    lo, hi = int(codes.min()), int(codes.max())
    if hi - lo <= 4 * len(codes) + 4096:
        # Codes in a small range (service stats, root names): a presence table instead of a sort.
        present = np.zeros(hi - lo + 1, dtype=bool)
        present[codes - lo] = True
        uniq = np.flatnonzero(present) + lo
        inverse = (np.cumsum(present) - 1)[codes - lo]
    else:
        uniq, inverse = np.unique(codes, return_inverse=True)
    return pa.array([render(int(c)) for c in uniq], pa.string()).take(pa.array(inverse.reshape(-1)))


def codes_of(values: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, list[object]]:
    """(per row a code, the distinct values; null is code len(values))."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    enc = pc.dictionary_encode(values)
    distinct = enc.dictionary.to_pylist()
    codes = pc.fill_null(enc.indices, len(distinct)).to_numpy(zero_copy_only=False).astype(np.int64)
    return codes, [*distinct, None]


def ints(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    return pc.cast(values, pa.string())


def nonzero_ints(values: pa.Array) -> pa.Array:
    """Integers as strings, null where 0 (proto3 JSON leaves default values out)."""
    text = ints(values)
    zero = pc.equal(values, 0)
    return where(pc.invert(zero), text) if pc.any(zero).as_py() else text


def hex_column(values: pa.Array | pa.ChunkedArray, width: int) -> pa.Array:
    """Binary values as lowercase hex, left-padded with zeros to `width` hex digits (nulls as "")."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    n = len(values)
    size = width // 2
    if pa.types.is_fixed_size_binary(values.type) and values.type.byte_width == size and not values.null_count:
        raw = np.frombuffer(values.buffers()[1], dtype=np.uint8, count=n * size, offset=values.offset * size)
    else:
        lengths = pc.fill_null(pc.binary_length(values.cast(pa.binary())), 0).to_numpy(zero_copy_only=False)
        if n and bool((lengths == size).all()) and not values.null_count:
            flat = values.cast(pa.binary())
            offsets = np.frombuffer(flat.buffers()[1], dtype=np.int32, count=n + 1, offset=flat.offset * 4)
            data = np.frombuffer(flat.buffers()[2], dtype=np.uint8)
            raw = data[offsets[0]: offsets[0] + n * size]
        else:
            return pa.array([(b or b"").hex().rjust(width, "0") for b in values.to_pylist()], pa.string())
    raw = raw.reshape(n, size)
    out = np.empty((n, width), dtype=np.uint8)
    out[:, 0::2] = _HEX[raw >> 4]
    out[:, 1::2] = _HEX[raw & 15]
    return pa.array(out.reshape(-1).view(f"S{width}") if n else np.zeros(0, f"S{width}")).cast(pa.string())


def trace_id_hex(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Search-result trace IDs: lowercase hex without leading zeros ("0" for all zeros)."""
    full = hex_column(values, 32)
    trimmed = pc.utf8_ltrim(full, "0")
    return pc.if_else(pc.equal(trimmed, ""), "0", trimmed)


# --------------------------------------------------------------------------------------------------
# Typed values (AnyValue JSON)


def _double_json(x: float) -> str:
    if math.isfinite(x):
        return json.dumps(x)
    return '"NaN"' if x != x else ('"Infinity"' if x > 0 else '"-Infinity"')


def _typed_json(value: TypedValue) -> str:
    """One typed value as AnyValue JSON (the rare path: arrays, durations)."""
    kind, v = value
    if kind == "str":
        return '{"stringValue":' + json.dumps(str(v)) + "}"
    if kind == "int":
        return '{"intValue":"' + str(int(v)) + '"}'  # type: ignore[call-overload]
    if kind == "float":
        return '{"doubleValue":' + _double_json(float(v)) + "}"  # type: ignore[arg-type]
    if kind == "bool":
        return '{"boolValue":' + ("true" if v else "false") + "}"
    if kind == "dur":
        return '{"stringValue":' + json.dumps(render_go_duration(int(v))) + "}"  # type: ignore[call-overload]
    if kind == "status":
        return '{"stringValue":"' + STATUS_TEXT.get(int(v), "unset") + '"}'  # type: ignore[call-overload]
    if kind == "kind":
        return '{"stringValue":"' + KIND_TEXT.get(int(v), "unspecified") + '"}'  # type: ignore[call-overload]
    if kind == "array":
        items = [_typed_json(plain_typed(x)) for x in v]  # type: ignore[attr-defined]
        return '{"arrayValue":' + ('{"values":[' + ",".join(items) + "]}" if items else "{}") + "}"
    raise ValueError(f"unknown value type {kind}")


def _slot_json(slot: str, values: pa.Array) -> pa.Array:
    """AnyValue JSON of one typed slot, null where the slot has no value."""
    if slot == "str":
        return concat('{"stringValue":', json_strings(values), "}")
    if slot == "int":
        return concat('{"intValue":"', ints(values), '"}')
    if slot == "bool":
        text = pc.if_else(values, '{"boolValue":true}', '{"boolValue":false}')
        return text
    if slot in ("float", "dur", "status", "kind"):
        # Few distinct values in practice; each rendered exactly as the per-trace path does.
        enc = pc.dictionary_encode(values)
        rendered = pa.array([_typed_json((slot, x)) for x in enc.dictionary.to_pylist()], pa.string())
        return rendered.take(enc.indices)
    raise ValueError(f"unknown value type {slot}")


def first_typed(col: Col, out_type: pa.DataType, encode_slot: Callable[[str, pa.Array], pa.Array],
                encode_array: Callable[[list[object]], object]) -> pa.Array:
    """Per row of `col`, its first present typed value (the one `engine._typed_values` picks) encoded by
    `encode_slot` (a slot's whole column) or, for rows holding only an array, `encode_array` (its
    elements), or null: the walk `typed_json` and `result_pb.any_values` share."""
    col = col.primary()
    n = col.n
    out: pa.Array = pa.nulls(n, out_type)
    for slot, v in col.slots.items():
        if isinstance(v, pa.Scalar):
            if not v.is_valid:
                continue
            arr = pa.array([v.as_py()] * n, v.type) if n else pa.array([], v.type)
        else:
            arr = v.combine_chunks() if isinstance(v, pa.ChunkedArray) else v
        out = pc.coalesce(out, encode_slot(slot, arr))
    if col.arr is not None and col.arr.has.any():
        rows = np.flatnonzero(col.arr.has & ~np.asarray(pc.is_valid(out).to_numpy(zero_copy_only=False), bool))
        if len(rows):
            elems: dict[int, list[object]] = {}
            lists = [v.to_pylist() for v in col.arr.slots.values()]
            for j, parent in enumerate(col.arr.parents.tolist()):
                for values in lists:
                    if values[j] is not None:
                        elems.setdefault(parent, []).append(values[j])
                        break
            encoded = out.to_pylist()
            for i in rows.tolist():
                encoded[i] = encode_array(elems.get(i, []))
            out = pa.array(encoded, out_type)
    return out


def typed_json(col: Col) -> pa.Array:
    """Per row of `col`, its first present typed value as AnyValue JSON (arrays as arrayValue), or null."""
    return first_typed(col, pa.string(), _slot_json, lambda elems: _typed_json(("array", elems)))


def _key_value(key: str, values: pa.Array) -> pa.Array:
    codes, distinct = codes_of(values)
    prefix = '{"key":' + json.dumps(key) + ',"value":'
    return by_code(codes, lambda c: None if distinct[c] is None else prefix + str(distinct[c]) + "}")


def attribute_lists(pairs: list[tuple[str, pa.Array]], n: int, prefix: str = "") -> pa.Array:
    """`"attributes":[...]` (after `prefix`) per row from (key, AnyValue JSON or null) columns in order;
    null if none."""
    if not pairs:
        return pa.nulls(n, pa.string())
    items = join([_key_value(k, v) for k, v in pairs])
    return where(pc.not_equal(items, ""), concat(prefix + '"attributes":[', items, "]"))


def _python_attributes(attrs: list[tuple[str, TypedValue]]) -> str | None:
    if not attrs:
        return None
    items = ['{"key":' + json.dumps(k) + ',"value":' + _typed_json(v) + "}" if k else '{"value":' + _typed_json(v) + "}"
             for k, v in attrs]
    return '"attributes":[' + ",".join(items) + "]"


def grouped(values: pa.Array, group: np.ndarray, n_groups: int, sep: str = ",") -> pa.Array:
    """Join `values` (ordered by their non-decreasing `group`) per group: "" for a group without any."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    counts = np.bincount(group, minlength=n_groups) if len(group) else np.zeros(n_groups, np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    lists = pa.ListArray.from_arrays(pa.array(offsets), values)
    return pc.binary_join(lists, pa.scalar(sep.encode(), pa.binary()) if pa.types.is_binary(values.type) else sep)


def spanset_json(m: SpansetColumns) -> tuple[pa.Array, pa.Array]:
    """(first spanset's JSON per trace, all spansets' JSON array per trace) of column-wise matches; when
    every trace has exactly one spanset both are the same array (its spanSets array is that one set)."""
    n_spans = len(m.shown_set)
    if n_spans:
        names: pa.Array | str = ""
        if m.name is not None:
            text = m.name.combine_chunks() if isinstance(m.name, pa.ChunkedArray) else m.name
            names = where(pc.fill_null(pc.not_equal(text, ""), False), concat(',"name":', json_strings(text)))
        spans = assemble([
            '{"spanID":"', hex_column(m.span_id, 16), '"', names,
            concat(',"startTimeUnixNano":"', nonzero_ints(m.start), '"'),
            concat(',"durationNanos":"', nonzero_ints(m.duration), '"'),
            attribute_lists([(k, typed_json(c)) for k, c in m.values], n_spans, ","),
            "}",
        ])
    else:
        spans = pa.array([], pa.string())
    n_sets = len(m.set_trace)
    per_set = np.bincount(m.shown_set, minlength=n_sets) if n_spans else np.zeros(n_sets, np.int64)
    if n_spans == n_sets and bool((per_set == 1).all()):
        span_lists = spans  # one shown span a spanset (spss=1): the list is the span
    else:
        span_lists = grouped(spans, m.shown_set, n_sets)
    matched = nonzero_ints(pa.array(m.set_matched, pa.int64()))
    attrs = (pa.array([_python_attributes(a) for a in m.set_attrs], pa.string())
             if m.set_attrs is not None else None)
    if not n_sets:
        sets = pa.array([], pa.string())
    elif bool((per_set > 0).all()):
        # Every spanset shows a span: "spans" leads, the other fields carry their comma (one pass).
        sets = assemble([
            '{"spans":[', span_lists, "]", concat(',"matched":', matched),
            *([concat(",", attrs)] if attrs is not None else []), "}",
        ])
    else:
        set_pieces: list[pa.Array | str] = [
            where(pc.not_equal(span_lists, ""), concat('"spans":[', span_lists, "]")),
            concat('"matched":', matched),
        ]
        if attrs is not None:
            set_pieces.append(attrs)
        sets = concat("{", join(set_pieces), "}")
    n = m.num_traces
    if n_sets == n and bool((m.set_trace == np.arange(n)).all()):
        return sets, sets  # one spanset per trace: spanSets is [spanSet]
    if not n_sets:
        return pa.nulls(n, pa.string()), pa.nulls(n, pa.string())
    first_of = np.searchsorted(m.set_trace, np.arange(n)) if n else np.zeros(0, np.int64)
    has = (first_of < n_sets) & (m.set_trace[np.minimum(first_of, max(n_sets - 1, 0))] == np.arange(n))
    first = where(has, sets.take(pa.array(np.where(has, first_of, 0), pa.int64())))
    return first, grouped(sets, m.set_trace, n)


def service_stats_json(trace_pos: np.ndarray, names: pa.Array, spans: pa.Array, errors: pa.Array,
                       n: int) -> pa.Array:
    """`"serviceStats":{...}` per trace from rows (trace position, service, span count, error count)
    ordered by trace position; null for a trace without any. Entries are rendered once per distinct
    (service, spans, errors)."""
    name_codes, distinct = codes_of(names)
    span_counts = spans.to_numpy(zero_copy_only=False).astype(np.int64)
    error_counts = errors.to_numpy(zero_copy_only=False).astype(np.int64)
    s_base = int(span_counts.max()) + 1 if len(span_counts) else 1
    e_base = int(error_counts.max()) + 1 if len(error_counts) else 1
    if len(distinct) * s_base * e_base >= 2**62:  # cannot be one int64 code: render each entry
        s_base = e_base = 0

    def entry(code: int) -> str:
        name, count, errs = distinct[code // (s_base * e_base)], code // e_base % s_base, code % e_base
        stats = ([f'"spanCount":{count}'] if count else []) + ([f'"errorCount":{errs}'] if errs else [])
        return json.dumps(name if name is not None else "") + ":{" + ",".join(stats) + "}"

    if s_base:
        entries = by_code((name_codes * s_base + span_counts) * e_base + error_counts, entry)
    else:
        rows = zip(name_codes.tolist(), span_counts.tolist(), error_counts.tolist(), strict=True)
        entries = pa.array([json.dumps(distinct[c] if distinct[c] is not None else "") + ":{" + ",".join(
            ([f'"spanCount":{k}'] if k else []) + ([f'"errorCount":{e}'] if e else [])) + "}" for c, k, e in rows],
            pa.string())
    per_trace = grouped(entries, trace_pos, n)
    return where(pc.not_equal(per_trace, ""), concat('"serviceStats":{', per_trace, "}"))


def trace_json(
    trace_ids: pa.Array, starts: pa.Array, duration_ms: pa.Array, root_service: pa.Array, root_name: pa.Array,
    spansets: tuple[pa.Array, pa.Array] | None, service_stats: pa.Array, order: np.ndarray | None = None,
    hex_ids: pa.Array | None = None,
) -> pa.Array:
    """One TraceSearchMetadata JSON object per trace (fields in `_trace_json`'s order), each followed by
    a comma (the answer's body is the rows' bytes as they lie); root fields are the strings to show
    (null or "" left out); `service_stats` is `service_stats_json`'s. With `order` (row positions) the
    objects come in that order: the per-trace pieces are taken before the one pass that joins them.
    `hex_ids`: `trace_id_hex(trace_ids)` in that order, if the caller has it."""
    n = len(trace_ids)
    if not n:
        return pa.array([], pa.string())
    service_codes, services = codes_of(root_service)
    name_codes, names = codes_of(root_name)

    def roots(code: int) -> str | None:
        service, name = services[code // len(names)], names[code % len(names)]
        parts = ([f'"rootServiceName":{json.dumps(service)}'] if service else []) + (
            [f'"rootTraceName":{json.dumps(name)}'] if name else [])
        return "," + ",".join(parts) if parts else None

    positions = None if order is None else pa.array(order, pa.int64())

    def ordered(values: pa.Array) -> pa.Array:
        return values if positions is None else values.take(positions)

    pieces: list[pa.Array | str] = [
        '{"traceID":"', hex_ids if hex_ids is not None else ordered(trace_id_hex(trace_ids)), '"',
        ordered(by_code(service_codes * len(names) + name_codes, roots)),
        ordered(concat(',"startTimeUnixNano":"', nonzero_ints(starts), '"')),
        ordered(concat(',"durationMs":', nonzero_ints(duration_ms))),
    ]
    if spansets is not None:
        first, every = spansets
        if first is every and not first.null_count:
            sets = ordered(first)
            pieces += [',"spanSet":', sets, ',"spanSets":[', sets, "]"]
        else:
            pieces.append(ordered(concat(',"spanSet":', first, ',"spanSets":[', every, "]")))
    pieces += [ordered(concat(",", service_stats)), "},"]
    return assemble(pieces)

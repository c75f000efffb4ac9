"""Distinct typed tag values of span tables (Grafana's autocomplete), and a block's value catalogue. Pure.

`tag_values_v2(table, ref, q)` is the reference: the distinct `(type, value-as-string)` pairs of a field on
the spans matching `q`, as Tempo's `/api/v2/search/tag/<tag>/values` reports them. `value_catalogue`
computes the same for every attribute key of a table (and the `name` and `statusMessage` intrinsics) at
once, for a block's `values.parquet` (docs/block-format.md): the values of a key whose answer would take
more than `max_bytes_per_key` bytes (Tempo's measure: type plus value) are left out and the key listed as
capped, so readers fall back to reading the spans for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tempo_lite.spantable import ARRAY, SpanTable
from tempo_lite.traceql.ast import (
    Attribute,
    BinaryOp,
    Intrinsic,
    Kind,
    Op,
    Scope,
    SpansetFilter,
    Static,
    StaticType,
    format_duration,
    format_float,
)
from tempo_lite.traceql.engine_context import SpanContext
from tempo_lite.traceql.engine_values import Col

_STATUS_TEXT = {0: "unset", 1: "ok", 2: "error"}  # OTLP status codes
_KIND_TEXT = {k.value: k.text for k in Kind}

_KEYWORD_VALUES = {
    Intrinsic.STATUS: ["ok", "error", "unset"],
    Intrinsic.KIND: ["client", "server", "producer", "consumer", "internal", "unspecified"],
}
_NO_VALUES = frozenset({Intrinsic.DURATION, Intrinsic.TRACE_DURATION})

def typed_values(c: Col) -> set[tuple[str, str]]:
    """Distinct (type, value-as-string) pairs of a column, arrays contributing their elements."""
    out: set[tuple[str, str]] = set()
    cols = [c, *c.alts]
    for col in cols:
        slots = dict(col.slots)
        for slot, v in slots.items():
            if not isinstance(v, (pa.Array, pa.ChunkedArray)):
                continue
            for x in pc.unique(v.drop_null()).to_pylist():
                out.add(typed_value(slot, x))
        if col.arr is not None:
            for slot, v in col.arr.slots.items():
                for x in pc.unique(v.drop_null()).to_pylist():
                    out.add(typed_value(slot, x))
    return out


def typed_value(slot: str, x: Any) -> tuple[str, str]:
    if slot == "str":
        return ("string", str(x))
    if slot == "int":
        return ("int", str(x))
    if slot == "float":
        return ("float", format_float(float(x)))
    if slot == "bool":
        return ("bool", "true" if x else "false")
    if slot == "dur":
        return ("duration", format_duration(int(x)))
    if slot == "status":
        return ("keyword", _STATUS_TEXT.get(int(x), "unset"))
    return ("keyword", _KIND_TEXT.get(int(x), "unspecified"))


def _same_tag_value(ref: Attribute | Intrinsic, q: SpansetFilter | None) -> tuple[str, str] | None:
    """`tag = value` on the same tag inside q's `&&` chain: that value is the answer."""
    if q is None:
        return None
    stack = [q.expr]
    while stack:
        e = stack.pop()
        if isinstance(e, BinaryOp) and e.op is Op.AND:
            stack += [e.lhs, e.rhs]
        elif isinstance(e, BinaryOp) and e.op is Op.EQ and e.lhs == ref and isinstance(e.rhs, Static):
            s = e.rhs
            if s.type is StaticType.STRING:
                return ("string", str(s.value))
            if s.type is StaticType.INT:
                return ("int", str(s.value))
            if s.type is StaticType.FLOAT:
                return ("float", format_float(float(s.value)))  # type: ignore[arg-type]
            if s.type is StaticType.BOOL:
                return ("bool", "true" if s.value else "false")
            if s.type in (StaticType.STATUS, StaticType.KIND):
                return ("keyword", s.value.text)  # type: ignore[union-attr]
    return None


def constant_tag_values(ref: Attribute | Intrinsic, q: SpansetFilter | None) -> set[tuple[str, str]] | None:
    """The answer when it does not depend on the spans (keyword intrinsics, durations, `q` fixing the tag)."""
    if isinstance(ref, Intrinsic):
        if ref in _KEYWORD_VALUES:
            return {("keyword", v) for v in _KEYWORD_VALUES[ref]}
        if ref in _NO_VALUES:
            return set()
    same = _same_tag_value(ref, q)
    return None if same is None else {same}


def tag_values_v2(table: SpanTable, ref: Attribute | Intrinsic, q: SpansetFilter | None = None) -> set[tuple[str, str]]:
    """Distinct typed values of `ref` on the spans matching `q` (all spans without `q`)."""
    fixed = constant_tag_values(ref, q)
    if fixed is not None:
        return fixed
    if table.num_spans == 0:
        return set()
    ctx = SpanContext(table)
    mask = ctx.filter_mask(q.expr) if q is not None else np.ones(table.num_spans, dtype=bool)
    rows = np.flatnonzero(mask)
    if len(rows) == 0:
        return set()
    level = ref.scope.value if isinstance(ref, Attribute) else ref.level
    if level in ("event", "link"):
        info = ctx.events() if level == "event" else ctx.links()
        lens = info["lens"]
        assert isinstance(lens, np.ndarray)
        owner = np.repeat(np.arange(table.num_spans), lens)
        flat_rows = np.flatnonzero(mask[owner])
        full = ctx.sub_attr(level, ref.name) if isinstance(ref, Attribute) else ctx.sub_intrinsic(ref)
        return typed_values(full.take(flat_rows))
    value = ctx.span_value(ref)
    return typed_values(value if len(rows) == table.num_spans else value.take(rows))



# --------------------------------------------------------------------------------------------------
# A block's value catalogue

# Catalogue scope names (as in meta.json `attribute_keys`) -> the TraceQL scope of their attributes.
CATALOGUE_SCOPES = {"span": Scope.SPAN, "resource": Scope.RESOURCE, "scope": Scope.INSTRUMENTATION,
                    "event": Scope.EVENT, "link": Scope.LINK}
# Intrinsics with free-form values, catalogued under the scope "intrinsic".
CATALOGUE_INTRINSICS = {"name": Intrinsic.NAME, "statusMessage": Intrinsic.STATUS_MESSAGE}
CATALOGUE_SCHEMA = pa.schema([("scope", pa.string()), ("key", pa.string()), ("type", pa.string()),
                              ("value", pa.string())])


def tag_value_bytes(typ: str, value: str) -> int:
    """A value's size as Tempo counts it against `max_bytes_per_tag_values_query` (v2: type plus value)."""
    return len(typ.encode()) + len(value.encode())


def catalogue_ref(scope: str, key: str) -> Attribute | Intrinsic:
    return CATALOGUE_INTRINSICS[key] if scope == "intrinsic" else Attribute(key, CATALOGUE_SCOPES[scope])


_SLOTS = (("str", "str"), ("int", "int"), ("dbl", "float"), ("bool", "bool"))


def _attr_values(lists: pa.Array | pa.ChunkedArray, keys: list[str]) -> dict[str, set[tuple[str, str]] | None]:
    """Distinct typed values of each key in a `list<ATTR>` column, as `typed_values` of the engine's lookup
    gives them (the first of duplicate keys on one row wins); None for a key holding arrays (their elements
    need decoding: the caller evaluates such a key the engine's way)."""
    if isinstance(lists, pa.ChunkedArray):
        lists = lists.combine_chunks() if lists.num_chunks else pa.array([], lists.type)
    flat = pc.list_flatten(lists)
    out: dict[str, set[tuple[str, str]] | None] = {k: set() for k in keys}
    if not len(flat) or not keys:
        return out
    parents = np.asarray(pc.list_parent_indices(lists).to_numpy(zero_copy_only=False), dtype=np.int64)
    enc = pc.dictionary_encode(pc.struct_field(flat, "key"))
    codes = np.asarray(enc.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    code_of = {k: i for i, k in enumerate(enc.dictionary.to_pylist())}
    types = np.asarray(pc.struct_field(flat, "type").to_numpy(zero_copy_only=False))
    slots = [(pc.struct_field(flat, field), slot) for field, slot in _SLOTS]
    if flat.null_count:  # a null struct may still expose non-null children (as `col_from_attr_structs`)
        valid = pc.is_valid(flat)
        slots = [(pc.if_else(valid, v, pa.scalar(None, v.type)), slot) for v, slot in slots]
    for key in keys:
        code = code_of.get(key)
        if code is None:
            continue
        sel = np.flatnonzero(codes == code)
        owner = parents[sel]
        if len(sel) > 1 and np.any(owner[1:] == owner[:-1]):
            sel = sel[np.concatenate([[True], owner[1:] != owner[:-1]])]
        if np.any(types[sel] == ARRAY):
            out[key] = None
            continue
        take = pa.array(sel)
        found: set[tuple[str, str]] = set()
        for values, slot in slots:
            if values.null_count == len(values):
                continue
            for x in pc.unique(values.take(take).drop_null()).to_pylist():
                found.add(typed_value(slot, x))
        out[key] = found
    return out


def _nested_attrs(spans: pa.Table, column: str) -> pa.Array:
    """The `attrs` lists of every event (or link) of every span."""
    col = spans.column(column)
    lists = col.combine_chunks() if col.num_chunks else pa.array([], col.type)
    flat = pc.list_flatten(lists)
    return pc.struct_field(flat, "attrs")


def value_catalogue(
    table: SpanTable, keys: Mapping[str, Any], max_bytes_per_key: int
) -> tuple[pa.Table, dict[str, list[str]]]:
    """Every distinct typed value of every key in `keys` (scope -> keys, as `attribute_keys`) and of the
    catalogued intrinsics, over all spans: rows (scope, key, type, value) sorted, and the keys left out
    because their values take more than `max_bytes_per_key` (scope -> sorted keys). Equal to
    `tag_values_v2(table, catalogue_ref(scope, key))` for each (tests/unit/test_value_catalogue.py), but
    from one pass over each attribute column instead of an engine lookup per key."""
    spans = table.spans
    resources = table.resources
    if table.num_spans and resources.num_rows:
        used = pc.unique(spans.column("resource_index")).drop_null()
        resources = resources.take(used.cast(pa.int64()))
    else:
        resources = resources.slice(0, 0)
    sources = {
        "span": lambda: spans.column("attrs"),
        "resource": lambda: resources.column("attrs"),
        "scope": lambda: resources.column("scope_attrs"),
        "event": lambda: _nested_attrs(spans, "events"),
        "link": lambda: _nested_attrs(spans, "links"),
    }
    found: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for scope in CATALOGUE_SCOPES:
        wanted = sorted(keys.get(scope, ()))
        if not wanted:
            continue
        for key, values in _attr_values(sources[scope](), wanted).items():
            found[(scope, key)] = tag_values_v2(table, catalogue_ref(scope, key)) if values is None else values
    for key, column in (("name", "name"), ("statusMessage", "status_message")):
        col = spans.column(column)
        names = pc.unique(col.drop_null()).to_pylist() if len(col) else []
        found[("intrinsic", key)] = {("string", v) for v in names}
    rows: list[tuple[str, str, str, str]] = []
    capped: dict[str, list[str]] = {}
    for (scope, key), values in found.items():
        ordered = sorted(values)
        if sum(tag_value_bytes(t, v) for t, v in ordered) > max_bytes_per_key:
            capped.setdefault(scope, []).append(key)
            continue
        rows.extend((scope, key, t, v) for t, v in ordered)
    columns = list(zip(*rows, strict=True)) if rows else [(), (), (), ()]
    out = pa.table([pa.array(c, pa.string()) for c in columns], schema=CATALOGUE_SCHEMA)
    return out, {scope: sorted(keys) for scope, keys in capped.items()}


__all__ = [
    "CATALOGUE_INTRINSICS",
    "CATALOGUE_SCHEMA",
    "CATALOGUE_SCOPES",
    "catalogue_ref",
    "constant_tag_values",
    "tag_value_bytes",
    "tag_values_v2",
    "typed_value",
    "typed_values",
    "value_catalogue",
]

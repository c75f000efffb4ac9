"""Search, tag-name and tag-value results over a span table, and the tempopb messages Tempo answers with.

Search results live in `search_pb` (per trace, the reference path), `result_columns` / `result_json`
(column-wise, what the search answers with), `search_json` (JSON of messages) and `legacy_search`
(`tags=` search); their names are re-exported here.

Each discovery function returns plain Python values for one source (live-store table or block) with a
`merge_*` function to combine sources, and a `*_response` function that builds the protobuf message
(rendered to JSON by `json_format.MessageToDict`, which matches Tempo's jsonpb output). Field rules
follow shared/reference/tempo-api.md §3-5.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tempo_lite._gen import tempopb_pb2 as pb
from tempo_lite.querier.legacy_search import LegacySearch, legacy_tag_search
from tempo_lite.querier.search_json import any_value_json, key_values_json, search_response_json
from tempo_lite.querier.search_pb import (
    any_value,
    hex_trace_id,
    merge_search_results,
    render_go_duration,
    search_response,
    search_results,
    trace_metadata,
)
from tempo_lite.spantable import SpanTable
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
    Status,
    format_float,
)
from tempo_lite.traceql.engine_context import SpanContext
from tempo_lite.traceql.engine_values import Col

_STATUS_TEXT = {0: "unset", 1: "ok", 2: "error"}
_KIND_TEXT = {k.value: k.text for k in Kind}

# /api/v2/search/tags intrinsic scope (pkg/search/util.go GetVirtualIntrinsicValues, Tempo 3.0).
INTRINSIC_TAGS = [
    "duration",
    "name",
    "status",
    "statusMessage",
    "kind",
    "rootServiceName",
    "rootName",
    "traceDuration",
    "event:name",
    "event:timeSinceStart",
    "link:spanID",
    "link:traceID",
    "instrumentation:name",
    "instrumentation:version",
    "trace:id",
    "span:id",
    "span:parentID",
    "span:status",
    "span:statusMessage",
    "span:duration",
    "span:name",
    "span:kind",
    "trace:rootName",
    "trace:rootService",
    "trace:duration",
]
ATTRIBUTE_SCOPES = ("resource", "span", "event", "link", "instrumentation")


# --------------------------------------------------------------------------------------------------
# Tag names


def _keys_of(lists: pa.Array | pa.ChunkedArray, rows: np.ndarray | None) -> set[str]:
    if isinstance(lists, pa.ChunkedArray):
        lists = lists.combine_chunks()
    if rows is not None:
        lists = lists.take(pa.array(rows, pa.int64()))
    flat = pc.list_flatten(lists)
    if len(flat) == 0:
        return set()
    return set(pc.unique(pc.struct_field(flat, "key")).to_pylist())


def tag_names(table: SpanTable, q: SpansetFilter | None = None) -> dict[str, set[str]]:
    """Attribute names per scope (resource, span, event, link, instrumentation), optionally only on
    spans matching the `q` filter."""
    out: dict[str, set[str]] = {s: set() for s in ATTRIBUTE_SCOPES}
    if table.num_spans == 0:
        return out
    spans = table.spans
    rows: np.ndarray | None = None
    if q is not None:
        rows = np.flatnonzero(SpanContext(table).filter_mask(q.expr))
        if len(rows) == 0:
            return out
    out["span"] = _keys_of(spans.column("attrs"), rows)
    for key, col in table.dedicated.items():
        c = spans.column(col)
        if rows is not None:
            c = c.take(pa.array(rows, pa.int64()))
        if c.null_count < len(c):
            out["span"].add(key)
    res_rows = pc.unique(spans.column("resource_index") if rows is None else spans.column("resource_index").take(rows))
    res_idx = np.array(res_rows.to_pylist(), dtype=np.int64)
    out["resource"] = _keys_of(table.resources.column("attrs"), res_idx)
    out["instrumentation"] = _keys_of(table.resources.column("scope_attrs"), res_idx)
    for scope, column in (("event", "events"), ("link", "links")):
        nested = spans.column(column)
        if rows is not None:
            nested = nested.take(pa.array(rows, pa.int64()))
        flat = pc.list_flatten(nested)
        out[scope] = _keys_of(pc.struct_field(flat, "attrs"), None) if len(flat) else set()
    return out


def merge_tag_names(*sources: Mapping[str, set[str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {s: set() for s in ATTRIBUTE_SCOPES}
    for src in sources:
        for scope, names in src.items():
            out.setdefault(scope, set()).update(names)
    return out


def _check_scope(scope: str) -> str:
    if scope not in ("", "none", "intrinsic", *ATTRIBUTE_SCOPES):
        raise ValueError(f"invalid scope: {scope}")
    return scope


def search_tags_response(names: Mapping[str, set[str]], scope: str = "", limit: int = 0) -> pb.SearchTagsResponse:
    """v1: sorted, de-duplicated names without scope; intrinsics only for scope=intrinsic."""
    scope = _check_scope(scope)
    if scope == "intrinsic":
        tags = sorted(INTRINSIC_TAGS)
    elif scope in ("", "none"):
        tags = sorted(set().union(*names.values())) if names else []
    else:
        tags = sorted(names.get(scope, set()))
    return pb.SearchTagsResponse(tagNames=tags[:limit] if limit else tags)


def search_tags_v2_response(names: Mapping[str, set[str]], scope: str = "", limit: int = 0) -> pb.SearchTagsV2Response:
    """v2: one entry per scope with sorted tags; the intrinsic scope for scope "", none or intrinsic."""
    scope = _check_scope(scope)
    resp = pb.SearchTagsV2Response()
    wanted = ATTRIBUTE_SCOPES if scope in ("", "none") else ((scope,) if scope != "intrinsic" else ())
    for s in wanted:
        tags = sorted(names.get(s, set()))
        if tags:
            resp.scopes.add(name=s, tags=tags[:limit] if limit else tags)
    if scope in ("", "none", "intrinsic"):
        resp.scopes.add(name="intrinsic", tags=INTRINSIC_TAGS[:limit] if limit else INTRINSIC_TAGS)
    return resp


# --------------------------------------------------------------------------------------------------
# Tag values

_KEYWORD_VALUES = {
    Intrinsic.STATUS: ["ok", "error", "unset"],
    Intrinsic.KIND: ["client", "server", "producer", "consumer", "internal", "unspecified"],
}
_NO_VALUES = frozenset({Intrinsic.DURATION, Intrinsic.TRACE_DURATION})
V1_VIRTUAL_VALUES = {"status.code": ["unset", "ok", "error"], "error": ["true"]}


def _typed_strings(c: Col) -> set[tuple[str, str]]:
    """Distinct (type, value-as-string) pairs of a column, arrays contributing their elements."""
    out: set[tuple[str, str]] = set()
    cols = [c, *c.alts]
    for col in cols:
        slots = dict(col.slots)
        for slot, v in slots.items():
            if isinstance(v, pa.Scalar):
                continue
            for x in pc.unique(v.drop_null()).to_pylist():
                out.add(_typed_string(slot, x))
        if col.arr is not None:
            for slot, v in col.arr.slots.items():
                for x in pc.unique(v.drop_null()).to_pylist():
                    out.add(_typed_string(slot, x))
    return out


def _typed_string(slot: str, x: object) -> tuple[str, str]:
    if slot == "str":
        return ("string", str(x))
    if slot == "int":
        return ("int", str(x))
    if slot == "float":
        return ("float", format_float(float(x)))  # type: ignore[arg-type]
    if slot == "bool":
        return ("bool", "true" if x else "false")
    if slot == "dur":
        return ("duration", render_go_duration(int(x)))  # type: ignore[arg-type]
    if slot == "status":
        return ("keyword", _STATUS_TEXT.get(int(x), "unset"))  # type: ignore[arg-type]
    return ("keyword", _KIND_TEXT.get(int(x), "unspecified"))  # type: ignore[arg-type]


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


def tag_values_v2(table: SpanTable, ref: Attribute | Intrinsic, q: SpansetFilter | None = None) -> set[tuple[str, str]]:
    """Distinct typed values of `ref` on the spans matching `q` (all spans without `q`)."""
    if isinstance(ref, Intrinsic):
        if ref in _KEYWORD_VALUES:
            return {("keyword", v) for v in _KEYWORD_VALUES[ref]}
        if ref in _NO_VALUES:
            return set()
    same = _same_tag_value(ref, q)
    if same is not None:
        return {same}
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
        owner = np.repeat(np.arange(table.num_spans), info["lens"])  # type: ignore[arg-type]
        flat_rows = np.flatnonzero(mask[owner])
        full = ctx.sub_attr(level, ref.name) if isinstance(ref, Attribute) else ctx.sub_intrinsic(ref)
        return _typed_strings(full.take(flat_rows))
    value = ctx.span_value(ref)
    return _typed_strings(value if len(rows) == table.num_spans else value.take(rows))


def tag_values_v1(table: SpanTable, tag: str, q: SpansetFilter | None = None) -> set[str]:
    """v1 values of a raw attribute name, looked up on spans and resources, as strings."""
    if tag in V1_VIRTUAL_VALUES:
        return set(V1_VIRTUAL_VALUES[tag])
    return {v for _, v in tag_values_v2(table, Attribute(tag, Scope.NONE), q)}


def merge_tag_values(*sources: Iterable) -> set:
    out: set = set()
    for src in sources:
        out.update(src)
    return out


def tag_values_response(values: Iterable[str], limit: int = 0) -> pb.SearchTagValuesResponse:
    ordered = sorted(values)
    return pb.SearchTagValuesResponse(tagValues=ordered[:limit] if limit else ordered)


def tag_values_v2_response(values: Iterable[tuple[str, str]], limit: int = 0) -> pb.SearchTagValuesV2Response:
    ordered = sorted(values)
    if limit:
        ordered = ordered[:limit]
    return pb.SearchTagValuesV2Response(tagValues=[pb.TagValue(type=t, value=v) for t, v in ordered])


__all__ = [
    "INTRINSIC_TAGS",
    "any_value_json",
    "key_values_json",
    "search_response_json",
    "LegacySearch",
    "Status",
    "any_value",
    "hex_trace_id",
    "legacy_tag_search",
    "merge_search_results",
    "merge_tag_names",
    "merge_tag_values",
    "render_go_duration",
    "search_response",
    "search_results",
    "search_tags_response",
    "search_tags_v2_response",
    "tag_names",
    "tag_values_response",
    "tag_values_v1",
    "tag_values_v2",
    "tag_values_v2_response",
    "trace_metadata",
]


"""Tag names and tag values (Grafana's autocomplete): per source, merged, and as tempopb messages.

Each discovery function returns plain Python values for one source (live-store table or block) with a
`merge_*` function to combine sources, and a `*_response` function that builds the protobuf message.
Field rules follow Tempo's `/api/search/tags`, `/api/v2/search/tags` and `.../tag/<tag>/values`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tempo_lite._gen import tempopb_pb2 as pb
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
    format_duration,
    format_float,
)
from tempo_lite.traceql.engine_context import SpanContext
from tempo_lite.traceql.engine_values import Col
from tempo_lite.traceql.tag_names import ATTRIBUTE_SCOPES, tag_names

_STATUS_TEXT = {0: "unset", 1: "ok", 2: "error"}  # OTLP status codes
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
    "ATTRIBUTE_SCOPES",
    "INTRINSIC_TAGS",
    "V1_VIRTUAL_VALUES",
    "constant_tag_values",
    "merge_tag_names",
    "merge_tag_values",
    "search_tags_response",
    "search_tags_v2_response",
    "tag_names",
    "tag_values_response",
    "tag_values_v1",
    "tag_values_v2",
    "tag_values_v2_response",
    "typed_value",
    "typed_values",
]

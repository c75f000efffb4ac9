"""Search results over a span table, and the tempopb messages Tempo answers with (tags: querier/tags.py).

Each discovery function returns plain Python values for one source (live-store table or block) with a
`merge_*` function to combine sources, and a `*_response` function that builds the protobuf message
(rendered to JSON by `json_format.MessageToDict`, which matches Tempo's jsonpb output). Field rules
follow shared/reference/tempo-api.md §3-5.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from google.protobuf import json_format

from tempo_lite._gen import tempopb_pb2 as pb
from tempo_lite.spantable import SpanTable
from tempo_lite.traceql.ast import (
    Intrinsic,
    Kind,
    Status,
    format_duration,
)
from tempo_lite.traceql.engine import TraceMatch, TypedValue
from tempo_lite.traceql.engine_context import SpanContext
from tempo_lite.traceql.engine_summary import ROOT_NOT_YET_RECEIVED, TraceSummaries, trace_summaries
from tempo_lite.traceql.engine_values import Col, compare

_STATUS_TEXT = {0: "unset", 1: "ok", 2: "error"}
_KIND_TEXT = {k.value: k.text for k in Kind}



def render_go_duration(ns: int) -> str:
    """Go `time.Duration.String()` of a nanosecond count (`1.5s`, `100ms`, `1h0m0s`)."""
    return format_duration(ns)


def hex_trace_id(trace_id: bytes) -> str:
    """Search-result trace ID: lowercase hex without leading zeros (Tempo's TraceIDToHexString)."""
    return trace_id.hex().lstrip("0") or "0"


# --------------------------------------------------------------------------------------------------
# Search responses


def any_value(v: TypedValue) -> pb.AnyValue:
    """A typed engine value as an AnyValue: status/kind as their names, durations as Go strings."""
    kind, value = v
    if kind == "str":
        return pb.AnyValue(string_value=str(value))
    if kind == "int":
        return pb.AnyValue(int_value=int(value))  # type: ignore[arg-type]
    if kind == "float":
        return pb.AnyValue(double_value=float(value))  # type: ignore[arg-type]
    if kind == "bool":
        return pb.AnyValue(bool_value=bool(value))
    if kind == "dur":
        return pb.AnyValue(string_value=render_go_duration(int(value)))  # type: ignore[arg-type]
    if kind == "status":
        return pb.AnyValue(string_value=_STATUS_TEXT.get(int(value), "unset"))  # type: ignore[arg-type]
    if kind == "kind":
        return pb.AnyValue(string_value=_KIND_TEXT.get(int(value), "unspecified"))  # type: ignore[arg-type]
    if kind == "array":
        return pb.AnyValue(array_value=pb.ArrayValue(values=[any_value(_plain_typed(x)) for x in value]))  # type: ignore[union-attr]
    raise ValueError(f"unknown value type {kind}")


def _plain_typed(x: object) -> TypedValue:
    if isinstance(x, bool):
        return ("bool", x)
    if isinstance(x, int):
        return ("int", x)
    if isinstance(x, float):
        return ("float", x)
    return ("str", x)


def _key_values(attrs: Iterable[tuple[str, TypedValue]]) -> list[pb.KeyValue]:
    return [pb.KeyValue(key=k, value=any_value(v)) for k, v in attrs]


def trace_metadata(match: TraceMatch | None, summary: Mapping, *, with_spansets: bool = True) -> pb.TraceSearchMetadata:
    """One search result: trace facts from `summary` (a `TraceSummaries.by_trace_id()` entry).

    Built with one constructor call (nested messages as keyword arguments): the fields are filled in C,
    not one Python attribute access at a time (a large share of returning thousands of results)."""
    start = summary["start_unix_nano"]
    fields: dict = {
        "traceID": hex_trace_id(summary["trace_id"]),
        "startTimeUnixNano": start,
        "durationMs": (summary["end_unix_nano"] - start) // 1_000_000,
    }
    if summary.get("root_span_name") is not None or summary.get("root_service_name") is not None:
        fields["rootServiceName"] = summary.get("root_service_name") or ""
        fields["rootTraceName"] = summary.get("root_span_name") or ""
    else:
        fields["rootServiceName"] = ROOT_NOT_YET_RECEIVED
    services = summary.get("services")
    if services:
        fields["serviceStats"] = {
            service: pb.ServiceStats(spanCount=spans, errorCount=errors)
            for service, (spans, errors) in services.items()
        }
    if match is not None and with_spansets and match.spansets:
        sets = [
            pb.SpanSet(
                matched=ss.matched,
                attributes=_key_values(ss.attributes),
                spans=[
                    pb.Span(
                        spanID=sp.span_id.hex().rjust(16, "0"),
                        name=sp.name or "",
                        startTimeUnixNano=sp.start_unix_nano,
                        durationNanos=sp.duration_nano,
                        attributes=_key_values(sp.attributes),
                    )
                    for sp in ss.spans
                ],
            )
            for ss in match.spansets
        ]
        fields["spanSets"] = sets
        fields["spanSet"] = sets[0]
    return pb.TraceSearchMetadata(**fields)


def search_results(matches: list[TraceMatch], table: SpanTable | TraceSummaries) -> list[pb.TraceSearchMetadata]:
    """Search results for the matches of one table (summaries computed from the same table)."""
    summaries = table if isinstance(table, TraceSummaries) else trace_summaries(table)
    by_id = summaries.by_trace_id()
    return [trace_metadata(m, by_id[m.trace_id]) for m in matches]


def merge_search_results(
    *sources: Iterable[pb.TraceSearchMetadata], limit: int | None = None
) -> list[pb.TraceSearchMetadata]:
    """Combine results of several sources: first occurrence of a trace ID wins, newest first, `limit`."""
    seen: dict[str, pb.TraceSearchMetadata] = {}
    for src in sources:
        for md in src:
            seen.setdefault(md.traceID, md)
    ordered = sorted(seen.values(), key=lambda m: m.startTimeUnixNano, reverse=True)
    return ordered if limit is None else ordered[:limit]


def search_response(
    results: Iterable[pb.TraceSearchMetadata], *, limit: int | None = None, metrics: pb.SearchMetrics | None = None
) -> pb.SearchResponse:
    """The SearchResponse: traces sorted by start time descending, at most `limit`."""
    resp = pb.SearchResponse(traces=merge_search_results(results, limit=limit))
    if metrics is not None:
        resp.metrics.CopyFrom(metrics)
    return resp


# --------------------------------------------------------------------------------------------------
# Legacy tag search (tags=...)

_SUBSTRING_RESOURCE_KEYS = frozenset(
    {
        "service.name",
        "cluster",
        "namespace",
        "pod",
        "container",
        "k8s.cluster.name",
        "k8s.namespace.name",
        "k8s.pod.name",
        "k8s.container.name",
    }
)
_SUBSTRING_SPAN_KEYS = frozenset({"http.method", "http.url"})


@dataclass
class LegacySearch:
    """A legacy `tags=` search: tags plus trace duration (ms) and time window (unix seconds) bounds."""

    tags: Mapping[str, str]
    min_duration_ms: int = 0
    max_duration_ms: int = 0
    start: int = 0
    end: int = 0


def _contains(c: Col, value: str) -> np.ndarray:
    s = c.primary().slots.get("str")
    if s is None or isinstance(s, pa.Scalar):
        return np.zeros(c.n, dtype=bool)
    return pc.match_substring(s, value).fill_null(False).to_numpy(zero_copy_only=False).astype(bool)


def _equals_str(c: Col, value: str) -> np.ndarray:
    return compare("=", c, Col.literal(c.n, "str", value))


def legacy_tag_search(table: SpanTable, search: LegacySearch) -> list[bytes]:
    """Trace IDs matching a legacy tag search (vParquet4 semantics, tempo-api.md §3.4).

    Every tag must hold within one batch (a resource/scope of one trace): on the resource or on one of
    the batch's spans. Well-known keys match by case-sensitive substring; `http.status_code` is an
    exact int; `status.code` takes unset|ok|error; any other key is an exact string match.
    """
    if table.num_spans == 0:
        return []
    ctx = SpanContext(table)
    summaries = ctx.summaries
    n = table.num_spans
    span_trace = summaries.span_trace
    n_res = max(table.resources.num_rows, 1)
    batch = span_trace * n_res + ctx.resource_index
    ok_batches: set[int] | None = None
    for key, value in search.tags.items():
        mask = _legacy_tag_mask(ctx, key, value, n)
        batches = set(np.unique(batch[mask]).tolist())
        ok_batches = batches if ok_batches is None else ok_batches & batches
    if ok_batches is None:
        traces = set(range(summaries.traces.num_rows))
    else:
        traces = {b // n_res for b in ok_batches}
    out = []
    rows = summaries.traces.to_pylist()
    for t in sorted(traces):
        row = rows[t]
        duration_ms = (row["end_unix_nano"] - row["start_unix_nano"]) // 1_000_000
        if search.min_duration_ms and duration_ms < search.min_duration_ms:
            continue
        if search.max_duration_ms and duration_ms > search.max_duration_ms:
            continue
        if (search.start or search.end) and not (
            row["start_unix_nano"] <= search.end * 10**9 and row["end_unix_nano"] >= search.start * 10**9
        ):
            continue
        out.append(row["trace_id"])
    return out


def _legacy_tag_mask(ctx: SpanContext, key: str, value: str, n: int) -> np.ndarray:
    if key == "root.service.name":
        return _contains(ctx.intrinsic(Intrinsic.TRACE_ROOT_SERVICE), value)
    if key == "root.name":
        return _contains(ctx.intrinsic(Intrinsic.TRACE_ROOT_NAME), value)
    if key == "name":
        return _contains(ctx.intrinsic(Intrinsic.NAME), value)
    if key == "status.code":
        code = {"unset": 0, "ok": 1, "error": 2}.get(value)
        if code is None:
            return np.zeros(n, dtype=bool)
        return compare("=", ctx.intrinsic(Intrinsic.STATUS), Col.literal(n, "status", code))
    if key == "http.status_code":
        try:
            code_i = int(value)
        except ValueError:
            return np.zeros(n, dtype=bool)
        return compare("=", ctx.span_attr(key), Col.literal(n, "int", code_i))
    span = ctx.span_attr(key)
    res = ctx.resource_level("resource", key)
    dedicated = ctx.table.dedicated.get(key)
    dedicated_str = dedicated is not None and dedicated in ctx.spans.column_names and pa.types.is_string(
        ctx.spans.schema.field(dedicated).type)
    if key in _SUBSTRING_RESOURCE_KEYS or key in _SUBSTRING_SPAN_KEYS or dedicated_str:
        return _contains(span, value) | _contains(res, value)
    return _equals_str(span, value) | _equals_str(res, value)


__all__ = [
    "LegacySearch",
    "Status",
    "any_value",
    "hex_trace_id",
    "legacy_tag_search",
    "merge_search_results",
    "render_go_duration",
    "search_response",
    "search_results",
    "trace_metadata",
]


# --------------------------------------------------------------------------------------------------
# Search responses as JSON, without json_format's per-field reflection (attribute helpers shared with
# querier/trace_json.py)


def any_value_json(v: pb.AnyValue) -> dict:
    kind = v.WhichOneof("value")
    if kind is None:
        return {}
    if kind == "string_value":
        return {"stringValue": v.string_value}
    if kind == "bool_value":
        return {"boolValue": v.bool_value}
    if kind == "int_value":
        return {"intValue": str(v.int_value)}
    if kind == "double_value":
        d = v.double_value
        return {"doubleValue": d if math.isfinite(d) else ("NaN" if d != d else ("Infinity" if d > 0 else "-Infinity"))}
    if kind == "array_value":
        values = [any_value_json(x) for x in v.array_value.values]
        return {"arrayValue": {"values": values} if values else {}}
    return json_format.MessageToDict(v)  # kvlist and bytes: rare in traces, never in search; kept exact


def key_values_json(kvs: Iterable[pb.KeyValue]) -> list[dict]:
    out = []
    for kv in kvs:
        item: dict = {}
        if kv.key:
            item["key"] = kv.key
        if kv.HasField("value"):
            item["value"] = any_value_json(kv.value)
        out.append(item)
    return out


def _span_set_json(ss: pb.SpanSet) -> dict:
    out: dict = {}
    spans = []
    for sp in ss.spans:
        s: dict = {}
        if sp.spanID:
            s["spanID"] = sp.spanID
        if sp.name:
            s["name"] = sp.name
        if sp.startTimeUnixNano:
            s["startTimeUnixNano"] = str(sp.startTimeUnixNano)
        if sp.durationNanos:
            s["durationNanos"] = str(sp.durationNanos)
        if sp.attributes:
            s["attributes"] = key_values_json(sp.attributes)
        spans.append(s)
    if spans:
        out["spans"] = spans
    if ss.matched:
        out["matched"] = ss.matched
    if ss.attributes:
        out["attributes"] = key_values_json(ss.attributes)
    return out


def _trace_json(md: pb.TraceSearchMetadata) -> dict:
    out: dict = {}
    if md.traceID:
        out["traceID"] = md.traceID
    if md.rootServiceName:
        out["rootServiceName"] = md.rootServiceName
    if md.rootTraceName:
        out["rootTraceName"] = md.rootTraceName
    if md.startTimeUnixNano:
        out["startTimeUnixNano"] = str(md.startTimeUnixNano)
    if md.durationMs:
        out["durationMs"] = md.durationMs
    sets = [_span_set_json(ss) for ss in md.spanSets]
    if md.HasField("spanSet"):
        # Search results repeat the first spanset as `spanSet`: convert it once.
        out["spanSet"] = sets[0] if sets and md.spanSet == md.spanSets[0] else _span_set_json(md.spanSet)
    if sets:
        out["spanSets"] = sets
    if md.serviceStats:
        stats = {}
        for name, st in md.serviceStats.items():
            s: dict = {}
            if st.spanCount:
                s["spanCount"] = st.spanCount
            if st.errorCount:
                s["errorCount"] = st.errorCount
            stats[name] = s
        out["serviceStats"] = stats
    return out


def search_response_json(resp: pb.SearchResponse) -> bytes:
    """`json_format.MessageToDict(resp)` as compact JSON (the same document: proto3 JSON names, 64-bit
    integers as strings, default values left out), built by direct field access: the generic converter
    spent more than the search itself on answers with thousands of traces."""
    doc: dict = {}
    if resp.traces:
        doc["traces"] = [_trace_json(md) for md in resp.traces]
    if resp.HasField("metrics"):
        doc["metrics"] = json_format.MessageToDict(resp.metrics)
    return json.dumps(doc, separators=(",", ":")).encode()

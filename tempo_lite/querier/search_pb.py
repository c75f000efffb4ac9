"""Search results one trace at a time as tempopb messages: the reference path.

`trace_metadata` builds one `TraceSearchMetadata` from a trace's match and summary; the search itself
builds its answers column-wise (`result_columns`, `result_json`, `result_pb`), and tests check that they agree.
Field rules follow Tempo's API (see docs/search-performance.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from tempo_lite._gen import tempopb_pb2 as pb
from tempo_lite.spantable import SpanTable
from tempo_lite.traceql.ast import Kind, format_duration
from tempo_lite.traceql.engine_results import TraceMatch
from tempo_lite.traceql.engine_summary import ROOT_NOT_YET_RECEIVED, TraceSummaries, trace_summaries
from tempo_lite.traceql.engine_values import TypedValue

STATUS_TEXT = {0: "unset", 1: "ok", 2: "error"}
KIND_TEXT = {k.value: k.text for k in Kind}


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
        return pb.AnyValue(int_value=int(value))  # type: ignore[call-overload]
    if kind == "float":
        return pb.AnyValue(double_value=float(value))  # type: ignore[arg-type]
    if kind == "bool":
        return pb.AnyValue(bool_value=bool(value))
    if kind == "dur":
        return pb.AnyValue(string_value=render_go_duration(int(value)))  # type: ignore[call-overload]
    if kind == "status":
        return pb.AnyValue(string_value=STATUS_TEXT.get(int(value), "unset"))  # type: ignore[call-overload]
    if kind == "kind":
        return pb.AnyValue(string_value=KIND_TEXT.get(int(value), "unspecified"))  # type: ignore[call-overload]
    if kind == "array":
        return pb.AnyValue(array_value=pb.ArrayValue(values=[any_value(plain_typed(x)) for x in value]))  # type: ignore[attr-defined]
    raise ValueError(f"unknown value type {kind}")


def plain_typed(x: object) -> TypedValue:
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


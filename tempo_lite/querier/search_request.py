"""What a search asks (`SearchRequest`), what it counted (`SearchStats`), and the per-table matchers:
`column_matcher_for` (column-wise results, what the search answers with) and `matcher_for` (one message
per trace: the reference path the tests compare against)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from tempo_lite import spantable
from tempo_lite._gen import tempopb_pb2 as pb
from tempo_lite.errors import InvalidRequest
from tempo_lite.querier.legacy_search import LegacySearch, legacy_tag_search
from tempo_lite.querier.result_columns import ResultColumns, from_matches, from_summaries
from tempo_lite.querier.search_pb import search_results, trace_metadata
from tempo_lite.traceql import parse
from tempo_lite.traceql.ast import Attribute, Intrinsic, Query, Scope
from tempo_lite.traceql.engine import evaluate, evaluate_columns
from tempo_lite.traceql.engine_query import referenced_fields
from tempo_lite.traceql.engine_summary import trace_summaries

# Columns every evaluation needs (structure, intrinsics, result fields); attribute, event and link
# columns are read only when the query refers to them.
_BASE_COLUMNS = [
    "trace_id", "span_id", "parent_span_id", "name", "kind", "status_code", "status_message",
    "start_unix_nano", "duration_nano", "resource_index", "service_name",
    "nested_set_left", "nested_set_right", "parent_index",
]
_EVENT_INTRINSICS = {Intrinsic.EVENT_NAME, Intrinsic.EVENT_TIME_SINCE_START}
_LINK_INTRINSICS = {Intrinsic.LINK_TRACE_ID, Intrinsic.LINK_SPAN_ID}


def columns_for(query: Query | None) -> list[str] | None:
    """The span columns a query reads; None means all (legacy tag search, tag discovery)."""
    if query is None:
        return None
    cols = list(_BASE_COLUMNS)
    extra: set[str] = set()
    for ref in referenced_fields(query):
        if isinstance(ref, Attribute):
            if ref.scope in (Scope.NONE, Scope.SPAN):
                extra.add("attrs")
            elif ref.scope is Scope.EVENT:
                extra.add("events")
            elif ref.scope is Scope.LINK:
                extra.add("links")
        elif ref in _EVENT_INTRINSICS:
            extra.add("events")
        elif ref in _LINK_INTRINSICS:
            extra.add("links")
    return cols + sorted(extra)


@dataclass
class SearchStats:
    inspected_traces: int = 0
    inspected_spans: int = 0
    inspected_bytes: int = 0
    total_blocks: int = 0
    completed_jobs: int = 0
    total_jobs: int = 0
    total_block_bytes: int = 0
    failed_blocks: list[str] = field(default_factory=list)

    @classmethod
    def from_message(cls, m: pb.SearchMetrics) -> SearchStats:
        """The stats a querier answered with (a sharded search job)."""
        return cls(inspected_traces=m.inspectedTraces, inspected_spans=m.inspectedSpans,
                   inspected_bytes=m.inspectedBytes, total_blocks=m.totalBlocks, completed_jobs=m.completedJobs,
                   total_jobs=m.totalJobs, total_block_bytes=m.totalBlockBytes)

    def add(self, other: SearchStats) -> None:
        """Count `other` (another tenant's or job's search) into these."""
        self.inspected_traces += other.inspected_traces
        self.inspected_spans += other.inspected_spans
        self.inspected_bytes += other.inspected_bytes
        self.total_blocks += other.total_blocks
        self.completed_jobs += other.completed_jobs
        self.total_jobs += other.total_jobs
        self.total_block_bytes += other.total_block_bytes
        self.failed_blocks += other.failed_blocks

    def message(self) -> pb.SearchMetrics:
        return pb.SearchMetrics(
            inspectedTraces=self.inspected_traces,
            inspectedBytes=self.inspected_bytes,
            totalBlocks=self.total_blocks,
            completedJobs=self.completed_jobs,
            totalJobs=self.total_jobs,
            totalBlockBytes=self.total_block_bytes,
            inspectedSpans=self.inspected_spans,
        )


@dataclass(frozen=True)
class SearchRequest:
    """What to find: a TraceQL query or a legacy tag search, in a time range (ns, 0 = unbounded)."""

    query: Query | None
    legacy: LegacySearch | None
    start_ns: int
    end_ns: int
    limit: int
    spss: int
    live_only: bool
    # Render results for a protobuf answer (`result_pb`) instead of JSON.
    protobuf: bool = False

    @property
    def most_recent(self) -> bool:
        hint = self.query.hints.get("most_recent") if self.query is not None else None
        return bool(hint is not None and hint.value is True)


Matcher = Callable[[spantable.SpanTable], ResultColumns]
MessageMatcher = Callable[[spantable.SpanTable], list[pb.TraceSearchMetadata]]


def _overlapping(results: list[pb.TraceSearchMetadata], start_ns: int, end_ns: int) -> list[pb.TraceSearchMetadata]:
    if not start_ns and not end_ns:
        return results
    end = end_ns or (1 << 63) - 1
    return [
        r for r in results
        if r.startTimeUnixNano <= end and r.startTimeUnixNano + r.durationMs * 1_000_000 >= start_ns
    ]


def matcher_for(request: SearchRequest) -> MessageMatcher:
    """Evaluate the request over a table holding whole traces -> search results.

    Only the `limit` newest matches of a table can reach the merged answer (results are ordered newest
    first), so only those are built, and trace summaries are computed over their spans alone.
    """
    if request.query is not None:
        query = request.query

        def traceql(table: spantable.SpanTable) -> list[pb.TraceSearchMetadata]:
            matches = evaluate(query, table, spss=request.spss, limit=request.limit)
            if not matches:
                return []
            ids = pa.array([m.trace_id for m in matches], pa.binary(16))
            mine = pc.is_in(table.spans.column("trace_id"), ids)
            subset = spantable.SpanTable(table.spans.filter(mine), table.resources, dict(table.dedicated))
            return search_results(matches, trace_summaries(subset))

        return traceql
    legacy = request.legacy
    assert legacy is not None

    def tags(table: spantable.SpanTable) -> list[pb.TraceSearchMetadata]:
        ids = legacy_tag_search(table, legacy)
        if not ids:
            return []
        by_id = trace_summaries(table).by_trace_id()
        return [trace_metadata(None, by_id[t], with_spansets=False) for t in ids]

    return tags


def column_matcher_for(request: SearchRequest) -> Matcher:
    """`matcher_for` column-wise: the same results as `ResultColumns`, rendered from whole columns."""
    if request.query is not None:
        query = request.query

        def traceql(table: spantable.SpanTable) -> ResultColumns:
            matches = evaluate_columns(query, table, spss=request.spss, limit=request.limit)
            if not matches.num_traces:
                return ResultColumns.empty()
            index = matches.table_index
            if index is not None and 2 * matches.num_traces >= len(index[0]):
                # Most traces of the table match (a block's stage two reads just the chosen ones): summarise
                # the table as it is, with the evaluation's trace index.
                return from_matches(matches, trace_summaries(table, index), protobuf=request.protobuf)
            mine = pc.is_in(table.spans.column("trace_id"), matches.trace_ids)
            table = spantable.SpanTable(table.spans.filter(mine), table.resources, dict(table.dedicated))
            return from_matches(matches, trace_summaries(table), protobuf=request.protobuf)

        return traceql
    legacy = request.legacy
    assert legacy is not None

    def tags(table: spantable.SpanTable) -> ResultColumns:
        ids = legacy_tag_search(table, legacy)
        if not ids:
            return ResultColumns.empty()
        return from_summaries(trace_summaries(table), pa.array(ids, table.spans.schema.field("trace_id").type),
                              protobuf=request.protobuf)

    return tags


@functools.lru_cache(maxsize=256)
def parse_search_query(q: str) -> Query:
    """The parsed search query. Cached by text: Grafana repeats the same queries, and parsing (a PEG
    grammar in Python) was the largest part of a no-match search's CPU; parsed queries are frozen."""
    query = parse(q)
    if query.metrics is not None:
        raise InvalidRequest(
            "invalid TraceQL query: metrics queries are answered by /api/metrics/query_range and "
            "/api/metrics/query, not /api/search"
        )
    return query

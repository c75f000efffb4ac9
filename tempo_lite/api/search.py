"""Search, tag-name and tag-value endpoints: parse and validate parameters, run the querier, encode.

`/api/search`, `/api/search/tags`, `/api/v2/search/tags`, `/api/search/tag/<tag>/values` and
`/api/v2/search/tag/<tag>/values`, each in JSON or, on `Accept: application/protobuf`, protobuf.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING
from urllib.parse import unquote

from quart import Response, request

from tempo_lite._gen import tempopb_pb2 as pb
from tempo_lite.api import encoding
from tempo_lite.errors import InvalidRequest
from tempo_lite.frontend.params import MAX_QUERY_BYTES, parse_search, parse_time_range
from tempo_lite.querier.results import (
    LegacySearch,
    merge_search_results,
    merge_tag_names,
    merge_tag_values,
    search_tags_response,
    search_tags_v2_response,
    tag_names,
    tag_values_response,
    tag_values_v1,
    tag_values_v2,
    tag_values_v2_response,
)
from tempo_lite.querier.search import SearchRequest, SearchStats, parse_search_query
from tempo_lite.traceql import parse_attribute, parse_lenient_filter

if TYPE_CHECKING:
    from quart_trio import QuartTrio

    from tempo_lite.app import TempoLite

# Tag discovery without start/end looks at the live-store plus blocks of this recent window; Grafana's
# autocomplete calls carry no range, and the live-store alone empties every block-builder cycle.
TAGS_DEFAULT_WINDOW_S = 3600


def respond(message, status: int = 200) -> Response:  # noqa: ANN001 - a protobuf message
    ctype = encoding.negotiate(request.headers.get("Accept"))
    body = message.SerializeToString() if ctype == encoding.PROTOBUF else encoding.message_json(message)
    return Response(body, status=status, content_type=ctype)


def _metadata_metrics(stats: SearchStats) -> pb.MetadataMetrics:
    return pb.MetadataMetrics(
        inspectedBytes=stats.inspected_bytes,
        totalBlocks=stats.total_blocks,
        totalJobs=stats.total_blocks + 1,
        completedJobs=stats.total_blocks + 1 - len(stats.failed_blocks),
    )


def _limit(name: str = "limit") -> int:
    raw = request.args.get(name)
    if raw in (None, ""):
        return 0
    try:
        value = int(raw)
    except ValueError as exc:
        raise InvalidRequest(f"invalid {name}: {raw!r} is not a number") from exc
    if value < 0:
        raise InvalidRequest(f"invalid {name}: must not be negative")
    return value


def _tag_range() -> tuple[int, int]:
    rng = parse_time_range(request.args)
    if rng.is_set:
        return rng.start_ns, rng.end_ns
    now = int(time.time())
    return (now - TAGS_DEFAULT_WINDOW_S) * 1_000_000_000, 0


def _q_filter():  # noqa: ANN202
    q = request.args.get("q")
    if not q:
        return None
    if len(q.encode()) > MAX_QUERY_BYTES:
        raise InvalidRequest(f"invalid TraceQL query: query is larger than the maximum of {MAX_QUERY_BYTES} bytes")
    return parse_lenient_filter(q)


def _unavailable(stats: SearchStats) -> Response | None:
    """Every block failed and nothing else could be answered: a 5xx naming what failed."""
    if stats.failed_blocks and stats.total_blocks and len(stats.failed_blocks) >= stats.total_blocks:
        return Response(
            f"{len(stats.failed_blocks)} block(s) could not be read: {stats.failed_blocks[0]}\n",
            status=503, content_type="text/plain; charset=utf-8",
        )
    return None


def register_search_routes(app: QuartTrio, tl: TempoLite) -> None:
    from tempo_lite.api.app import resolve_query_tenants

    search_cfg = tl.config.query_frontend.search

    @app.route("/api/search")
    async def search() -> Response:
        params = parse_search(
            request.args,
            default_limit=search_cfg.default_result_limit,
            max_limit=search_cfg.max_result_limit,
            max_spss=search_cfg.max_spans_per_span_set,
            max_duration_s=search_cfg.max_duration,
        )
        query = parse_search_query(params.query) if params.query is not None else None
        legacy = None
        if query is None:
            legacy = LegacySearch(
                tags=params.tags or {},
                min_duration_ms=params.min_duration_ns // 1_000_000,
                max_duration_ms=params.max_duration_ns // 1_000_000,
                start=params.time.start,
                end=params.time.end,
            )
        req = SearchRequest(
            query=query, legacy=legacy, start_ns=params.time.start_ns, end_ns=params.time.end_ns,
            limit=params.limit, spss=params.spss, live_only=not params.time.is_set,
        )
        started = time.perf_counter()
        results = []
        total = SearchStats()
        for tenant in resolve_query_tenants(tl):
            found, stats = await tl.searcher.search(tenant, req)
            results.append(found)
            total.inspected_bytes += stats.inspected_bytes
            total.inspected_traces += stats.inspected_traces
            total.inspected_spans += stats.inspected_spans
            total.total_blocks += stats.total_blocks
            total.total_jobs += stats.total_jobs
            total.completed_jobs += stats.completed_jobs
            total.total_block_bytes += stats.total_block_bytes
            total.failed_blocks += stats.failed_blocks
        tl.metrics.query_seconds.labels("search").observe(time.perf_counter() - started)
        failed = _unavailable(total)
        if failed is not None:
            return failed
        merged = merge_search_results(*results, limit=params.limit)
        return respond(pb.SearchResponse(traces=merged, metrics=total.message()))

    async def all_tables(stats: SearchStats):  # noqa: ANN202
        start_ns, end_ns = _tag_range()
        tables = []
        for tenant in resolve_query_tenants(tl):
            tables += await tl.searcher.tables(tenant, start_ns, end_ns, stats)
        return tables

    def _scope() -> str:
        scope = request.args.get("scope", "")
        if scope not in ("", "none", "intrinsic", "resource", "span", "event", "link", "instrumentation"):
            raise InvalidRequest(f"invalid scope: {scope}")
        return scope

    @app.route("/api/search/tags")
    async def search_tags() -> Response:
        scope = _scope()
        stats = SearchStats()
        names = merge_tag_names(*(tag_names(t) for t in await all_tables(stats)))
        msg = search_tags_response(names, scope, _limit())
        msg.metrics.CopyFrom(_metadata_metrics(stats))
        return respond(msg)

    @app.route("/api/v2/search/tags")
    async def search_tags_v2() -> Response:
        scope = _scope()
        q = _q_filter()
        stats = SearchStats()
        names = merge_tag_names(*(tag_names(t, q) for t in await all_tables(stats)))
        msg = search_tags_v2_response(names, scope, _limit())
        msg.metrics.CopyFrom(_metadata_metrics(stats))
        return respond(msg)

    def _tag_from_path(raw: str) -> str:
        # Grafana double-encodes the tag; the router decoded once.
        return unquote(raw)

    @app.route("/api/search/tag/<path:tag>/values")
    async def tag_values(tag: str) -> Response:
        tag = _tag_from_path(tag)
        q = _q_filter()
        stats = SearchStats()
        values = merge_tag_values(*(tag_values_v1(t, tag, q) for t in await all_tables(stats)))
        msg = tag_values_response(values, _limit())
        msg.metrics.CopyFrom(_metadata_metrics(stats))
        return respond(msg)

    @app.route("/api/v2/search/tag/<path:tag>/values")
    async def tag_values_v2_route(tag: str) -> Response:
        tag = _tag_from_path(tag)
        try:
            ref = parse_attribute(tag)
        except InvalidRequest as exc:
            raise InvalidRequest(f"please provide a valid tagName: {tag!r}: {exc.message}") from exc
        q = _q_filter()
        stats = SearchStats()
        values = merge_tag_values(*(tag_values_v2(t, ref, q) for t in await all_tables(stats)))
        msg = tag_values_v2_response(values, _limit())
        msg.metrics.CopyFrom(_metadata_metrics(stats))
        return respond(msg)

"""Search, tag-name and tag-value queries: parameter validation, the querier, combining, the tempopb answer.

The functions here are the one implementation behind the HTTP endpoints (`api/search.py`: `/api/search`,
`/api/search/tags`, `/api/v2/search/tags`, `/api/search/tag/<tag>/values`, `/api/v2/search/tag/<tag>/values`),
the streaming gRPC service (`api/streaming.py`), a querier's job API and `tempo-lite capture`. Parameters
arrive as a string mapping, exactly as on the HTTP query string.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

import pyarrow as pa
import trio

from tempo_lite._gen import tempopb_pb2 as pb
from tempo_lite.config import tenant_overrides
from tempo_lite.errors import InvalidRequest, StorageError
from tempo_lite.frontend.params import MAX_QUERY_BYTES, parse_search, parse_time_range
from tempo_lite.querier.legacy_search import LegacySearch
from tempo_lite.querier.result_columns import ResultColumns
from tempo_lite.querier.search import SearchRequest, SearchStats, parse_search_query
from tempo_lite.querier.tags import (
    V1_VIRTUAL_VALUES,
    TagValuesAnswer,
    distinct_values,
    merge_tag_names,
    search_tags_response,
    search_tags_v2_response,
)
from tempo_lite.traceql import parse_attribute, parse_lenient_filter
from tempo_lite.traceql.ast import Attribute, Scope

if TYPE_CHECKING:
    from tempo_lite.frontend.service import QueryService

# Tag discovery without start/end looks at the live-store plus blocks of this recent window; Grafana's
# autocomplete calls carry no range, and the live-store alone empties every block-builder cycle.
TAGS_DEFAULT_WINDOW_S = 3600
SCOPES = ("", "none", "intrinsic", "resource", "span", "event", "link", "instrumentation")

Params = Mapping[str, str]


def _metadata_metrics(stats: SearchStats) -> pb.MetadataMetrics:
    return pb.MetadataMetrics(
        inspectedBytes=stats.inspected_bytes,
        totalBlocks=stats.total_blocks,
        totalJobs=stats.total_blocks + 1,
        completedJobs=stats.total_blocks + 1 - len(stats.failed_blocks),
    )


def _limit(params: Params) -> int:
    raw = params.get("limit")
    if raw in (None, ""):
        return 0
    try:
        value = int(raw)
    except ValueError as exc:
        raise InvalidRequest(f"invalid limit: {raw!r} is not a number") from exc
    if value < 0:
        raise InvalidRequest("invalid limit: must not be negative")
    return value


def _tag_range(params: Params) -> tuple[int, int]:
    rng = parse_time_range(params)
    if rng.is_set:
        return rng.start_ns, rng.end_ns
    return (int(time.time()) - TAGS_DEFAULT_WINDOW_S) * 1_000_000_000, 0


def _q_filter(params: Params):  # noqa: ANN202
    q = params.get("q")
    if not q:
        return None
    if len(q.encode()) > MAX_QUERY_BYTES:
        raise InvalidRequest(f"invalid TraceQL query: query is larger than the maximum of {MAX_QUERY_BYTES} bytes")
    return parse_lenient_filter(q)


def _scope(params: Params) -> str:
    scope = params.get("scope", "")
    if scope not in SCOPES:
        raise InvalidRequest(f"invalid scope: {scope}")
    return scope


def _check_answerable(stats: SearchStats) -> None:
    """Every block failed and nothing else could be answered: a 5xx naming what failed."""
    if stats.failed_blocks and stats.total_blocks and len(stats.failed_blocks) >= stats.total_blocks:
        raise StorageError(f"{len(stats.failed_blocks)} block(s) could not be read: {stats.failed_blocks[0]}")


async def run_search(tl: QueryService, tenants: list[str], params: Params) -> pb.SearchResponse:
    """The SearchResponse message (gRPC, protobuf answers), parsed from the body built column-wise."""
    found, metrics = await search_answer(tl, tenants, params, protobuf=True)
    return pb.SearchResponse.FromString(found.protobuf_body(metrics))


async def search_answer(
    tl: QueryService, tenants: list[str], params: Params, *, protobuf: bool = False
) -> tuple[ResultColumns, pb.SearchMetrics]:
    """The search answer column-wise (the JSON body, or with `protobuf` the protobuf body, is joined from
    it) and its metrics."""
    search_cfg = tl.config.query_frontend.search
    parsed = parse_search(
        params,
        default_limit=search_cfg.default_result_limit,
        max_limit=search_cfg.max_result_limit,
        max_spss=search_cfg.max_spans_per_span_set,
        max_duration_s=search_cfg.max_duration,
    )
    query = parse_search_query(parsed.query) if parsed.query is not None else None
    legacy = None
    if query is None:
        legacy = LegacySearch(
            tags=parsed.tags or {},
            min_duration_ms=parsed.min_duration_ns // 1_000_000,
            max_duration_ms=parsed.max_duration_ns // 1_000_000,
            start=parsed.time.start,
            end=parsed.time.end,
        )
    req = SearchRequest(
        query=query, legacy=legacy, start_ns=parsed.time.start_ns, end_ns=parsed.time.end_ns,
        limit=parsed.limit, spss=parsed.spss, live_only=not parsed.time.is_set, protobuf=protobuf,
    )
    started = time.perf_counter()
    results = []
    total = SearchStats()
    for tenant in tenants:
        found, stats = await tl.frontend.searcher.search_columns(tenant, req)
        results.append(found)
        total.add(stats)
    tl.metrics.query_seconds.labels("search").observe(time.perf_counter() - started)
    _check_answerable(total)
    return ResultColumns.concat(results).merged(parsed.limit), total.message()


async def run_tags(tl: QueryService, tenants: list[str], params: Params, *, v2: bool):  # noqa: ANN201
    scope = _scope(params)
    q = _q_filter(params) if v2 else None  # v1 accepts but ignores q, as Tempo does
    stats = SearchStats()
    start_ns, end_ns = _tag_range(params)
    source = tl.frontend.tag_source()
    names = merge_tag_names(*[await source.names(t, start_ns, end_ns, q, stats) for t in tenants])
    _check_answerable(stats)
    build = search_tags_v2_response if v2 else search_tags_response
    msg = build(names, scope, _limit(params))
    msg.metrics.CopyFrom(_metadata_metrics(stats))
    return msg


def _max_tag_values_bytes(tl: QueryService, tenants: list[str]) -> int:
    """`overrides.*.read.max_bytes_per_tag_values_query` of the query's tenants: the smallest set limit (0: none)."""
    limits = [int(tenant_overrides(tl.config, t).read.max_bytes_per_tag_values_query) for t in tenants]
    return min((n for n in limits if n > 0), default=0)


async def tag_values_answer(
    tl: QueryService, tenants: list[str], tag: str, params: Params, *, v2: bool
) -> TagValuesAnswer:
    """The tag-values answer, built column-wise (sorted, then cut at `limit` values and at Tempo's
    `max_bytes_per_tag_values_query`); `.message()` is the tempopb message, `.json()` its JSON."""
    q = _q_filter(params)
    stats = SearchStats()
    start_ns, end_ns = _tag_range(params)
    source = tl.frontend.tag_source()
    limit, max_bytes = _limit(params), _max_tag_values_bytes(tl, tenants)
    if v2:
        try:
            ref = parse_attribute(tag)
        except InvalidRequest as exc:
            raise InvalidRequest(f"please provide a valid tagName: {tag!r}: {exc.message}") from exc
        parts = [await source.values_table(t, start_ns, end_ns, ref, q, stats) for t in tenants]
        _check_answerable(stats)
        answer = await trio.to_thread.run_sync(
            lambda: TagValuesAnswer.v2(distinct_values(parts), limit=limit, max_bytes=max_bytes))
    else:
        if tag in V1_VIRTUAL_VALUES:
            strings = pa.array(V1_VIRTUAL_VALUES[tag], pa.string())
        else:
            ref = Attribute(tag, Scope.NONE)
            parts = [await source.values_table(t, start_ns, end_ns, ref, q, stats) for t in tenants]
            _check_answerable(stats)
            strings = distinct_values(parts).column("value")
        answer = await trio.to_thread.run_sync(lambda: TagValuesAnswer.v1(strings, limit=limit, max_bytes=max_bytes))
    answer.metrics = _metadata_metrics(stats)
    return answer


async def run_tag_values(tl: QueryService, tenants: list[str], tag: str, params: Params, *, v2: bool):  # noqa: ANN201
    """The tag-values tempopb message (gRPC, the querier job API)."""
    return (await tag_values_answer(tl, tenants, tag, params, v2=v2)).message()

"""A query-frontend that shards queries over querier processes (`-target=query-frontend` with
`query_frontend.queriers`), as Tempo's frontend does.

- **Search** (`/api/search`) and **trace by ID**: split into jobs (`frontend.jobs.plan_jobs`: one per
  live-store with the blocks of its partitions, then the other blocks in groups), each sent to a querier
  (`POST /internal/querier/search`, `/internal/querier/trace`; api/querier_jobs.py) and combined with the
  code one process uses: `merge_search_results` for search, `dedupe_spans` + `sort_by_trace` for a trace.
  `ShardedSearcher` and `ShardedTraces` take the places of the querier's `Searcher` and `Querier` behind
  the unchanged API handlers.
- **Tag names and values**: split into the same jobs (`POST /internal/querier/tag-names`, `/tag-values`),
  each answering the unlimited sets of its sources; `ShardedTags` takes the place of the querier's
  `TagSource` and the sets are combined with `merge_tag_names` / `merge_tag_values`, then limited and
  encoded by the single process's code (`frontend/search.py`).
- **TraceQL metrics** (range and instant, arithmetic between queries included): split into the same jobs
  (`POST /internal/querier/metrics`); each querier feeds its job's spans to the request's evaluators and
  answers their accumulated states; `ShardedMetrics` merges them into the frontend's evaluators
  (`traceql.metrics_partial`), which then give the series as one process does (`frontend/metrics.py`).
- A job a querier does not answer (connection refused, timeout, 5xx) is sent to the next querier; when
  none answers the query fails with 503 naming each querier and why. A 4xx answer (a bad query) is the
  client's, passed through as it is.

The raw search and tag parameters reach `ShardedSearcher.search` and `ShardedTags` through `SEARCH_PARAMS`,
set for each such HTTP request by `with_request_params` (the parsed query cannot travel; the querier parses
the same text again). Queries over gRPC streaming are not sharded: a sharding frontend serves HTTP only.
"""

from __future__ import annotations

import contextvars
import dataclasses
import itertools
import json
import logging
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pyarrow as pa
import trio

from tempo_lite import spantable
from tempo_lite._gen import tempopb_pb2 as pb
from tempo_lite.block.blocklist import BlockList
from tempo_lite.block.meta import BlockMeta
from tempo_lite.config import Config, LiveStoreInstance
from tempo_lite.errors import InvalidRequest, TempoLiteError, Unavailable
from tempo_lite.frontend.jobs import Job, plan_jobs
from tempo_lite.frontend.metrics_params import MetricsParams
from tempo_lite.frontend.remote_live import Readable, serving
from tempo_lite.frontend.service import QueryFrontend
from tempo_lite.querier.result_columns import ResultColumns
from tempo_lite.querier.search import SearchRequest, SearchStats
from tempo_lite.querier.search_pb import merge_search_results
from tempo_lite.querier.tag_source import TypedValues
from tempo_lite.querier.tags import merge_tag_names, merge_tag_values, values_table
from tempo_lite.querier.tracebyid import TraceLookup
from tempo_lite.traceql.metrics import MetricsEvaluator
from tempo_lite.traceql.metrics_partial import merge_partial
from tempo_lite.traceql.nodes import Attribute, Intrinsic, SpansetFilter

log = logging.getLogger(__name__)

ASGIApp = Callable[[dict[str, Any], Callable[..., Awaitable[Any]], Callable[..., Awaitable[Any]]], Awaitable[None]]

FAILED_QUERIER_BACKOFF_S = 5.0
ARROW = "application/vnd.apache.arrow.stream"
PROTOBUF = "application/protobuf"
SEARCH_PARAMS: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar(
    "tempo_lite_search_params", default=None
)
# Paths whose raw parameters the sharded sources read (SEARCH_PARAMS): search, tags, tag values (v1, v2).
SHARDED = ("/api/search", "/api/v2/search/tag")


class QuerierError(TempoLiteError):
    """A querier refused a job as the client's mistake (4xx): passed through with its status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.http_status = status


class QuerierPool:
    """The configured querier processes; each job goes to the next one in turn, and on to the others
    while they fail. A querier that failed is tried last for `FAILED_QUERIER_BACKOFF_S`."""

    def __init__(self, urls: Sequence[str], *, timeout: float) -> None:
        if not urls:
            raise ValueError("a querier pool needs at least one querier")
        self.urls = tuple(u.rstrip("/") for u in urls)
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(timeout))
        self._next = itertools.count()
        self._failed_at: dict[str, float] = {}  # querier -> trio time of its last failure
        self.retries = 0  # jobs sent again to another querier

    async def aclose(self) -> None:
        await self.client.aclose()

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The first 2xx/3xx/404 answer of a querier, trying each once starting with the next in turn."""
        start = next(self._next)
        now = trio.current_time()
        turn = [self.urls[(start + i) % len(self.urls)] for i in range(len(self.urls))]
        # Queriers that failed recently go last (stable: otherwise in turn).
        order = sorted(turn, key=lambda u: now - self._failed_at.get(u, -math.inf) < FAILED_QUERIER_BACKOFF_S)
        problems: list[str] = []
        for attempt, url in enumerate(order):
            try:
                response = await self.client.request(method, url + path, **kwargs)
            except httpx.HTTPError as exc:
                problems.append(f"{url} ({type(exc).__name__}: {exc})")
            else:
                if response.status_code < 400 or response.status_code == 404:
                    self._failed_at.pop(url, None)
                    return response
                if response.status_code < 500 and response.status_code != 429:
                    raise QuerierError(response.text, response.status_code)
                problems.append(f"{url} (HTTP {response.status_code}: {response.text.strip()[:200]})")
            self._failed_at[url] = trio.current_time()
            if attempt + 1 < len(order):
                self.retries += 1
                log.warning("querier %s failed a job; sending it to the next querier", problems[-1])
        raise Unavailable("no querier answered: " + "; ".join(problems))


async def _run_jobs(jobs: list[Job], run: Callable[[Job], Awaitable[None]]) -> None:
    async with trio.open_nursery() as nursery:
        for job in jobs:
            nursery.start_soon(run, job)


class _Planner:
    def __init__(self, pool: QuerierPool, blocklist: BlockList, live_stores: Sequence[LiveStoreInstance],
                 partitions: int, readable: Callable[[], Readable]) -> None:
        self.pool = pool
        self.blocklist = blocklist
        self.live_stores = tuple(live_stores)
        self.partitions = partitions
        self.readable = readable  # the partition ring's readable live-store instances; None: no ring

    def jobs(self, tenant: str, blocks: Sequence[BlockMeta]) -> list[Job]:
        live = serving(self.live_stores, self.readable(), self.partitions)
        return plan_jobs(tenant, live, self.partitions, blocks)

    async def each_job(self, tenant: str, blocks: Sequence[BlockMeta], path: str,
                       body: dict[str, Any]) -> list[dict[str, Any]]:
        """`body` with each job POSTed to `path` on a querier; their JSON answers, in job order."""
        jobs = self.jobs(tenant, blocks)
        answers: list[dict[str, Any]] = [{} for _ in jobs]

        async def run(job: Job) -> None:
            response = await self.pool.request("POST", path, json={"job": job.to_json(), **body},
                                               headers={"X-Scope-OrgID": tenant})
            if response.status_code != 200:
                raise Unavailable(f"querier {response.url} answered a job with HTTP {response.status_code} "
                                  "(is it a tempo-lite querier of this version?)")
            answers[jobs.index(job)] = response.json()

        await _run_jobs(jobs, run)
        return answers


def _raw_q(q: SpansetFilter | None) -> str:
    """The request's `q` text for a querier to parse again (the parsed filter cannot travel)."""
    if q is None:
        return ""
    params = SEARCH_PARAMS.get()
    if params is None:
        raise InvalidRequest("this query-frontend shards tag queries over queriers for HTTP requests only: "
                             "send gRPC streaming ones to a querier")
    return params.get("q", "")


def ref_to_json(ref: Attribute | Intrinsic) -> dict[str, object]:
    if isinstance(ref, Intrinsic):
        return {"intrinsic": ref.value}
    return {"attribute": ref.name, "scope": ref.scope.value, "parent": ref.parent}


class ShardedTags(_Planner):
    """Tag names and values split into querier jobs; the querier's `TagSource` interface."""

    async def names(
        self, tenant: str, start_ns: int, end_ns: int, q: SpansetFilter | None, stats: SearchStats
    ) -> dict[str, set[str]]:
        body = {"start_ns": start_ns, "end_ns": end_ns, "q": _raw_q(q)}
        answers = await self.each_job(tenant, self.blocklist.blocks(tenant, start_ns, end_ns),
                                      "/internal/querier/tag-names", body)
        for answer in answers:
            stats.add(SearchStats(**answer["stats"]))
        return merge_tag_names(*({scope: set(names) for scope, names in a["names"].items()} for a in answers))

    async def values(
        self, tenant: str, start_ns: int, end_ns: int, ref: Attribute | Intrinsic, q: SpansetFilter | None,
        stats: SearchStats,
    ) -> TypedValues:
        body = {"start_ns": start_ns, "end_ns": end_ns, "q": _raw_q(q), "ref": ref_to_json(ref)}
        answers = await self.each_job(tenant, self.blocklist.blocks(tenant, start_ns, end_ns),
                                      "/internal/querier/tag-values", body)
        for answer in answers:
            stats.add(SearchStats(**answer["stats"]))
        return merge_tag_values(*({(str(t), str(v)) for t, v in a["values"]} for a in answers))

    async def values_table(
        self, tenant: str, start_ns: int, end_ns: int, ref: Attribute | Intrinsic, q: SpansetFilter | None,
        stats: SearchStats,
    ) -> pa.Table:
        return values_table(await self.values(tenant, start_ns, end_ns, ref, q, stats))


class ShardedSearcher(_Planner):
    """`search` split into querier jobs; the querier's `Searcher` interface for the API handlers."""

    async def search(self, tenant: str, request: SearchRequest) -> tuple[list[pb.TraceSearchMetadata], SearchStats]:
        params = SEARCH_PARAMS.get()
        if params is None:
            raise InvalidRequest("this query-frontend shards search over queriers for HTTP requests only: "
                                 "send gRPC streaming searches to a querier")
        blocks = [] if request.live_only else self.blocklist.blocks(tenant, request.start_ns, request.end_ns)
        jobs = self.jobs(tenant, blocks)
        answers: list[pb.SearchResponse] = []

        async def run(job: Job) -> None:
            response = await self.pool.request(
                "POST", "/internal/querier/search", json={"job": job.to_json(), "params": dict(params)},
                headers={"X-Scope-OrgID": tenant, "Accept": PROTOBUF},
            )
            if response.status_code != 200:
                raise Unavailable(f"querier {response.url} answered a search job with HTTP {response.status_code} "
                                  "(is it a tempo-lite querier of this version?)")
            answers.append(pb.SearchResponse.FromString(response.content))

        await _run_jobs(jobs, run)
        stats = SearchStats()
        for answer in answers:
            stats.add(SearchStats.from_message(answer.metrics))
        # Each job answered its `limit` best (newest, with most_recent): the newest `limit` of their union
        # are the single process's answer.
        return merge_search_results(*(a.traces for a in answers), limit=request.limit), stats

    async def search_columns(self, tenant: str, request: SearchRequest) -> tuple[ResultColumns, SearchStats]:
        found, stats = await self.search(tenant, request)
        return ResultColumns.from_messages(found), stats


class ShardedTraces(_Planner):
    """Trace by ID split into querier jobs; the querier's `Querier.find_trace` for the frontend."""

    async def find_trace(self, tenant: str, trace_id: bytes, start_ns: int = 0, end_ns: int = 0) -> TraceLookup:
        jobs = self.jobs(tenant, self.blocklist.blocks(tenant, start_ns, end_ns))
        result = TraceLookup(None)
        parts: list[spantable.SpanTable] = []

        async def run(job: Job) -> None:
            body = {"job": job.to_json(), "id": trace_id.hex(), "start_ns": start_ns, "end_ns": end_ns}
            response = await self.pool.request("POST", "/internal/querier/trace", json=body,
                                               headers={"X-Scope-OrgID": tenant})
            result.inspected_bytes += int(response.headers.get("X-Inspected-Bytes", "0"))
            failed = response.headers.get("X-Failed-Blocks")
            if failed:
                result.failed_blocks += json.loads(failed)
            if response.status_code == 200:
                table = await trio.to_thread.run_sync(spantable.from_ipc, response.content)
                if table.num_spans:
                    parts.append(table)

        await _run_jobs(jobs, run)
        if len(parts) == 1:
            result.table = parts[0]
        elif parts:
            result.table = spantable.sort_by_trace(spantable.dedupe_spans(spantable.concat(parts)))
        return result


class ShardedMetrics(_Planner):
    """TraceQL metrics split into querier jobs, their evaluators' states merged (`MetricsJobs`)."""

    async def accumulate(self, tenants: list[str], p: MetricsParams, evaluators: list[MetricsEvaluator],
                         stats: SearchStats) -> None:
        buckets = evaluators[0].buckets
        for tenant in tenants:
            answers = await self.each_job(tenant, self.blocklist.blocks(tenant, buckets.start_ns, buckets.end_ns),
                                          "/internal/querier/metrics", {"params": dataclasses.asdict(p)})
            for answer in answers:  # in job order: sums of floats add up the same way every time
                stats.add(SearchStats(**answer["stats"]))
                for ev, state in zip(evaluators, answer["states"], strict=True):
                    merge_partial(ev, state)


def sharded_frontend(
    config: Config, blocklist: BlockList, readable: Callable[[], Readable] = lambda: None,
) -> tuple[QueryFrontend, QuerierPool]:
    """The frontend of a sharding query-frontend process, and its querier pool (closed by the caller)."""
    pool = QuerierPool(config.query_frontend.queriers, timeout=float(config.query_frontend.querier_timeout))
    args = (pool, blocklist, config.querier.live_stores, config.storage.trace.wal.partitions, readable)
    return QueryFrontend(ShardedTraces(*args), ShardedSearcher(*args), ShardedTags(*args), ShardedMetrics(*args)), pool


def with_request_params(app: ASGIApp) -> ASGIApp:
    """`app` (the frontend's API) with each search and tag request's parameters made available to
    `ShardedSearcher` and `ShardedTags` (`SEARCH_PARAMS`)."""

    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await app(scope, receive, send)
            return
        if scope.get("path", "").startswith(SHARDED):
            query = scope.get("query_string", b"").decode("latin-1")
            token = SEARCH_PARAMS.set(dict(parse_qsl(query, keep_blank_values=True)))
            try:
                await app(scope, receive, send)
            finally:
                SEARCH_PARAMS.reset(token)
            return
        await app(scope, receive, send)

    return wrapped

"""A querier's internal job API: what a sharding query-frontend (frontend/sharding.py) sends it.

`POST /internal/querier/search` `{"job": Job, "params": {...}}` -> the `tempopb.SearchResponse` of that
search (the same parameters as `/api/search`) over the job's sources only: its live-stores and its blocks.
`POST /internal/querier/trace` `{"job": Job, "id": HEX, "start_ns": N, "end_ns": N}` -> the spans of one
trace in those sources as `spantable.to_ipc` bytes (404: none), with `X-Inspected-Bytes` and
`X-Failed-Blocks` (JSON list).
`POST /internal/querier/tag-names` `{"job": Job, "start_ns": N, "end_ns": N, "q": TEXT}` -> `{"names": {scope:
[name, ...]}, "stats": {...}}`, and `/internal/querier/tag-values` (the same plus `"ref"`: `{"intrinsic": name}`
or `{"attribute": name, "scope": scope, "parent": bool}`) -> `{"values": [[type, value], ...], "stats": ...}`:
the job's sources' unlimited sets, as the querier's `TagSource` finds them.
`POST /internal/querier/metrics` `{"job": Job, "params": MetricsParams}` -> `{"states": [...], "stats": ...}`:
each evaluator of the request (`frontend.metrics.evaluators_for`) fed the job's spans, its exemplars given
their IDs, as `traceql.metrics_partial.to_partial` state. The searches run through the
querier's own code (`frontend.search.run_search`, `Querier.find_trace`, `TagSource`) on a `Querier` narrowed
to the job. Internal: not part of Tempo's API.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import TYPE_CHECKING, Any

import numpy as np
from quart import Response, request
from quart_trio import QuartTrio

from tempo_lite import spantable
from tempo_lite.api.encoding import parse_trace_id
from tempo_lite.api.http import respond
from tempo_lite.block.blocklist import BlockList
from tempo_lite.block.meta import META, BlockMeta
from tempo_lite.distributor.tenant import check_tenant_id
from tempo_lite.errors import InvalidRequest
from tempo_lite.frontend.jobs import Job
from tempo_lite.frontend.metrics import accumulate, evaluators_for
from tempo_lite.frontend.metrics_params import MetricsParams
from tempo_lite.frontend.remote_live import RemoteLiveStores
from tempo_lite.frontend.search import run_search
from tempo_lite.frontend.service import QueryFrontend
from tempo_lite.livestore.freshness import READ_AFTER_WRITE_TIMEOUT
from tempo_lite.querier.search import Searcher, SearchStats
from tempo_lite.querier.tag_source import TagSource
from tempo_lite.querier.tracebyid import Querier
from tempo_lite.traceql import parse_lenient_filter
from tempo_lite.traceql.metrics import Series
from tempo_lite.traceql.metrics_partial import to_partial
from tempo_lite.traceql.nodes import Attribute, Intrinsic, Scope, SpansetFilter

if TYPE_CHECKING:
    from tempo_lite.config import Config
    from tempo_lite.frontend.service import QueryService
    from tempo_lite.metrics import Metrics
    from tempo_lite.storage.cache import ByteCache
    from tempo_lite.storage.store import ObjectStore

log = logging.getLogger(__name__)

ARROW = "application/vnd.apache.arrow.stream"


class _NoLive:
    """A job without live-stores: no recent spans."""

    async def snapshot(self, tenant: str) -> spantable.SpanTable:
        return spantable.empty_span_table()

    async def find_trace(self, tenant: str, trace_id: bytes) -> spantable.SpanTable | None:
        return None


class _JobService:
    """The process as `run_search` sees it, with its frontend narrowed to one job."""

    def __init__(self, tl: QueryService, frontend: QueryFrontend) -> None:
        self.tl = tl
        self.config = tl.config
        self.metrics = tl.metrics
        self.frontend = frontend

    def not_ready_reason(self) -> str | None:
        return self.tl.not_ready_reason()

    def refresh_gauges(self) -> None:
        self.tl.refresh_gauges()

    def service_states(self) -> list[tuple[str, str]]:
        return self.tl.service_states()


class JobRunner:
    """Builds the narrowed `Querier` of a job: remote live-stores kept per instance (their snapshot caches
    survive across jobs), blocks from this querier's block list or, when it has not seen them yet, read
    from the store."""

    def __init__(self, config: Config, store: ObjectStore, cache: ByteCache, blocklist: BlockList,
                 metrics: Metrics) -> None:
        self.config = config
        self.store = store
        self.cache = cache
        self.blocklist = blocklist
        self.metrics = metrics
        self._live: dict[tuple[tuple[str, tuple[int, ...], str], ...], RemoteLiveStores] = {}

    async def aclose(self) -> None:
        for live in self._live.values():
            await live.aclose()

    def _live_source(self, job: Job) -> RemoteLiveStores | _NoLive:
        if not job.live_stores:
            return _NoLive()
        key = tuple(sorted((i.url, i.partitions, i.zone) for i in job.live_stores))
        source = self._live.get(key)
        if source is None:
            # Zone twins in one job: this querier asks the one in its own zone first (read quorum 1).
            cfg = self.config
            source = RemoteLiveStores(job.live_stores, timeout=float(cfg.querier.live_store_timeout),
                                      wait=READ_AFTER_WRITE_TIMEOUT, partitions=cfg.storage.trace.wal.partitions,
                                      zone=cfg.querier.zone)
            self._live[key] = source
        return source

    async def _blocks(self, job: Job) -> BlockList:
        known = {m.block_id: m for m in self.blocklist.blocks(job.tenant)}
        blocks = BlockList(self.store)
        for block_id in job.block_ids:
            meta = known.get(block_id)
            if meta is None:
                try:
                    meta = BlockMeta.from_json(await self.store.read(f"{job.tenant}/{block_id}/{META}"))
                except Exception as exc:  # noqa: BLE001 - compacted away since the frontend listed it
                    log.warning("querier job: block %s/%s is gone (%s); skipped", job.tenant, block_id, exc)
                    continue
            blocks.add(meta)
        return blocks

    async def querier(self, job: Job) -> Querier:
        return Querier(self._live_source(job), await self._blocks(job), self.store, self.cache, self.metrics,
                       concurrency=self.config.query_frontend.search.concurrent_jobs)


async def _job_body() -> tuple[Job, dict[str, Any]]:
    try:
        body = json.loads(await request.get_data())
    except ValueError as exc:
        raise InvalidRequest(f"invalid querier job body: {exc}") from exc
    if not isinstance(body, dict):
        raise InvalidRequest("invalid querier job body: expected a JSON object")
    job = Job.from_json(body.get("job"))
    check_tenant_id(job.tenant)
    return job, body


def _range(body: dict[str, Any]) -> tuple[int, int]:
    try:
        return int(body.get("start_ns", 0)), int(body.get("end_ns", 0))
    except (TypeError, ValueError) as exc:
        raise InvalidRequest("invalid querier job: start_ns and end_ns must be integers") from exc


def _filter(body: dict[str, Any]) -> SpansetFilter | None:
    q = body.get("q", "")
    if not isinstance(q, str):
        raise InvalidRequest("invalid querier job: q must be a string")
    return parse_lenient_filter(q) if q else None


def _ref(raw: object) -> Attribute | Intrinsic:
    try:
        assert isinstance(raw, dict)
        if "intrinsic" in raw:
            return Intrinsic(raw["intrinsic"])
        name, scope, parent = raw["attribute"], Scope(raw["scope"]), raw.get("parent", False)
        assert isinstance(name, str) and isinstance(parent, bool)
        return Attribute(name, scope, parent)
    except (AssertionError, KeyError, ValueError) as exc:
        raise InvalidRequest(f"invalid querier job: bad tag reference {json.dumps(raw)[:200]}") from exc


def _metrics_params(raw: object) -> MetricsParams:
    try:
        assert isinstance(raw, dict)
        p = MetricsParams(**raw)
        assert isinstance(p.query, str) and isinstance(p.instant, bool)
        assert all(isinstance(getattr(p, n), int) for n in ("start_ns", "end_ns", "step_ns", "exemplars"))
    except (AssertionError, TypeError) as exc:
        raise InvalidRequest(f"invalid querier job: bad metrics parameters {json.dumps(raw)[:200]}") from exc
    return p


def _tags_answer(key: str, found: object, stats: SearchStats) -> Response:
    return Response(json.dumps({key: found, "stats": dataclasses.asdict(stats)}), content_type="application/json")


def register_querier_job_routes(app: QuartTrio, tl: QueryService, runner: JobRunner) -> None:
    @app.route("/internal/querier/search", methods=["POST"])
    async def search_job() -> Response:
        job, body = await _job_body()
        params = body.get("params")
        if not isinstance(params, dict) or not all(isinstance(v, str) for v in params.values()):
            raise InvalidRequest("invalid querier job: params must map names to strings")
        querier = await runner.querier(job)
        searcher = Searcher(querier, concurrency=tl.config.query_frontend.search.concurrent_jobs)
        service = _JobService(tl, QueryFrontend(querier, searcher))
        return respond(await run_search(service, [job.tenant], params))

    async def tag_source(job: Job) -> TagSource:
        querier = await runner.querier(job)
        return TagSource(Searcher(querier, concurrency=tl.config.query_frontend.search.concurrent_jobs))

    @app.route("/internal/querier/tag-names", methods=["POST"])
    async def tag_names_job() -> Response:
        job, body = await _job_body()
        (start_ns, end_ns), q = _range(body), _filter(body)
        stats = SearchStats()
        names = await (await tag_source(job)).names(job.tenant, start_ns, end_ns, q, stats)
        return _tags_answer("names", {scope: sorted(found) for scope, found in names.items()}, stats)

    @app.route("/internal/querier/tag-values", methods=["POST"])
    async def tag_values_job() -> Response:
        job, body = await _job_body()
        (start_ns, end_ns), q, ref = _range(body), _filter(body), _ref(body.get("ref"))
        stats = SearchStats()
        values = await (await tag_source(job)).values(job.tenant, start_ns, end_ns, ref, q, stats)
        return _tags_answer("values", sorted(values), stats)

    @app.route("/internal/querier/metrics", methods=["POST"])
    async def metrics_job() -> Response:
        job, body = await _job_body()
        _expr, _leaves, evaluators = evaluators_for(_metrics_params(body.get("params")))
        querier = await runner.querier(job)
        stats = SearchStats()
        searcher = Searcher(querier, concurrency=tl.config.query_frontend.search.concurrent_jobs)
        source = await accumulate(searcher, [job.tenant], evaluators, stats)
        for ev in evaluators:  # exemplars leave with their IDs (block-row references mean nothing elsewhere)
            await source.resolve([Series((), np.zeros(0), acc.exemplars) for acc in ev.accs.values()], stats)
        states = [to_partial(ev) for ev in evaluators]
        return Response(json.dumps({"states": states, "stats": dataclasses.asdict(stats)}),
                        content_type="application/json")

    @app.route("/internal/querier/trace", methods=["POST"])
    async def trace_job() -> Response:
        job, body = await _job_body()
        trace_id = parse_trace_id(str(body.get("id", "")))
        start_ns, end_ns = _range(body)
        querier = await runner.querier(job)
        found = await querier.find_trace(job.tenant, trace_id, start_ns, end_ns)
        headers = {"X-Inspected-Bytes": str(found.inspected_bytes),
                   "X-Failed-Blocks": json.dumps(found.failed_blocks)}
        if found.table is None:
            return Response(b"", status=404, headers=headers)
        return Response(spantable.to_ipc(found.table), content_type=ARROW, headers=headers)

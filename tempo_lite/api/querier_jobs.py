"""A querier's internal job API: what a sharding query-frontend (frontend/sharding.py) sends it.

`POST /internal/querier/search` `{"job": Job, "params": {...}}` -> the `tempopb.SearchResponse` of that
search (the same parameters as `/api/search`) over the job's sources only: its live-stores and its blocks.
`POST /internal/querier/trace` `{"job": Job, "id": HEX, "start_ns": N, "end_ns": N}` -> the spans of one
trace in those sources as `spantable.to_ipc` bytes (404: none), with `X-Inspected-Bytes` and
`X-Failed-Blocks` (JSON list). The searches run through the querier's own code (`frontend.search.run_search`,
`Querier.find_trace`) on a `Querier` narrowed to the job. Internal: not part of Tempo's API.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

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
from tempo_lite.frontend.remote_live import RemoteLiveStores
from tempo_lite.frontend.search import run_search
from tempo_lite.frontend.service import QueryFrontend
from tempo_lite.livestore.freshness import READ_AFTER_WRITE_TIMEOUT
from tempo_lite.querier.search import Searcher
from tempo_lite.querier.tracebyid import Querier

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

    @app.route("/internal/querier/trace", methods=["POST"])
    async def trace_job() -> Response:
        job, body = await _job_body()
        trace_id = parse_trace_id(str(body.get("id", "")))
        try:
            start_ns, end_ns = int(body.get("start_ns", 0)), int(body.get("end_ns", 0))
        except (TypeError, ValueError) as exc:
            raise InvalidRequest("invalid querier job: start_ns and end_ns must be integers") from exc
        querier = await runner.querier(job)
        found = await querier.find_trace(job.tenant, trace_id, start_ns, end_ns)
        headers = {"X-Inspected-Bytes": str(found.inspected_bytes),
                   "X-Failed-Blocks": json.dumps(found.failed_blocks)}
        if found.table is None:
            return Response(b"", status=404, headers=headers)
        return Response(spantable.to_ipc(found.table), content_type=ARROW, headers=headers)

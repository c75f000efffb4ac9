"""`TempoLite`: the components of one tempo-lite process, wired together and run in one trio nursery.

Which components run is decided by the process's roles (`-target`, tempo_lite/roles.py `Plan`); `all`
runs every one of them. Start-up order: WAL, object store, live-store (replays what is not yet in
blocks), block list, block-builder, compactor, then the listeners. Shutdown (`stop()`): stop accepting, let in-flight
requests finish, flush every pending span into blocks, close the WAL.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any, cast

import trio

from tempo_lite.app.ingest import start_ingest_listeners
from tempo_lite.app.listeners import Listeners, no_queries
from tempo_lite.backend.build import BackendRoles, build_backend
from tempo_lite.block.blocklist import BlockList
from tempo_lite.blockbuilder import BlockBuilder
from tempo_lite.compactor import Compactor
from tempo_lite.config import Config, split_endpoint
from tempo_lite.distributor import Distributor
from tempo_lite.errors import ConfigError, Unavailable
from tempo_lite.frontend.remote_live import RemoteLiveStores
from tempo_lite.frontend.service import QueryFrontend
from tempo_lite.generator import MetricsGenerator
from tempo_lite.livestore import BLOCKBUILDER_GROUP, LiveStore
from tempo_lite.livestore import GROUP as LIVESTORE_GROUP
from tempo_lite.metrics import Metrics
from tempo_lite.querier.live import LiveSource, LocalLive
from tempo_lite.querier.search import Searcher
from tempo_lite.querier.tracebyid import Querier
from tempo_lite.roles import Plan, check_live_store_partitions, check_querier_coverage, plan_for
from tempo_lite.server import ASGIApp, serve_asgi
from tempo_lite.storage.cache import ByteCache
from tempo_lite.storage.store import ObjectStore
from tempo_lite.wal import WriteAheadLog
from tempo_lite.wal.factory import open_wal, wal_config
from tempo_lite.wal.quarantine import quarantine_dir
from tempo_lite.wal.ring import KafkaRing, LiveStoreMember, status_lines, writable

log = logging.getLogger("tempo_lite")

# Split deployments: how often a live-store looks at the block-builder's committed offsets, and a
# distributor at every group's (its WAL back-pressure counts what they have not committed).
FOLLOW_COMMITS_SECONDS = 2.0
REPLAY_TIMEOUT_SECONDS = 600.0
SHUTDOWN_FLUSH_SECONDS = 25.0  # under the usual 30 s grace period; what is not flushed stays in the WAL
# /ready reports "not ready" while writes are being refused with 503 (disk full, WAL failing): for this
# long after the last refusal, unless a write succeeds first. A window, not a latch, so a node that a load
# balancer stopped sending writes to is tried again instead of staying out for good.
WRITE_REFUSAL_READY_WINDOW_SECONDS = 30.0
# Request bytes in flight across the ingest listeners: at most live_store.max_bytes / this (16 MiB of the
# default 512 MiB; a request alone is always admitted). tempo_lite/distributor/inflight.py.
INFLIGHT_FRACTION = 32


async def open_object_store(config: Config) -> ObjectStore:
    """The configured store, checked at start-up (a missing bucket or bad credentials stop start-up)."""
    from tempo_lite.storage.backends import open_store_from_config

    return await open_store_from_config(
        config.storage.trace, concurrency=config.query_frontend.search.concurrent_jobs * 2
    )


class TempoLite:
    """The process: implements `frontend.service.QueryService` for the API."""

    def __init__(self, config: Config, target: str | None = None) -> None:
        self.config = config
        self.plan: Plan = plan_for(config, target)  # raises ConfigError for a role that cannot run here
        self.metrics = Metrics()
        self.listeners = Listeners()
        self.wal: WriteAheadLog
        self.store: ObjectStore
        self.livestore: LiveStore
        self.blocklist: BlockList
        self.blockbuilder: BlockBuilder
        self.querier: Querier
        self.searcher: Searcher
        self.frontend: QueryFrontend
        self.distributor: Distributor
        self.livestore_local = False  # this process holds a live-store (all, live-store, block-builder, generator)
        self.remote_live: RemoteLiveStores | None = None
        self._closers: list[Callable[[], Awaitable[None]]] = []  # HTTP clients closed at exit
        wal_cfg = config.storage.trace.wal
        # The partition ring (wal/ring.py): split processes on a kafka WAL.
        self.ring: KafkaRing | None = (
            KafkaRing(wal_cfg.kafka.brokers, wal_cfg.kafka.topic)
            if not self.plan.all_in_one and wal_cfg.backend == "kafka" and wal_cfg.kafka.brokers else None
        )
        self.ring_member: LiveStoreMember | None = None
        self.backend = BackendRoles()  # backend-scheduler, backend-worker (built with the components)
        self.cache = ByteCache(config.storage.trace.cache_bytes)
        self._stop = trio.Event()
        self._receivers_stopped = trio.Event()
        self._udp_scopes: list[trio.CancelScope] = []
        self._last_refusal: tuple[float, str] | None = None  # (trio time, message) of the last 503 on a write
        self.started = False
        # Component -> Tempo's service state (Starting, Running, Stopping, Terminated), in start order;
        # served by /api/status/services.
        self.services: dict[str, str] = {}

    # --- lifecycle ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Begin a graceful shutdown (idempotent; safe from a signal-handling task)."""
        self._stop.set()

    async def run(self, *, task_status: trio.TaskStatus[Listeners] = trio.TASK_STATUS_IGNORED) -> None:
        cfg, plan = self.config, self.plan
        log.info("tempo-lite starting with target %s", plan.name)
        try:
            async with AsyncExitStack() as stack:
                if plan.wal:
                    self.services["wal"] = "Starting"
                    self.wal = await stack.enter_async_context(open_wal(wal_config(cfg.storage.trace.wal)))
                    self.services["wal"] = "Running"
                if plan.store:
                    self.services["store"] = "Starting"
                    self.store = await open_object_store(cfg)
                    self.services["store"] = "Running"
                await self._run_components(task_status)
                for name in ("wal", "store"):
                    if name in self.services:
                        self.services[name] = "Stopping"
        finally:
            if self.remote_live is not None:
                with trio.CancelScope(shield=True):
                    await self.remote_live.aclose()
            for close in self._closers:
                with trio.CancelScope(shield=True):
                    await close()
            for name in self.services:
                self.services[name] = "Terminated"

    def _build_components(self) -> None:
        """Create the components `self.plan` names (none of them running yet)."""
        cfg, plan = self.config, self.plan
        self.generator = (
            MetricsGenerator(self.metrics.registry, cfg.metrics_generator) if plan.generator else None
        )
        # One live-store per process that consumes the WAL: served to queries (all, live-store), or private
        # to a block-builder or metrics-generator (commits no group, keeps nothing after it is flushed).
        if plan.wal and (plan.all_in_one or plan.live_store or plan.block_builder or plan.generator):
            serves = plan.all_in_one or plan.live_store
            self.livestore = LiveStore(
                self.wal,
                self.metrics,
                max_bytes=cfg.live_store.max_bytes,
                complete_block_timeout=cfg.live_store.complete_block_timeout if serves else 0.0,
                on_batch=self.generator.observe if self.generator is not None else None,
                quarantine=quarantine_dir(cfg.storage.trace.wal.path),
                partitions=None if plan.all_in_one else self._consumed_partitions(),
                group=LIVESTORE_GROUP if serves else None,
                # The watch allows the block cache too: it fills as blocks are written, and no flush frees it.
                memory_overhead=(cfg.live_store.memory_overhead_bytes + cfg.storage.trace.cache_bytes)
                if serves and cfg.live_store.memory_overhead_bytes else None,
            )
            self.livestore_local = True
        if plan.store and (plan.block_builder or plan.uses_compactor or plan.query):
            self.blocklist = BlockList(self.store)
        if plan.block_builder:
            self.blockbuilder = BlockBuilder(
                self.wal,
                self.livestore,
                self.store,
                self.blocklist,
                self.metrics,
                cycle=cfg.block_builder.consume_cycle_duration,
                max_block_bytes=cfg.block_builder.max_block_bytes,
                block=cfg.storage.trace.block,
            )
        if plan.sharding:
            from tempo_lite.frontend.sharding import sharded_frontend

            check_querier_coverage(cfg, cfg.storage.trace.wal.partitions)
            self.frontend, self.querier_pool = sharded_frontend(cfg, self.blocklist, self._readable)
            self._closers.append(self.querier_pool.aclose)
        elif plan.query:
            self.querier = Querier(
                self._live_source(), self.blocklist, self.store, self.cache, self.metrics,
                concurrency=cfg.query_frontend.search.concurrent_jobs,
            )
            self.searcher = Searcher(self.querier, concurrency=cfg.query_frontend.search.concurrent_jobs)
            self.frontend = QueryFrontend(self.querier, self.searcher)
        if plan.uses_compactor:
            self.compactor = Compactor(
                self.store, self.blocklist, self.cache, self.metrics,
                compaction=cfg.compactor.compaction, block=cfg.storage.trace.block,
            )
        self.backend = build_backend(cfg, plan, self.compactor) if plan.uses_compactor else BackendRoles()
        if plan.distributor:
            local_saturation = self.livestore_local and (plan.all_in_one or plan.live_store)
            self.distributor = Distributor(
                cfg, self.wal, self.metrics,
                is_saturated=lambda: (local_saturation and self.livestore.saturated) or self._wal_saturated(),
                # Only an all-in-one process's live-store consumes every partition this distributor writes.
                on_appended=self.livestore.note_appended if local_saturation and plan.all_in_one else None,
            )

    def _consumed_partitions(self) -> tuple[int, ...]:
        """A split process's live-store partitions: `live_store.partitions` for a live-store, else
        `block_builder.partitions` for a block-builder, else all (a metrics-generator)."""
        cfg, plan = self.config, self.plan
        live = check_live_store_partitions(cfg, self.wal.partitions)
        if plan.block_builder:
            built = tuple(sorted(set(cfg.block_builder.partitions))) or tuple(range(self.wal.partitions))
            bad = [p for p in built if not 0 <= p < self.wal.partitions]
            if bad:
                raise ConfigError(f"block_builder.partitions names partition {bad[0]}, but the WAL has "
                                  f"{self.wal.partitions} partitions")
            if plan.live_store and built != live:
                raise ConfigError("one process running live-store and block-builder consumes one set of partitions: "
                                  "live_store.partitions and block_builder.partitions must agree")
            return built
        return live

    def _live_source(self) -> LiveSource:
        """Recent data for queries: this process's live-store, or the configured live-store processes."""
        cfg = self.config
        if self.livestore_local and (self.plan.all_in_one or self.plan.live_store) and not cfg.querier.live_stores:
            return LocalLive(self.livestore)
        check_querier_coverage(cfg, cfg.storage.trace.wal.partitions)
        from tempo_lite.livestore.freshness import READ_AFTER_WRITE_TIMEOUT

        self.remote_live = RemoteLiveStores(cfg.querier.live_stores, timeout=float(cfg.querier.live_store_timeout),
                                            wait=READ_AFTER_WRITE_TIMEOUT, readable=self._readable,
                                            partitions=cfg.storage.trace.wal.partitions, zone=cfg.querier.zone)
        return self.remote_live

    async def _start(self, nursery: trio.Nursery, name: str, run: Any, *args: Any) -> None:
        self.services[name] = "Starting"
        await nursery.start(run, *args)
        self.services[name] = "Running"

    async def _run_components(self, task_status: trio.TaskStatus[Listeners]) -> None:
        plan = self.plan
        self._build_components()
        if plan.block_builder:
            # Blocks an interrupted flush already wrote must be reused, not rewritten: find them before
            # the live-store replays so it cuts its reads where that flush cut the range.
            await self.blockbuilder.recover()
        async with trio.open_nursery() as nursery:
            if self.ring is not None:
                if plan.wal:  # the broker answers: know the ring before writing or joining it
                    await nursery.start(self.ring.poll)
                else:
                    nursery.start_soon(self.ring.poll)
                if plan.distributor:
                    nursery.start_soon(self._follow_ring, self.ring)
            if self.generator is not None:
                await self._start(nursery, "metrics-generator", self.generator.run)
            if self.livestore_local:
                self.services["live-store"] = "Starting"
                await nursery.start(self.livestore.run)
                # Serve nothing until the WAL's unflushed records are back in memory: a query answered
                # mid-replay would miss acknowledged spans.
                with trio.fail_after(REPLAY_TIMEOUT_SECONDS):
                    await self.livestore.replayed.wait()
                if not plan.block_builder:  # another process builds the blocks: follow its commits
                    await nursery.start(self.livestore.follow_flushes, FOLLOW_COMMITS_SECONDS)
                if self.ring is not None and plan.live_store:
                    self.ring_member = LiveStoreMember(self.ring, self.wal, self.livestore.partitions,
                                                       self._ring_owner(), BLOCKBUILDER_GROUP,
                                                       self.config.live_store.zone)
                    await self.ring_member.join()
                    nursery.start_soon(self.ring_member.watch_drains)
                self.services["live-store"] = "Running"
            if plan.store and (plan.block_builder or plan.uses_compactor or plan.query):
                await self._start(nursery, "block-list", self.blocklist.run,
                                  float(self.config.storage.trace.blocklist_poll))
            if plan.block_builder:
                await self._start(nursery, "block-builder", self.blockbuilder.run)
            if plan.compactor:
                await self._start(nursery, "compactor", self.compactor.run)
            if self.backend.election is not None and self.backend.scheduler is not None:
                await nursery.start(self.backend.election.run)
                await self._start(nursery, "backend-scheduler", self.backend.scheduler.run)
            if self.backend.worker is not None:
                await self._start(nursery, "backend-worker", self.backend.worker.run)
            if plan.distributor and not plan.all_in_one:
                nursery.start_soon(self._follow_wal_commits)
            async with trio.open_nursery() as receivers:
                if plan.distributor:
                    self.services["distributor"] = "Starting"
                    await self._start_receivers(receivers)
                    self.services["distributor"] = "Running"
                if plan.query:
                    self.services["query-frontend"] = "Starting"
                await self._start_api(nursery)
                if plan.query:
                    self.services["query-frontend"] = "Running"
                    if not plan.sharding:
                        self.services["querier"] = "Running"
                self.started = True
                log.info("tempo-lite ready (%s): %s", plan.name, ", ".join(
                    f"{name}={host}:{port}" for name, (host, port) in self.listeners.addresses.items()
                ))
                task_status.started(self.listeners)
                await self._stop.wait()
                log.info("shutting down: refusing new spans, draining in-flight requests")
                for name in self.services:
                    self.services[name] = "Stopping"
                if plan.distributor:
                    self.distributor.accepting = False
                self._receivers_stopped.set()
                for scope in self._udp_scopes:
                    scope.cancel()
            if plan.block_builder:
                log.info("flushing pending spans to blocks")
                with trio.CancelScope(shield=True), trio.move_on_after(SHUTDOWN_FLUSH_SECONDS) as flush:
                    await self.livestore.catch_up()
                    await self.blockbuilder.flush_all()
                if flush.cancelled_caught:
                    log.warning("final flush did not finish in %ss (%s); unflushed spans stay in the WAL and are "
                                "replayed at the next start", SHUTDOWN_FLUSH_SECONDS, self.blockbuilder.last_error)
            nursery.cancel_scope.cancel()
        log.info("stopped")

    async def _follow_wal_commits(self) -> None:
        """A split distributor: learn the other processes' WAL commits, so its retained-bytes bound
        (storage.trace.wal.max_retained_bytes) counts only what they have not consumed."""
        groups = wal_config(self.config.storage.trace.wal).groups
        while True:
            await trio.sleep(FOLLOW_COMMITS_SECONDS)
            for group in groups:
                for partition in range(self.wal.partitions):
                    await self.wal.committed(group, partition)

    def _readable(self) -> frozenset[tuple[int, str]] | None:
        return self.ring.readable_partitions(self.config.storage.trace.wal.partitions) if self.ring else None

    def _ring_owner(self) -> str:
        server = self.config.server
        host = server.http_listen_address if server.http_listen_address not in ("", "0.0.0.0") else socket.gethostname()
        return f"http://{host}:{self.listeners.addresses.get('http', (host, server.http_listen_port))[1]}"

    async def _follow_ring(self, ring: KafkaRing) -> None:
        """A distributor writes to the ring's active partitions only."""
        while True:
            self.distributor.writable = (
                writable(ring.ring, self.wal.partitions) if ring.loaded and ring.ring else None
            )
            await ring.changed.wait()

    async def _receivers_shutdown(self) -> None:
        await self._receivers_stopped.wait()

    def _wal_saturated(self) -> bool:
        stats = self.wal.statistics()
        return stats.bytes_retained >= stats.bytes_limit

    async def _serve(
        self, nursery: trio.Nursery, name: str, app: Any, endpoint: str, where: str, *, graceful: bool
    ) -> None:
        host, port = split_endpoint(endpoint, where)
        server = self.config.server
        bound = await nursery.start(
            lambda task_status: serve_asgi(
                app, host, port, name=name, task_status=task_status,
                shutdown_trigger=self._receivers_shutdown if graceful else None,
                idle_timeout=server.http_server_idle_timeout, read_timeout=server.http_server_read_timeout,
            )
        )
        self.listeners.addresses[name] = bound

    async def _start_receivers(self, nursery: trio.Nursery) -> None:
        budget = max(1, self.config.live_store.max_bytes // INFLIGHT_FRACTION)

        async def serve_http(name: str, app: ASGIApp, endpoint: str, where: str) -> None:
            await self._serve(nursery, name, app, endpoint, where, graceful=True)

        await start_ingest_listeners(
            nursery, self.config.distributor, self._push, serve_http,
            inflight_bytes=budget, on_refused=self.metrics.requests_refused.labels("Unavailable").inc,
            udp_scopes=self._udp_scopes, addresses=self.listeners.addresses,
        )

    async def _push(self, tenant_header: str | None, request: Any, size: int) -> None:
        """The distributor's push, remembering whether writes are being refused as unavailable (for /ready)."""
        try:
            await self.distributor.push(tenant_header, request, size)
        except Unavailable as exc:
            self._last_refusal = (trio.current_time(), exc.message)
            raise
        self._last_refusal = None

    async def _start_api(self, nursery: trio.Nursery) -> None:
        """Port 3200: health, metrics and status for every role; the query API for querier and
        query-frontend; the internal live-store API for a split live-store."""
        from tempo_lite.api.app import create_api
        from tempo_lite.api.live import register_live_routes
        from tempo_lite.api.streaming import streaming_querier_app
        from tempo_lite.livestore.freshness import read_after_write

        plan, server = self.plan, self.config.server
        api = create_api(self)
        if self.backend.scheduler is not None:
            from tempo_lite.api.backend import register_backend_scheduler_routes

            register_backend_scheduler_routes(api, self.backend.scheduler)
        if plan.live_store and not plan.all_in_one:
            register_live_routes(api, self.livestore)
            if self.ring_member is not None:
                from tempo_lite.api.ring import register_ring_routes

                register_ring_routes(api, self.ring_member)
        app: ASGIApp
        if plan.sharding:
            from tempo_lite.frontend.sharding import with_request_params

            app = with_request_params(cast(ASGIApp, api))
        elif plan.query:
            from tempo_lite.api.querier_jobs import JobRunner, register_querier_job_routes

            runner = JobRunner(self.config, self.store, self.cache, self.blocklist, self.metrics)
            self._closers.append(runner.aclose)
            register_querier_job_routes(api, self, runner)
            app = streaming_querier_app(self, fallback=cast(ASGIApp, api))
            if isinstance(self.querier.live, LocalLive):
                app = read_after_write(app, self.livestore.wait_consumed)
            # (remote live-stores wait for their own WAL partitions on every request: RemoteLiveStores)
        else:
            app = no_queries(cast(ASGIApp, api), plan.name)
        await self._serve(nursery, "http", app,
                          f"{server.http_listen_address}:{server.http_listen_port}", "server.http_listen_port",
                          graceful=False)

    # --- QueryService: what the API asks of the process ------------------------------------------------

    def not_ready_reason(self) -> str | None:
        if not self.started:
            return "Some services are not Running: starting"
        if self._stop.is_set():
            return "Application is stopping"
        if self.livestore_local and self.livestore.saturated:
            return "not accepting writes: live-store is full (spans are not flushed to storage fast enough)"
        if self.plan.wal and self._wal_saturated():
            return "not accepting writes: the WAL holds as many bytes as storage.trace.wal.max_retained_bytes"
        if self._last_refusal is not None:
            at, message = self._last_refusal
            if trio.current_time() - at < WRITE_REFUSAL_READY_WINDOW_SECONDS:
                return f"not accepting writes: {message}"
        return None

    def service_states(self) -> list[tuple[str, str]]:
        """(component, state) in start order; a WAL whose broker is down or restarting makes `wal` Starting."""
        states = dict(self.services)
        wal = getattr(self, "wal", None)
        supervisor = getattr(wal, "supervisor", None)
        broker_down = (supervisor is not None and not supervisor.up) or not getattr(wal, "broker_up", True)
        if states.get("wal") == "Running" and broker_down:
            states["wal"] = "Starting"
        if self.ring_member is not None:
            states["live-store-ring"] = "Drained" if self.ring_member.drained() else "Running"
        ring = list(status_lines(self.ring.ring)) if self.ring is not None else []
        if self.backend.scheduler is not None:
            states["backend-scheduler-lead"] = self.backend.scheduler.state()
            states["backend-scheduler-jobs"] = self.backend.scheduler.counts()
        return list(states.items()) + ring

    def refresh_gauges(self) -> None:
        if self.plan.wal:
            self.metrics.wal_retained_bytes.set(self.wal.statistics().bytes_retained)
        if self.livestore_local:
            self.metrics.livestore_bytes.set(self.livestore.nbytes)
        if self.plan.store:
            self.metrics.store_read_bytes.set(self.store.bytes_read)

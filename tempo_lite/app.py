"""`TempoLite`: every component of one tempo-lite process, wired together and run in one trio nursery.

Start-up order: WAL, object store, live-store (replays what is not yet in blocks), block list,
block-builder, compactor, then the listeners. Shutdown (`stop()`): stop accepting, let in-flight
requests finish, flush every pending span into blocks, close the WAL.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, cast

import trio

from tempo_lite.blockbuilder import BlockBuilder
from tempo_lite.compactor import Compactor
from tempo_lite.config import Config, split_endpoint
from tempo_lite.distributor import Distributor
from tempo_lite.errors import Unavailable
from tempo_lite.frontend.service import QueryFrontend
from tempo_lite.generator import MetricsGenerator
from tempo_lite.livestore import LiveStore
from tempo_lite.metrics import Metrics
from tempo_lite.querier.blocklist import BlockList
from tempo_lite.querier.search import Searcher
from tempo_lite.querier.tracebyid import Querier
from tempo_lite.server import ASGIApp, serve_asgi
from tempo_lite.storage.cache import ByteCache
from tempo_lite.storage.store import ObjectStore
from tempo_lite.wal import WriteAheadLog
from tempo_lite.wal.factory import open_wal, wal_config
from tempo_lite.wal.quarantine import quarantine_dir

log = logging.getLogger("tempo_lite")

BLOCKLIST_POLL_SECONDS = 15.0
REPLAY_TIMEOUT_SECONDS = 600.0
SHUTDOWN_FLUSH_SECONDS = 25.0  # under the usual 30 s grace period; what is not flushed stays in the WAL
# /ready reports "not ready" while writes are being refused with 503 (disk full, WAL failing): for this
# long after the last refusal, unless a write succeeds first. A window, not a latch, so a node that a load
# balancer stopped sending writes to is tried again instead of staying out for good.
WRITE_REFUSAL_READY_WINDOW_SECONDS = 30.0


@dataclass
class Listeners:
    """Where each listener actually bound (port 0 in the config picks a free port)."""

    addresses: dict[str, tuple[str, int]] = field(default_factory=dict)

    def url(self, name: str) -> str:
        host, port = self.addresses[name]
        return f"http://{host}:{port}"


async def open_object_store(config: Config) -> ObjectStore:
    """The configured store, checked at start-up (a missing bucket or bad credentials stop start-up)."""
    from tempo_lite.storage.backends import open_store_from_config

    return await open_store_from_config(
        config.storage.trace, concurrency=config.query_frontend.search.concurrent_jobs * 2
    )


class TempoLite:
    """The process: implements `frontend.service.QueryService` for the API."""

    def __init__(self, config: Config) -> None:
        self.config = config
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
        cfg = self.config
        self.services["wal"] = "Starting"
        try:
            async with open_wal(wal_config(cfg.storage.trace.wal)) as self.wal:
                self.services["wal"] = "Running"
                self.services["store"] = "Starting"
                self.store = await open_object_store(cfg)
                self.services["store"] = "Running"
                await self._run_components(task_status)
                self.services["wal"] = self.services["store"] = "Stopping"
        finally:
            for name in self.services:
                self.services[name] = "Terminated"

    async def _run_components(self, task_status: trio.TaskStatus[Listeners]) -> None:
        cfg = self.config
        self.generator = (
            MetricsGenerator(self.metrics.registry, cfg.metrics_generator) if cfg.metrics_generator.enabled else None
        )
        self.livestore = LiveStore(
            self.wal,
            self.metrics,
            max_bytes=cfg.live_store.max_bytes,
            complete_block_timeout=cfg.live_store.complete_block_timeout,
            on_batch=self.generator.observe if self.generator is not None else None,
            quarantine=quarantine_dir(cfg.storage.trace.wal.path),
        )
        self.blocklist = BlockList(self.store)
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
        self.querier = Querier(
            self.livestore, self.blocklist, self.store, self.cache, self.metrics,
            concurrency=cfg.query_frontend.search.concurrent_jobs,
        )
        self.compactor = Compactor(
            self.store, self.blocklist, self.cache, self.metrics,
            compaction=cfg.compactor.compaction, block=cfg.storage.trace.block,
        )
        self.searcher = Searcher(self.querier, concurrency=cfg.query_frontend.search.concurrent_jobs)
        self.frontend = QueryFrontend(self.querier, self.searcher)
        self.distributor = Distributor(
            cfg, self.wal, self.metrics,
            is_saturated=lambda: self.livestore.saturated or self._wal_saturated(),
        )
        # Blocks an interrupted flush already wrote must be reused, not rewritten: find them before
        # the live-store replays so it cuts its reads where that flush cut the range.
        await self.blockbuilder.recover()
        async with trio.open_nursery() as nursery:
            if self.generator is not None:
                self.services["metrics-generator"] = "Starting"
                await nursery.start(self.generator.run)
                self.services["metrics-generator"] = "Running"
            self.services["live-store"] = "Starting"
            await nursery.start(self.livestore.run)
            # Serve nothing until the WAL's unflushed records are back in memory: a query answered
            # mid-replay would miss acknowledged spans.
            with trio.fail_after(REPLAY_TIMEOUT_SECONDS):
                await self.livestore.replayed.wait()
            self.services["live-store"] = "Running"
            for name, start in (("block-list", lambda: nursery.start(self.blocklist.run, BLOCKLIST_POLL_SECONDS)),
                                ("block-builder", lambda: nursery.start(self.blockbuilder.run)),
                                ("compactor", lambda: nursery.start(self.compactor.run))):
                self.services[name] = "Starting"
                await start()
                self.services[name] = "Running"
            async with trio.open_nursery() as receivers:
                self.services["distributor"] = "Starting"
                await self._start_receivers(receivers)
                self.services["distributor"] = "Running"
                self.services["query-frontend"] = "Starting"
                await self._start_api(nursery)
                self.services["querier"] = self.services["query-frontend"] = "Running"
                self.started = True
                log.info("tempo-lite ready: %s", ", ".join(
                    f"{name}={host}:{port}" for name, (host, port) in self.listeners.addresses.items()
                ))
                task_status.started(self.listeners)
                await self._stop.wait()
                log.info("shutting down: refusing new spans, draining in-flight requests")
                for name in self.services:
                    self.services[name] = "Stopping"
                self.distributor.accepting = False
                self._receivers_stopped.set()
                for scope in self._udp_scopes:
                    scope.cancel()
            log.info("flushing pending spans to blocks")
            with trio.CancelScope(shield=True), trio.move_on_after(SHUTDOWN_FLUSH_SECONDS) as flush:
                await self.livestore.catch_up()
                await self.blockbuilder.flush_all()
            if flush.cancelled_caught:
                log.warning("final flush did not finish in %ss (%s); unflushed spans stay in the WAL and are "
                            "replayed at the next start", SHUTDOWN_FLUSH_SECONDS, self.blockbuilder.last_error)
            nursery.cancel_scope.cancel()
        log.info("stopped")

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
        from tempo_lite.receivers.http_ingest import decode_limiter, jaeger_http_app, otlp_http_app, zipkin_http_app

        receivers = self.config.distributor.receivers
        max_bytes = self.config.distributor.max_request_bytes
        threads = decode_limiter()  # one pool of decoding threads for every ingest listener
        push = self._push
        if receivers.otlp and receivers.otlp.protocols.http:
            app = otlp_http_app(push, max_request_bytes=max_bytes, limiter=threads)
            await self._serve(nursery, "otlp_http", app,
                              receivers.otlp.protocols.http.endpoint or "127.0.0.1:4318",
                              "distributor.receivers.otlp.protocols.http.endpoint", graceful=True)
        if receivers.otlp and receivers.otlp.protocols.grpc:
            from tempo_lite.receivers.otlp_grpc import otlp_grpc_app

            await self._serve(nursery, "otlp_grpc", otlp_grpc_app(push, max_message_bytes=max_bytes),
                              receivers.otlp.protocols.grpc.endpoint or "127.0.0.1:4317",
                              "distributor.receivers.otlp.protocols.grpc.endpoint", graceful=True)
        if receivers.zipkin:
            app = zipkin_http_app(push, max_request_bytes=max_bytes, limiter=threads)
            await self._serve(nursery, "zipkin", app,
                              receivers.zipkin.endpoint or "127.0.0.1:9411",
                              "distributor.receivers.zipkin.endpoint", graceful=True)
        if receivers.jaeger:
            protocols = receivers.jaeger.protocols
            if protocols.grpc:
                from tempo_lite.receivers.jaeger_grpc import jaeger_grpc_app

                await self._serve(nursery, "jaeger_grpc", jaeger_grpc_app(push, max_message_bytes=max_bytes),
                                  protocols.grpc.endpoint or "127.0.0.1:14250",
                                  "distributor.receivers.jaeger.protocols.grpc.endpoint", graceful=True)
            if protocols.thrift_http:
                app = jaeger_http_app(push, max_request_bytes=max_bytes, limiter=threads)
                await self._serve(nursery, "jaeger_thrift_http", app,
                                  protocols.thrift_http.endpoint or "127.0.0.1:14268",
                                  "distributor.receivers.jaeger.protocols.thrift_http.endpoint", graceful=True)
            for name, proto, compact, default in (
                ("jaeger_thrift_compact", protocols.thrift_compact, True, "127.0.0.1:6831"),
                ("jaeger_thrift_binary", protocols.thrift_binary, False, "127.0.0.1:6832"),
            ):
                if proto is None:
                    continue
                from tempo_lite.receivers.jaeger_udp import serve_jaeger_udp

                host, port = split_endpoint(proto.endpoint or default, f"distributor.receivers.jaeger.protocols.{name}")

                async def udp_push(request: Any) -> None:
                    await push(None, request, request.ByteSize())

                scope = trio.CancelScope()
                self._udp_scopes.append(scope)

                async def serve_udp(h: str, p: int, c: bool, scope: trio.CancelScope, task_status: Any) -> None:
                    with scope:
                        await serve_jaeger_udp(h, p, c, udp_push, limiter=threads, task_status=task_status)

                bound = await nursery.start(serve_udp, host, port, compact, scope)
                self.listeners.addresses[name] = bound

    async def _push(self, tenant_header: str | None, request: Any, size: int) -> None:
        """The distributor's push, remembering whether writes are being refused as unavailable (for /ready)."""
        try:
            await self.distributor.push(tenant_header, request, size)
        except Unavailable as exc:
            self._last_refusal = (trio.current_time(), exc.message)
            raise
        self._last_refusal = None

    async def _start_api(self, nursery: trio.Nursery) -> None:
        from tempo_lite.api.app import create_api
        from tempo_lite.api.streaming import streaming_querier_app
        from tempo_lite.livestore.freshness import read_after_write

        server = self.config.server
        app = read_after_write(streaming_querier_app(self, fallback=cast(ASGIApp, create_api(self))),
                               self.livestore.wait_consumed)
        await self._serve(nursery, "http", app,
                          f"{server.http_listen_address}:{server.http_listen_port}", "server.http_listen_port",
                          graceful=False)

    # --- QueryService: what the API asks of the process ------------------------------------------------

    def not_ready_reason(self) -> str | None:
        if not self.started:
            return "Some services are not Running: starting"
        if self._stop.is_set():
            return "Application is stopping"
        if self.livestore.saturated:
            return "not accepting writes: live-store is full (spans are not flushed to storage fast enough)"
        if self._wal_saturated():
            return "not accepting writes: the WAL holds as many bytes as storage.trace.wal.max_retained_bytes"
        if self._last_refusal is not None:
            at, message = self._last_refusal
            if trio.current_time() - at < WRITE_REFUSAL_READY_WINDOW_SECONDS:
                return f"not accepting writes: {message}"
        return None

    def service_states(self) -> list[tuple[str, str]]:
        """(component, state) in start order; a managed WAL broker that is restarting makes `wal` Starting."""
        states = dict(self.services)
        supervisor = getattr(getattr(self, "wal", None), "supervisor", None)
        if states.get("wal") == "Running" and supervisor is not None and not supervisor.up:
            states["wal"] = "Starting"
        return list(states.items())

    def refresh_gauges(self) -> None:
        stats = self.wal.statistics()
        self.metrics.wal_retained_bytes.set(stats.bytes_retained)
        self.metrics.livestore_bytes.set(self.livestore.nbytes)
        self.metrics.store_read_bytes.set(self.store.bytes_read)

"""Prometheus remote write of the generated series (`metrics_generator.storage.remote_write`).

Every `registry.collection_interval` the series are collected (`SeriesRegistry.samples()`), one
request per tenant is encoded (`encode_write_request`: a `prometheus.WriteRequest`, snappy block format,
classes generated from proto/prometheus_remote.proto) and queued for each endpoint. Each endpoint has
its own sender task and a bounded queue (`max_pending_requests`, oldest dropped when full), so a slow or
down endpoint holds back nothing else. A request that fails with a connection error, a timeout, 429 or
5xx is retried with exponential backoff (Prometheus's rule: other 4xx answers are not retried); after
`MAX_ATTEMPTS` it is dropped. Drops and failures are counted on /metrics. With
`remote_write_add_org_id_header` a tenant's requests carry `X-Scope-OrgID: <tenant>`, as Tempo sends them.
On shutdown the series are collected once more and the queues get `remote_write_flush_deadline` to drain.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import httpx
import pyarrow as pa
import trio
from prometheus_client import CollectorRegistry, Counter

from tempo_lite._gen import prometheus_remote_pb2 as prom
from tempo_lite.config.generator import RemoteWriteConfig, StorageConfig
from tempo_lite.generator.series import SeriesRegistry

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 10
FIRST_BACKOFF_S = 0.1
MAX_BACKOFF_S = 10.0
HEADERS = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
    "User-Agent": "tempo-lite-metrics-generator",
}

Labels = tuple[tuple[str, str], ...]


def encode_write_request(series: Sequence[tuple[Labels, float]], timestamp_ms: int) -> bytes:
    """A snappy-compressed WriteRequest with one sample per series, all at `timestamp_ms`."""
    req = prom.WriteRequest()
    for labels, value in series:
        req.timeseries.add(labels=[prom.Label(name=n, value=v) for n, v in labels],
                           samples=[prom.Sample(value=value, timestamp=timestamp_ms)])
    return pa.compress(req.SerializeToString(), codec="snappy", asbytes=True)


def retryable(status: int) -> bool:
    return status == 429 or status >= 500


@dataclass
class _Request:
    tenant: str
    body: bytes
    samples: int


@dataclass
class _Endpoint:
    config: RemoteWriteConfig
    label: str
    queue: deque[_Request] = field(default_factory=deque)
    ready: trio.Event = field(default_factory=trio.Event)


class RemoteWriter:
    def __init__(
        self, series: SeriesRegistry, storage: StorageConfig, interval_s: float, registry: CollectorRegistry, *,
        wall_clock: Callable[[], float] = time.time, transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.series = series
        self.storage = storage
        self.interval_s = interval_s
        self.wall_clock = wall_clock
        self.transport = transport
        self.endpoints = [_Endpoint(c, c.name or c.url) for c in storage.remote_write]
        self.sent_samples = Counter("tempo_metrics_generator_remote_write_samples_sent",
                                    "Samples delivered to a remote-write endpoint.", ["endpoint"], registry=registry)
        self.failed = Counter("tempo_metrics_generator_remote_write_failed_requests",
                              "Remote-write attempts that failed, by reason.", ["endpoint", "reason"],
                              registry=registry)
        self.dropped = Counter("tempo_metrics_generator_remote_write_dropped_requests",
                               "Remote-write requests given up: queue full, not retryable or out of attempts.",
                               ["endpoint", "reason"], registry=registry)

    def collect(self) -> int:
        """Queue one request per tenant for every endpoint; returns the samples collected."""
        by_tenant = self.series.samples()
        stamp = int(self.wall_clock() * 1000)
        total = 0
        for tenant, rows in sorted(by_tenant.items()):
            if not rows:
                continue
            body = encode_write_request(rows, stamp)
            total += len(rows)
            for ep in self.endpoints:
                if len(ep.queue) >= ep.config.max_pending_requests:
                    ep.queue.popleft()
                    self.dropped.labels(ep.label, "queue_full").inc()
                ep.queue.append(_Request(tenant, body, len(rows)))
                ep.ready.set()
        return total

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with httpx.AsyncClient(transport=self.transport) as client:
            try:
                async with trio.open_nursery() as nursery:
                    for ep in self.endpoints:
                        nursery.start_soon(self._sender, client, ep)
                    task_status.started()
                    while True:
                        await trio.sleep(self.interval_s)
                        self.collect()
            finally:
                with trio.CancelScope(shield=True) as flush:
                    flush.deadline = trio.current_time() + float(self.storage.remote_write_flush_deadline)
                    self.collect()
                    for ep in self.endpoints:
                        while ep.queue:
                            await self._deliver(client, ep, ep.queue.popleft())

    async def _sender(self, client: httpx.AsyncClient, ep: _Endpoint) -> None:
        while True:
            if not ep.queue:
                ep.ready = trio.Event()
                await ep.ready.wait()
                continue
            await self._deliver(client, ep, ep.queue.popleft())

    async def _deliver(self, client: httpx.AsyncClient, ep: _Endpoint, req: _Request) -> None:
        headers = {**HEADERS, **ep.config.headers}
        if self.storage.remote_write_add_org_id_header and req.tenant:
            headers["X-Scope-OrgID"] = req.tenant
        backoff = FIRST_BACKOFF_S
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                r = await client.post(ep.config.url, content=req.body, headers=headers,
                                      timeout=float(ep.config.remote_timeout))
            except httpx.HTTPError as exc:
                reason, detail, again = "connection", f"{type(exc).__name__}: {exc}", True
            else:
                if r.status_code < 300:
                    self.sent_samples.labels(ep.label).inc(req.samples)
                    return
                reason, detail, again = f"http_{r.status_code}", r.text.strip()[:200], retryable(r.status_code)
            self.failed.labels(ep.label, reason).inc()
            if not again or attempt == MAX_ATTEMPTS:
                log.warning("remote write to %s dropped after %d attempt(s): %s %s", ep.label, attempt, reason, detail)
                self.dropped.labels(ep.label, "not_retryable" if not again else "out_of_attempts").inc()
                return
            log.info("remote write to %s failed (%s %s), retrying in %.1fs", ep.label, reason, detail, backoff)
            await trio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)

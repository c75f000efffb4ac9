"""The metrics-generator: span metrics and service graphs from ingested spans, served on /metrics and,
when `storage.remote_write` is configured, sent to a Prometheus-compatible store (`remote_write`).

The live-store hands every decoded WAL batch to `MetricsGenerator.observe(tenant, table)`; the
processors turn it into Prometheus series on the process registry (labels as Tempo's, plus a
`tenant` label: Tempo keeps tenants apart in separate remote-write streams, one /metrics endpoint
needs a label for that). `run()` expires unpaired service-graph halves and stale series.
See docs/metrics-generator.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pyarrow.compute as pc
import trio
from prometheus_client import CollectorRegistry, Counter

from tempo_lite.config.generator import SERVICE_GRAPHS, SPAN_METRICS, MetricsGeneratorConfig
from tempo_lite.generator.remote_write import RemoteWriter
from tempo_lite.generator.series import SeriesRegistry
from tempo_lite.generator.servicegraphs import ServiceGraphs
from tempo_lite.generator.spanmetrics import SpanMetrics
from tempo_lite.spantable import SpanTable

__all__ = ["MetricsGenerator", "MetricsGeneratorConfig"]

# Stale series are looked for at most this often: a scan touches every series.
STALE_SCAN_SECONDS = 30.0


class MetricsGenerator:
    def __init__(
        self,
        registry: CollectorRegistry,
        config: MetricsGeneratorConfig,
        clock: Callable[[], float] = trio.current_time,
        *,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        """`clock` times expiry and staleness (trio's, so MockClock drives it); `wall_clock` (Unix
        seconds) is compared with span end times for `metrics_ingestion_time_range_slack`."""
        self.config = config
        self.clock = clock
        self.wall_clock = wall_clock
        self.series = SeriesRegistry(registry, max_series=config.registry.max_active_series,
                                     tenant_label=config.registry.tenant_label, clock=clock)
        self.span_metrics = (SpanMetrics(self.series, config.processor.span_metrics)
                             if SPAN_METRICS in config.processors else None)
        self.service_graphs = (ServiceGraphs(self.series, config.processor.service_graphs, registry)
                               if SERVICE_GRAPHS in config.processors else None)
        self.spans_received = Counter("tempo_metrics_generator_spans_received", "Spans given to the generator.",
                                      ["tenant"], registry=registry)
        self.spans_discarded = Counter("tempo_metrics_generator_spans_discarded",
                                       "Spans not turned into metrics, by reason.", ["tenant", "reason"],
                                       registry=registry)
        self._last_stale_scan: float | None = None
        self.remote_writer = (
            RemoteWriter(self.series, config.storage, float(config.registry.collection_interval), registry,
                         wall_clock=wall_clock)
            if config.storage.remote_write else None
        )

    def observe(self, tenant: str, table: SpanTable) -> None:
        """Turn one decoded batch of `tenant`'s spans into metrics (call from the trio thread)."""
        if table.num_spans == 0:
            return
        self.spans_received.labels(tenant).inc(table.num_spans)
        table = self._in_time_range(tenant, table)
        if table.num_spans == 0:
            return
        if self.span_metrics is not None:
            self.span_metrics.observe(tenant, table)
        if self.service_graphs is not None:
            self.service_graphs.observe(tenant, table, self.clock())

    def _in_time_range(self, tenant: str, table: SpanTable) -> SpanTable:
        slack = float(self.config.metrics_ingestion_time_range_slack)
        if slack <= 0:
            return table
        spans = table.spans
        now_ns = int(self.wall_clock() * 1e9)
        end = pc.add(pc.fill_null(spans.column("start_unix_nano"), 0), pc.fill_null(spans.column("duration_nano"), 0))
        ok = pc.and_(pc.greater_equal(end, now_ns - int(slack * 1e9)), pc.less_equal(end, now_ns + int(slack * 1e9)))
        kept = pc.sum(ok).as_py() or 0
        if kept == spans.num_rows:
            return table
        self.spans_discarded.labels(tenant, "outside_metrics_ingestion_slack").inc(spans.num_rows - kept)
        return SpanTable(spans.filter(ok), table.resources, dict(table.dedicated))

    def tick(self) -> None:
        """Expire unpaired edges, and every STALE_SCAN_SECONDS drop series not updated for stale_duration."""
        now = self.clock()
        if self.service_graphs is not None:
            self.service_graphs.expire_all(now)
        if self._last_stale_scan is None:
            self._last_stale_scan = now
        elif now - self._last_stale_scan >= STALE_SCAN_SECONDS:
            self._last_stale_scan = now
            self.series.remove_stale(now - float(self.config.registry.stale_duration))

    def tick_interval(self) -> float:
        wait = float(self.config.processor.service_graphs.wait)
        return max(0.05, min(wait / 4, STALE_SCAN_SECONDS))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            if self.remote_writer is not None:
                await nursery.start(self.remote_writer.run)
            task_status.started()
            interval = self.tick_interval()
            while True:
                await trio.sleep(interval)
                self.tick()

"""Configuration of the metrics-generator (`metrics_generator:` in tempo.yaml), shaped like Tempo's.

Tempo enables processors per tenant in `overrides`; tempo-lite has one list for every tenant
(`metrics_generator.processors`). Defaults are Tempo's: span-metrics buckets 2 ms .. 16.384 s
(exponential, factor 2), service-graph buckets 0.1 s .. 12.8 s, `wait` 10 s, `max_items` 10000.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tempo_lite.errors import ConfigError
from tempo_lite.units import Duration

SPAN_METRICS = "span-metrics"
SERVICE_GRAPHS = "service-graphs"
PROCESSORS = (SPAN_METRICS, SERVICE_GRAPHS)

SPAN_METRICS_BUCKETS = tuple(0.002 * 2**i for i in range(14))  # Tempo: ExponentialBuckets(0.002, 2, 14)
SERVICE_GRAPH_BUCKETS = (0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8)

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


@dataclass(frozen=True)
class SpanMetricsConfig:
    # Span or resource attribute keys added as labels (`http.method` -> `http_method`); the resource
    # attribute wins when both carry the key, as in Tempo.
    dimensions: tuple[str, ...] = ()
    histogram_buckets: tuple[float, ...] = SPAN_METRICS_BUCKETS


@dataclass(frozen=True)
class ServiceGraphsConfig:
    # How long half of an edge (a client span or a server span) waits for the other half.
    wait: Duration = Duration(10.0)
    # Unpaired halves held at once, per tenant; beyond it new halves are dropped (and counted).
    max_items: int = 10_000
    dimensions: tuple[str, ...] = ()
    histogram_buckets: tuple[float, ...] = SERVICE_GRAPH_BUCKETS
    # A client span that expires unpaired but carries one of these becomes an edge to a virtual node.
    peer_attributes: tuple[str, ...] = ("peer.service", "db.name", "db.system")


@dataclass(frozen=True)
class ProcessorConfig:
    span_metrics: SpanMetricsConfig = field(default_factory=SpanMetricsConfig)
    service_graphs: ServiceGraphsConfig = field(default_factory=ServiceGraphsConfig)


@dataclass(frozen=True)
class RegistryConfig:
    # Prometheus series per tenant (a counter is 1, a histogram len(buckets) + 3); new series beyond it
    # are dropped and counted in tempo_metrics_generator_registry_series_limited_total.
    max_active_series: int = 10_000
    # A series not updated for this long is removed (Tempo's default).
    stale_duration: Duration = Duration(900.0)
    # Name of the label carrying the tenant on every generated series; "" leaves it out (then the
    # series of all tenants add up).
    tenant_label: str = "tenant"
    # How often the series are collected and remote-written (Tempo's default).
    collection_interval: Duration = Duration(15.0)


@dataclass(frozen=True)
class RemoteWriteConfig:
    """One Prometheus remote-write endpoint (Tempo's keys, a subset of Prometheus's remote_write)."""

    url: str = ""
    name: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    remote_timeout: Duration = Duration(30.0)
    # Requests waiting for this endpoint; when full the oldest is dropped (and counted).
    max_pending_requests: int = 100


@dataclass(frozen=True)
class StorageConfig:
    remote_write: tuple[RemoteWriteConfig, ...] = ()
    # Send each tenant's series with `X-Scope-OrgID: <tenant>` (Tempo's default), so a multi-tenant
    # store (Mimir, Cortex) keeps them apart.
    remote_write_add_org_id_header: bool = True
    # On shutdown, pending requests get this long to be delivered.
    remote_write_flush_deadline: Duration = Duration(60.0)


@dataclass(frozen=True)
class MetricsGeneratorConfig:
    enabled: bool = False
    processors: tuple[str, ...] = (SERVICE_GRAPHS, SPAN_METRICS)
    processor: ProcessorConfig = field(default_factory=ProcessorConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    # Spans whose end lies further than this from now are not counted (0 disables the check). It also
    # keeps a WAL replay after a restart from counting old spans twice.
    metrics_ingestion_time_range_slack: Duration = Duration(30.0)

    def __post_init__(self) -> None:
        where = "metrics_generator"
        for p in self.processors:
            if p not in PROCESSORS:
                raise ConfigError(f"invalid value in {where}.processors: {p!r} "
                                  f"(expected {' or '.join(PROCESSORS)})")
        for name, buckets in (("span_metrics", self.processor.span_metrics.histogram_buckets),
                              ("service_graphs", self.processor.service_graphs.histogram_buckets)):
            if not buckets or any(b >= a for a, b in zip(buckets[1:], buckets, strict=False)):
                raise ConfigError(f"invalid value for {where}.processor.{name}.histogram_buckets: "
                                  f"{list(buckets)!r} (expected a non-empty increasing list)")
        if self.processor.service_graphs.max_items < 0:
            raise ConfigError(f"invalid value for {where}.processor.service_graphs.max_items: "
                              f"{self.processor.service_graphs.max_items} (expected >= 0)")
        if self.registry.max_active_series <= 0:
            raise ConfigError(f"invalid value for {where}.registry.max_active_series: "
                              f"{self.registry.max_active_series} (expected > 0)")
        if float(self.registry.collection_interval) <= 0:
            raise ConfigError(f"invalid value for {where}.registry.collection_interval: "
                              f"{float(self.registry.collection_interval)} (expected > 0)")
        for i, rw in enumerate(self.storage.remote_write):
            at = f"{where}.storage.remote_write[{i}]"
            if not rw.url.startswith(("http://", "https://")):
                raise ConfigError(f"invalid value for {at}.url: {rw.url!r} (expected an http:// or https:// URL)")
            if not all(isinstance(k, str) and isinstance(v, str) for k, v in rw.headers.items()):
                raise ConfigError(f"invalid value for {at}.headers: expected a mapping of strings")
            if rw.max_pending_requests <= 0:
                raise ConfigError(f"invalid value for {at}.max_pending_requests: {rw.max_pending_requests} "
                                  "(expected > 0)")
        if self.registry.tenant_label and not _LABEL_NAME.match(self.registry.tenant_label):
            raise ConfigError(f"invalid value for {where}.registry.tenant_label: "
                              f"{self.registry.tenant_label!r} (not a Prometheus label name)")


def label_name(key: str) -> str:
    """An attribute key as a Prometheus label name (Tempo's sanitising: `http.method` -> `http_method`)."""
    name = re.sub(r"[^a-zA-Z0-9_]", "_", key)
    return "_" + name if name[:1].isdigit() else name

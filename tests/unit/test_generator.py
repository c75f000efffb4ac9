"""The metrics-generator: span metrics and service graphs from span tables, checked on the exposition text."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from opentelemetry import trace as trace_api
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status
from opentelemetry.sdk.resources import Resource as SdkResource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import CollectorRegistry, generate_latest

from tempo_lite import spantable
from tempo_lite.config.generator import (
    MetricsGeneratorConfig,
    ProcessorConfig,
    RegistryConfig,
    ServiceGraphsConfig,
    SpanMetricsConfig,
)
from tempo_lite.errors import ConfigError
from tempo_lite.generator import MetricsGenerator

NOW = 1_700_000_000.0  # wall clock seen by the generator, Unix seconds
SERVER, CLIENT, PRODUCER, CONSUMER = Span.SPAN_KIND_SERVER, Span.SPAN_KIND_CLIENT, Span.SPAN_KIND_PRODUCER, \
    Span.SPAN_KIND_CONSUMER
TRACE = bytes(range(1, 17))


def _kv(key: str, value: object) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


def span(span_id: int, name: str, kind: int, *, parent: int = 0, ms: float = 10.0, error: bool = False,
         trace: bytes = TRACE, attrs: dict | None = None) -> Span:
    start = int((NOW - 1) * 1e9)
    return Span(trace_id=trace, span_id=span_id.to_bytes(8, "big"),
                parent_span_id=parent.to_bytes(8, "big") if parent else b"", name=name, kind=kind,
                start_time_unix_nano=start, end_time_unix_nano=start + int(ms * 1e6),
                status=Status(code=Status.STATUS_CODE_ERROR if error else Status.STATUS_CODE_UNSET),
                attributes=[_kv(k, v) for k, v in (attrs or {}).items()])


def table(service: str, *spans: Span, resource: dict | None = None) -> spantable.SpanTable:
    res = Resource(attributes=[_kv("service.name", service), *(_kv(k, v) for k, v in (resource or {}).items())])
    return spantable.flatten([ResourceSpans(resource=res, scope_spans=[ScopeSpans(spans=list(spans))])])


def generator(prom: CollectorRegistry, **overrides: object) -> MetricsGenerator:
    sm = SpanMetricsConfig(**overrides.pop("span_metrics", {}))  # type: ignore[arg-type]
    sg = ServiceGraphsConfig(**overrides.pop("service_graphs", {}))  # type: ignore[arg-type]
    reg = RegistryConfig(**overrides.pop("registry", {}))  # type: ignore[arg-type]
    config = MetricsGeneratorConfig(enabled=True, processor=ProcessorConfig(sm, sg), registry=reg,
                                    **overrides)  # type: ignore[arg-type]
    return MetricsGenerator(prom, config, wall_clock=lambda: NOW)


def exposition(registry: CollectorRegistry) -> list[str]:
    return generate_latest(registry).decode().splitlines()


def sample(name: str, val: float, **labels: str) -> str:
    """One exposition line; prometheus-client writes labels sorted by name."""
    body = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{body}}} {float(val)!r}"


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    got = registry.get_sample_value(name, labels)
    return got


async def test_span_metrics_count_latency_buckets_and_size_per_label_set() -> None:
    reg = CollectorRegistry()
    gen = generator(reg)
    gen.observe("t1", table("cart", span(1, "GET /cart", SERVER, ms=3), span(2, "GET /cart", SERVER, ms=20),
                           span(3, "GET /cart", SERVER, ms=20, error=True), span(4, "load", 1, parent=1, ms=1)))
    lines = exposition(reg)
    base = dict(service="cart", span_name="GET /cart", span_kind="SPAN_KIND_SERVER",
                status_code="STATUS_CODE_UNSET", tenant="t1")
    assert ('traces_spanmetrics_calls_total{service="cart",span_kind="SPAN_KIND_SERVER",span_name="GET /cart",'
            'status_code="STATUS_CODE_UNSET",tenant="t1"} 2.0') in lines
    for le, count in (("0.002", 0), ("0.004", 1), ("0.016", 1), ("0.032", 2), ("16.384", 2), ("+Inf", 2)):
        assert sample("traces_spanmetrics_latency_bucket", count, le=le, **base) in lines
    assert sample("traces_spanmetrics_latency_count", 2, **base) in lines
    assert sample("traces_spanmetrics_latency_sum", 0.023, **base) in lines
    assert sample("traces_spanmetrics_calls_total", 1, **{**base, "status_code": "STATUS_CODE_ERROR"}) in lines
    assert sample("traces_spanmetrics_calls_total", 1, **{**base, "span_name": "load",
                                                          "span_kind": "SPAN_KIND_INTERNAL"}) in lines
    size = value(reg, "traces_spanmetrics_size_total", service="cart", span_name="GET /cart",
                 span_kind="SPAN_KIND_SERVER", status_code="STATUS_CODE_UNSET", tenant="t1")
    assert size is not None and 2 * 60 < size < 2 * 200  # two small spans, framing included


async def test_span_metrics_dimensions_from_span_and_resource_attributes() -> None:
    reg = CollectorRegistry()
    gen = generator(reg, span_metrics={"dimensions": ("http.method", "deployment.environment", "http.status_code")})
    gen.observe("t1", table(
        "cart",
        span(1, "GET", SERVER, attrs={"http.method": "GET", "http.status_code": 200}),
        span(2, "GET", SERVER, attrs={"http.method": "GET", "http.status_code": 200,
                                      "deployment.environment": "ignored: resource wins"}),
        span(3, "GET", SERVER),
        resource={"deployment.environment": "prod"},
    ))
    lines = exposition(reg)
    head = dict(service="cart", span_name="GET", span_kind="SPAN_KIND_SERVER", status_code="STATUS_CODE_UNSET",
                tenant="t1", deployment_environment="prod")
    assert sample("traces_spanmetrics_calls_total", 2, http_method="GET", http_status_code="200", **head) in lines
    assert sample("traces_spanmetrics_calls_total", 1, http_method="", http_status_code="", **head) in lines


async def test_tenants_are_separate_series_and_tenant_label_can_be_turned_off() -> None:
    reg = CollectorRegistry()
    gen = generator(reg)
    gen.observe("a", table("svc", span(1, "op", SERVER)))
    gen.observe("b", table("svc", span(1, "op", SERVER)))
    labels = dict(service="svc", span_name="op", span_kind="SPAN_KIND_SERVER", status_code="STATUS_CODE_UNSET")
    assert value(reg, "traces_spanmetrics_calls_total", **labels, tenant="a") == 1
    assert value(reg, "traces_spanmetrics_calls_total", **labels, tenant="b") == 1

    reg2 = CollectorRegistry()
    gen2 = generator(reg2, registry={"tenant_label": ""})
    gen2.observe("a", table("svc", span(1, "op", SERVER)))
    gen2.observe("b", table("svc", span(1, "op", SERVER)))
    assert ('traces_spanmetrics_calls_total{service="svc",span_kind="SPAN_KIND_SERVER",span_name="op",'
            'status_code="STATUS_CODE_UNSET"} 2.0') in exposition(reg2)


async def test_service_graph_edge_pairs_client_and_server_across_batches() -> None:
    reg = CollectorRegistry()
    gen = generator(reg)
    gen.observe("t1", table("frontend", span(10, "GET /api", CLIENT, ms=30)))
    assert value(reg, "traces_service_graph_request_total", client="frontend", server="api",
                 connection_type="", tenant="t1") is None
    gen.observe("t1", table("api", span(11, "GET /api", SERVER, parent=10, ms=25)))
    lines = exposition(reg)
    assert ('traces_service_graph_request_total{client="frontend",connection_type="",server="api",tenant="t1"} 1.0'
            in lines)
    edge = dict(client="frontend", server="api", connection_type="", tenant="t1")
    assert sample("traces_service_graph_request_client_seconds_bucket", 0, le="0.025", **edge) not in lines
    assert sample("traces_service_graph_request_client_seconds_bucket", 1, le="0.1", **edge) in lines
    assert sample("traces_service_graph_request_client_seconds_sum", 0.03, **edge) in lines
    assert sample("traces_service_graph_request_server_seconds_sum", 0.025, **edge) in lines
    assert sample("traces_service_graph_request_server_seconds_count", 1, **edge) in lines
    assert not any(line.startswith("traces_service_graph_request_failed_total{") for line in lines)
    assert gen.service_graphs is not None and gen.service_graphs.pending["t1"].size == 0


async def test_service_graph_server_half_first_and_failed_requests() -> None:
    reg = CollectorRegistry()
    gen = generator(reg)
    gen.observe("t1", table("api", span(11, "GET", SERVER, parent=10, error=True),
                            span(21, "GET", SERVER, parent=20)))
    gen.observe("t1", table("frontend", span(10, "GET", CLIENT), span(20, "GET", CLIENT)))
    edge = dict(client="frontend", server="api", connection_type="", tenant="t1")
    assert value(reg, "traces_service_graph_request_total", **edge) == 2
    assert value(reg, "traces_service_graph_request_failed_total", **edge) == 1


async def test_service_graph_pairs_within_one_batch_and_ignores_duplicate_halves() -> None:
    reg = CollectorRegistry()
    gen = generator(reg)
    both = spantable.concat([table("frontend", span(10, "GET", CLIENT)),
                             table("api", span(11, "GET", SERVER, parent=10))])
    gen.observe("t1", both)
    gen.observe("t1", table("api", span(11, "GET", SERVER, parent=10)))  # delivered again
    edge = dict(client="frontend", server="api", connection_type="", tenant="t1")
    assert value(reg, "traces_service_graph_request_total", **edge) == 1
    gen.observe("t1", table("frontend", span(20, "GET", CLIENT)))
    twice = table("api", span(21, "GET", SERVER, parent=20))
    gen.observe("t1", spantable.concat([twice, twice]))  # a retried export inside one batch
    assert value(reg, "traces_service_graph_request_total", **edge) == 2


async def test_messaging_producer_consumer_edge() -> None:
    reg = CollectorRegistry()
    gen = generator(reg)
    gen.observe("t1", table("orders", span(30, "publish", PRODUCER, ms=2)))
    gen.observe("t1", table("billing", span(31, "consume", CONSUMER, parent=30, ms=50)))
    assert sample("traces_service_graph_request_total", 1, client="orders", server="billing",
                  connection_type="messaging_system", tenant="t1") in exposition(reg)


async def test_client_span_with_db_name_is_a_database_edge_at_once() -> None:
    reg = CollectorRegistry()
    gen = generator(reg)
    gen.observe("t1", table("api", span(40, "SELECT", CLIENT, attrs={"db.name": "carts", "db.system": "pg"})))
    assert value(reg, "traces_service_graph_request_total", client="api", server="carts",
                 connection_type="database", tenant="t1") == 1


async def test_unpaired_edges_expire_after_wait_with_virtual_nodes(autojump_clock: trio.testing.MockClock) -> None:
    reg = CollectorRegistry()
    gen = generator(reg, service_graphs={"wait": 10.0})
    async with trio.open_nursery() as nursery:
        await nursery.start(gen.run)
        gen.observe("t1", table("frontend", span(50, "GET", CLIENT),  # never answered
                                span(51, "charge", CLIENT, attrs={"peer.service": "payments"}),
                                span(53, "GET", CLIENT)))
        gen.observe("t1", table("api", span(52, "GET /", SERVER),  # a root: called by a user
                                span(54, "GET", SERVER, parent=53)))
        await trio.sleep(9)
        assert value(reg, "traces_service_graph_unpaired_spans_total", client="frontend", server="",
                     connection_type="", tenant="t1") is None
        assert gen.service_graphs is not None and gen.service_graphs.pending["t1"].size == 3
        await trio.sleep(4)
        nursery.cancel_scope.cancel()
    lines = exposition(reg)
    assert sample("traces_service_graph_unpaired_spans_total", 1, client="frontend", server="",
                  connection_type="", tenant="t1") in lines
    assert sample("traces_service_graph_request_total", 1, client="frontend", server="payments",
                  connection_type="virtual_node", tenant="t1") in lines
    assert sample("traces_service_graph_request_total", 1, client="user", server="api",
                  connection_type="virtual_node", tenant="t1") in lines
    assert sample("traces_service_graph_request_total", 1, client="frontend", server="api",
                  connection_type="", tenant="t1") in lines
    assert 'tempo_metrics_generator_processor_service_graphs_expired_edges_total{tenant="t1"} 3.0' in lines
    assert gen.service_graphs.pending["t1"].size == 0


async def test_max_items_bounds_waiting_halves_and_counts_dropped_spans() -> None:
    reg = CollectorRegistry()
    gen = generator(reg, service_graphs={"max_items": 2})
    gen.observe("t1", table("frontend", *(span(100 + i, "GET", CLIENT) for i in range(5))))
    assert gen.service_graphs is not None and gen.service_graphs.pending["t1"].size == 2
    assert value(reg, "traces_service_graph_dropped_spans_total", client="frontend", server="",
                 connection_type="", tenant="t1") == 3
    # The oldest halves were kept: their servers still pair.
    gen.observe("t1", table("api", span(200, "GET", SERVER, parent=100), span(201, "GET", SERVER, parent=101)))
    assert value(reg, "traces_service_graph_request_total", client="frontend", server="api",
                 connection_type="", tenant="t1") == 2


async def test_series_limit_drops_new_series_and_counts_them() -> None:
    reg = CollectorRegistry()
    gen = generator(reg, processors=("span-metrics",), registry={"max_active_series": 100},
                    span_metrics={"histogram_buckets": (0.01, 0.1)})
    # One label set costs 1 (calls) + 5 (latency: 2 buckets, +Inf, _sum, _count) + 1 (size) = 7 series.
    gen.observe("t1", table("svc", *(span(i + 1, f"op-{i}", SERVER) for i in range(1000))))
    calls = [ln for ln in exposition(reg) if ln.startswith("traces_spanmetrics_calls_total{")]
    assert len(calls) == 100 // 7 + 1  # the calls series of the 15th set fits, its histogram does not
    assert value(reg, "tempo_metrics_generator_registry_active_series", tenant="t1") <= 100
    assert value(reg, "tempo_metrics_generator_registry_series_limited_total", tenant="t1") >= 1000 - 15
    # Another tenant has its own budget; existing series keep counting.
    gen.observe("t2", table("svc", span(1, "op-0", SERVER)))
    gen.observe("t1", table("svc", span(1, "op-0", SERVER)))
    labels = dict(service="svc", span_name="op-0", span_kind="SPAN_KIND_SERVER", status_code="STATUS_CODE_UNSET")
    assert value(reg, "traces_spanmetrics_calls_total", **labels, tenant="t2") == 1
    assert value(reg, "traces_spanmetrics_calls_total", **labels, tenant="t1") == 2


async def test_stale_series_are_removed(autojump_clock: trio.testing.MockClock) -> None:
    reg = CollectorRegistry()
    gen = generator(reg, registry={"stale_duration": 60.0})
    async with trio.open_nursery() as nursery:
        await nursery.start(gen.run)
        gen.observe("t1", table("svc", span(1, "old", SERVER)))
        await trio.sleep(45)
        gen.observe("t1", table("svc", span(2, "fresh", SERVER)))
        await trio.sleep(45)  # "old" is 90 s old, "fresh" 45 s
        nursery.cancel_scope.cancel()
    names = {ln.split('span_name="')[1].split('"')[0] for ln in exposition(reg)
             if ln.startswith("traces_spanmetrics_calls_total{")}
    assert names == {"fresh"}


async def test_spans_outside_the_ingestion_slack_are_not_counted() -> None:
    reg = CollectorRegistry()
    gen = generator(reg)
    old = span(1, "op", SERVER)
    old.start_time_unix_nano -= int(3600e9)
    old.end_time_unix_nano -= int(3600e9)
    gen.observe("t1", table("svc", old, span(2, "op", SERVER)))
    assert value(reg, "traces_spanmetrics_calls_total", service="svc", span_name="op",
                 span_kind="SPAN_KIND_SERVER", status_code="STATUS_CODE_UNSET", tenant="t1") == 1
    assert value(reg, "tempo_metrics_generator_spans_discarded_total", tenant="t1",
                 reason="outside_metrics_ingestion_slack") == 1


async def test_metrics_from_real_opentelemetry_sdk_spans() -> None:
    memory = InMemorySpanExporter()
    providers = {}
    for service in ("frontend", "cart"):
        providers[service] = TracerProvider(resource=SdkResource.create({"service.name": service}))
        providers[service].add_span_processor(SimpleSpanProcessor(memory))
    front = providers["frontend"].get_tracer("web")
    cart = providers["cart"].get_tracer("cart")
    for _ in range(3):
        with front.start_as_current_span("GET /checkout", kind=SpanKind.SERVER):
            with front.start_as_current_span("GET /cart", kind=SpanKind.CLIENT) as call:
                # What propagation does over HTTP: the server's parent is the remote client span.
                remote = trace_api.set_span_in_context(trace_api.NonRecordingSpan(call.get_span_context()))
                with cart.start_as_current_span("GET /cart", kind=SpanKind.SERVER, context=remote) as srv:
                    srv.set_status(StatusCode.ERROR)
    for p in providers.values():
        p.shutdown()
    finished = list(memory.get_finished_spans())
    by_service = {s: [x for x in finished if x.resource.attributes["service.name"] == s] for s in providers}
    reg = CollectorRegistry()
    gen = MetricsGenerator(reg, MetricsGeneratorConfig(enabled=True))  # real wall clock: the spans are fresh
    for service in ("cart", "frontend"):  # the servers' batch first
        gen.observe("single-tenant", spantable.flatten(encode_spans(by_service[service]).resource_spans))
    lines = exposition(reg)
    tenant = "single-tenant"
    assert sample("traces_spanmetrics_calls_total", 3, service="frontend", span_name="GET /checkout",
                  span_kind="SPAN_KIND_SERVER", status_code="STATUS_CODE_UNSET", tenant=tenant) in lines
    assert sample("traces_spanmetrics_calls_total", 3, service="frontend", span_name="GET /cart",
                  span_kind="SPAN_KIND_CLIENT", status_code="STATUS_CODE_UNSET", tenant=tenant) in lines
    assert sample("traces_spanmetrics_calls_total", 3, service="cart", span_name="GET /cart",
                  span_kind="SPAN_KIND_SERVER", status_code="STATUS_CODE_ERROR", tenant=tenant) in lines
    edge = dict(client="frontend", server="cart", connection_type="", tenant=tenant)
    assert sample("traces_service_graph_request_total", 3, **edge) in lines
    assert sample("traces_service_graph_request_failed_total", 3, **edge) in lines
    assert sample("traces_service_graph_request_server_seconds_count", 3, **edge) in lines
    # The root server spans wait for a client that will not come (the user's browser): no edge yet.
    assert not any(ln.startswith("traces_service_graph_request_total{") and 'client="user"' in ln for ln in lines)


def test_config_rejects_unknown_processor_and_bad_buckets() -> None:
    with pytest.raises(ConfigError, match="metrics_generator.processors"):
        MetricsGeneratorConfig(processors=("span-metrics", "local-blocks"))
    with pytest.raises(ConfigError, match="histogram_buckets"):
        MetricsGeneratorConfig(processor=ProcessorConfig(span_metrics=SpanMetricsConfig(histogram_buckets=(1.0, 0.5))))
    with pytest.raises(ConfigError, match="collide"):
        MetricsGenerator(CollectorRegistry(), MetricsGeneratorConfig(
            processor=ProcessorConfig(span_metrics=SpanMetricsConfig(dimensions=("service",)))), clock=lambda: 0.0)

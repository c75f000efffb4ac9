"""Test helpers: real OpenTelemetry SDK spans, and order-insensitive comparison of OTLP payloads."""

from __future__ import annotations

from opentelemetry import trace as trace_api
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode


def sdk_spans(service: str = "checkout", *, traces: int = 1) -> list[ReadableSpan]:
    """Spans made by the real SDK: every attribute type, events, links, status, every kind, scopes."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create({"service.name": service, "deployment.environment": "test", "host.cpus": 2,
                                  "tags": ["a", "b"], "ratio": 0.5, "enabled": True})
    )
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("shop.lib", "1.2.3", attributes={"scope.attr": "s"})
    other = provider.get_tracer("db.lib", "0.1")
    for t in range(traces):
        with tracer.start_as_current_span("GET /cart", kind=SpanKind.SERVER,
                                          attributes={"http.method": "GET", "http.status_code": 200,
                                                      "trace.index": t}) as root:
            root.add_event("cache.miss", {"key": "cart:1", "attempt": 1, "latency": 1.5, "hit": False})
            with tracer.start_as_current_span("load", kind=SpanKind.INTERNAL, attributes={
                "str": "v", "int": -42, "float": 3.25, "bool": True,
                "strs": ["x", "y"], "ints": [1, 2, 3], "floats": [0.5, 1.5], "bools": [True, False],
            }) as load:
                with other.start_as_current_span("SELECT", kind=SpanKind.CLIENT,
                                                 links=[Link(root.get_span_context(), {"link.kind": "parent"})]) as q:
                    q.set_status(Status(StatusCode.ERROR, "timeout"))
                    q.record_exception(ValueError("boom"))
                load.set_status(Status(StatusCode.OK))
            with tracer.start_as_current_span("publish", kind=SpanKind.PRODUCER):
                pass
            with tracer.start_as_current_span("consume", kind=SpanKind.CONSUMER,
                                              links=[Link(trace_api.SpanContext(
                                                  0x1234, 0x5678, is_remote=True))]):
                pass
    provider.shutdown()
    return list(memory.get_finished_spans())


def encoded(spans: list[ReadableSpan]) -> ExportTraceServiceRequest:
    """Exactly what the SDK's OTLP exporters send for these spans."""
    return encode_spans(spans)


def _sorted_kvs(kvs) -> list[tuple[str, bytes]]:  # noqa: ANN001
    return sorted((kv.key, kv.value.SerializeToString(deterministic=True)) for kv in kvs)


def normalize(data: TracesData | ExportTraceServiceRequest) -> dict[bytes, tuple]:
    """span ID -> every field of the span with its resource and scope, attribute order ignored."""
    out: dict[bytes, tuple] = {}
    for rs in data.resource_spans:
        resource = (_sorted_kvs(rs.resource.attributes), rs.resource.dropped_attributes_count, rs.schema_url)
        for ss in rs.scope_spans:
            scope = (ss.scope.name, ss.scope.version, _sorted_kvs(ss.scope.attributes),
                     ss.scope.dropped_attributes_count, ss.schema_url)
            for sp in ss.spans:
                events = [(e.time_unix_nano, e.name, _sorted_kvs(e.attributes), e.dropped_attributes_count)
                          for e in sp.events]
                links = [(lk.trace_id, lk.span_id, lk.trace_state, lk.flags, _sorted_kvs(lk.attributes),
                          lk.dropped_attributes_count) for lk in sp.links]
                key = (sp.span_id, sp.kind)
                out[key] = (
                    resource, scope, sp.trace_id, sp.parent_span_id, sp.name, sp.kind, sp.start_time_unix_nano,
                    sp.end_time_unix_nano, sp.trace_state, sp.flags, _sorted_kvs(sp.attributes),
                    sp.dropped_attributes_count, events, sp.dropped_events_count, links, sp.dropped_links_count,
                    sp.status.code, sp.status.message,
                )
    return out


def by_trace(request: ExportTraceServiceRequest) -> dict[bytes, dict]:
    """trace ID -> normalized spans of that trace."""
    out: dict[bytes, dict] = {}
    for key, value in normalize(request).items():
        out.setdefault(value[2], {})[key] = value
    return out


def per_trace_requests(spans: list[ReadableSpan]) -> tuple[dict[bytes, bytes], dict[bytes, dict]]:
    """trace ID -> the serialized export request holding exactly that trace's spans, and what it must read back as
    (`by_trace`)."""
    groups: dict[int, list[ReadableSpan]] = {}
    for span in spans:
        groups.setdefault(span.context.trace_id, []).append(span)
    bodies, want = {}, {}
    for group in groups.values():
        request = encoded(group)
        ((tid, expected),) = by_trace(request).items()
        bodies[tid], want[tid] = request.SerializeToString(), expected
    return bodies, want

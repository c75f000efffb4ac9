"""Synthetic but realistic OTLP payloads shared by the benchmarks (deterministic for a given seed).

Traces of 4-16 spans across a pool of services, each span with 10 attributes whose values look like
what HTTP/DB instrumentation emits (low-cardinality methods and routes, high-cardinality URLs and user
IDs, integer status codes and sizes, a float and a bool), random 16-byte trace IDs and 8-byte span IDs,
log-normal durations. `rich=True` adds 2 more attributes, an event and a link per span (the flatten
worst case quoted in the issue).
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, Span, TracesData

SERVICES = [f"svc-{name}" for name in ("frontend", "cart", "checkout", "payment", "shipping", "email",
                                        "currency", "ads", "recommendation", "catalog")]
ROUTES = ["/api/cart", "/api/cart/{id}", "/api/checkout", "/api/products/{id}", "/api/users/{id}",
          "/api/orders", "/api/orders/{id}", "/health", "/api/recommendations", "/api/ads"]
METHODS = ["GET", "GET", "GET", "POST", "PUT", "DELETE"]
SPAN_NAMES = ["HTTP GET", "HTTP POST", "SELECT orders", "INSERT orders", "redis GET", "grpc.Charge",
              "render", "publish", "consume", "cache.lookup", "auth.verify", "serialize"]
BASE_NS = 1_700_000_000_000_000_000


def _kv(key: str, value: object) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


def _span_attributes(rng: random.Random, rich: bool) -> list[KeyValue]:
    route = rng.choice(ROUTES)
    obj = rng.randrange(100_000)
    attrs = [
        _kv("http.method", rng.choice(METHODS)),
        _kv("http.route", route),
        _kv("http.url", "https://shop.example.com" + route.replace("{id}", str(obj)) + f"?page={rng.randrange(5)}"),
        _kv("http.status_code", rng.choice((200, 200, 200, 200, 201, 204, 404, 500))),
        _kv("net.peer.name", f"10.0.{rng.randrange(4)}.{rng.randrange(32)}"),
        _kv("net.peer.port", rng.choice((80, 443, 8080, 5432, 6379))),
        _kv("user.id", f"user-{rng.randrange(20_000)}"),
        _kv("http.response_content_length", rng.randrange(50_000)),
        _kv("sampling.ratio", rng.choice((0.1, 0.5, 1.0))),
        _kv("cache.hit", rng.random() < 0.7),
    ]
    if rich:
        attrs.append(_kv("thread.name", f"worker-{rng.randrange(16)}"))
        attrs.append(_kv("code.function", rng.choice(SPAN_NAMES).lower().replace(" ", "_")))
    return attrs


def traces_data(spans: int, *, seed: int = 1, rich: bool = False, start_ns: int = BASE_NS) -> TracesData:
    """About `spans` spans (whole traces), grouped into one ResourceSpans per service."""
    rng = random.Random(seed)
    by_service: dict[str, list[Span]] = {}
    made = 0
    t0 = start_ns
    while made < spans:
        trace_id = rng.randbytes(16)
        n = min(rng.randrange(4, 17), spans - made)
        ids = [rng.randbytes(8) for _ in range(n)]
        t0 += rng.randrange(1_000_000, 50_000_000)
        for i in range(n):
            parent = ids[rng.randrange(i)] if i else b""
            start = t0 + i * rng.randrange(100_000, 2_000_000)
            duration = int(rng.lognormvariate(14, 1.5))
            span = Span(
                trace_id=trace_id, span_id=ids[i], parent_span_id=parent, name=rng.choice(SPAN_NAMES),
                kind=rng.choice((1, 2, 3)), start_time_unix_nano=start, end_time_unix_nano=start + duration,
                attributes=_span_attributes(rng, rich),
            )
            if rng.random() < 0.05:
                span.status.code = 2
                span.status.message = "internal error"
            if rich:
                span.events.add(time_unix_nano=start + 1000, name="log",
                                attributes=[_kv("message", "cache miss"), _kv("attempt", 1)])
                span.links.add(trace_id=rng.randbytes(16), span_id=rng.randbytes(8),
                               attributes=[_kv("link.kind", "follows")])
            by_service.setdefault(SERVICES[(i + len(trace_id) * made) % len(SERVICES)], []).append(span)
        made += n
    data = TracesData()
    for service, service_spans in by_service.items():
        rs: ResourceSpans = data.resource_spans.add()
        rs.resource.attributes.extend([_kv("service.name", service), _kv("host.name", f"{service}-7d9f-abc"),
                                       _kv("telemetry.sdk.language", "python")])
        ss = rs.scope_spans.add()
        ss.scope.name = "opentelemetry.instrumentation.flask"
        ss.scope.version = "0.45b0"
        ss.spans.extend(service_spans)
    return data


def request_bytes(spans: int, *, seed: int = 1, rich: bool = False) -> bytes:
    """A serialized ExportTraceServiceRequest (same wire format as TracesData)."""
    data = traces_data(spans, seed=seed, rich=rich)
    return ExportTraceServiceRequest(resource_spans=data.resource_spans).SerializeToString()


def request_stream(spans_per_request: int, count: int, *, seed: int = 1) -> Iterator[bytes]:
    for i in range(count):
        yield request_bytes(spans_per_request, seed=seed * 1_000_003 + i)


def span_table(spans: int, *, seed: int = 1, start_ns: int = BASE_NS):  # noqa: ANN201 - SpanTable
    """The same shape as `traces_data` (10 attributes per span) built column-wise with numpy, for
    writing millions of spans into blocks quickly. Returns a `spantable.SpanTable`."""
    import numpy as np
    import pyarrow as pa

    from tempo_lite import spantable

    rng = np.random.default_rng(seed)
    sizes = rng.integers(4, 17, size=spans // 4 + 1)
    sizes = sizes[: int(np.searchsorted(np.cumsum(sizes), spans)) + 1]
    sizes[-1] -= int(sizes.sum()) - spans
    n_traces = len(sizes)
    trace_of = np.repeat(np.arange(n_traces), sizes)
    first_of = np.repeat(np.cumsum(sizes) - sizes, sizes)
    pos = np.arange(spans) - first_of
    trace_ids = rng.bytes(16 * n_traces)
    span_ids = rng.bytes(8 * spans)
    tid = np.frombuffer(trace_ids, dtype="S16")[trace_of]
    sid = np.frombuffer(span_ids, dtype="S8")
    parent_pos = (rng.random(spans) * pos).astype(np.int64)
    pid = np.where(pos > 0, sid[first_of + parent_pos], b"")
    t0 = start_ns + np.cumsum(rng.integers(1_000_000, 50_000_000, size=n_traces))[trace_of]
    start = t0 + pos * rng.integers(100_000, 2_000_000, size=spans)
    duration = rng.lognormal(14, 1.5, size=spans).astype(np.int64)
    kind = rng.integers(1, 4, size=spans).astype(np.int8)
    error = rng.random(spans) < 0.05

    def pick(choices: list, size: int = spans) -> np.ndarray:
        return np.array(choices, dtype=object)[rng.integers(0, len(choices), size=size)]

    route = pick(ROUTES)
    obj = rng.integers(0, 100_000, size=spans)
    page = rng.integers(0, 5, size=spans)
    url = ["https://shop.example.com" + r.replace("{id}", str(o)) + f"?page={p}"
           for r, o, p in zip(route, obj.tolist(), page.tolist(), strict=True)]
    peer = [f"10.0.{a}.{b}" for a, b in zip(rng.integers(0, 4, spans).tolist(), rng.integers(0, 32, spans).tolist(),
                                            strict=True)]
    user = [f"user-{u}" for u in rng.integers(0, 20_000, size=spans).tolist()]
    columns = [  # (key, type, values) in the order payloads.traces_data emits them
        ("http.method", 1, pick(METHODS)), ("http.route", 1, route), ("http.url", 1, url),
        ("http.status_code", 2, pick([200, 200, 200, 200, 201, 204, 404, 500])),
        ("net.peer.name", 1, peer), ("net.peer.port", 2, pick([80, 443, 8080, 5432, 6379])),
        ("user.id", 1, user), ("http.response_content_length", 2, rng.integers(0, 50_000, size=spans)),
        ("sampling.ratio", 3, pick([0.1, 0.5, 1.0])), ("cache.hit", 4, rng.random(spans) < 0.7),
    ]
    k = len(columns)
    interleave = pa.array((np.arange(spans)[:, None] + np.arange(k)[None, :] * spans).reshape(-1))

    def child(t: int, typ: pa.DataType) -> pa.Array:
        parts = [pa.array(list(v) if t == 1 else v, typ) if ct == t else pa.nulls(spans, typ) for _, ct, v in columns]
        return pa.concat_arrays(parts).take(interleave)

    attr_values = pa.StructArray.from_arrays(
        [pa.array(np.tile(np.array([c[0] for c in columns], dtype=object), spans), pa.string()),
         pa.array(np.tile(np.array([c[1] for c in columns], dtype=np.int8), spans)),
         child(1, pa.string()), child(2, pa.int64()), child(3, pa.float64()), child(4, pa.bool_()),
         pa.nulls(spans * k, pa.binary())],
        fields=list(spantable.ATTR),
    )
    n_services = len(SERVICES)
    service_idx = ((pos + 16 * trace_of) % n_services).astype(np.int32)
    zeros32 = pa.array(np.zeros(spans, np.uint32))
    no_lists = pa.array(np.zeros(spans + 1, np.int32))
    spans_table = pa.Table.from_arrays(
        [
            pa.array(tid, pa.binary(16)), pa.array(sid, pa.binary(8)), pa.array(pid, pa.binary()),
            pa.array(pick(SPAN_NAMES), pa.string()), pa.array(kind), pa.array(np.where(error, 2, 0).astype(np.int8)),
            pa.array(np.where(error, "internal error", ""), pa.string()), pa.array(start), pa.array(duration),
            pa.array([""] * spans, pa.string()), zeros32, zeros32, zeros32, zeros32,
            pa.array(service_idx), pa.array(np.array(SERVICES, dtype=object)[service_idx], pa.string()),
            pa.ListArray.from_arrays(pa.array(np.arange(spans + 1, dtype=np.int32) * k), attr_values),
            pa.ListArray.from_arrays(no_lists, pa.array([], spantable.EVENT)),
            pa.ListArray.from_arrays(no_lists, pa.array([], spantable.LINK)),
        ],
        schema=spantable.SPAN_SCHEMA,
    )
    resources = spantable.flatten(traces_data(len(SERVICES) * 40, seed=seed).resource_spans).resources
    by_service = {r["attrs"][0]["str"]: i for i, r in enumerate(resources.to_pylist())}
    resources = resources.take([by_service[s] for s in SERVICES])
    return spantable.SpanTable(spans_table, resources)

"""Test traces as OTLP `TracesData`: fixture A of the TraceQL conformance data, and small builders.

Fixture A follows `shared/conformance/traceql/fixture-cases.yaml` (fixtures.A_tempodb_search) with its
OTLP ingest adaptations: 8-byte span IDs, and BrokenSpan as a span whose parent does not exist.
"""

from __future__ import annotations

from conformance import FIXTURE_CASES, load_yaml
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status, TracesData

TRACE_ID_A = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
TRACE_ID_A_HEX = TRACE_ID_A.hex().lstrip("0")
BROKEN_SPAN_ID = bytes.fromhex("00000000deadbeef")
SEC = 1_000_000_000


def any_value(v: object) -> AnyValue:
    if isinstance(v, bool):
        return AnyValue(bool_value=v)
    if isinstance(v, int):
        return AnyValue(int_value=v)
    if isinstance(v, float):
        return AnyValue(double_value=v)
    if isinstance(v, (list, tuple)):
        return AnyValue(array_value=ArrayValue(values=[any_value(x) for x in v]))
    if isinstance(v, bytes):
        return AnyValue(bytes_value=v)
    return AnyValue(string_value=str(v))


def key_values(attrs: dict[str, object]) -> list[KeyValue]:
    return [KeyValue(key=k, value=any_value(v)) for k, v in attrs.items()]


def add_resource_spans(
    data: TracesData,
    resource: dict[str, object],
    spans: list[Span],
    scope: dict | None = None,
) -> None:
    rs = data.resource_spans.add()
    rs.resource.attributes.extend(key_values(resource))
    ss = rs.scope_spans.add()
    if scope:
        ss.scope.name = scope.get("name", "")
        ss.scope.version = scope.get("version", "")
        ss.scope.dropped_attributes_count = scope.get("dropped", 0)
        ss.scope.attributes.extend(key_values(scope.get("attributes", {})))
    ss.spans.extend(spans)


def make_span(
    trace_id: bytes,
    span_id: bytes,
    parent: bytes,
    name: str,
    start: int,
    end: int,
    *,
    status: int = 0,
    kind: int = 0,
    attrs: dict[str, object] | None = None,
) -> Span:
    span = Span(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent,
        name=name,
        start_time_unix_nano=start,
        end_time_unix_nano=end,
        kind=kind,
        status=Status(code=status),
    )
    span.attributes.extend(key_values(attrs or {}))
    return span


def fixture_a() -> TracesData:
    """Fixture A: RootSpan(040506) -> {MySpan(010203), Service3 span(070809)}; BrokenSpan disconnected."""
    tid = TRACE_ID_A
    data = TracesData()
    my_span = make_span(
        tid,
        bytes.fromhex("0000000000010203"),
        bytes.fromhex("0000000000040506"),
        "MySpan",
        1000 * SEC,
        1001 * SEC,
        status=2,
        kind=0,
        attrs={
            "http.method": "Get",
            "http.url": "url/Hello/World",
            "http.status_code": 500,
            "foo": "Bar",
            "child": True,
            "span-dedicated.01": "span-1a",
            "span-dedicated.02": "span-2a",
            "numericString": "123",
        },
    )
    ev = my_span.events.add(time_unix_nano=1000 * SEC + SEC // 2, name="event name")
    ev.attributes.extend(key_values({"exception.message": "random error", "event-dedicated.01": "event-1a"}))
    ln = my_span.links.add(trace_id=tid, span_id=bytes.fromhex("0000000000040506"))
    ln.attributes.extend(key_values({"relation": "child-of"}))
    add_resource_spans(
        data,
        {
            "service.name": "MyService",
            "cluster": "MyCluster",
            "namespace": "MyNamespace",
            "pod": "MyPod",
            "container": "MyContainer",
            "k8s.cluster.name": "k8sCluster",
            "k8s.namespace.name": "k8sNamespace",
            "k8s.pod.name": "k8sPod",
            "k8s.container.name": "k8sContainer",
            "bat": "Baz",
            "res-dedicated.01": "res-1a",
            "res-dedicated.02": "res-2a",
            "{ } ( ) = ~ ! < > & | ^": "foobar",
        },
        [my_span],
        scope={
            "name": "scope-1",
            "version": "version-1",
            "dropped": 1,
            "attributes": {"scope-attr-str": "scope-attr-1"},
        },
    )
    root = make_span(
        tid,
        bytes.fromhex("0000000000040506"),
        b"",
        "RootSpan",
        1000 * SEC,
        1002 * SEC,
        status=0,
        kind=3,
        attrs={
            "foo": "Bar",
            "parent": True,
            "span-dedicated.01": "span-1b",
            "span-dedicated.02": "span-2b",
            "{ } ( ) = ~ ! < > & | ^": "foobaz",
        },
    )
    add_resource_spans(
        data,
        {"service.name": "RootService", "res-dedicated.01": "res-1b", "res-dedicated.02": "res-2b"},
        [root],
    )
    s3 = make_span(
        tid,
        bytes.fromhex("0000000000070809"),
        bytes.fromhex("0000000000040506"),
        "",
        1000 * SEC,
        1001 * SEC,
        status=1,
        kind=4,
        attrs={"child2": True},
    )
    add_resource_spans(data, {"service.name": "Service3"}, [s3])
    broken = make_span(
        tid,
        BROKEN_SPAN_ID,
        bytes.fromhex("00000000cafebabe"),
        "BrokenSpan",
        1000 * SEC,
        1001 * SEC,
        status=1,
        kind=0,
        attrs={"broken": True},
    )
    add_resource_spans(data, {"service.name": "BrokenService"}, [broken])
    return data


def load_cases() -> dict:
    """The fixture cases ({} without the conformance data: tests over them skip, see conformance.py)."""
    return load_yaml(FIXTURE_CASES)


def substitute(text: str) -> str:
    """Replace the fixture placeholders with this fixture's trace ID."""
    return text.replace("<TRACE_ID_HEX>", TRACE_ID_A_HEX)


def expected_span_id(hex16: str) -> str:
    """The expected span ID as this fixture prints it (BrokenSpan substituted)."""
    return BROKEN_SPAN_ID.hex() if hex16 == "0000000000000000" else hex16


def fixture_a_with_filler() -> TracesData:
    """Fixture A plus a filler trace from `test-service` (upstream's block holds such traces)."""
    data = fixture_a()
    tid = bytes([0xAB] * 16)
    filler = make_span(tid, bytes([0xAB] * 8), b"", "filler", 5 * 10**9, 6 * 10**9, attrs={"foo": "other"})
    add_resource_spans(data, {"service.name": "test-service"}, [filler])
    return data

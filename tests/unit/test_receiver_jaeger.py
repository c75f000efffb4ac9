"""Jaeger Thrift receivers: real jaeger-client spans (compact and binary agent datagrams, the HTTP body) decoded
field by field, and bad input refused. No sockets (the UDP listeners: tests/e2e/test_receiver_jaeger_udp.py)."""

from __future__ import annotations

import socket

import pytest
from jaeger_client import Tracer
from jaeger_client import thrift as jaeger_thrift_util
from jaeger_client.reporter import InMemoryReporter
from jaeger_client.sampler import ConstSampler
from jaeger_client.thrift_gen.agent import Agent
from jaeger_client.thrift_gen.jaeger import ttypes
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from opentracing import child_of, follows_from
from thrift.protocol import TBinaryProtocol
from thrift.Thrift import TMessageType
from thrift.transport import TTransport
from thrift.TSerialization import serialize

from tempo_lite.errors import InvalidRequest
from tempo_lite.receivers.jaeger import decode_jaeger_agent_datagram, decode_jaeger_thrift_http

U64 = (1 << 64) - 1


def attrs(kvs) -> dict:
    """Attributes as {key: (type, value)} so tests check value types, not just values."""
    out = {}
    for kv in kvs:
        kind = kv.value.WhichOneof("value")
        out[kv.key] = (kind, getattr(kv.value, kind))
    return out


def all_spans(request) -> list[tuple]:
    return [(rs, ss, span) for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans]


def record_workload(tracer: Tracer) -> dict:
    """A server span with typed tags and a log, a client child in error, and a FOLLOWS_FROM consumer."""
    root = tracer.start_span(
        "GET /orders",
        tags={
            "span.kind": "server",
            "http.status_code": 200,
            "cache.hit": True,
            "ratio": 0.25,
            "w3c.tracestate": "vendor=abc",
            "otel.library.name": "orders-lib",
            "otel.library.version": "1.2.3",
        },
    )
    root.log_kv({"event": "cache-miss", "key": "order-7", "attempt": 2})
    child = tracer.start_span("SELECT orders", child_of=root, tags={"span.kind": "client", "error": True})
    child.set_tag("otel.status_description", "connection reset")
    child.finish()
    other = tracer.start_span("enqueue", tags={"span.kind": "producer"})
    other.finish()
    consumer = tracer.start_span(
        "consume",
        references=[follows_from(root.context), child_of(other.context)],
        tags={"span.kind": "consumer"},
    )
    consumer.finish()
    root.finish()
    return {"root": root, "child": child, "other": other, "consumer": consumer}


def expected_ids(jspan) -> tuple[bytes, bytes]:
    return (jspan.trace_id & ((1 << 128) - 1)).to_bytes(16, "big"), (jspan.span_id & U64).to_bytes(8, "big")


def check_workload(request, spans: dict, service: str) -> None:
    found = {span.name: (rs, ss, span) for rs, ss, span in all_spans(request)}
    assert set(found) == {"GET /orders", "SELECT orders", "enqueue", "consume"}

    rs, ss, root = found["GET /orders"]
    resource = attrs(rs.resource.attributes)
    assert resource["service.name"] == ("string_value", service)
    assert resource["host.name"] == ("string_value", socket.gethostname())
    assert resource["opencensus.exporterversion"][1].startswith("Jaeger-Python-")
    assert "jaeger.version" not in resource and "hostname" not in resource
    assert resource["deployment"] == ("string_value", "ci")

    trace_id, span_id = expected_ids(spans["root"])
    assert root.trace_id == trace_id and root.span_id == span_id
    assert root.parent_span_id == b""
    assert root.kind == Span.SPAN_KIND_SERVER
    assert root.flags == 0x01  # sampled
    start_us = jaeger_thrift_util.timestamp_micros(spans["root"].start_time)
    duration_us = jaeger_thrift_util.timestamp_micros(spans["root"].end_time - spans["root"].start_time)
    assert root.start_time_unix_nano == start_us * 1000
    assert root.end_time_unix_nano == (start_us + duration_us) * 1000
    assert root.trace_state == "vendor=abc"
    assert (ss.scope.name, ss.scope.version) == ("orders-lib", "1.2.3")
    root_attrs = attrs(root.attributes)
    assert root_attrs["http.status_code"] == ("int_value", 200)
    assert root_attrs["cache.hit"] == ("bool_value", True)
    assert root_attrs["ratio"] == ("double_value", 0.25)
    for removed in ("span.kind", "w3c.tracestate", "otel.library.name", "otel.library.version"):
        assert removed not in root_attrs
    assert root.status.code == Status.STATUS_CODE_UNSET  # 200 on a server span
    [event] = root.events
    assert event.name == "cache-miss"
    assert attrs(event.attributes) == {"key": ("string_value", "order-7"), "attempt": ("int_value", 2)}
    assert event.time_unix_nano >= root.start_time_unix_nano

    _, child_ss, child = found["SELECT orders"]
    assert child_ss.scope.name == ""
    assert child.trace_id == trace_id
    assert child.parent_span_id == span_id
    assert child.kind == Span.SPAN_KIND_CLIENT
    assert child.status.code == Status.STATUS_CODE_ERROR
    assert child.status.message == "connection reset"
    assert "error" not in attrs(child.attributes)
    assert "otel.status_description" not in attrs(child.attributes)
    assert len(child.links) == 0

    _, _, consumer = found["consume"]
    assert consumer.kind == Span.SPAN_KIND_CONSUMER
    # jaeger-client makes the first reference's span the parent (a FOLLOWS_FROM here); the collector only
    # folds a CHILD_OF reference to the parent into parent_span_id, so both references stay links.
    other_trace, other_id = expected_ids(spans["other"])
    assert consumer.trace_id == trace_id and consumer.parent_span_id == span_id
    links = [
        (link.trace_id, link.span_id, attrs(link.attributes)["opentracing.ref_type"][1]) for link in consumer.links
    ]
    assert links == [(trace_id, span_id, "follows_from"), (other_trace, other_id, "child_of")]


def in_memory_batch(service: str = "orders") -> tuple[ttypes.Batch, dict]:
    reporter = InMemoryReporter()
    tracer = Tracer(service_name=service, reporter=reporter, sampler=ConstSampler(True), tags={"deployment": "ci"})
    spans = record_workload(tracer)
    process = jaeger_thrift_util.make_process(service_name=service, tags=tracer.tags, max_length=1024)
    batch = jaeger_thrift_util.make_jaeger_batch(spans=reporter.get_spans(), process=process)
    return batch, spans


def test_http_binary_batch_from_jaeger_client_decodes_field_by_field():
    batch, spans = in_memory_batch()
    # jaeger-client's generated code writes `binary` through writeString (a str, UTF-8 encoded), so the
    # payload is given as ASCII text; on the wire it is the bytes 00 01 'r' 'a' 'w'.
    binary = ttypes.Tag(key="payload", vType=ttypes.TagType.BINARY, vBinary="\x00\x01raw")
    batch.spans[0].tags.append(binary)
    body = serialize(batch, TBinaryProtocol.TBinaryProtocolFactory())

    request = decode_jaeger_thrift_http(body)

    check_workload(request, spans, "orders")
    first = next(
        span
        for _, _, span in all_spans(request)
        if span.span_id == batch.spans[0].spanId.to_bytes(8, "big", signed=True)
    )
    assert attrs(first.attributes)["payload"] == ("bytes_value", b"\x00\x01raw")


def emit_batch_message(batch: ttypes.Batch, compact: bool) -> bytes:
    buffer = TTransport.TMemoryBuffer()
    if compact:
        from thrift.protocol import TCompactProtocol

        protocol = TCompactProtocol.TCompactProtocol(buffer)
    else:
        protocol = TBinaryProtocol.TBinaryProtocol(buffer)
    # What jaeger-client's Agent.Client.send_emitBatch writes (its Client needs a tornado transport).
    protocol.writeMessageBegin("emitBatch", TMessageType.ONEWAY, 1)
    Agent.emitBatch_args(batch=batch).write(protocol)
    protocol.writeMessageEnd()
    return buffer.getvalue()


def test_compact_and_binary_datagrams_decode_to_the_same_request():
    batch, _ = in_memory_batch()
    compact = decode_jaeger_agent_datagram(emit_batch_message(batch, compact=True), compact=True)
    binary = decode_jaeger_agent_datagram(emit_batch_message(batch, compact=False), compact=False)
    assert compact == binary
    assert len(all_spans(compact)) == 4


def make_span(**overrides) -> ttypes.Span:
    fields = dict(
        traceIdLow=-2,
        traceIdHigh=0,
        spanId=7,
        parentSpanId=0,
        operationName="op",
        flags=0,
        startTime=1_700_000_000_000_000,
        duration=1500,
        tags=[],
        logs=[],
        references=[],
    )
    fields.update(overrides)
    return ttypes.Span(**fields)


def decode_one(span: ttypes.Span) -> Span:
    batch = ttypes.Batch(process=ttypes.Process(serviceName="svc", tags=[]), spans=[span])
    [(_, _, out)] = all_spans(decode_jaeger_thrift_http(serialize(batch)))
    return out


def tag(key, **value) -> ttypes.Tag:
    vtype = {
        "vStr": ttypes.TagType.STRING,
        "vBool": ttypes.TagType.BOOL,
        "vLong": ttypes.TagType.LONG,
        "vDouble": ttypes.TagType.DOUBLE,
    }[next(iter(value))]
    return ttypes.Tag(key=key, vType=vtype, **value)


def test_signed_wire_ids_become_unsigned_big_endian_bytes():
    out = decode_one(make_span(traceIdHigh=-1, traceIdLow=-2, spanId=-3))
    assert out.trace_id == b"\xff" * 8 + b"\xff" * 7 + b"\xfe"
    assert out.span_id == b"\xff" * 7 + b"\xfd"
    assert out.start_time_unix_nano == 1_700_000_000_000_000_000
    assert out.end_time_unix_nano == 1_700_000_000_001_500_000
    assert out.flags == 0


def test_parent_comes_from_first_child_of_reference_when_parent_span_id_is_zero():
    refs = [
        ttypes.SpanRef(refType=ttypes.SpanRefType.FOLLOWS_FROM, traceIdLow=-2, traceIdHigh=0, spanId=11),
        ttypes.SpanRef(refType=ttypes.SpanRefType.CHILD_OF, traceIdLow=-2, traceIdHigh=0, spanId=12),
        ttypes.SpanRef(refType=ttypes.SpanRefType.CHILD_OF, traceIdLow=5, traceIdHigh=0, spanId=13),
    ]
    out = decode_one(make_span(references=refs))
    assert out.parent_span_id == (12).to_bytes(8, "big")
    assert [
        (link.trace_id[-1], link.span_id[-1], attrs(link.attributes)["opentracing.ref_type"][1]) for link in out.links
    ] == [(0xFE, 11, "follows_from"), (5, 13, "child_of")]


def test_follows_from_is_parent_when_no_child_of_reference():
    refs = [ttypes.SpanRef(refType=ttypes.SpanRefType.FOLLOWS_FROM, traceIdLow=-2, traceIdHigh=0, spanId=11)]
    out = decode_one(make_span(references=refs))
    assert out.parent_span_id == (11).to_bytes(8, "big")
    assert [link.span_id for link in out.links] == [(11).to_bytes(8, "big")]  # only CHILD_OF is folded


@pytest.mark.parametrize(
    ("tags", "kind", "code", "message", "left"),
    [
        ([tag("otel.status_code", vStr="OK")], Span.SPAN_KIND_UNSPECIFIED, Status.STATUS_CODE_OK, "", {}),
        (
            [tag("otel.status_code", vStr="error"), tag("otel.status_description", vStr="bad")],
            Span.SPAN_KIND_UNSPECIFIED,
            Status.STATUS_CODE_ERROR,
            "bad",
            {},
        ),
        (
            [tag("error", vBool=True), tag("otel.status_code", vStr="OK")],
            Span.SPAN_KIND_UNSPECIFIED,
            Status.STATUS_CODE_ERROR,
            "",
            {},
        ),
        (
            [tag("error", vStr="true")],
            Span.SPAN_KIND_UNSPECIFIED,
            Status.STATUS_CODE_UNSET,
            "",
            {"error": ("string_value", "true")},
        ),
        (
            [tag("span.kind", vStr="client"), tag("http.status_code", vLong=404)],
            Span.SPAN_KIND_CLIENT,
            Status.STATUS_CODE_ERROR,
            "",
            {"http.status_code": ("int_value", 404)},
        ),
        (
            [tag("span.kind", vStr="server"), tag("http.status_code", vLong=404)],
            Span.SPAN_KIND_SERVER,
            Status.STATUS_CODE_UNSET,
            "",
            {"http.status_code": ("int_value", 404)},
        ),
        (
            [
                tag("span.kind", vStr="server"),
                tag("http.status_code", vStr="503"),
                tag("http.status_message", vStr="unavailable"),
            ],
            Span.SPAN_KIND_SERVER,
            Status.STATUS_CODE_ERROR,
            "unavailable",
            {"http.status_code": ("string_value", "503"), "http.status_message": ("string_value", "unavailable")},
        ),
        ([tag("span.kind", vStr="internal")], Span.SPAN_KIND_INTERNAL, Status.STATUS_CODE_UNSET, "", {}),
    ],
)
def test_status_and_kind_follow_the_collector_rules(tags, kind, code, message, left):
    out = decode_one(make_span(tags=tags))
    assert out.kind == kind
    assert (out.status.code, out.status.message) == (code, message)
    assert attrs(out.attributes) == left


def test_log_without_event_field_keeps_fields_and_empty_name():
    logs = [ttypes.Log(timestamp=1_700_000_000_000_100, fields=[tag("message", vStr="hi")])]
    out = decode_one(make_span(logs=logs))
    [event] = out.events
    assert event.name == ""
    assert event.time_unix_nano == 1_700_000_000_000_100_000
    assert attrs(event.attributes) == {"message": ("string_value", "hi")}


def test_empty_batch_gives_empty_request():
    assert len(decode_jaeger_thrift_http(serialize(ttypes.Batch())).resource_spans) == 0


@pytest.mark.parametrize("cut", [1, 10, 57])
def test_truncated_http_batch_is_invalid_request(cut):
    body = serialize(in_memory_batch()[0])
    with pytest.raises(InvalidRequest, match="jaeger thrift"):
        decode_jaeger_thrift_http(body[:cut])


def test_garbage_and_wrong_method_datagrams_are_invalid_requests():
    batch, _ = in_memory_batch()
    with pytest.raises(InvalidRequest):
        decode_jaeger_agent_datagram(b"\x00\x01\x02", compact=True)
    with pytest.raises(InvalidRequest):
        decode_jaeger_agent_datagram(emit_batch_message(batch, compact=True)[:-5], compact=True)
    buffer = TTransport.TMemoryBuffer()
    protocol = TBinaryProtocol.TBinaryProtocol(buffer)
    protocol.writeMessageBegin("emitZipkinBatch", 4, 0)
    protocol.writeStructBegin("x")
    protocol.writeFieldStop()
    protocol.writeStructEnd()
    protocol.writeMessageEnd()
    with pytest.raises(InvalidRequest, match="emitZipkinBatch"):
        decode_jaeger_agent_datagram(buffer.getvalue(), compact=False)


def test_a_large_batch_decodes_every_span():
    # Decode speed is measured by bench/decode_parse.py, not asserted here.
    batch, _ = in_memory_batch()
    batch.spans = batch.spans * 250  # 1000 spans
    request = decode_jaeger_thrift_http(serialize(batch))
    assert len(all_spans(request)) == 1000

"""Zipkin JSON receivers: v2 and v1 documents decoded field by field, and bad input refused. No sockets
(what the real OpenTelemetry Zipkin exporter sends is checked in tests/e2e/test_receiver_zipkin_exporter.py)."""

from __future__ import annotations

import json

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from tempo_lite.errors import InvalidRequest
from tempo_lite.receivers.zipkin import decode_zipkin_v2_json
from tempo_lite.receivers.zipkin_v1 import decode_zipkin_v1_json


def attrs(kvs) -> dict:
    out = {}
    for kv in kvs:
        kind = kv.value.WhichOneof("value")
        out[kv.key] = (kind, getattr(kv.value, kind))
    return out


def all_spans(request) -> list[tuple]:
    return [(rs, ss, span) for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans]


def span_json(**overrides) -> dict:
    span = {
        "traceId": "5af7183fb1d4cf5f",
        "id": "352bff9a74ca9ad2",
        "name": "get /api",
        "timestamp": 1_556_604_172_355_737,
        "duration": 1431,
        "localEndpoint": {"serviceName": "frontend", "ipv4": "192.168.99.1", "port": 3306},
    }
    span.update(overrides)
    return span


def decode_one(**overrides) -> tuple:
    [(rs, ss, span)] = all_spans(decode_zipkin_v2_json(json.dumps([span_json(**overrides)]).encode()))
    return rs, ss, span


def test_64_bit_trace_id_is_left_padded_and_times_become_nanoseconds():
    _, _, span = decode_one()
    assert span.trace_id == bytes(8) + bytes.fromhex("5af7183fb1d4cf5f")
    assert span.span_id == bytes.fromhex("352bff9a74ca9ad2")
    assert span.start_time_unix_nano == 1_556_604_172_355_737_000
    assert span.end_time_unix_nano == 1_556_604_172_357_168_000
    assert span.kind == Span.SPAN_KIND_UNSPECIFIED
    assert attrs(span.attributes) == {
        "net.host.ip": ("string_value", "192.168.99.1"),
        "net.host.port": ("int_value", 3306),
    }


def test_remote_endpoint_kind_tracestate_and_span_kind_tag():
    _, _, span = decode_one(
        kind="PRODUCER",
        parentId="0000000000000001",
        remoteEndpoint={"serviceName": "kafka", "ipv6": "::1", "port": 9092},
        tags={"w3c.tracestate": "a=b", "topic": "orders"},
    )
    assert span.kind == Span.SPAN_KIND_PRODUCER
    assert span.parent_span_id == (1).to_bytes(8, "big")
    assert span.trace_state == "a=b"
    got = attrs(span.attributes)
    assert got["peer.service"] == ("string_value", "kafka")
    assert got["net.peer.ip"] == ("string_value", "::1")
    assert got["net.peer.port"] == ("int_value", 9092)
    assert got["topic"] == ("string_value", "orders")
    assert "w3c.tracestate" not in got
    _, _, internal = decode_one(tags={"span.kind": "internal"})
    assert internal.kind == Span.SPAN_KIND_INTERNAL and "span.kind" not in attrs(internal.attributes)


@pytest.mark.parametrize(
    ("tags", "code", "message", "left"),
    [
        ({"otel.status_code": "STATUS_CODE_OK"}, Status.STATUS_CODE_OK, "", {}),
        (
            {"otel.status_code": "ERROR", "otel.status_description": "nope"},
            Status.STATUS_CODE_ERROR,
            "nope",
            {},
        ),
        ({"error": "true"}, Status.STATUS_CODE_ERROR, "", {}),
        ({"error": "timeout"}, Status.STATUS_CODE_ERROR, "", {"error": "timeout"}),
        ({"http.status_code": "500"}, Status.STATUS_CODE_UNSET, "", {"http.status_code": "500"}),
    ],
)
def test_status_from_tags(tags, code, message, left):
    _, _, span = decode_one(localEndpoint={"serviceName": "svc"}, tags=tags)
    assert (span.status.code, span.status.message) == (code, message)
    assert {k: v for k, (_, v) in attrs(span.attributes).items()} == left


def test_spans_group_by_service_then_library_and_resource_tags_move_to_resource():
    spans = [
        span_json(id="0000000000000001", localEndpoint={"serviceName": "b"}, tags={"host.name": "h2"}),
        span_json(
            id="0000000000000002",
            localEndpoint={"serviceName": "a"},
            tags={"otel.library.name": "lib2", "otel.library.version": "2"},
        ),
        span_json(id="0000000000000003", localEndpoint={"serviceName": "a"}, tags={"otel.library.name": "lib1"}),
        span_json(id="0000000000000004", localEndpoint={"serviceName": "b"}),
        span_json(id="0000000000000005", localEndpoint=None),
    ]
    request = decode_zipkin_v2_json(json.dumps(spans).encode())
    layout = [
        (
            attrs(rs.resource.attributes),
            [((ss.scope.name, ss.scope.version), [s.span_id[-1] for s in ss.spans]) for ss in rs.scope_spans],
        )
        for rs in request.resource_spans
    ]
    assert layout == [
        ({}, [(("", ""), [5])]),  # no local service: resource without service.name, sorted as the collector
        ({"service.name": ("string_value", "a")}, [(("lib1", ""), [3]), (("lib2", "2"), [2])]),
        (
            {"service.name": ("string_value", "b"), "host.name": ("string_value", "h2")},
            [(("", ""), [1, 4])],
        ),
    ]
    for _, _, span in all_spans(request):
        assert not {"host.name", "otel.library.name", "otel.library.version"} & set(attrs(span.attributes))


def test_missing_timestamp_starts_at_zero_and_is_flagged():
    _, _, span = decode_one(timestamp=None, duration=5)
    assert (span.start_time_unix_nano, span.end_time_unix_nano) == (0, 5000)
    assert attrs(span.attributes)["otel.zipkin.absentField.startTime"] == ("bool_value", True)


def test_encoded_annotations_and_links_are_unpacked():
    link = '0102030405060708090a0b0c0d0e0f10|1112131415161718|k=v|{"peer":"x","n":2}|3'
    _, _, span = decode_one(
        annotations=[
            {"timestamp": 1_556_604_172_356_000, "value": 'retry|{"attempt":2,"why":"a|b"}|1'},
            {"timestamp": 1_556_604_172_356_001, "value": "plain"},
        ],
        tags={"otlp.link.0": link},
    )
    first, second = span.events
    assert first.name == "retry" and first.time_unix_nano == 1_556_604_172_356_000_000
    assert attrs(first.attributes) == {"attempt": ("int_value", 2), "why": ("string_value", "a|b")}
    assert first.dropped_attributes_count == 1
    assert second.name == "plain" and len(second.attributes) == 0
    [out_link] = span.links
    assert out_link.trace_id == bytes(range(1, 17))
    assert out_link.span_id == bytes(range(0x11, 0x19))
    assert out_link.trace_state == "k=v"
    assert attrs(out_link.attributes) == {"peer": ("string_value", "x"), "n": ("int_value", 2)}
    assert out_link.dropped_attributes_count == 3
    assert "otlp.link.0" not in attrs(span.attributes)


def test_parent_equal_to_own_id_is_dropped_and_shared_server_span_keeps_id():
    _, _, span = decode_one(parentId="352bff9a74ca9ad2", shared=True, kind="SERVER", debug=True)
    assert span.parent_span_id == b""
    assert span.span_id == bytes.fromhex("352bff9a74ca9ad2")


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"traceId": "1"}', "JSON array"),
        (json.dumps([span_json(traceId="xyz")]).encode(), "traceId"),
        (json.dumps([span_json(traceId="0" * 33)]).encode(), "traceId"),
        (json.dumps([span_json(traceId="0000000000000000")]).encode(), "zero"),
        (json.dumps([span_json(id="12345678901234567")]).encode(), "id"),
        (json.dumps([span_json(id=None)]).encode(), "id"),
        (json.dumps([span_json(parentId="zz")]).encode(), "parentId"),
        (json.dumps([span_json(tags={"n": 1})]).encode(), "tags"),
        (json.dumps([span_json(timestamp="soon")]).encode(), "timestamp"),
        (json.dumps([span_json(annotations=[{"timestamp": 1, "value": "x|{bad|0"}])]).encode(), "JSON"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_bad_v2_input_is_invalid_request(body, match):
    with pytest.raises(InvalidRequest, match=match):
        decode_zipkin_v2_json(body)


V1_SPAN = {
    "traceId": "0000000000000001000000000000000a",
    "id": "000000000000000b",
    "parentId": "000000000000000c",
    "name": "rpc",
    "annotations": [
        {"timestamp": 10, "value": "sr", "endpoint": {"serviceName": "api", "ipv4": "10.0.0.1", "port": 80}},
        {"timestamp": 12, "value": "cache miss", "endpoint": {"serviceName": "api"}},
        {"timestamp": 30, "value": "ss", "endpoint": {"serviceName": "api"}},
    ],
    "binaryAnnotations": [
        {"key": "lc", "value": "worker"},
        {"key": "http.status_code", "value": "503"},
        {"key": "census.status_description", "value": "overloaded"},
    ],
}


def test_v1_core_annotations_give_kind_times_endpoint_and_status():
    [(rs, _, span)] = all_spans(decode_zipkin_v1_json(json.dumps([V1_SPAN]).encode()))
    assert attrs(rs.resource.attributes) == {
        "service.name": ("string_value", "api"),
        "ipv4": ("string_value", "10.0.0.1"),
        "port": ("string_value", "80"),
    }
    assert span.trace_id == bytes.fromhex("0000000000000001000000000000000a")
    assert span.parent_span_id == bytes.fromhex("000000000000000c")
    assert span.kind == Span.SPAN_KIND_SERVER
    assert (span.start_time_unix_nano, span.end_time_unix_nano) == (10_000, 30_000)
    assert [(e.name, e.time_unix_nano) for e in span.events] == [("cache miss", 12_000)]
    assert attrs(span.attributes) == {
        "component": ("string_value", "worker"),
        "http.status_code": ("string_value", "503"),
    }
    assert span.status.code == Status.STATUS_CODE_ERROR


def test_v1_span_without_endpoint_uses_local_component_and_clock_stand_in():
    span = {
        "traceId": "000000000000000a",
        "id": "000000000000000b",
        "name": "job",
        "binaryAnnotations": [{"key": "lc", "value": "cron"}, {"key": "error", "value": "boom"}],
    }
    [(rs, _, out)] = all_spans(decode_zipkin_v1_json(json.dumps([span]).encode(), now_ns=123))
    assert attrs(rs.resource.attributes) == {"service.name": ("string_value", "cron")}
    assert (out.start_time_unix_nano, out.end_time_unix_nano) == (123, 123)
    assert attrs(out.attributes)["otel.zipkin.absentField.startTime"] == ("bool_value", True)
    assert out.status.code == Status.STATUS_CODE_ERROR
    assert "error" not in attrs(out.attributes)


@pytest.mark.parametrize(
    "span",
    [
        {**V1_SPAN, "traceId": "abc"},
        {**V1_SPAN, "id": "0b"},
        {**V1_SPAN, "parentId": "nothexnothexnoth"},
        {**V1_SPAN, "annotations": "sr"},
    ],
)
def test_bad_v1_input_is_invalid_request(span):
    with pytest.raises(InvalidRequest):
        decode_zipkin_v1_json(json.dumps([span]).encode())

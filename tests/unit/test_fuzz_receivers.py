"""OTLP/JSON, OTLP protobuf, Zipkin v2 and Zipkin v1 decoders under hostile bodies.

Every body either decodes or is refused with `InvalidRequest` (HTTP 400 with a message): deep nesting,
numbers of 100,000 digits, out-of-range and infinite numbers, NaN, lone surrogates, wrong types at any
place of an otherwise valid document, and arbitrary bytes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from fuzzing import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tempo_lite.errors import InvalidRequest
from tempo_lite.receivers.http_ingest import decode_otlp
from tempo_lite.receivers.otlp_json import decode_otlp_json
from tempo_lite.receivers.zipkin import decode_zipkin_v2_json
from tempo_lite.receivers.zipkin_v1 import decode_zipkin_v1_json

FUZZ = settings(max_examples=examples(200), deadline=None, suppress_health_check=[HealthCheck.too_slow])

TRACE, SPAN, PARENT = "0102030405060708090a0b0c0d0e0f10", "0102030405060708", "1112131415161718"

OTLP_JSON = {
    "resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]},
        "scopeSpans": [{
            "scope": {"name": "lib", "version": "1"},
            "spans": [{
                "traceId": TRACE, "spanId": SPAN, "parentSpanId": PARENT, "name": "op", "kind": 2,
                "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": 1700000000500000000,
                "attributes": [
                    {"key": "i", "value": {"intValue": "42"}}, {"key": "d", "value": {"doubleValue": 1.5}},
                    {"key": "b", "value": {"boolValue": True}},
                    {"key": "a", "value": {"arrayValue": {"values": [{"stringValue": "x"}, {"intValue": 7}]}}},
                    {"key": "k", "value": {"kvlistValue": {"values": [{"key": "n", "value": {"bytesValue": "AAE="}}]}}},
                ],
                "events": [{"timeUnixNano": "1700000000100000000", "name": "ev",
                            "attributes": [{"key": "e", "value": {"stringValue": "v"}}]}],
                "links": [{"traceId": TRACE, "spanId": PARENT, "attributes": []}],
                "status": {"code": 2, "message": "boom"},
                "droppedAttributesCount": 0, "flags": 1,
            }],
        }],
    }],
}
ZIPKIN_V2 = [{
    "traceId": TRACE, "id": SPAN, "parentId": PARENT, "name": "op", "kind": "SERVER",
    "timestamp": 1700000000000000, "duration": 500000, "shared": True, "debug": False,
    "localEndpoint": {"serviceName": "svc", "ipv4": "10.0.0.1", "port": 8080},
    "remoteEndpoint": {"serviceName": "peer", "ipv6": "::1", "port": 443},
    "tags": {"http.method": "GET", "otel.status_code": "ERROR", "error": "x", "otel.library.name": "lib",
             "otlp.link.0": f"{TRACE}|{PARENT}||{{\"n\":1,\"f\":1.5}}|0", "host.name": "h"},
    "annotations": [{"timestamp": 1700000000100000, "value": "ev|{\"a\":1,\"b\":\"x\"}|2"}],
}]
ZIPKIN_V1 = [{
    "traceId": TRACE, "id": SPAN, "parentId": PARENT, "name": "op", "timestamp": 1700000000000000,
    "duration": 500000,
    "annotations": [
        {"timestamp": 1700000000000000, "value": "sr",
         "endpoint": {"serviceName": "svc", "ipv4": "10.0.0.1", "port": 80}},
        {"timestamp": 1700000000500000, "value": "ss", "endpoint": {"serviceName": "svc"}},
        {"timestamp": 1700000000200000, "value": "custom"},
    ],
    "binaryAnnotations": [
        {"key": "lc", "value": "component"}, {"key": "http.status_code", "value": "500"},
        {"key": "n", "value": 3}, {"key": "b", "value": True}, {"key": "census.status_code", "value": "2"},
    ],
}]

DECODERS: dict[str, tuple[Callable[[bytes], Any], Any]] = {
    "otlp-json": (decode_otlp_json, OTLP_JSON),
    "zipkin-v2": (decode_zipkin_v2_json, ZIPKIN_V2),
    "zipkin-v1": (lambda body: decode_zipkin_v1_json(body, now_ns=1), ZIPKIN_V1),
}

# Raw JSON tokens that json.dumps cannot produce (too many digits for str(int), NaN, lone surrogates ...).
RAW_TOKENS = [
    "9" * 100_000, "-" + "9" * 5000, "1" + "0" * 30, "18446744073709551616", "-9223372036854775809", "1e999",
    "-1e999", "1e-999", "NaN", "Infinity", "-Infinity", "0." + "1" * 5000, "-1", "1.5", "0", "true", "null",
    "[]", "{}", '"\\ud800"', '"\\udc00x"', '"a\\ud83d"', '"\\u0000"', '"zz"', '"' + "f" * 40 + '"',
    "[" * 3000 + "]" * 3000, '{"a":' * 1500 + "1" + "}" * 1500, "[" * 200 + "1" + "]" * 200,
    '"' + "a" * 5000 + '"', '"|||"', '"x|{\\"a\\":' + "[" * 2000 + '}|1"', '"x|{\\"a\\":1e999}|1"',
    '"x|{\\"a\\":' + "9" * 5000 + '}|1"', '"x|{}|99999999999999999999"', '"x|{}|\\u00b2"',
]
PLACEHOLDER = "\x00hostile\x00"

json_leaves = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20), st.sampled_from(["", TRACE, SPAN, "SERVER", "ERROR", "true", "1700000000000000000"]),
)
json_values = st.recursive(
    json_leaves, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(doc, dict):
        for key, value in doc.items():
            out += paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            out += paths(value, (*prefix, i))
    return out


def replaced(doc: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(doc, dict):
        return {**doc, head: replaced(doc[head], rest, value)}
    return [replaced(v, rest, value) if i == head else v for i, v in enumerate(doc)]


def splice(doc: Any, path: tuple, token: str) -> bytes:
    """`doc` as JSON text with the value at `path` replaced by the raw JSON `token`."""
    text = json.dumps(replaced(doc, path, PLACEHOLDER))
    return text.replace(json.dumps(PLACEHOLDER), token).encode()


def mutated(doc: Any, path: tuple, value: Any) -> bytes:
    """`doc` with the value at `path` replaced: a JSON value, or a raw token spliced into the text."""
    if isinstance(value, str) and value in RAW_TOKENS:
        return splice(doc, path, value)
    return json.dumps(replaced(doc, path, value)).encode()


def decodes_or_refuses(name: str, body: bytes) -> None:
    decoder, _ = DECODERS[name]
    try:
        request = decoder(body)
    except InvalidRequest as exc:
        assert exc.http_status == 400 and exc.message
        return
    assert isinstance(request, ExportTraceServiceRequest)
    request.SerializeToString()  # what the distributor does next: every field holds a valid value


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_the_seed_documents_decode(name: str) -> None:
    decoder, doc = DECODERS[name]
    request = decoder(json.dumps(doc).encode())
    assert sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans) == 1


@pytest.mark.parametrize("name", sorted(DECODERS))
@FUZZ
@given(data=st.data())
def test_hostile_value_anywhere_in_a_valid_document_decodes_or_is_refused(name: str, data: st.DataObject) -> None:
    doc = DECODERS[name][1]
    path = data.draw(st.sampled_from(paths(doc)))
    value = data.draw(st.one_of(st.sampled_from(RAW_TOKENS), json_values))
    decodes_or_refuses(name, mutated(doc, path, value))


@pytest.mark.parametrize("name", sorted(DECODERS))
@FUZZ
@given(value=json_values)
def test_arbitrary_json_decodes_or_is_refused(name: str, value: Any) -> None:
    decodes_or_refuses(name, json.dumps(value).encode())


@pytest.mark.parametrize("name", sorted(DECODERS))
@FUZZ
@given(body=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass"))))
def test_arbitrary_bytes_decode_or_are_refused(name: str, body: bytes) -> None:
    decodes_or_refuses(name, body)


@pytest.mark.parametrize("name", sorted(DECODERS))
@pytest.mark.parametrize("token", RAW_TOKENS[:12] + RAW_TOKENS[19:22] + RAW_TOKENS[25:28])
def test_each_hostile_token_in_each_place_decodes_or_is_refused(name: str, token: str) -> None:
    doc = DECODERS[name][1]
    for path in paths(doc):
        decodes_or_refuses(name, mutated(doc, path, token))


_OTLP_PB = decode_otlp(json.dumps(OTLP_JSON).encode(), "application/json").SerializeToString()


@FUZZ
@given(data=st.data())
def test_otlp_protobuf_bit_flips_and_arbitrary_bytes_decode_or_are_refused(data: st.DataObject) -> None:
    body = bytearray(_OTLP_PB)
    for bit in data.draw(st.lists(st.integers(0, len(body) * 8 - 1), max_size=8)):
        body[bit // 8] ^= 1 << (bit % 8)
    for candidate in (bytes(body), data.draw(st.binary(max_size=300))):
        try:
            decode_otlp(candidate, "application/x-protobuf")
        except InvalidRequest as exc:
            assert exc.http_status == 400

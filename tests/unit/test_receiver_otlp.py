"""The OTLP/HTTP receiver's decoding (pure: no sockets; the server end to end is tests/e2e): bodies by
Content-Type, hex IDs in OTLP/JSON, Content-Encoding undone within the size bound, and each refusal with
its status and a message naming what was wrong."""

from __future__ import annotations

import gzip
import json
import zlib

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData
from traceql_fixtures import fixture_a

from tempo_lite.errors import InvalidRequest, PayloadTooLarge, UnsupportedMediaType
from tempo_lite.receivers.http_ingest import decode_otlp, decompress
from tempo_lite.receivers.otlp_json import decode_otlp_json, encode_otlp_json

TRACE, SPAN, LINKED = "0102030405060708090a0b0c0d0e0f10", "1112131415161718", "2122232425262728"


def _request() -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest(resource_spans=fixture_a().resource_spans)


def _json_doc(**span: object) -> bytes:
    fields = {"traceId": TRACE, "spanId": SPAN, "name": "op", **span}
    return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [fields]}]}]}).encode()


def test_protobuf_and_json_bodies_decode_to_the_same_request() -> None:
    want = _request()
    for content_type in ("application/x-protobuf", "application/protobuf"):
        assert decode_otlp(want.SerializeToString(), content_type) == want
    as_json = json.dumps(encode_otlp_json(TracesData(resource_spans=want.resource_spans))).encode()
    assert decode_otlp(as_json, "application/json") == want


def test_otlp_json_ids_are_hex_in_spans_and_links() -> None:
    body = _json_doc(parentSpanId="", links=[{"traceId": TRACE, "spanId": LINKED}])
    span = decode_otlp_json(body).resource_spans[0].scope_spans[0].spans[0]
    assert span.trace_id.hex() == TRACE and span.span_id.hex() == SPAN and span.parent_span_id == b""
    assert span.links[0].span_id.hex() == LINKED
    doc = encode_otlp_json(TracesData(resource_spans=decode_otlp_json(body).resource_spans))
    written = doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert (written["traceId"], written["spanId"], written["links"][0]["spanId"]) == (TRACE, SPAN, LINKED)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (_json_doc(spanId="zz"), "resourceSpans[0].scopeSpans[0].spans[0].spanId: invalid hex id 'zz'"),
        (_json_doc(traceId=7), "resourceSpans[0].scopeSpans[0].spans[0].traceId: expected a hex string"),
        (_json_doc(links=[{"traceId": TRACE, "spanId": "abc"}]), "spans[0].links[0].spanId: invalid hex id"),
        (b"[1, 2]", "expected an object with resourceSpans"),
        (b'{"resourceSpans": [', "invalid OTLP/JSON"),
        (_json_doc(startTimeUnixNano="soon"), "invalid OTLP/JSON"),
    ],
)
def test_malformed_otlp_json_is_refused_naming_the_place(body: bytes, message: str) -> None:
    with pytest.raises(InvalidRequest) as exc:
        decode_otlp(body, "application/json")
    assert exc.value.http_status == 400 and message in exc.value.message


def test_a_bad_protobuf_body_is_400_and_an_unknown_content_type_415() -> None:
    with pytest.raises(InvalidRequest) as bad:
        decode_otlp(b"\xff\xff\xff", "application/x-protobuf")
    assert bad.value.http_status == 400 and bad.value.message.startswith("invalid OTLP protobuf")
    with pytest.raises(UnsupportedMediaType) as unsupported:
        decode_otlp(b"{}", "text/plain")
    assert unsupported.value.http_status == 415 and "application/x-protobuf or application/json" in (
        unsupported.value.message)


def test_gzip_and_deflate_bodies_are_undone_and_identity_passes_through() -> None:
    body = _request().SerializeToString()
    assert decompress(body, "", 1 << 20) is body and decompress(body, " Identity ", 1 << 20) is body
    assert decompress(gzip.compress(body), "gzip", 1 << 20) == body
    assert decompress(gzip.compress(body), "X-GZIP", 1 << 20) == body
    assert decompress(zlib.compress(body), "deflate", 1 << 20) == body
    raw = zlib.compressobj(wbits=-15)
    assert decompress(raw.compress(body) + raw.flush(), "deflate", 1 << 20) == body  # raw deflate, as some send
    assert decompress(gzip.compress(body), "gzip", len(body)) == body  # exactly at the bound


def test_a_body_past_the_bound_after_decompression_is_413_and_bad_encodings_are_refused() -> None:
    bomb = gzip.compress(b"\0" * (1 << 20))
    with pytest.raises(PayloadTooLarge) as big:
        decompress(bomb, "gzip", 1000)
    assert big.value.http_status == 413 and "1000 bytes" in big.value.message
    with pytest.raises(InvalidRequest, match="truncated gzip"):
        decompress(gzip.compress(b"x" * 1000)[:-10], "gzip", 1 << 20)
    with pytest.raises(InvalidRequest, match="invalid deflate request body"):
        decompress(b"not deflate", "deflate", 1 << 20)
    with pytest.raises(UnsupportedMediaType, match="'br'"):
        decompress(b"x", "br", 1 << 20)

"""Zipkin protobuf v2 (`POST /api/v2/spans`, `application/x-protobuf`): a ListOfSpans translates exactly as
the same spans in JSON v2, bad IDs and bodies are refused with 400, and py_zipkin's protobuf encoder (run
in its own process, a real client) gets its spans stored."""

from __future__ import annotations

import sys
import textwrap

import httpx
import pytest
import trio
from conftest import Running
from test_receivers_e2e import fetch, span_list

from tempo_lite._gen import zipkin_pb2
from tempo_lite.errors import InvalidRequest
from tempo_lite.receivers.zipkin import decode_zipkin_v2_json
from tempo_lite.receivers.zipkin_proto import decode_zipkin_v2_proto

TRACE = bytes.fromhex("0102030405060708090a0b0c0d0e0f10")


def _spans() -> zipkin_pb2.ListOfSpans:
    out = zipkin_pb2.ListOfSpans()
    root = out.spans.add(trace_id=TRACE, id=bytes.fromhex("00000000000000a1"), kind=zipkin_pb2.Span.SERVER,
                         name="get /cart", timestamp=1_700_000_000_123_456, duration=2_500, shared=True,
                         annotations=[zipkin_pb2.Annotation(timestamp=1_700_000_000_124_000, value="wr")])
    root.local_endpoint.service_name = "cart"
    root.local_endpoint.ipv4 = bytes([10, 0, 0, 7])
    root.local_endpoint.port = 8080
    root.remote_endpoint.service_name = "web"
    root.remote_endpoint.ipv6 = bytes(15) + b"\x01"
    root.tags.update({"http.method": "GET", "error": "timeout", "otel.library.name": "lib"})
    out.spans.add(trace_id=TRACE[8:], id=bytes.fromhex("00000000000000b2"), parent_id=bytes.fromhex("00000000000000a1"),
                  kind=zipkin_pb2.Span.CLIENT, name="select", timestamp=1_700_000_000_124_000, duration=1_000,
                  debug=True)
    out.spans.add(trace_id=TRACE, id=bytes.fromhex("00000000000000c3"), name="no-time")  # local, no timestamp
    return out


JSON_EQUIVALENT = [
    {"traceId": TRACE.hex(), "id": "00000000000000a1", "kind": "SERVER", "name": "get /cart",
     "timestamp": 1_700_000_000_123_456, "duration": 2_500, "shared": True,
     "annotations": [{"timestamp": 1_700_000_000_124_000, "value": "wr"}],
     "localEndpoint": {"serviceName": "cart", "ipv4": "10.0.0.7", "port": 8080},
     "remoteEndpoint": {"serviceName": "web", "ipv6": "::1"},
     "tags": {"error": "timeout", "http.method": "GET", "otel.library.name": "lib"}},  # map: sorted by key
    {"traceId": TRACE[8:].hex(), "id": "00000000000000b2", "parentId": "00000000000000a1", "kind": "CLIENT",
     "name": "select", "timestamp": 1_700_000_000_124_000, "duration": 1_000, "debug": True},
    {"traceId": TRACE.hex(), "id": "00000000000000c3", "name": "no-time"},
]


def test_protobuf_spans_translate_like_their_json_form() -> None:
    import json

    got = decode_zipkin_v2_proto(_spans().SerializeToString())
    assert got == decode_zipkin_v2_json(json.dumps(JSON_EQUIVALENT).encode())
    assert sum(len(ss.spans) for rs in got.resource_spans for ss in rs.scope_spans) == 3


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda s: setattr(s.spans[0], "trace_id", b"\x01" * 5), "trace_id must be 8 or 16 bytes"),
    (lambda s: setattr(s.spans[0], "id", b"\x01" * 16), "id must be 8 bytes"),
    (lambda s: setattr(s.spans[0], "parent_id", b"\x01"), "parent_id must be 8 bytes"),
    (lambda s: setattr(s.spans[0].local_endpoint, "ipv4", b"\x01\x02"), "localEndpoint"),
    (lambda s: setattr(s.spans[0], "id", bytes(8)), "span 0"),  # zero ID: the JSON translator's rule
])
def test_bad_spans_are_refused(mutate, message: str) -> None:  # noqa: ANN001
    spans = _spans()
    mutate(spans)
    with pytest.raises(InvalidRequest, match=message):
        decode_zipkin_v2_proto(spans.SerializeToString())


def test_garbage_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="cannot decode ListOfSpans"):
        decode_zipkin_v2_proto(b"\x0a\xff\xff\xff\xff\x0f")


_CLIENT = textwrap.dedent('''
    import sys
    import httpx
    from py_zipkin import Encoding
    from py_zipkin.transport import BaseTransportHandler
    from py_zipkin.zipkin import zipkin_span

    class Http(BaseTransportHandler):
        def get_max_payload_bytes(self):
            return None

        def send(self, payload):
            r = httpx.post(sys.argv[1], content=payload, headers={"Content-Type": "application/x-protobuf"})
            print(r.status_code)

    with zipkin_span(service_name="pz-svc", span_name="checkout", transport_handler=Http(), sample_rate=100.0,
                     encoding=Encoding.V2_PROTO3, use_128bit_trace_id=True) as root:
        root.update_binary_annotations({"cart.items": "3"})
        with zipkin_span(service_name="pz-svc", span_name="charge"):
            pass
    print(root.zipkin_attrs.trace_id)
''')


@pytest.mark.slow
async def test_py_zipkin_protobuf_client_round_trip(tempo: Running, http: httpx.AsyncClient) -> None:
    url = tempo.url("zipkin") + "/api/v2/spans"
    done = await trio.run_process([sys.executable, "-c", _CLIENT, url], capture_stdout=True,
                                  capture_stderr=True, check=False)
    assert done.returncode == 0, done.stderr.decode()
    status, trace_hex = done.stdout.decode().split()
    assert status == "202"
    got = span_list(await fetch(http, tempo, trace_hex, 2))
    assert {s.name for s in got} == {"checkout", "charge"}
    r = await http.post(url, content=b"\x0a\x03\x0a\x01\x01", headers={"Content-Type": "application/x-protobuf"})
    assert r.status_code == 400 and "trace_id must be 8 or 16 bytes" in r.text

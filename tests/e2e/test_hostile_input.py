"""Each concrete hostile body from the fuzzing report, against the real HTTP endpoints: a 400 with a
message (never a 5xx), and the receiver still accepts a valid request afterwards."""

from __future__ import annotations

import json
import socket

import httpx
import pytest
import trio
from conftest import Running
from test_fuzz_jaeger import VALID as JAEGER_VALID
from test_fuzz_receivers import OTLP_JSON, ZIPKIN_V1, ZIPKIN_V2, splice
from test_receiver_jaeger import emit_batch_message, in_memory_batch
from thrift.protocol import TBinaryProtocol
from thrift.TSerialization import serialize

from tempo_lite.receivers.http_ingest import INLINE_PYTHON_DECODE_BYTES
from tempo_lite.receivers.jaeger_udp import JaegerUDPStatistics, serve_jaeger_udp

DEEP = "[" * 1000 + "]" * 1000
HUGE_NUMBER = "9" * 100_000

# (description, path into the seed document, raw JSON token spliced in there)
OTLP_CASES = [
    ("JSON nested 1,000 deep", ("resourceSpans", 0, "resource"), DEEP),
    ("100,000-digit number", ("resourceSpans", 0, "scopeSpans", 0, "spans", 0, "endTimeUnixNano"), HUGE_NUMBER),
    ("out-of-range number", ("resourceSpans", 0, "scopeSpans", 0, "spans", 0, "endTimeUnixNano"),
     "18446744073709551616"),
    ("infinite number", ("resourceSpans", 0, "scopeSpans", 0, "spans", 0, "kind"), "1e999"),
    ("NaN", ("resourceSpans", 0, "scopeSpans", 0, "spans", 0, "attributes", 1, "value", "doubleValue"), "NaN"),
    ("lone surrogate", ("resourceSpans", 0, "scopeSpans", 0, "spans", 0, "name"), '"\\ud800"'),
    ("lone surrogate as a key", ("resourceSpans", 0, "scopeSpans", 0, "spans", 0, "attributes", 0),
     '{"\\ud800": 1}'),
]
ZIPKIN_CASES = [
    ("JSON nested 1,000 deep", {"v2": (0, "tags"), "v1": (0, "binaryAnnotations")}, DEEP),
    ("100,000-digit number", {"v2": (0, "timestamp"), "v1": (0, "timestamp")}, HUGE_NUMBER),
    ("out-of-range number", {"v2": (0, "timestamp"), "v1": (0, "annotations", 0, "timestamp")},
     "18446744073709551616"),
    ("negative number", {"v2": (0, "duration"), "v1": (0, "annotations", 1, "timestamp")}, "-1"),
    ("infinite number", {"v2": (0, "duration"), "v1": (0, "duration")}, "1e999"),
    ("NaN", {"v2": (0, "timestamp"), "v1": (0, "timestamp")}, "NaN"),
    ("lone surrogate", {"v2": (0, "name"), "v1": (0, "name")}, '"\\ud800"'),
    ("port out of range", {"v2": (0, "localEndpoint", "port"), "v1": (0, "annotations", 0, "endpoint", "port")},
     "99999999999999999999"),
    # Past any recursion limit (tempo-lite raises it to 20,000 for TraceQL): 1,000 levels of lists in an
    # annotation's attributes are valid JSON, parsed and ignored (not a scalar) once the limit is raised.
    ("annotation attributes nested 100,000 deep", {"v2": (0, "annotations", 0, "value")},
     '"x|{\\"a\\":' + "[" * 100_000 + "]" * 100_000 + '}|1"'),
]


async def refused(http: httpx.AsyncClient, url: str, body: bytes, ctype: str) -> str:
    r = await http.post(url, content=body, headers={"Content-Type": ctype})
    assert r.status_code == 400, (r.status_code, r.text[:300])
    return r.text


@pytest.mark.parametrize("case, path, token", OTLP_CASES, ids=[c[0] for c in OTLP_CASES])
async def test_otlp_json_hostile_body_is_a_400(
    tempo: Running, http: httpx.AsyncClient, case: str, path: tuple, token: str
) -> None:
    url = tempo.url("otlp_http") + "/v1/traces"
    message = json.loads(await refused(http, url, splice(OTLP_JSON, path, token), "application/json"))
    assert message["code"] == 3 and message["message"]
    ok = await http.post(url, content=json.dumps(OTLP_JSON).encode(), headers={"Content-Type": "application/json"})
    assert ok.status_code == 200


ZIPKIN_PARAMS = [(version, case, path, token) for case, paths, token in ZIPKIN_CASES for version, path in paths.items()]


@pytest.mark.parametrize("version, case, path, token", ZIPKIN_PARAMS, ids=[f"{p[0]}-{p[1]}" for p in ZIPKIN_PARAMS])
async def test_zipkin_hostile_body_is_a_400(
    tempo: Running, http: httpx.AsyncClient, version: str, case: str, path: tuple, token: str
) -> None:
    url = tempo.url("zipkin") + f"/api/{version}/spans"
    seed = ZIPKIN_V2 if version == "v2" else ZIPKIN_V1
    assert (await refused(http, url, splice(seed, path, token), "application/json")).strip()
    ok = await http.post(url, content=json.dumps(seed).encode(), headers={"Content-Type": "application/json"})
    assert ok.status_code == 202


@pytest.mark.parametrize(
    "field, value",
    [("startTime", -1), ("startTime", (1 << 63) - 1), ("duration", -(1 << 63)), ("flags", -(1 << 31))],
)
async def test_jaeger_negative_or_huge_ints_are_a_400_or_accepted(
    tempo: Running, http: httpx.AsyncClient, field: str, value: int
) -> None:
    batch, _ = in_memory_batch("ints")
    setattr(batch.spans[0], field, value)
    url = tempo.url("jaeger_thrift_http") + "/api/traces"
    r = await http.post(url, content=serialize(batch, TBinaryProtocol.TBinaryProtocolFactory()),
                        headers={"Content-Type": "application/x-thrift"})
    # A negative flags word is a valid i32 (no sampled bit): accepted. Times out of range: refused.
    assert r.status_code == (202 if field == "flags" else 400), r.text
    assert r.status_code == 202 or field in r.text


async def test_jaeger_list_header_claiming_two_billion_elements_is_a_400(
    tempo: Running, http: httpx.AsyncClient
) -> None:
    url = tempo.url("jaeger_thrift_http") + "/api/traces"
    text = await refused(http, url, bytes.fromhex("0f0001de7fffffff"), "application/x-thrift")
    assert "cannot decode Batch" in text
    ok = await http.post(url, content=JAEGER_VALID["http"], headers={"Content-Type": "application/x-thrift"})
    assert ok.status_code == 202


@pytest.mark.parametrize(
    "path, query",
    [
        ("/api/search", "{ .a = " + "9" * 5000 + " }"),
        ("/api/search", "{ duration > " + "1" * 5000 + "ms }"),
        ("/api/metrics/query_range", "{ .a = " + "9" * 5000 + " } | rate()"),
        ("/api/search", "{ .a = 9223372036854775808 }"),
    ],
)
async def test_traceql_integer_of_thousands_of_digits_is_a_400(
    tempo: Running, http: httpx.AsyncClient, path: str, query: str
) -> None:
    r = await http.get(tempo.url() + path, params={"q": query})
    assert r.status_code == 400, r.text[:300]
    assert "invalid TraceQL query" in r.text and ("out of range" in r.text or "invalid duration" in r.text)


async def test_large_agent_datagrams_decode_off_the_loop_and_hostile_ones_are_dropped() -> None:
    batch, _ = in_memory_batch("big")
    batch.spans = batch.spans * 20
    good = emit_batch_message(batch, compact=True)
    hostile = good[:13] + bytes([0x1C, 0x1C, 0x29, 0xFC, 0xFF, 0xFF, 0xFF, 0xFF, 0x07]) + b"\x00" * 5000
    assert len(good) > INLINE_PYTHON_DECODE_BYTES and len(hostile) > INLINE_PYTHON_DECODE_BYTES
    received: list = []
    arrived = trio.Event()

    async def push(request) -> None:  # noqa: ANN001
        received.append(request)
        arrived.set()

    stats = JaegerUDPStatistics()
    async with trio.open_nursery() as nursery:
        host, port = await nursery.start(
            lambda task_status: serve_jaeger_udp("127.0.0.1", 0, True, push, statistics=stats, task_status=task_status)
        )
        with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            await sender.sendto(hostile, (host, port))
            await sender.sendto(good, (host, port))
            with trio.fail_after(20):
                await arrived.wait()
        nursery.cancel_scope.cancel()
    assert stats.datagrams_rejected == 1
    assert sum(len(ss.spans) for rs in received[0].resource_spans for ss in rs.scope_spans) == len(batch.spans)

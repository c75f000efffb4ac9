"""No error is ever an HTML page: failures injected into handlers come back, on every port, in the form the
protocol uses (plain text on the query API and the Zipkin/Jaeger receivers, a google.rpc.Status on
OTLP/HTTP, a gRPC status on gRPC), 500s included."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import pytest
import trio
from conftest import Running, start_tempo, tempo_config_text
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from test_streaming_querier import stream

from tempo_lite._gen import tempopb_pb2 as pb
from tempo_lite.distributor import Distributor
from tempo_lite.querier.metrics_source import MetricsSource
from tempo_lite.server import answer_failures


class Injected(RuntimeError):
    pass


async def _fail(*_args: object, **_kwargs: object) -> None:
    raise Injected("injected failure")


@pytest.fixture
async def failing(nursery: trio.Nursery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Running]:
    """tempo-lite whose distributor, searcher and metrics source fail on every call."""
    monkeypatch.setattr(Distributor, "push", _fail)
    running = await start_tempo(nursery, tempo_config_text(tmp_path))
    monkeypatch.setattr(MetricsSource, "stream", _fail)  # what TraceQL metrics read spans through
    monkeypatch.setattr(running.tl.searcher, "search", _fail)
    monkeypatch.setattr(running.tl.searcher, "search_columns", _fail)
    yield running
    await running.stop()


def _plain_text_500(r: httpx.Response) -> None:
    assert r.status_code == 500, r.text
    assert r.headers["content-type"].startswith("text/plain"), r.headers
    assert r.text == "internal error: Injected: injected failure\n"


@pytest.mark.slow
async def test_query_api_failures_are_plain_text(failing: Running, http: httpx.AsyncClient) -> None:
    api = failing.url()
    for accept in ("application/json", "application/protobuf", "text/html"):
        r = await http.get(api + "/api/metrics/query_range", params={"q": "{ } | rate()"}, headers={"Accept": accept})
        _plain_text_500(r)
        r = await http.get(api + "/api/search", params={"q": "{ }"}, headers={"Accept": accept})
        _plain_text_500(r)
    r = await http.post(api + "/api/echo")
    assert (r.status_code, r.headers["content-type"], r.text) == (405, "text/plain; charset=utf-8",
                                                                  "405 method not allowed\n")
    r = await http.get(api + "/nothing/here")
    assert (r.status_code, r.text) == (404, "404 page not found\n")
    r = await http.get(api + "/api/traces/0")  # padded, looked up, not found: 404 as Tempo (not 400)
    assert (r.status_code, r.content) == (404, b"")
    r = await http.get(api + "/api/v2/traces/abc")
    assert r.status_code == 404
    r = await http.get(api + "/api/traces/xyz")
    assert r.status_code == 400 and "not hex" in r.text


@pytest.mark.slow
async def test_streaming_grpc_failure_is_an_internal_status(failing: Running) -> None:
    host, port = failing.tl.listeners.addresses["http"]

    def call() -> tuple[grpc.StatusCode, str]:
        try:
            stream(f"{host}:{port}", "MetricsQueryRange", pb.QueryRangeRequest(query="{ } | rate()"),
                   pb.QueryRangeResponse)
        except grpc.RpcError as exc:
            return exc.code(), exc.details()
        return grpc.StatusCode.OK, ""

    assert await trio.to_thread.run_sync(call) == (grpc.StatusCode.INTERNAL, "internal error: Injected")


@pytest.mark.slow
async def test_receiver_failures_answer_in_each_protocols_form(failing: Running, http: httpx.AsyncClient) -> None:
    body = ExportTraceServiceRequest().SerializeToString()
    r = await http.post(failing.url("otlp_http") + "/v1/traces", content=body,
                        headers={"Content-Type": "application/x-protobuf"})
    assert (r.status_code, r.headers["content-type"]) == (500, "application/x-protobuf")
    status = status_pb2.Status.FromString(r.content)
    assert (status.code, status.message) == (13, "internal error: Injected: injected failure")
    r = await http.post(failing.url("otlp_http") + "/v1/traces", content=b"{}",
                        headers={"Content-Type": "application/json"})
    assert (r.status_code, r.headers["content-type"]) == (500, "application/json")
    assert json.loads(r.content) == {"code": 13, "message": "internal error: Injected: injected failure"}
    # Zipkin goes through the listener's last-line guard: plain text, not hypercorn's empty 500.
    r = await http.post(failing.url("zipkin") + "/api/v2/spans", content=b"[]",
                        headers={"Content-Type": "application/json"})
    _plain_text_500(r)

    host, port = failing.tl.listeners.addresses["otlp_grpc"]

    def export() -> grpc.StatusCode:
        with grpc.insecure_channel(f"{host}:{port}") as channel:
            call = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                                       request_serializer=lambda b: b, response_deserializer=lambda b: b)
            try:
                call(body, timeout=20)
            except grpc.RpcError as exc:
                return exc.code()
        return grpc.StatusCode.OK

    assert await trio.to_thread.run_sync(export) == grpc.StatusCode.INTERNAL


async def _collect(app, scope: dict) -> list[dict]:  # noqa: ANN001
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    await answer_failures(app, "test")(scope, receive, send)
    return sent


async def test_last_line_guard_answers_text_for_http_and_a_status_for_grpc() -> None:
    async def broken(scope: dict, receive, send) -> None:  # noqa: ANN001
        raise Injected("injected failure: 100%")

    sent = await _collect(broken, {"type": "http", "method": "GET", "path": "/x", "headers": []})
    assert sent[0]["status"] == 500 and (b"content-type", b"text/plain; charset=utf-8") in sent[0]["headers"]
    assert sent[1]["body"] == b"internal error: Injected: injected failure: 100%\n"
    grpc_scope = {"type": "http", "method": "POST", "path": "/a.B/C",
                  "headers": [(b"content-type", b"application/grpc")]}
    sent = await _collect(broken, grpc_scope)
    assert sent[0]["status"] == 200 and sent[0]["trailers"] is True
    assert dict(sent[-1]["headers"]) == {b"grpc-status": b"13",
                                         b"grpc-message": b"internal error: Injected: injected failure: 100%25"}

    async def half_answered(scope: dict, receive, send) -> None:  # noqa: ANN001
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise Injected("after the start")

    with pytest.raises(Injected):  # too late to answer: hypercorn closes the stream
        await _collect(half_answered, {"type": "http", "method": "GET", "path": "/x", "headers": []})

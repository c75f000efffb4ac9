"""Request bytes in flight are bounded at the door: a request that would pass the shared bound is answered
503 with Retry-After (gRPC: UNAVAILABLE) before its body is read, in the receiver's own form, and the
bytes come back when a request is answered. Driven as ASGI calls (no sockets)."""

from __future__ import annotations

from typing import Any

import trio
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tempo_lite.distributor.inflight import InflightBytes, bound_request_bytes
from tempo_lite.grpc_protocol import frame_message
from tempo_lite.receivers.http_ingest import otlp_http_app
from tempo_lite.receivers.otlp_grpc import EXPORT_METHOD, otlp_grpc_app


def body(spans: int) -> bytes:
    request = ExportTraceServiceRequest()
    scope_spans = request.resource_spans.add().scope_spans.add()
    for i in range(spans):
        scope_spans.spans.append(Span(trace_id=(i + 1).to_bytes(16, "big"), span_id=(i + 1).to_bytes(8, "big"),
                                      name="op", start_time_unix_nano=10, end_time_unix_nano=20))
    return request.SerializeToString()


class Answer:
    def __init__(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.trailers: dict[str, str] = {}
        self.done = trio.Event()


async def post(app: Any, payload: bytes, *, grpc: bool = False, declare: bool = True) -> Answer:
    answer = Answer()
    events = [{"type": "http.request", "body": payload[:10], "more_body": True},
              {"type": "http.request", "body": payload[10:], "more_body": False}]

    async def receive() -> dict[str, Any]:
        if events:
            return events.pop(0)
        await answer.done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer.status = message["status"]
            answer.headers = {k.decode(): v.decode() for k, v in message["headers"]}
        elif message["type"] == "http.response.trailers":
            answer.trailers = {k.decode(): v.decode() for k, v in message["headers"]}
            answer.done.set()
        elif message["type"] == "http.response.body" and not message.get("more_body") and not grpc:
            answer.done.set()

    headers = [(b"content-type", b"application/grpc" if grpc else b"application/x-protobuf")]
    if declare:
        headers.append((b"content-length", str(len(payload)).encode()))
    scope = {"type": "http", "http_version": "2" if grpc else "1.1", "method": "POST",
             "path": EXPORT_METHOD if grpc else "/v1/traces", "headers": headers}
    await app(scope, receive, send)
    return answer


class BlockingPush:
    def __init__(self) -> None:
        self.release = trio.Event()
        self.entered = trio.Event()
        self.spans: list[int] = []

    async def __call__(self, tenant: str | None, request: ExportTraceServiceRequest, size: int) -> None:
        self.spans.append(sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans))
        self.entered.set()
        await self.release.wait()


async def check_second_request_refused_while_first_holds_the_bytes(grpc: bool, declare: bool) -> None:
    first, second = body(20), body(10)
    budget = InflightBytes(len(first) + len(second) - 1)
    push = BlockingPush()
    inner = otlp_grpc_app(push) if grpc else otlp_http_app(push, max_request_bytes=1 << 20)
    app = bound_request_bytes(inner, budget)
    framed = frame_message if grpc else (lambda b: b)
    answers: dict[str, Answer] = {}

    async def send_first() -> None:
        answers["first"] = await post(app, framed(first), grpc=grpc, declare=declare)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send_first)
        await push.entered.wait()
        assert budget.held >= len(first)
        refused = await post(app, framed(second), grpc=grpc, declare=declare)
        if grpc:
            assert refused.trailers["grpc-status"] == "14", refused.trailers  # UNAVAILABLE
        else:
            assert refused.status == 503
            assert refused.headers["retry-after"] == "1"
        assert push.spans == [20]  # the refused one never reached the distributor
        push.release.set()
    assert budget.held == 0 and budget.refused == 1
    again = await post(app, framed(second), grpc=grpc, declare=declare)  # retried once the first is answered
    assert (again.trailers["grpc-status"] == "0") if grpc else (again.status == 200)
    assert push.spans == [20, 10]


async def test_otlp_http_request_over_the_bound_is_answered_503_with_retry_after() -> None:
    await check_second_request_refused_while_first_holds_the_bytes(grpc=False, declare=True)


async def test_bytes_are_counted_as_they_arrive_when_no_length_is_declared() -> None:
    await check_second_request_refused_while_first_holds_the_bytes(grpc=False, declare=False)


async def test_otlp_grpc_request_over_the_bound_is_answered_unavailable() -> None:
    await check_second_request_refused_while_first_holds_the_bytes(grpc=True, declare=False)


async def test_a_request_alone_is_admitted_even_when_larger_than_the_bound() -> None:
    push = BlockingPush()
    push.release.set()
    budget = InflightBytes(10)
    app = bound_request_bytes(otlp_http_app(push, max_request_bytes=1 << 20), budget)
    answer = await post(app, body(30))
    assert answer.status == 200 and push.spans == [30] and budget.held == 0

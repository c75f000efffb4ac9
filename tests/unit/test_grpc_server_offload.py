"""The gRPC adapter parses large request messages in a worker thread: while one is being decoded, the event
loop keeps serving other calls (driven here as ASGI calls, no sockets)."""

from __future__ import annotations

import threading
from typing import Any

import trio
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tempo_lite.grpc_protocol import frame_message
from tempo_lite.receivers.otlp_grpc import EXPORT_METHOD, otlp_grpc_app

decode_started = threading.Event()
release_decode = threading.Event()


def large_export_request(spans: int) -> bytes:
    request = ExportTraceServiceRequest()
    scope_spans = request.resource_spans.add().scope_spans.add()
    for i in range(spans):
        scope_spans.spans.append(Span(
            trace_id=i.to_bytes(16, "big"), span_id=(i + 1).to_bytes(8, "big"), name=f"span {i}",
            start_time_unix_nano=1_700_000_000_000_000_000 + i, end_time_unix_nano=1_700_000_000_000_001_000 + i,
            attributes=[KeyValue(key="http.url", value=AnyValue(string_value=f"https://example.com/{i}"))],
        ))
    return request.SerializeToString()


async def call(app: Any, body: bytes, path: str = EXPORT_METHOD) -> dict[str, str]:
    """One gRPC call through the ASGI app; returns the trailers."""
    events = [{"type": "http.request", "body": body, "more_body": False}]
    trailers: dict[str, str] = {}
    done = trio.Event()

    async def receive() -> dict[str, Any]:
        if events:
            return events.pop(0)
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.trailers":
            trailers.update({k.decode(): v.decode() for k, v in message["headers"]})
            done.set()

    scope = {"type": "http", "http_version": "2", "method": "POST", "path": path,
             "headers": [(b"content-type", b"application/grpc")]}
    await app(scope, receive, send)
    return trailers


async def test_a_large_export_being_decoded_does_not_stall_other_calls(monkeypatch: Any) -> None:
    pushed: list[int] = []

    async def push(tenant: str | None, request: ExportTraceServiceRequest, size: int) -> None:
        pushed.append(sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans))

    real_from_string = ExportTraceServiceRequest.FromString

    class BlockingRequest:
        """Parses like ExportTraceServiceRequest, but a large message waits for the test's signal."""

        DESCRIPTOR = ExportTraceServiceRequest.DESCRIPTOR

        @staticmethod
        def FromString(payload: bytes) -> ExportTraceServiceRequest:  # noqa: N802 - protobuf's name
            if len(payload) > 64 * 1024:
                decode_started.set()
                assert release_decode.wait(30), "the test never released the decode"
            return real_from_string(payload)

    monkeypatch.setattr("tempo_lite.receivers.otlp_grpc.ExportTraceServiceRequest", BlockingRequest)
    app = otlp_grpc_app(push)
    large = large_export_request(spans=2000)
    assert len(large) > 64 * 1024
    small = ExportTraceServiceRequest.FromString(large)
    del small.resource_spans[0].scope_spans[0].spans[1:]
    results: dict[str, dict[str, str]] = {}

    async def large_call() -> None:
        results["large"] = await call(app, frame_message(large))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(large_call)
        await trio.to_thread.run_sync(decode_started.wait)  # the large message is being parsed, and stays so
        results["small"] = await call(app, frame_message(small.SerializeToString()))
        assert results["small"]["grpc-status"] == "0"
        assert pushed == [1]  # answered while the large one was still being decoded
        assert "large" not in results
        release_decode.set()
    assert results["large"]["grpc-status"] == "0"
    assert pushed == [1, 2000]


async def test_messages_over_the_limit_are_refused_from_the_header_before_decoding() -> None:
    async def push(tenant: str | None, request: ExportTraceServiceRequest, size: int) -> None:
        raise AssertionError("must not be pushed")

    app = otlp_grpc_app(push, max_message_bytes=1024)
    body = frame_message(large_export_request(spans=50))
    trailers = await call(app, body[:5])  # only the header: the length alone is enough to refuse
    assert trailers["grpc-status"] == "8", trailers  # RESOURCE_EXHAUSTED


def large_post_spans_request(spans: int) -> bytes:
    from tempo_lite._gen import jaeger_api_v2_pb2 as jpb

    request = jpb.PostSpansRequest()
    request.batch.process.service_name = "svc"
    for i in range(spans):
        span = request.batch.spans.add(
            trace_id=(i + 1).to_bytes(16, "big"), span_id=(i + 1).to_bytes(8, "big"), operation_name=f"op {i}",
        )
        span.start_time.seconds = 1_700_000_000
        span.duration.nanos = 1000
        span.tags.add(key="http.url", v_str=f"https://example.com/{i}")
    return request.SerializeToString()


async def test_a_large_jaeger_batch_being_translated_does_not_stall_other_calls(monkeypatch: Any) -> None:
    from tempo_lite.receivers import jaeger_grpc

    pushed: list[int] = []
    started, release = threading.Event(), threading.Event()

    async def push(tenant: str | None, request: ExportTraceServiceRequest, size: int) -> None:
        pushed.append(sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans))

    real_decode = jaeger_grpc.decode_post_spans

    def blocking_decode(request: Any) -> ExportTraceServiceRequest:
        if len(request.batch.spans) > 1:
            started.set()
            assert release.wait(30), "the test never released the translation"
        return real_decode(request)

    monkeypatch.setattr(jaeger_grpc, "decode_post_spans", blocking_decode)
    app = jaeger_grpc.jaeger_grpc_app(push)
    large = large_post_spans_request(spans=2000)
    assert len(large) > 64 * 1024
    results: dict[str, dict[str, str]] = {}

    async def large_call() -> None:
        results["large"] = await call(app, frame_message(large), jaeger_grpc.POST_SPANS_METHOD)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(large_call)
        await trio.to_thread.run_sync(started.wait)  # the large batch is being translated, and stays so
        small = frame_message(large_post_spans_request(spans=1))
        results["small"] = await call(app, small, jaeger_grpc.POST_SPANS_METHOD)
        assert results["small"]["grpc-status"] == "0", results["small"]
        assert pushed == [1]  # answered while the large one was still being translated
        assert "large" not in results
        release.set()
    assert results["large"]["grpc-status"] == "0", results["large"]
    assert pushed == [1, 2000]

"""OTLP/gRPC receiver on hypercorn (h2c): real clients against a real listener (the pure protocol functions are
checked in tests/unit/test_grpc_protocol.py).

Peers: the OpenTelemetry SDK's OTLP/gRPC exporter, a raw grpcio channel, and httpx for plain HTTP.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import grpc
import httpx
import pytest
import trio
from google.rpc.error_details_pb2 import RetryInfo
from google.rpc.status_pb2 import Status
from grpc_status import rpc_status
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.semconv._incubating.attributes.rpc_attributes import RPC_RESPONSE_STATUS_CODE

from tempo_lite.errors import (
    InvalidRequest,
    PayloadTooLarge,
    RateLimited,
    TempoLiteError,
    Unauthenticated,
    Unavailable,
)
from tempo_lite.grpc_server import GrpcCall, ServerStreamingMethod, UnaryMethod, grpc_app
from tempo_lite.receivers.otlp_grpc import EXPORT_METHOD, otlp_grpc_app
from tempo_lite.server import serve_asgi

# --- a real listener --------------------------------------------------------------------------------------


class RecordingPush:
    """The receiver's PushFn: records every call; raises the queued errors first, one per call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str | None, ExportTraceServiceRequest, int]] = []
        self.failures: list[Exception] = []
        self.delay = 0.0
        self.entered = trio.Event()

    async def __call__(self, tenant: str | None, request: ExportTraceServiceRequest, size: int) -> None:
        self.calls.append((tenant, request, size))
        self.entered.set()
        if self.delay:
            await trio.sleep(self.delay)
        if self.failures:
            raise self.failures.pop(0)


@asynccontextmanager
async def serving(app: Any, **kwargs: Any) -> AsyncIterator[int]:
    async with trio.open_nursery() as nursery:
        _, port = await nursery.start(partial(serve_asgi, app, "127.0.0.1", 0, name="test", **kwargs))
        yield port
        nursery.cancel_scope.cancel()


def recording_connections(app: Any, clients: list[Any]) -> Any:
    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            clients.append(tuple(scope["client"]))
        await app(scope, receive, send)

    return wrapped


def make_spans(count: int, name: str = "op") -> list[ReadableSpan]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("test.scope", "1.2.3")
    with tracer.start_as_current_span("root") as root:
        root.set_attribute("http.route", "/cart")
        for i in range(count - 1):
            with tracer.start_as_current_span(f"{name}-{i}") as child:
                child.set_attribute("index", i)
                child.add_event("retry", {"attempt": 2})
    return list(memory.get_finished_spans())


def exporter(port: int, **kwargs: Any) -> OTLPSpanExporter:
    kwargs.setdefault("timeout", 10)
    return OTLPSpanExporter(endpoint=f"127.0.0.1:{port}", insecure=True, **kwargs)


async def export_in_thread(port: int, spans: list[ReadableSpan], **kwargs: Any) -> SpanExportResult:
    def run() -> SpanExportResult:
        client = exporter(port, **kwargs)
        try:
            return client.export(spans)
        finally:
            client.shutdown()

    return await trio.to_thread.run_sync(run)


def service_name(attributes: Any) -> str:
    return next(kv.value.string_value for kv in attributes if kv.key == "service.name")


def received_spans(push: RecordingPush) -> list[tuple[str, bytes, bytes, str]]:
    return [
        (span.name, span.trace_id, span.span_id, service_name(rs.resource.attributes))
        for _, request, _ in push.calls
        for rs in request.resource_spans
        for ss in rs.scope_spans
        for span in ss.spans
    ]


def sent_spans(spans: list[ReadableSpan]) -> list[tuple[str, bytes, bytes, str]]:
    return [
        (s.name, s.context.trace_id.to_bytes(16, "big"), s.context.span_id.to_bytes(8, "big"), "checkout")
        for s in spans
    ]


@pytest.mark.parametrize("compression", ["none", "gzip"])
async def test_sdk_exporter_spans_arrive_intact_with_tenant(compression: str) -> None:
    push = RecordingPush()
    spans = make_spans(20)
    codec = grpc.Compression.Gzip if compression == "gzip" else grpc.Compression.NoCompression
    async with serving(otlp_grpc_app(push, max_message_bytes=4 << 20)) as port:
        result = await export_in_thread(port, spans, compression=codec, headers={"x-scope-orgid": "acme"})
    assert result is SpanExportResult.SUCCESS
    assert len(push.calls) == 1
    tenant, request, size = push.calls[0]
    assert tenant == "acme"
    assert size == request.ByteSize()
    assert sorted(received_spans(push)) == sorted(sent_spans(spans))
    scope_spans = request.resource_spans[0].scope_spans[0]
    assert (scope_spans.scope.name, scope_spans.scope.version) == ("test.scope", "1.2.3")
    by_name = {span.name: span for span in scope_spans.spans}
    assert by_name["op-3"].attributes[0].value.int_value == 3
    assert by_name["op-3"].events[0].name == "retry"
    assert by_name["root"].attributes[0].value.string_value == "/cart"


async def test_sdk_exporter_without_tenant_header_pushes_none() -> None:
    push = RecordingPush()
    async with serving(otlp_grpc_app(push, max_message_bytes=4 << 20)) as port:
        assert await export_in_thread(port, make_spans(2)) is SpanExportResult.SUCCESS
    assert push.calls[0][0] is None


@pytest.fixture
def exporter_metrics(monkeypatch: pytest.MonkeyPatch) -> InMemoryMetricReader:
    """A reader for the exporter's self-observability metrics (read from the environment when it is built)."""
    monkeypatch.setenv("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "true")
    return InMemoryMetricReader()


def reported_status_codes(reader: InMemoryMetricReader) -> list[str | None]:
    """The gRPC status of each export operation, from the exporter's own `otel.sdk.exporter.*` metrics."""
    data = reader.get_metrics_data()
    return [
        point.attributes.get(RPC_RESPONSE_STATUS_CODE)
        for resource_metrics in (data.resource_metrics if data else [])
        for scope_metrics in resource_metrics.scope_metrics
        for metric in scope_metrics.metrics
        if metric.name == "otel.sdk.exporter.operation.duration"
        for point in metric.data.data_points
    ]


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InvalidRequest("trace ids must be 16 bytes"), grpc.StatusCode.INVALID_ARGUMENT),
        (Unauthenticated("no org id"), grpc.StatusCode.UNAUTHENTICATED),
        (RuntimeError("bug"), grpc.StatusCode.INTERNAL),
    ],
)
async def test_sdk_exporter_reports_non_retryable_errors_once(
    error: Exception, code: grpc.StatusCode, exporter_metrics: InMemoryMetricReader
) -> None:
    push = RecordingPush()
    push.failures = [error]
    reader = exporter_metrics
    async with serving(otlp_grpc_app(push, max_message_bytes=4 << 20)) as port:
        result = await export_in_thread(port, make_spans(3), meter_provider=MeterProvider(metric_readers=[reader]))
    assert result is SpanExportResult.FAILURE
    assert len(push.calls) == 1  # not retried
    assert reported_status_codes(reader) == [code.name]


@pytest.mark.parametrize(
    "error",
    [RateLimited("RATE_LIMITED: slow down", retry_after=0.1), Unavailable("WAL saturated", retry_after=0.1)],
)
async def test_sdk_exporter_retries_after_the_server_delay_then_succeeds(error: Exception) -> None:
    push = RecordingPush()
    push.failures = [error, error]
    spans = make_spans(5)
    async with serving(otlp_grpc_app(push, max_message_bytes=4 << 20)) as port:
        started = time.monotonic()
        result = await export_in_thread(port, spans)
        elapsed = time.monotonic() - started
    assert result is SpanExportResult.SUCCESS
    assert len(push.calls) == 3
    # The exporter's own backoff would be ~1 s then ~2 s: it waited the RetryInfo delay instead.
    assert 0.2 <= elapsed < 1.5
    assert received_spans(push)[-5:] == sent_spans(spans)


async def test_sdk_exporter_gives_up_when_the_retry_delay_is_past_its_timeout(
    exporter_metrics: InMemoryMetricReader,
) -> None:
    push = RecordingPush()
    push.failures = [RateLimited("RATE_LIMITED", retry_after=30.0)]
    async with serving(otlp_grpc_app(push, max_message_bytes=4 << 20)) as port:
        started = time.monotonic()
        result = await export_in_thread(
            port, make_spans(1), timeout=2, meter_provider=MeterProvider(metric_readers=[exporter_metrics])
        )
    assert result is SpanExportResult.FAILURE
    assert time.monotonic() - started < 2.0  # gave up at once instead of sleeping 30 s
    assert len(push.calls) == 1
    assert reported_status_codes(exporter_metrics) == ["RESOURCE_EXHAUSTED"]


async def test_sdk_exporter_many_sequential_exports_share_one_connection() -> None:
    push = RecordingPush()
    clients: list[Any] = []
    app = recording_connections(otlp_grpc_app(push, max_message_bytes=4 << 20), clients)
    spans = make_spans(1)
    calls = 1100  # past hypercorn's default keep_alive_max_requests (1000)

    async with serving(app) as port:

        def run() -> list[SpanExportResult]:
            client = exporter(port)
            try:
                return [client.export(spans) for _ in range(calls)]
            finally:
                client.shutdown()

        results = await trio.to_thread.run_sync(run)
    assert results == [SpanExportResult.SUCCESS] * calls
    assert len(push.calls) == calls
    assert len(set(clients)) == 1


# --- raw grpcio client, exact statuses --------------------------------------------------------------------


def unary(port: int, method: str = EXPORT_METHOD, **options: Any) -> Callable[..., Any]:
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.enable_retries", 0)])
    return channel.unary_unary(method, **options)


def export_call(port: int) -> Callable[..., Any]:
    return unary(
        port,
        request_serializer=ExportTraceServiceRequest.SerializeToString,
        response_deserializer=ExportTraceServiceResponse.FromString,
    )


def sample_request(spans: int = 3) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    for i in range(spans):
        scope.spans.add(trace_id=b"\x01" * 16, span_id=(i + 1).to_bytes(8, "big"), name=f"s{i}")
    return request


async def call_in_thread(fn: Callable[[], Any]) -> Any:
    """Run a blocking grpcio call; return its result or the RpcError it raised."""

    def run() -> Any:
        try:
            return fn()
        except grpc.RpcError as error:
            return error

    return await trio.to_thread.run_sync(run)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InvalidRequest("span id is zero (100% invalid) ✗"), grpc.StatusCode.INVALID_ARGUMENT),
        (Unauthenticated("missing X-Scope-OrgID"), grpc.StatusCode.UNAUTHENTICATED),
        (PayloadTooLarge("too big"), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (Unavailable("shutting down", retry_after=3.0), grpc.StatusCode.UNAVAILABLE),
        (RateLimited("RATE_LIMITED: 15000000 bytes", retry_after=2.5), grpc.StatusCode.RESOURCE_EXHAUSTED),
    ],
)
async def test_raw_client_gets_exact_status_message_and_details(error: TempoLiteError, code: grpc.StatusCode) -> None:
    push = RecordingPush()
    push.failures = [error]
    async with serving(otlp_grpc_app(push, max_message_bytes=4 << 20)) as port:
        call = export_call(port)
        failure = await call_in_thread(lambda: call.with_call(sample_request(), timeout=5))
    assert isinstance(failure, grpc.RpcError)
    assert failure.code() == code
    assert failure.details() == error.message
    details = rpc_status.from_call(failure)  # also checks code and message agree with the trailers
    retry_after = getattr(error, "retry_after", None)
    if retry_after is None:
        assert details is None
    else:
        info = RetryInfo()
        assert details is not None and details.details[0].Unpack(info)
        assert info.retry_delay.ToTimedelta().total_seconds() == retry_after


async def test_raw_client_success_returns_empty_response_and_tenant() -> None:
    push = RecordingPush()
    async with serving(otlp_grpc_app(push, max_message_bytes=4 << 20)) as port:
        call = export_call(port)
        response, outcome = await call_in_thread(
            lambda: call.with_call(sample_request(), metadata=[("x-scope-orgid", "t-1")], timeout=5)
        )
    assert response == ExportTraceServiceResponse()
    assert outcome.code() == grpc.StatusCode.OK
    assert push.calls[0][0] == "t-1"
    assert push.calls[0][1] == sample_request()


@pytest.mark.parametrize("compression", [grpc.Compression.Gzip, grpc.Compression.Deflate])
async def test_raw_client_compressed_requests(compression: grpc.Compression) -> None:
    push = RecordingPush()
    request = sample_request(50)
    async with serving(otlp_grpc_app(push, max_message_bytes=4 << 20)) as port:
        call = export_call(port)
        await call_in_thread(lambda: call(request, compression=compression, timeout=5))
    assert push.calls[0][1] == request
    assert push.calls[0][2] == request.ByteSize()


async def test_raw_client_malformed_protobuf_is_invalid_argument() -> None:
    push = RecordingPush()
    async with serving(otlp_grpc_app(push, max_message_bytes=4 << 20)) as port:
        call = unary(port)
        failure = await call_in_thread(lambda: call(b"\x0a\xff\xff\xff", timeout=5))
    assert failure.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "ExportTraceServiceRequest" in failure.details()
    assert push.calls == []


async def test_raw_client_unknown_method_is_unimplemented() -> None:
    async with serving(otlp_grpc_app(RecordingPush(), max_message_bytes=4 << 20)) as port:
        call = unary(port, "/jaeger.api_v2.CollectorService/PostSpans")
        failure = await call_in_thread(lambda: call(b"", timeout=5))
    assert failure.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "/jaeger.api_v2.CollectorService/PostSpans" in failure.details()


async def test_raw_client_message_over_max_is_resource_exhausted_and_connection_survives() -> None:
    push = RecordingPush()
    async with serving(otlp_grpc_app(push, max_message_bytes=1024)) as port:
        call = export_call(port)
        failure = await call_in_thread(lambda: call(sample_request(200), timeout=5))
        ok = await call_in_thread(lambda: call(sample_request(2), timeout=5))
        bomb = await call_in_thread(lambda: call(sample_request(300), compression=grpc.Compression.Gzip, timeout=5))
    assert failure.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert ok == ExportTraceServiceResponse()
    # compresses to < 1024 bytes but decompresses beyond the limit
    assert bomb.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert len(push.calls) == 1


async def test_server_deadline_from_grpc_timeout_ends_a_slow_call() -> None:
    push = RecordingPush()
    push.delay = 5.0
    async with serving(otlp_grpc_app(push, max_message_bytes=4 << 20)) as port:
        call = export_call(port)
        started = time.monotonic()
        failure = await call_in_thread(lambda: call(sample_request(), timeout=0.3))
    assert failure.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 2.0


async def test_server_streaming_method_sends_each_message_then_the_status() -> None:
    async def countdown(request: ExportTraceServiceRequest, call: GrpcCall) -> AsyncIterator[Status]:
        n = len(request.resource_spans[0].scope_spans[0].spans)
        for i in range(n):
            yield Status(code=i, message=call.metadata.get("x-scope-orgid", ""))
            await trio.sleep(0)
        if n > 2:
            raise InvalidRequest("stopped after the partial results")

    app = grpc_app(
        {"/tempopb.StreamingQuerier/Search": ServerStreamingMethod(ExportTraceServiceRequest, countdown)},
        max_message_bytes=1 << 20,
    )
    async with serving(app) as port:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        stream = channel.unary_stream(
            "/tempopb.StreamingQuerier/Search",
            request_serializer=ExportTraceServiceRequest.SerializeToString,
            response_deserializer=Status.FromString,
        )

        def collect(spans: int) -> tuple[list[Status], grpc.StatusCode]:
            responses = stream(sample_request(spans), metadata=[("x-scope-orgid", "acme")], timeout=5)
            received = []
            try:
                received.extend(responses)
            except grpc.RpcError:
                pass
            return received, responses.code()

        two, ok = await trio.to_thread.run_sync(collect, 2)
        three, failed = await trio.to_thread.run_sync(collect, 3)
    assert [(s.code, s.message) for s in two] == [(0, "acme"), (1, "acme")]
    assert ok == grpc.StatusCode.OK
    assert [s.code for s in three] == [0, 1, 2]
    assert failed == grpc.StatusCode.INVALID_ARGUMENT


async def test_unary_handler_receives_call_details() -> None:
    seen: list[GrpcCall] = []

    async def echo(request: Status, call: GrpcCall) -> Status:
        seen.append(call)
        return Status(code=request.code + 1, message=request.message)

    app = grpc_app({"/test.Echo/Echo": UnaryMethod(Status, echo)}, max_message_bytes=1 << 20)
    async with serving(app) as port:
        call = unary(
            port,
            "/test.Echo/Echo",
            request_serializer=Status.SerializeToString,
            response_deserializer=Status.FromString,
        )
        reply = await call_in_thread(lambda: call(Status(code=41, message="hi"), metadata=[("k", "v")], timeout=5))
    assert reply == Status(code=42, message="hi")
    assert seen[0].method == "/test.Echo/Echo"
    assert seen[0].metadata["k"] == "v"
    assert seen[0].message_bytes == Status(code=41, message="hi").ByteSize()
    assert seen[0].client is not None and seen[0].client[0] == "127.0.0.1"


# --- plain HTTP on the same listener, lifecycle -----------------------------------------------------------


async def plain_ok(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    body = f"plain {scope['http_version']} {scope['path']}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


async def test_http1_on_the_grpc_listener_gets_415() -> None:
    async with serving(otlp_grpc_app(RecordingPush(), max_message_bytes=4 << 20)) as port:
        async with httpx.AsyncClient() as client:
            response = await client.post(f"http://127.0.0.1:{port}{EXPORT_METHOD}", content=b"x")
    assert response.status_code == 415
    assert response.http_version == "HTTP/1.1"
    assert "application/grpc" in response.text


async def test_http1_h2c_and_grpc_share_one_listener() -> None:
    push = RecordingPush()
    async with serving(otlp_grpc_app(push, max_message_bytes=4 << 20, fallback=plain_ok)) as port:
        async with httpx.AsyncClient() as http1:
            r1 = await http1.get(f"http://127.0.0.1:{port}/ready")
        async with httpx.AsyncClient(http1=False, http2=True) as h2c:
            r2 = await h2c.get(f"http://127.0.0.1:{port}/ready")
        call = export_call(port)
        grpc_reply = await call_in_thread(lambda: call(sample_request(), timeout=5))
    assert (r1.status_code, r1.text, r1.http_version) == (200, "plain 1.1 /ready", "HTTP/1.1")
    assert (r2.status_code, r2.text, r2.http_version) == (200, "plain 2 /ready", "HTTP/2")
    assert grpc_reply == ExportTraceServiceResponse()
    assert len(push.calls) == 1


async def test_serve_asgi_with_http2_off_refuses_h2c() -> None:
    async with serving(plain_ok, http2=False) as port:
        async with httpx.AsyncClient(http1=False, http2=True) as h2c:
            refused = await h2c.get(f"http://127.0.0.1:{port}/")
        async with httpx.AsyncClient() as http1:
            ok = await http1.get(f"http://127.0.0.1:{port}/")
    assert refused.status_code == 505
    assert ok.status_code == 200


async def test_shutdown_trigger_lets_in_flight_calls_finish_then_returns() -> None:
    push = RecordingPush()
    push.delay = 0.3
    stop = trio.Event()
    outcome: list[Any] = []
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            _, port = await nursery.start(
                partial(
                    serve_asgi,
                    otlp_grpc_app(push, max_message_bytes=4 << 20),
                    "127.0.0.1",
                    0,
                    name="otlp-grpc",
                    shutdown_trigger=stop.wait,
                )
            )
            call = export_call(port)

            async def client() -> None:
                outcome.append(await call_in_thread(lambda: call(sample_request(), timeout=5)))

            nursery.start_soon(client)
            await push.entered.wait()
            stop.set()
        # the nursery exited by itself: serve_asgi returned after the in-flight call completed
    assert outcome == [ExportTraceServiceResponse()]
    with pytest.raises(OSError):
        await trio.open_tcp_stream("127.0.0.1", port)


async def test_client_cancellation_cancels_the_handler() -> None:
    entered, cancelled = trio.Event(), trio.Event()

    async def endless(request: Status, call: GrpcCall) -> AsyncIterator[Status]:
        entered.set()
        try:
            while True:
                yield Status(code=1)
                await trio.sleep(0.05)
        except trio.Cancelled:
            cancelled.set()
            raise

    app = grpc_app({"/test.Feed/Follow": ServerStreamingMethod(Status, endless)}, max_message_bytes=1 << 20)
    async with serving(app) as port:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        follow = channel.unary_stream(
            "/test.Feed/Follow",
            request_serializer=Status.SerializeToString,
            response_deserializer=Status.FromString,
        )
        responses = follow(Status(), timeout=30)
        first = await trio.to_thread.run_sync(next, responses)
        await entered.wait()
        responses.cancel()
        with trio.fail_after(5):
            await cancelled.wait()
        channel.close()
    assert first == Status(code=1)


async def test_many_concurrent_calls_on_one_connection_keep_the_listener_alive() -> None:
    # 64 callers in a loop made hypercorn's priority tree back up past 1000 streams and kill the listener.
    push = RecordingPush()
    callers, calls_each = 64, 25
    async with serving(otlp_grpc_app(push, max_message_bytes=4 << 20)) as port:
        call = export_call(port)
        request = sample_request(1)

        def caller(_: int) -> list[Any]:
            outcomes = []
            for _ in range(calls_each):
                try:
                    outcomes.append(call(request, timeout=10))
                except grpc.RpcError as error:
                    outcomes.append(error.code())
            return outcomes

        def load() -> list[Any]:
            with ThreadPoolExecutor(callers) as pool:
                return [outcome for outcomes in pool.map(caller, range(callers)) for outcome in outcomes]

        outcomes = await trio.to_thread.run_sync(load)
    assert outcomes == [ExportTraceServiceResponse()] * (callers * calls_each)
    assert len(push.calls) == callers * calls_each

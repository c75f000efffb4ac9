"""HTTP ingest endpoints on raw ASGI (speed matters here): OTLP/HTTP, Zipkin and Jaeger Thrift over HTTP.

The shared part reads the body with a size bound (compressed and decompressed), decodes it with the
protocol's pure decoder, awaits the distributor's push and reports errors with the status codes of
the protocol: OTLP answers in the request's encoding with a `google.rpc.Status`; Zipkin and Jaeger
answer 202 on success and plain text on error.

Small uncompressed bodies are decoded on the event loop: their decoding is bounded by their size and a
thread hop would cost more. "Small" is per decoder: OTLP protobuf (upb, in C) up to 64 KiB, the
pure-Python JSON and Thrift decoders up to 4 KiB (about a millisecond of work). Larger or compressed
bodies are decompressed and decoded in a worker thread under a `trio.CapacityLimiter` shared by every
ingest listener, so one large or hostile body never holds up the other ports.
"""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio
from google.protobuf.message import DecodeError
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tempo_lite.errors import (
    InvalidRequest,
    PayloadTooLarge,
    RateLimited,
    TempoLiteError,
    Unavailable,
    UnsupportedMediaType,
)
from tempo_lite.receivers import PushFn, jaeger, zipkin, zipkin_proto, zipkin_v1
from tempo_lite.receivers.otlp_json import decode_otlp_json
from tempo_lite.server import Receive, Scope, Send, send_response, serve_lifespan

log = logging.getLogger(__name__)

INLINE_PROTOBUF_BYTES = 64 * 1024  # upb parses this in well under a millisecond
INLINE_PYTHON_DECODE_BYTES = 4 * 1024  # JSON/Thrift to OTLP in Python: about a millisecond
DECODE_THREADS = 2  # the machine's cores; decoding is mostly pure Python, so more threads only queue on the GIL

_T = TypeVar("_T")


def decode_limiter() -> trio.CapacityLimiter:
    """The limiter to share between ingest listeners (each app makes its own when none is given)."""
    return trio.CapacityLimiter(DECODE_THREADS)


async def decode_body(
    raw: bytes, encoding: str, max_bytes: int, decode: Callable[[bytes], _T], limiter: trio.CapacityLimiter,
    *, inline_bytes: int = INLINE_PYTHON_DECODE_BYTES,
) -> tuple[bytes, _T]:
    """Decompress and decode: on the event loop for identity bodies up to `inline_bytes`, else in a thread."""

    def work() -> tuple[bytes, _T]:
        body = decompress(raw, encoding, max_bytes)
        return body, decode(body)

    if len(raw) <= inline_bytes and encoding.strip().lower() in ("", "identity"):
        return work()
    return await trio.to_thread.run_sync(work, limiter=limiter)


def decompress(body: bytes, encoding: str, max_bytes: int) -> bytes:
    """Undo Content-Encoding with a bound on the output size (a gzip bomb gets 413, not our memory)."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate", "x-gzip"):
        raise UnsupportedMediaType(f"unsupported Content-Encoding {encoding!r} (use gzip or deflate)")
    # gzip: wbits 31; deflate: zlib-wrapped (15), some clients send raw deflate (-15).
    candidates = (31,) if encoding in ("gzip", "x-gzip") else (15, -15)
    last: Exception | None = None
    for wbits in candidates:
        d = zlib.decompressobj(wbits)
        try:
            out = d.decompress(body, max_bytes + 1)
        except zlib.error as exc:
            last = exc
            continue
        if len(out) > max_bytes or d.unconsumed_tail:
            raise PayloadTooLarge(f"decompressed request body exceeds the limit of {max_bytes} bytes")
        if not d.eof:
            raise InvalidRequest(f"truncated {encoding} request body")
        return out
    raise InvalidRequest(f"invalid {encoding} request body: {last}")


def header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope.get("headers", ()):
        if k.lower() == name:
            return v.decode("latin-1")
    return None


def media_type(scope: Scope) -> str:
    return (header(scope, b"content-type") or "").split(";")[0].strip().lower()


async def read_body(receive: Receive, max_bytes: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise InvalidRequest("client disconnected before the body was complete")
        chunk = message.get("body", b"")
        total += len(chunk)
        if total > max_bytes:
            raise PayloadTooLarge(f"request body exceeds the limit of {max_bytes} bytes")
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


def retry_headers(exc: TempoLiteError) -> list[tuple[bytes, bytes]]:
    if isinstance(exc, RateLimited | Unavailable):
        return [(b"retry-after", str(max(1, round(exc.retry_after))).encode())]
    return []


# --------------------------------------------------------------------------------------------- OTLP

_PROTOBUF_TYPES = ("application/x-protobuf", "application/protobuf")


def decode_otlp(body: bytes, content_type: str) -> ExportTraceServiceRequest:
    if content_type in _PROTOBUF_TYPES:
        request = ExportTraceServiceRequest()
        try:
            request.ParseFromString(body)
        except (DecodeError, RuntimeError, ValueError) as exc:
            raise InvalidRequest(f"invalid OTLP protobuf: {exc}") from exc
        return request
    if content_type == "application/json":
        return decode_otlp_json(body)
    raise UnsupportedMediaType(
        f"unsupported Content-Type {content_type!r}: use application/x-protobuf or application/json"
    )


# OTLP paths an SDK's default exporters post to besides /v1/traces: answered 404 with the fix.
_OTHER_OTLP_SIGNALS = {"/v1/metrics": "METRICS", "/v1/logs": "LOGS"}


async def _is_post_to_known_path(scope: Scope, receive: Receive, send: Send, known: bool) -> bool:
    """The common preamble of every ingest endpoint: lifespan events, 404 and 405."""
    if scope["type"] == "lifespan":
        await serve_lifespan(receive, send)
        return False
    if scope["type"] != "http":
        return False
    if not known:
        signal = _OTHER_OTLP_SIGNALS.get(scope.get("path", ""))
        body = (f"404 page not found: tempo-lite stores traces only; {scope['path']} is not served "
                f"(for an OpenTelemetry SDK set OTEL_{signal}_EXPORTER=none)\n" if signal else "404 page not found\n")
        await send_response(send, 404, body.encode(), "text/plain; charset=utf-8")
        return False
    if scope["method"] != "POST":
        await send_response(send, 405, b"405 method not allowed, supported: [POST]\n", "text/plain; charset=utf-8")
        return False
    return True


def otlp_http_app(
    push: PushFn, *, max_request_bytes: int, limiter: trio.CapacityLimiter | None = None
) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """ASGI app for `POST /v1/traces` (OTLP/HTTP, protobuf or JSON, gzip/deflate)."""
    threads = limiter or decode_limiter()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if not await _is_post_to_known_path(scope, receive, send, scope.get("path") == "/v1/traces"):
            return
        ctype = media_type(scope)
        as_json = ctype == "application/json"
        try:
            if ctype not in (*_PROTOBUF_TYPES, "application/json"):
                raise UnsupportedMediaType(
                    f"unsupported Content-Type {ctype!r}: use application/x-protobuf or application/json"
                )
            raw = await read_body(receive, max_request_bytes)
            body, request = await decode_body(
                raw, header(scope, b"content-encoding") or "", max_request_bytes,
                lambda b: decode_otlp(b, ctype), threads,
                inline_bytes=INLINE_PYTHON_DECODE_BYTES if as_json else INLINE_PROTOBUF_BYTES,
            )
            await push(header(scope, b"x-scope-orgid"), request, len(body))
        except Exception as exc:  # every failure in OTLP's form: a google.rpc.Status, protobuf or JSON
            if not isinstance(exc, TempoLiteError):
                log.error("OTLP/HTTP export failed", exc_info=exc)
                exc = TempoLiteError(f"internal error: {type(exc).__name__}: {exc}")
            status = status_pb2.Status(code=exc.grpc_code, message=exc.message)
            if as_json:
                payload = json.dumps({"code": exc.grpc_code, "message": exc.message}).encode()
            else:
                payload = status.SerializeToString()
            await send_response(
                send, exc.http_status, payload,
                "application/json" if as_json else "application/x-protobuf", retry_headers(exc),
            )
            return
        if as_json:
            await send_response(send, 200, b"{}", "application/json")
        else:
            await send_response(send, 200, ExportTraceServiceResponse().SerializeToString(), "application/x-protobuf")

    return app


# --------------------------------------------------------------------------------------------- Zipkin / Jaeger

Decoder = Callable[[bytes, str], ExportTraceServiceRequest]


def _zipkin_decoder(path: str) -> Decoder | None:
    def v2(body: bytes, ctype: str) -> ExportTraceServiceRequest:
        if ctype in ("application/x-protobuf", "application/protobuf"):
            return zipkin_proto.decode_zipkin_v2_proto(body)
        if ctype not in ("application/json", "text/plain", ""):
            raise UnsupportedMediaType(
                f"unsupported Content-Type {ctype!r} for Zipkin: use application/json or application/x-protobuf"
            )
        return zipkin.decode_zipkin_v2_json(body)

    def v1(body: bytes, ctype: str) -> ExportTraceServiceRequest:
        if ctype not in ("application/json", "text/plain", ""):
            raise UnsupportedMediaType(f"unsupported Content-Type {ctype!r} for Zipkin v1: use application/json")
        return zipkin_v1.decode_zipkin_v1_json(body)

    return {"/api/v2/spans": v2, "/api/v1/spans": v1}.get(path)


def _jaeger_decoder(path: str) -> Decoder | None:
    def thrift(body: bytes, ctype: str) -> ExportTraceServiceRequest:
        if ctype not in ("application/x-thrift", "application/vnd.apache.thrift.binary"):
            raise UnsupportedMediaType(f"unsupported Content-Type {ctype!r} for Jaeger: use application/x-thrift")
        return jaeger.decode_jaeger_thrift_http(body)

    return {"/api/traces": thrift}.get(path)


def _accepted_app(
    push: PushFn, max_request_bytes: int, route: Callable[[str], Decoder | None], limiter: trio.CapacityLimiter | None
) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    threads = limiter or decode_limiter()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        decoder = route(scope["path"]) if scope["type"] == "http" else None
        if not await _is_post_to_known_path(scope, receive, send, decoder is not None) or decoder is None:
            return
        try:
            raw = await read_body(receive, max_request_bytes)
            ctype = media_type(scope)
            body, request = await decode_body(
                raw, header(scope, b"content-encoding") or "", max_request_bytes,
                lambda b: decoder(b, ctype), threads,
            )
            await push(header(scope, b"x-scope-orgid"), request, len(body))
        except TempoLiteError as exc:
            await send_response(
                send, exc.http_status, (exc.message + "\n").encode(), "text/plain; charset=utf-8", retry_headers(exc)
            )
            return
        await send_response(send, 202, b"", "text/plain; charset=utf-8")

    return app


def zipkin_http_app(
    push: PushFn, *, max_request_bytes: int, limiter: trio.CapacityLimiter | None = None
) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """ASGI app for Zipkin `POST /api/v2/spans` (JSON v2) and `/api/v1/spans` (JSON v1); 202 on success."""
    return _accepted_app(push, max_request_bytes, _zipkin_decoder, limiter)


def jaeger_http_app(
    push: PushFn, *, max_request_bytes: int, limiter: trio.CapacityLimiter | None = None
) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """ASGI app for Jaeger `POST /api/traces` (Thrift Batch, binary protocol); 202 on success."""
    return _accepted_app(push, max_request_bytes, _jaeger_decoder, limiter)

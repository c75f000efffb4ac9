"""gRPC over raw ASGI (HTTP/2 via hypercorn), without a grpcio server: the thin adapter that routes
`/<package.Service>/<Method>` to unary or server-streaming handlers, over the pure protocol functions of
`tempo_lite.grpc_protocol`. Used by the gRPC receivers and the API's StreamingQuerier service.

hypercorn specifics (docs/architecture.md, known traps): every response is a response start declaring trailers, a body
(possibly empty) and then trailers carrying `grpc-status`; a trailers-only response reaches grpcio clients
as UNKNOWN.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import trio
from google.protobuf.message import DecodeError, Message

from tempo_lite.errors import TempoLiteError
from tempo_lite.grpc_protocol import (
    ACCEPT_ENCODING,
    GrpcError,
    GrpcStatus,
    MessageDeframer,
    StatusCode,
    build_trailers,
    decompress_message,
    frame_message,
    parse_grpc_timeout,
    request_metadata,
    status_for_exception,
)
from tempo_lite.server import ASGIApp, Receive, Scope, Send, send_response, serve_lifespan

log = logging.getLogger(__name__)

# Identity messages up to this size are parsed on the event loop when a limiter is given: upb parses
# 64 KiB in well under a millisecond, less than a thread hop (the HTTP receivers use the same bound).
INLINE_DECODE_BYTES = 64 * 1024


@dataclass(frozen=True)
class GrpcCall:
    """What a handler knows about its call besides the request message."""

    method: str  # "/package.Service/Method"
    metadata: Mapping[str, str]
    message_bytes: int  # size of the (decompressed) request message
    client: tuple[str, int] | None = None


@dataclass(frozen=True)
class UnaryMethod:
    request_type: type[Message]
    handler: Callable[[Any, GrpcCall], Awaitable[Message]]


@dataclass(frozen=True)
class ServerStreamingMethod:
    request_type: type[Message]
    handler: Callable[[Any, GrpcCall], AsyncIterator[Message]]


GrpcMethod = UnaryMethod | ServerStreamingMethod


async def not_grpc_response(scope: Scope, receive: Receive, send: Send) -> None:
    """Default answer to plain HTTP requests on a gRPC-only listener (gRPC's spec says 415)."""
    body = b"this listener speaks gRPC: send HTTP/2 POST requests with content-type application/grpc\n"
    await send_response(send, 415, body, "text/plain")


def _is_grpc_request(scope: Scope) -> bool:
    if scope.get("http_version") != "2" or scope.get("method") != "POST":
        return False
    for name, value in scope["headers"]:
        if name == b"content-type":
            return value == b"application/grpc" or value.startswith(
                (b"application/grpc+", b"application/grpc;")
            )
    return False


def grpc_app(
    methods: Mapping[str, GrpcMethod],
    *,
    max_message_bytes: int,
    fallback: ASGIApp | None = None,
    limiter: trio.CapacityLimiter | None = None,
    inline_bytes: int = INLINE_DECODE_BYTES,
) -> ASGIApp:
    """An ASGI app serving `methods` (keyed by "/package.Service/Method"); other requests go to `fallback`.

    With a `limiter`, request messages that are compressed or larger than `inline_bytes` are decompressed
    and parsed in a worker thread under it (the ingest listeners share one), so a large body never holds
    up the event loop; without one (small query requests), on the event loop. Either way the message's
    size is bounded by `max_message_bytes` from its 5-byte header, before anything is allocated for it.
    """
    plain_http = fallback or not_grpc_response

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            if fallback is not None:
                await fallback(scope, receive, send)
            else:
                await serve_lifespan(receive, send)
            return
        if scope["type"] != "http" or not _is_grpc_request(scope):
            await plain_http(scope, receive, send)
            return
        await _serve_call(scope, receive, send, methods, max_message_bytes, limiter, inline_bytes)

    return app


class _Disconnected(Exception):
    pass


async def _read_request(receive: Receive, deframer: MessageDeframer) -> list[tuple[bool, bytes]]:
    messages: list[tuple[bool, bytes]] = []
    while True:
        event = await receive()
        if event["type"] == "http.disconnect":
            raise _Disconnected
        messages += deframer.feed(event.get("body", b""))
        if not event.get("more_body", False):
            deframer.finish()
            return messages


async def _decode_off_loop(
    messages: list[tuple[bool, bytes]], method: GrpcMethod, encoding: str, max_message_bytes: int,
    limiter: trio.CapacityLimiter | None, inline_bytes: int,
) -> tuple[Message, int]:
    """`_decode_request` on the event loop for small identity messages, else in a worker thread."""
    small = all(not compressed and len(payload) <= inline_bytes for compressed, payload in messages)
    if limiter is None or small:
        return _decode_request(messages, method, encoding, max_message_bytes)
    return await trio.to_thread.run_sync(
        _decode_request, messages, method, encoding, max_message_bytes, limiter=limiter
    )


def _decode_request(
    messages: list[tuple[bool, bytes]], method: GrpcMethod, encoding: str, max_message_bytes: int
) -> tuple[Message, int]:
    if len(messages) != 1:
        # gRPC's status code table: a request cardinality violation is UNIMPLEMENTED.
        raise GrpcError(
            StatusCode.UNIMPLEMENTED, f"expected exactly one request message, got {len(messages)}"
        )
    compressed, payload = messages[0]
    if compressed:
        payload = decompress_message(payload, encoding, max_message_bytes)
    try:
        request = method.request_type.FromString(payload)
    except DecodeError as exc:
        raise GrpcError(
            StatusCode.INVALID_ARGUMENT, f"cannot decode {method.request_type.DESCRIPTOR.full_name}: {exc}"
        ) from exc
    return request, len(payload)


class _Responder:
    """Sends the response start once, message bodies, and the trailers that end the call."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = False

    async def start(self) -> None:
        if not self.started:
            self.started = True
            await self._send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"application/grpc"),
                        (b"grpc-accept-encoding", ACCEPT_ENCODING),
                    ],
                    "trailers": True,
                }
            )

    async def message(self, response: Message) -> None:
        await self.start()
        await self._send(
            {
                "type": "http.response.body",
                "body": frame_message(response.SerializeToString()),
                "more_body": True,
            }
        )

    async def finish(self, status: GrpcStatus) -> None:
        await self.start()
        await self._send({"type": "http.response.body", "body": b"", "more_body": False})
        await self._send(
            {"type": "http.response.trailers", "headers": build_trailers(status), "more_trailers": False}
        )


async def _cancel_on_disconnect(receive: Receive, scope: trio.CancelScope, disconnected: trio.Event) -> None:
    """Once the request body is read, the next ASGI event is the client going away: stop the handler."""
    while (await receive())["type"] != "http.disconnect":
        continue
    disconnected.set()
    scope.cancel()


async def _invoke(method: GrpcMethod, request: Message, call: GrpcCall, responder: _Responder) -> GrpcStatus:
    try:
        if isinstance(method, UnaryMethod):
            await responder.message(await method.handler(request, call))
        else:
            async for response in method.handler(request, call):
                await responder.message(response)
    except Exception as exc:  # reported to the client as its status
        status = status_for_exception(exc)
        if status.code == StatusCode.INTERNAL and not isinstance(exc, GrpcError | TempoLiteError):
            log.exception("gRPC handler for %s failed", call.method)
        return status
    return GrpcStatus(int(StatusCode.OK))


async def _serve_call(
    scope: Scope, receive: Receive, send: Send, methods: Mapping[str, GrpcMethod], max_message_bytes: int,
    limiter: trio.CapacityLimiter | None, inline_bytes: int,
) -> None:
    responder = _Responder(send)
    path: str = scope["path"]
    metadata = request_metadata(scope["headers"])
    disconnected = trio.Event()
    status = GrpcStatus(int(StatusCode.DEADLINE_EXCEEDED), "deadline exceeded")
    try:
        method = methods.get(path)
        if method is None:
            raise GrpcError(StatusCode.UNIMPLEMENTED, f"unknown method {path}")
        encoding = metadata.get("grpc-encoding", "identity")
        timeout = parse_grpc_timeout(metadata["grpc-timeout"]) if "grpc-timeout" in metadata else math.inf
        with trio.move_on_after(timeout):
            messages = await _read_request(receive, MessageDeframer(max_message_bytes))
            request, size = await _decode_off_loop(messages, method, encoding, max_message_bytes, limiter,
                                                   inline_bytes)
            client = scope.get("client")
            call = GrpcCall(path, metadata, size, tuple(client) if client else None)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_cancel_on_disconnect, receive, nursery.cancel_scope, disconnected)
                status = await _invoke(method, request, call, responder)
                nursery.cancel_scope.cancel()
    except _Disconnected:
        return
    except GrpcError as exc:  # framing, compression, decoding: before the handler runs
        status = exc.status
    except TempoLiteError as exc:  # refused while reading the body (too many request bytes in flight)
        status = status_for_exception(exc)
    if not disconnected.is_set():
        await responder.finish(status)

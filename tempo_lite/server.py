"""Serve one ASGI app on one TCP listener with hypercorn's trio worker: HTTP/1.1 and h2c on the same port.

Every HTTP listener of tempo-lite (query API, OTLP/HTTP, OTLP/gRPC, Zipkin, Jaeger) goes through
`serve_asgi`, so the hypercorn settings that gRPC needs (see docs/architecture.md, known traps) are set in one place.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from types import SimpleNamespace
from typing import Any, cast

import priority
import trio
from hypercorn.config import Config
from hypercorn.protocol import h2 as hypercorn_h2
from hypercorn.trio import serve

from tempo_lite.grpc_protocol import encode_grpc_message

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def send_response(
    send: Send, status: int, body: bytes, content_type: str, extra: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    """A complete raw-ASGI response: start with content type and length, then the body."""
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def serve_lifespan(receive: Receive, send: Send) -> None:
    """Answer the ASGI lifespan protocol for raw apps that need no start-up or shutdown work."""
    while True:
        event = await receive()
        if event["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif event["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return

# hypercorn closes an HTTP/2 connection after keep_alive_max_requests (default 1000) requests, failing the
# gRPC calls in flight on it: a gRPC client keeps one connection for its whole life.
_UNLIMITED_REQUESTS = sys.maxsize
# `server.http_server_idle_timeout`: hypercorn's keep_alive_timeout. A connection counts as idle from
# its start until a request's headers are complete and again after each response, so this bounds idle
# keep-alive connections and slow-header (slowloris) connections alike. gRPC clients reconnect
# transparently, but a short timeout (hypercorn's default is 5 s) makes an exporter that sends every
# 10 s reconnect on every export.
DEFAULT_IDLE_TIMEOUT_S = 120.0
# `server.http_server_read_timeout`: hypercorn's read_timeout, the longest the server waits for the
# next bytes while it is reading a connection (a stalled body upload, a silent HTTP/2 connection). An
# HTTP/1.1 connection is not read while its request is being answered, so slow queries are unaffected.
DEFAULT_READ_TIMEOUT_S = 30.0


class RoundRobinStreams:
    """Drop-in for `priority.PriorityTree` in hypercorn's HTTP/2 send loop: active streams served in turn.

    hypercorn keeps every finished stream in its priority tree until its send task drains it, and the
    tree's `remove_stream` rebuilds a heap (O(n log n)). Under concurrent gRPC load the send task falls
    behind, removals get slower as the backlog grows, and at 1000 streams the tree raises
    TooManyStreamsError, which kills the whole listener (measured: 64 concurrent grpcio callers of a no-op
    Export crashed it within seconds). Every operation here is O(1). Stream priorities (deprecated by
    RFC 9113, and not sent by gRPC clients) are ignored.
    """

    def __init__(self) -> None:
        self._streams: set[int] = set()
        self._active: dict[int, None] = {}  # insertion-ordered: the round-robin queue

    def insert_stream(
        self, stream_id: int, depends_on: int | None = None, weight: int = 16, exclusive: bool = False
    ) -> None:
        if stream_id in self._streams:
            raise priority.DuplicateStreamError(f"Stream {stream_id} already in tree")
        self._streams.add(stream_id)
        self._active[stream_id] = None

    def _check(self, stream_id: int) -> None:
        if stream_id not in self._streams:
            raise priority.MissingStreamError(f"Stream {stream_id} not in tree")

    def reprioritize(
        self, stream_id: int, depends_on: int | None = None, weight: int = 16, exclusive: bool = False
    ) -> None:
        self._check(stream_id)

    def block(self, stream_id: int) -> None:
        self._check(stream_id)
        self._active.pop(stream_id, None)

    def unblock(self, stream_id: int) -> None:
        self._check(stream_id)
        self._active.setdefault(stream_id, None)

    def remove_stream(self, stream_id: int) -> None:
        self._check(stream_id)
        self._streams.discard(stream_id)
        self._active.pop(stream_id, None)

    def __iter__(self) -> RoundRobinStreams:
        return self

    def __next__(self) -> int:
        if not self._active:
            raise priority.DeadlockError("no unblocked streams to schedule")
        stream_id = next(iter(self._active))
        del self._active[stream_id]
        self._active[stream_id] = None
        return stream_id


def _install_round_robin_scheduler() -> None:
    """Make hypercorn's H2Protocol (which looks up `priority.PriorityTree` at connection setup) use ours."""
    hypercorn_h2.priority = SimpleNamespace(  # type: ignore[assignment]  # a stand-in for the module
        PriorityTree=RoundRobinStreams,
        DeadlockError=priority.DeadlockError,
        MissingStreamError=priority.MissingStreamError,
        DuplicateStreamError=priority.DuplicateStreamError,
    )


def parse_bound_address(bind: str) -> tuple[str, int]:
    """Split hypercorn's "http://127.0.0.1:4317" / "http://[::1]:4317" into (host, port)."""
    _, _, hostport = bind.rpartition("://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"cannot read a host:port from the bound address {bind!r}")
    return host.strip("[]"), int(port)


def format_bind(host: str, port: int) -> str:
    """hypercorn's bind syntax: IPv6 literals in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def hypercorn_config(
    host: str,
    port: int,
    *,
    name: str,
    access_log: bool = False,
    graceful_timeout: float = 5.0,
    max_concurrent_streams: int = 100,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT_S,
    read_timeout: float = DEFAULT_READ_TIMEOUT_S,
) -> Config:
    config = Config()
    config.bind = [format_bind(host, port)]
    config.keep_alive_max_requests = _UNLIMITED_REQUESTS
    config.keep_alive_timeout = idle_timeout
    config.read_timeout = read_timeout  # type: ignore[assignment]  # hypercorn annotates int; seconds as float work
    config.graceful_timeout = graceful_timeout
    config.h2_max_concurrent_streams = max_concurrent_streams
    config.errorlog = logging.getLogger(f"tempo_lite.http.{name}")
    config.accesslog = logging.getLogger(f"tempo_lite.http.{name}.access") if access_log else None
    config.include_server_header = False
    return config


def _shield_response_end(app: ASGIApp) -> ASGIApp:
    """Send the message that completes a response shielded from the app's own cancellation.

    hypercorn finishes the exchange inside that `send` call: with `Connection: close` it shuts the
    socket down right there, in the app's task. quart-trio cancels its per-request nursery as soon as
    the client's half is done (`http.disconnect`), which aborted that close halfway: the API port
    answered `Connection: close` and then kept the connection open. The shielded send is bounded as
    hypercorn's own writes are (it shields them too).
    """

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return

        async def send_shielding_the_end(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                with trio.CancelScope(shield=True):
                    await send(message)
            else:
                await send(message)

        await app(scope, receive, send_shielding_the_end)

    return wrapped


def _is_grpc(scope: Scope) -> bool:
    return any(n == b"content-type" and v.startswith(b"application/grpc") for n, v in scope.get("headers", ()))


def answer_failures(app: ASGIApp, name: str) -> ASGIApp:
    """Last line of every listener: an exception escaping `app` before it answered becomes a plain-text 500
    (a gRPC INTERNAL status for gRPC requests), logged, never hypercorn's bare 500 or an HTML page."""
    log = logging.getLogger(f"tempo_lite.http.{name}")

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def tracked(message: dict[str, Any]) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await app(scope, receive, tracked)
        except Exception as exc:
            if scope["type"] != "http" or started:
                raise
            log.error("%s %s failed", scope.get("method"), scope.get("path"), exc_info=exc)
            message = f"internal error: {type(exc).__name__}: {exc}"
            if _is_grpc(scope):
                await send({"type": "http.response.start", "status": 200, "trailers": True,
                            "headers": [(b"content-type", b"application/grpc")]})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                await send({"type": "http.response.trailers", "more_trailers": False, "headers": [
                    (b"grpc-status", b"13"), (b"grpc-message", encode_grpc_message(message))]})
            else:
                await send_response(send, 500, (message + "\n").encode(), "text/plain; charset=utf-8")

    return wrapped


def _http1_only(app: ASGIApp) -> ASGIApp:
    """hypercorn always accepts h2c on a cleartext socket; refuse HTTP/2 requests when it is turned off."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("http_version") == "2":
            await send_response(send, 505, b"HTTP/2 is disabled on this listener\n", "text/plain")
            return
        await app(scope, receive, send)

    return wrapped


async def serve_asgi(
    app: ASGIApp,
    host: str,
    port: int,
    *,
    name: str,
    http2: bool = True,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    access_log: bool = False,
    graceful_timeout: float = 5.0,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT_S,
    read_timeout: float = DEFAULT_READ_TIMEOUT_S,
) -> None:
    """Serve `app` on host:port until `shutdown_trigger` returns or the enclosing nursery is cancelled.

    `task_status.started((host, port))` reports the address actually bound, so port 0 picks a free port.
    On `shutdown_trigger`, the listener stops accepting, in-flight requests get `graceful_timeout`
    seconds to finish, then the function returns. `idle_timeout` and `read_timeout` are explained at
    `DEFAULT_IDLE_TIMEOUT_S` and `DEFAULT_READ_TIMEOUT_S`.
    """
    _install_round_robin_scheduler()
    config = hypercorn_config(
        host, port, name=name, access_log=access_log, graceful_timeout=graceful_timeout,
        idle_timeout=idle_timeout, read_timeout=read_timeout,
    )
    served = _shield_response_end(answer_failures(app if http2 else _http1_only(app), name))
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(
            partial(serve, cast(Any, served), config, shutdown_trigger=shutdown_trigger, mode="asgi")
        )
        bound = parse_bound_address(binds[0])
        logging.getLogger("tempo_lite.server").info("listener %s on http://%s", name, format_bind(*bound))
        task_status.started(bound)

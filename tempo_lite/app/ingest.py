"""The ingest listeners of a distributor: one listener per configured receiver, all pushing into the distributor.

Every HTTP/gRPC listener shares one pool of decoding threads and one bound on request bytes in flight
(docs/reliability.md, "Memory"); the Jaeger UDP listeners share the decoding threads and each runs in a cancel
scope the process cancels at shutdown (UDP has no graceful drain).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

from tempo_lite.config import DistributorConfig, split_endpoint
from tempo_lite.distributor.inflight import InflightBytes, bound_request_bytes
from tempo_lite.receivers.http_ingest import decode_limiter, jaeger_http_app, otlp_http_app, zipkin_http_app
from tempo_lite.server import ASGIApp

# (tenant header, decoded request, request bytes) -> None once durable; raises to refuse.
Push = Callable[[str | None, Any, int], Awaitable[None]]
# (listener name, ASGI app, endpoint, config path of the endpoint) -> None once listening.
ServeHttp = Callable[[str, ASGIApp, str, str], Awaitable[None]]


async def start_ingest_listeners(
    nursery: trio.Nursery,
    config: DistributorConfig,
    push: Push,
    serve_http: ServeHttp,
    *,
    inflight_bytes: int,
    on_refused: Callable[[], None],
    udp_scopes: list[trio.CancelScope],
    addresses: dict[str, tuple[str, int]],
) -> None:
    """Start every configured receiver; UDP listeners are started in `nursery` and recorded in `addresses`."""
    receivers = config.receivers
    max_bytes = config.max_request_bytes
    threads = decode_limiter()  # one pool of decoding threads for every ingest listener
    budget = InflightBytes(inflight_bytes)

    async def serve(name: str, app: ASGIApp, endpoint: str, where: str) -> None:
        await serve_http(name, bound_request_bytes(app, budget, on_refused=on_refused), endpoint, where)

    if receivers.otlp and receivers.otlp.protocols.http:
        await serve("otlp_http", otlp_http_app(push, max_request_bytes=max_bytes, limiter=threads),
                    receivers.otlp.protocols.http.endpoint or "127.0.0.1:4318",
                    "distributor.receivers.otlp.protocols.http.endpoint")
    if receivers.otlp and receivers.otlp.protocols.grpc:
        from tempo_lite.receivers.otlp_grpc import otlp_grpc_app

        await serve("otlp_grpc", otlp_grpc_app(push, max_message_bytes=max_bytes, limiter=threads),
                    receivers.otlp.protocols.grpc.endpoint or "127.0.0.1:4317",
                    "distributor.receivers.otlp.protocols.grpc.endpoint")
    if receivers.zipkin:
        await serve("zipkin", zipkin_http_app(push, max_request_bytes=max_bytes, limiter=threads),
                    receivers.zipkin.endpoint or "127.0.0.1:9411", "distributor.receivers.zipkin.endpoint")
    if not receivers.jaeger:
        return
    protocols = receivers.jaeger.protocols
    if protocols.grpc:
        from tempo_lite.receivers.jaeger_grpc import jaeger_grpc_app

        await serve("jaeger_grpc", jaeger_grpc_app(push, max_message_bytes=max_bytes, limiter=threads),
                    protocols.grpc.endpoint or "127.0.0.1:14250",
                    "distributor.receivers.jaeger.protocols.grpc.endpoint")
    if protocols.thrift_http:
        await serve("jaeger_thrift_http", jaeger_http_app(push, max_request_bytes=max_bytes, limiter=threads),
                    protocols.thrift_http.endpoint or "127.0.0.1:14268",
                    "distributor.receivers.jaeger.protocols.thrift_http.endpoint")
    for name, proto, compact, default in (
        ("jaeger_thrift_compact", protocols.thrift_compact, True, "127.0.0.1:6831"),
        ("jaeger_thrift_binary", protocols.thrift_binary, False, "127.0.0.1:6832"),
    ):
        if proto is None:
            continue
        from tempo_lite.receivers.jaeger_udp import serve_jaeger_udp

        host, port = split_endpoint(proto.endpoint or default, f"distributor.receivers.jaeger.protocols.{name}")

        async def udp_push(request: Any) -> None:
            await push(None, request, request.ByteSize())

        scope = trio.CancelScope()
        udp_scopes.append(scope)

        async def serve_udp(h: str, p: int, c: bool, scope: trio.CancelScope, task_status: Any) -> None:
            with scope:
                await serve_jaeger_udp(h, p, c, udp_push, limiter=threads, task_status=task_status)

        addresses[name] = await nursery.start(serve_udp, host, port, compact, scope)

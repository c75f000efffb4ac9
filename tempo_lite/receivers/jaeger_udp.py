"""Jaeger agent UDP listener: receives `emitBatch` datagrams (compact Thrift on 6831, binary on 6832).

Each datagram is decoded by `tempo_lite.receivers.jaeger.decode_jaeger_agent_datagram` (in a worker
thread when it is larger than the inline bound of the HTTP receivers) and handed to `push` as an OTLP
export request. UDP has no way to refuse a datagram, so a datagram that does not
decode, or that `push` rejects (rate limit, shutdown), is logged and counted and the loop goes on.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tempo_lite.errors import InvalidRequest
from tempo_lite.receivers.http_ingest import INLINE_PYTHON_DECODE_BYTES, decode_limiter
from tempo_lite.receivers.jaeger import decode_jaeger_agent_datagram

logger = logging.getLogger(__name__)

# The agent protocol fits one batch in one datagram; 65 000 bytes is the clients' own upper bound.
MAX_DATAGRAM_BYTES = 65535


@dataclass
class JaegerUDPStatistics:
    """Counters of one listener, for /metrics and tests."""

    datagrams_received: int = 0
    datagrams_rejected: int = 0  # did not decode as an emitBatch message
    push_failures: int = 0  # decoded, but the distributor refused or failed
    spans_received: int = 0


async def serve_jaeger_udp(
    host: str,
    port: int,
    compact: bool,
    push: Callable[[ExportTraceServiceRequest], Awaitable[None]],
    *,
    statistics: JaegerUDPStatistics | None = None,
    limiter: trio.CapacityLimiter | None = None,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on (host, port) until cancelled; `task_status.started((host, bound_port))` once bound."""
    stats = statistics if statistics is not None else JaegerUDPStatistics()
    threads = limiter or decode_limiter()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    protocol = "compact" if compact else "binary"
    with trio.socket.socket(family, socket.SOCK_DGRAM) as sock:
        await sock.bind((host, port))
        bound_port = sock.getsockname()[1]
        logger.info("jaeger agent UDP listener (%s thrift) on %s:%d", protocol, host, bound_port)
        task_status.started((host, bound_port))
        while True:
            datagram, peer = await sock.recvfrom(MAX_DATAGRAM_BYTES)
            stats.datagrams_received += 1
            try:
                if len(datagram) <= INLINE_PYTHON_DECODE_BYTES:
                    request = decode_jaeger_agent_datagram(datagram, compact)
                else:
                    request = await trio.to_thread.run_sync(
                        decode_jaeger_agent_datagram, datagram, compact, limiter=threads
                    )
            except InvalidRequest as exc:
                stats.datagrams_rejected += 1
                logger.warning(
                    "jaeger agent UDP: dropped %d-byte datagram from %s: %s", len(datagram), peer, exc.message
                )
                continue
            spans = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
            try:
                await push(request)
            except Exception:
                stats.push_failures += 1
                logger.exception("jaeger agent UDP: could not accept %d spans from %s", spans, peer)
                continue
            stats.spans_received += spans

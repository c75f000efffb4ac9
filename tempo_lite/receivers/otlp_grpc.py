"""OTLP/gRPC trace receiver: `TraceService/Export` on the generic gRPC-over-ASGI plumbing.

The tenant comes from the `x-scope-orgid` metadata; the push decides what an absent tenant means.
"""

from __future__ import annotations

import trio
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tempo_lite.grpc_server import GrpcCall, UnaryMethod, grpc_app
from tempo_lite.receivers import PushFn
from tempo_lite.receivers.http_ingest import INLINE_PROTOBUF_BYTES, decode_limiter
from tempo_lite.server import ASGIApp

EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
TENANT_METADATA = "x-scope-orgid"
# What grpc-go and the OpenTelemetry Collector accept by default.
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024


def otlp_grpc_app(
    push: PushFn, *, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, fallback: ASGIApp | None = None,
    limiter: trio.CapacityLimiter | None = None,
) -> ASGIApp:
    """ASGI app for OTLP/gRPC trace export; non-gRPC requests go to `fallback` (default: HTTP 415).

    Requests over 64 KiB, or compressed, are decompressed and parsed in a worker thread under `limiter`
    (the decoding threads every ingest listener shares; its own when None), as the HTTP receivers do.
    """
    threads = limiter or decode_limiter()

    async def export(request: ExportTraceServiceRequest, call: GrpcCall) -> ExportTraceServiceResponse:
        tenant = call.metadata.get(TENANT_METADATA) or None
        await push(tenant, request, call.message_bytes)
        return ExportTraceServiceResponse()

    return grpc_app(
        {EXPORT_METHOD: UnaryMethod(ExportTraceServiceRequest, export)},
        max_message_bytes=max_message_bytes,
        fallback=fallback,
        limiter=threads,
        inline_bytes=INLINE_PROTOBUF_BYTES,
    )

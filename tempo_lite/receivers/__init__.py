"""Receivers: decode OTLP (HTTP, gRPC), Zipkin and Jaeger requests into OTLP and hand them to the distributor.

Every receiver calls one `PushFn`, so validation, limits, tenancy and durability are the same whatever
the protocol. The push returns once the spans are durable in the WAL, or raises a
`tempo_lite.errors.TempoLiteError` that the receiver reports in its own protocol.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

# push(tenant_header, request, wire_size_bytes): tenant_header is the X-Scope-OrgID value (None if absent);
# the distributor resolves it (single-tenant, or 401 under multitenancy).
PushFn = Callable[[str | None, ExportTraceServiceRequest, int], Awaitable[None]]

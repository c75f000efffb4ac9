"""The distributor: resolves the tenant, validates, applies limits and appends durably to the WAL.

`Distributor.push` is the one `PushFn` every receiver calls. It returns only once the spans are
durable in the WAL, and refuses a whole request (nothing written) for invalid IDs, an unknown tenant,
a rate limit or a saturated WAL/live-store.

The hot path reads the request's canonical encoding at the wire level (`distributor.wire`): IDs, span
sizes and the attribute pre-check without a protobuf object per span, and the encoding itself goes to
the WAL. The protobuf objects are only walked and re-serialized when a limit must change the request
(truncate an attribute, drop spans of a trace over its byte limit); `validate_ids`, `shard` and the
`limits` functions are that object path, and tests/unit/test_distributor_wire.py checks both agree.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable

import trio
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from tempo_lite.config import Config, tenant_overrides
from tempo_lite.distributor import wire
from tempo_lite.distributor.limits import (
    DiscardReason,
    IngestionRateLimiter,
    TenantLimits,
    TraceSizeTracker,
    drop_spans_over_trace_limit,
    remove_spans,
    truncate_attributes,
)
from tempo_lite.distributor.tenant import check_tenant_id
from tempo_lite.errors import InvalidRequest, TempoLiteError, Unauthenticated, Unavailable
from tempo_lite.metrics import Metrics
from tempo_lite.wal import WalEntry, WriteAheadLog

SINGLE_TENANT = "single-tenant"
def validate_ids(request: ExportTraceServiceRequest) -> int:
    """Tempo's ingest rule: 16-byte trace IDs, 8-byte non-zero span IDs, else the whole push is refused.

    Returns the number of spans.
    """
    count = 0
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                wire.check_ids(span.trace_id, span.span_id)
                count += 1
    return count


def validate_times(request: ExportTraceServiceRequest) -> None:
    """The object path of `wire.check_times`: the same rule and message, first offending span first."""
    k = 0
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                problem = wire.time_problem(span)
                if problem:
                    raise InvalidRequest(f"span {k} of the request (trace {span.trace_id.hex()}): {problem}")
                k += 1


def partition_of(trace_id: bytes, partitions: int) -> int:
    return zlib.crc32(trace_id) % partitions if partitions > 1 else 0


def shard(request: ExportTraceServiceRequest, partitions: int) -> dict[int, bytes]:
    """Split by trace ID into one serialized `TracesData` per partition, keeping resource/scope grouping."""
    if partitions == 1:
        # ExportTraceServiceRequest and TracesData are wire-identical (field 1: resource_spans).
        return {0: request.SerializeToString()}
    out: dict[int, TracesData] = {}
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            by_partition: dict[int, list] = {}
            for span in ss.spans:
                by_partition.setdefault(partition_of(span.trace_id, partitions), []).append(span)
            for p, spans in by_partition.items():
                data = out.setdefault(p, TracesData())
                new_rs = data.resource_spans.add(resource=rs.resource, schema_url=rs.schema_url)
                new_ss = new_rs.scope_spans.add(scope=ss.scope, schema_url=ss.schema_url)
                new_ss.spans.extend(spans)
    return {p: d.SerializeToString() for p, d in out.items()}


class Distributor:
    def __init__(
        self,
        config: Config,
        wal: WriteAheadLog,
        metrics: Metrics,
        *,
        is_saturated: Callable[[], bool] = lambda: False,
        on_appended: Callable[[int], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.wal = wal
        self.metrics = metrics
        self.is_saturated = is_saturated
        self.on_appended = on_appended  # told the payload bytes of each append (the live-store's backlog)
        self.clock = clock
        self.rate_limiter = IngestionRateLimiter(self.limits_for)
        self.trace_sizes = TraceSizeTracker(self.limits_for)
        self._limits_cache: dict[str, TenantLimits] = {}
        self.accepting = True
        # The partitions to write to (the partition ring's active ones, wal/ring.py); None: every one.
        self.writable: tuple[int, ...] | None = None

    def limits_for(self, tenant: str) -> TenantLimits:
        limits = self._limits_cache.get(tenant)
        if limits is None:
            o = tenant_overrides(self.config, tenant)
            limits = TenantLimits(
                ingestion_rate_limit_bytes=o.ingestion.rate_limit_bytes,
                ingestion_burst_size_bytes=o.ingestion.burst_size_bytes,
                max_bytes_per_trace=o.global_.max_bytes_per_trace,
                max_attribute_bytes=o.max_attribute_bytes,
            )
            self._limits_cache[tenant] = limits
        return limits

    def resolve_tenant(self, header: str | None) -> str:
        if not self.config.multitenancy_enabled:
            return SINGLE_TENANT
        tenant = (header or "").strip()
        if not tenant:
            raise Unauthenticated("no org id")
        check_tenant_id(tenant)
        return tenant

    async def push(self, tenant_header: str | None, request: ExportTraceServiceRequest, size: int) -> None:
        try:
            await self._push(tenant_header, request, size)
        except TempoLiteError as exc:
            self.metrics.requests_refused.labels(type(exc).__name__).inc()
            raise

    async def _push(self, tenant_header: str | None, request: ExportTraceServiceRequest, size: int) -> None:
        tenant = self.resolve_tenant(tenant_header)
        # One canonical encoding (C) read at the wire level replaces per-span protobuf objects: IDs,
        # span sizes and the attribute-limit pre-check come from it, and it is what the WAL stores unless
        # a limit changes the request (then the object path below re-serializes).
        body = request.SerializeToString()
        scan = wire.scan(body)
        spans = scan.spans
        if spans == 0:
            return
        wire.check_times(scan)
        if not self.accepting:
            raise Unavailable("tempo-lite is shutting down")
        if self.is_saturated():
            self.metrics.discarded_spans.labels(DiscardReason.LIVE_TRACES_EXCEEDED, tenant).inc(spans)
            raise Unavailable("live-store is full: spans are not being flushed to storage fast enough")
        now = self.clock()
        try:
            self.rate_limiter.check(tenant, size, now)
        except TempoLiteError:
            self.metrics.discarded_spans.labels(DiscardReason.RATE_LIMITED, tenant).inc(spans)
            raise
        limits = self.limits_for(tenant)
        changed = False
        # No attribute can be longer than the resource, scope or span holding it: only walk the objects
        # when one of those is longer than the limit.
        if limits.max_attribute_bytes and scan.largest_message > limits.max_attribute_bytes:
            truncated = truncate_attributes(request, limits.max_attribute_bytes)
            if truncated:
                self.metrics.attributes_truncated.labels(tenant).inc(truncated)
                changed = True
        if limits.max_bytes_per_trace:
            if changed:  # sizes changed with the truncation: measure the objects
                dropped = drop_spans_over_trace_limit(request, tenant, self.trace_sizes, now)
            else:
                refused = self.trace_sizes.admit_all(tenant, scan.trace_ids, scan.sizes, now)
                dropped = remove_spans(request, scan.locate(refused)) if refused else 0
            if dropped:
                changed = True
                self.metrics.discarded_spans.labels(DiscardReason.TRACE_TOO_LARGE, tenant).inc(dropped)
                spans -= dropped
                if spans == 0:
                    return
        targets = self.writable
        if targets is not None and not targets:
            raise Unavailable("no WAL partition is active in the partition ring: no live-store takes writes")
        n = self.wal.partitions if targets is None else len(targets)
        if changed:
            payloads = shard(request, n)
        elif n == 1:
            payloads = {0: body}
        else:
            payloads = wire.shard(body, scan, n)
        if targets is not None:
            payloads = {targets[i]: payload for i, payload in payloads.items()}
        entries = [WalEntry(p, tenant, payload) for p, payload in payloads.items()]
        started = trio.current_time()
        await self.wal.append(entries)
        if self.on_appended is not None:
            self.on_appended(sum(len(e.payload) for e in entries))
        self.metrics.wal_append_seconds.observe(trio.current_time() - started)
        self.metrics.spans_received.labels(tenant).inc(spans)
        self.metrics.bytes_received.labels(tenant).inc(size)

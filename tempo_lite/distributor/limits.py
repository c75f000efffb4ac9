"""Per-tenant ingest limits as Tempo's `overrides` define them: rate and burst, bytes per trace, attributes.

Pure logic with the clock passed in (`now`, seconds on any monotonic scale), so the distributor decides
where time comes from and tests use fixed instants.

Defaults are Tempo's (`overrides.defaults.ingestion` / `global` in Tempo's configuration reference and
`docs/sources/tempo/configuration` "Ingestion limits"): rate_limit_bytes 15,000,000 B/s,
burst_size_bytes 20,000,000 B, max_bytes_per_trace 5,000,000 B; `max_attribute_bytes` 2048 B
(distributor setting since Tempo 2.7, "Troubleshoot out-of-memory errors"). Only the `local` rate strategy
exists here: with one distributor, Tempo's `global` strategy (limit divided by the number of
distributors) is the same thing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from tempo_lite.errors import RateLimited


@dataclass(frozen=True)
class TenantLimits:
    """One tenant's limits; 0 disables a limit (Tempo's convention for the per-trace and attribute ones)."""

    ingestion_rate_limit_bytes: int = 15_000_000
    ingestion_burst_size_bytes: int = 20_000_000
    max_bytes_per_trace: int = 5_000_000
    max_attribute_bytes: int = 2048


LimitsFor = Callable[[str], TenantLimits]


def fixed_limits(limits: TenantLimits) -> LimitsFor:
    """The same limits for every tenant (no per-tenant overrides)."""
    return lambda _tenant: limits


class DiscardReason(StrEnum):
    """Label values of Tempo's `tempo_discarded_spans_total{reason=...}`."""

    RATE_LIMITED = "rate_limited"
    TRACE_TOO_LARGE = "trace_too_large"
    LIVE_TRACES_EXCEEDED = "live_traces_exceeded"
    INTERNAL_ERROR = "internal_error"
    UNKNOWN_ERROR = "unknown_error"


class TenantCounters:
    """Monotonic counters keyed by (tenant, label): discarded spans by reason, truncated attributes..."""

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str]] = Counter()

    def add(self, tenant: str, label: str, amount: int = 1) -> None:
        if amount < 0:
            raise ValueError(f"counters only go up, got {amount}")
        if amount:
            self._counts[(tenant, str(label))] += amount

    def get(self, tenant: str, label: str) -> int:
        return self._counts[(tenant, str(label))]

    def items(self) -> Iterator[tuple[tuple[str, str], int]]:
        """((tenant, label), count) pairs, for exposition as Prometheus samples."""
        return iter(sorted(self._counts.items()))


# ---------------------------------------------------------------------------------------------------------
# Ingestion rate: a token bucket in bytes per tenant.


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass(frozen=True)
class BucketStatistics:
    tenant: str
    available_bytes: float
    rate_bytes_per_second: int
    burst_bytes: int


class IngestionRateLimiter:
    """Tempo's `ingestion.rate_limit_bytes` / `burst_size_bytes` (local strategy) as a token bucket.

    A bucket holds at most `burst` bytes and refills at `rate` bytes per second; a request takes its size
    from the bucket or is refused whole, leaving the bucket untouched (like Go's `rate.Limiter.AllowN`).
    """

    def __init__(self, limits_for: LimitsFor) -> None:
        self._limits_for = limits_for
        self._buckets: dict[str, _Bucket] = {}

    def _refill(self, tenant: str, limits: TenantLimits, now: float) -> _Bucket:
        burst = limits.ingestion_burst_size_bytes
        bucket = self._buckets.get(tenant)
        if bucket is None:
            bucket = self._buckets[tenant] = _Bucket(float(burst), now)
        elapsed = max(0.0, now - bucket.updated)
        bucket.tokens = min(float(burst), bucket.tokens + elapsed * limits.ingestion_rate_limit_bytes)
        bucket.updated = max(bucket.updated, now)
        return bucket

    def check(self, tenant: str, nbytes: int, now: float) -> None:
        """Take `nbytes` from the tenant's bucket or raise `RateLimited` saying when to retry."""
        limits = self._limits_for(tenant)
        rate, burst = limits.ingestion_rate_limit_bytes, limits.ingestion_burst_size_bytes
        if rate <= 0:  # tempo-lite: 0 turns the rate limit off (in Tempo it would refuse all but the burst)
            return
        bucket = self._refill(tenant, limits, now)
        if nbytes <= bucket.tokens:
            bucket.tokens -= nbytes
            return
        if nbytes > burst:
            raise RateLimited(
                f"RATE_LIMITED: batch of {nbytes} bytes for tenant {tenant} is larger than the ingestion "
                f"burst size ({burst} bytes) and can never be accepted: send smaller batches or raise "
                f"overrides ingestion.burst_size_bytes",
                retry_after=burst / rate,
            )
        raise RateLimited(
            f"RATE_LIMITED: ingestion rate limit (local: {rate} bytes, global: {rate} bytes) exceeded while "
            f"adding {nbytes} bytes for user {tenant}",
            retry_after=(nbytes - bucket.tokens) / rate,
        )

    def statistics(self, tenant: str, now: float) -> BucketStatistics:
        limits = self._limits_for(tenant)
        available = self._refill(tenant, limits, now).tokens
        return BucketStatistics(
            tenant, available, limits.ingestion_rate_limit_bytes, limits.ingestion_burst_size_bytes
        )


# ---------------------------------------------------------------------------------------------------------
# Attribute size.


def _truncate_utf8(text: str, max_bytes: int) -> str | None:
    """`text` cut to at most `max_bytes` UTF-8 bytes on a character boundary, or None if it already fits."""
    if len(text) * 4 <= max_bytes:  # cheap exit: even 4-byte characters would fit
        return None
    encoded = text.encode("utf-8")
    if len(encoded) <= max_bytes:
        return None
    return encoded[:max_bytes].decode("utf-8", errors="ignore")


def _truncate_value(value: AnyValue, max_bytes: int) -> bool:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        cut = _truncate_utf8(value.string_value, max_bytes)
        if cut is not None:
            value.string_value = cut
            return True
        return False
    if kind == "array_value":
        truncated = False
        for item in value.array_value.values:
            truncated = _truncate_value(item, max_bytes) or truncated
        return truncated
    if kind == "kvlist_value":
        return _truncate_key_values(value.kvlist_value.values, max_bytes) > 0
    return False


def _truncate_key_values(attributes: Iterable[KeyValue], max_bytes: int) -> int:
    count = 0
    for kv in attributes:
        truncated = False
        cut = _truncate_utf8(kv.key, max_bytes)
        if cut is not None:
            kv.key = cut
            truncated = True
        truncated = _truncate_value(kv.value, max_bytes) or truncated
        count += truncated
    return count


def truncate_attributes(request: ExportTraceServiceRequest, max_attribute_bytes: int) -> int:
    """Cut attribute keys and string values longer than `max_attribute_bytes`; return how many attributes.

    Resource, scope, span, event and link attributes are covered, and string values inside arrays and
    key-value lists too. Cuts fall on UTF-8 character boundaries (protobuf strings must stay valid UTF-8),
    so a cut value may be up to 3 bytes shorter than the limit. A message whose whole encoding fits the
    limit cannot hold a longer attribute, which skips the walk for almost every span.
    """
    if max_attribute_bytes <= 0:
        return 0
    limit = max_attribute_bytes
    count = 0
    for resource_spans in request.resource_spans:
        if resource_spans.ByteSize() <= limit:
            continue
        count += _truncate_key_values(resource_spans.resource.attributes, limit)
        for scope_spans in resource_spans.scope_spans:
            if scope_spans.ByteSize() <= limit:
                continue
            count += _truncate_key_values(scope_spans.scope.attributes, limit)
            for span in scope_spans.spans:
                if span.ByteSize() <= limit:
                    continue
                count += _truncate_key_values(span.attributes, limit)
                for event in span.events:
                    count += _truncate_key_values(event.attributes, limit)
                for link in span.links:
                    count += _truncate_key_values(link.attributes, limit)
    return count


# ---------------------------------------------------------------------------------------------------------
# Bytes per trace.


@dataclass
class _TraceSize:
    nbytes: int
    last_seen: float


class TraceSizeTracker:
    """Bytes seen per (tenant, trace ID), forgotten `idle_seconds` after a trace's last admitted bytes.

    Like Tempo's live traces: once a trace holds `max_bytes_per_trace`, further spans of it are refused
    (reason `trace_too_large`) while what was already admitted is kept. A trace idle for longer than
    `idle_seconds` starts counting from zero again.
    """

    def __init__(self, limits_for: LimitsFor, *, idle_seconds: float = 30.0) -> None:
        self._limits_for = limits_for
        self._idle_seconds = idle_seconds
        self._sizes: dict[tuple[str, bytes], _TraceSize] = {}
        self._next_sweep = float("-inf")

    def __len__(self) -> int:
        return len(self._sizes)

    def admit(self, tenant: str, trace_id: bytes, nbytes: int, now: float) -> bool:
        """Count `nbytes` more for this trace if that keeps it within the tenant's limit."""
        if now >= self._next_sweep:
            self.expire(now)
        limit = self._limits_for(tenant).max_bytes_per_trace
        if limit <= 0:
            return True
        key = (tenant, trace_id)
        entry = self._sizes.get(key)
        if entry is None or now - entry.last_seen > self._idle_seconds:
            entry = self._sizes[key] = _TraceSize(0, now)
        if entry.nbytes + nbytes > limit:
            return False
        entry.nbytes += nbytes
        entry.last_seen = now
        return True

    def admit_all(self, tenant: str, trace_ids: list[bytes], sizes: list[int], now: float) -> list[int]:
        """`admit` for each (trace ID, size) pair in order; return the indexes of the refused ones."""
        if now >= self._next_sweep:
            self.expire(now)
        limit = self._limits_for(tenant).max_bytes_per_trace
        if limit <= 0:
            return []
        refused: list[int] = []
        known = self._sizes
        idle = self._idle_seconds
        for i, (trace_id, nbytes) in enumerate(zip(trace_ids, sizes, strict=True)):
            key = (tenant, trace_id)
            entry = known.get(key)
            if entry is None or now - entry.last_seen > idle:
                entry = known[key] = _TraceSize(0, now)
            if entry.nbytes + nbytes > limit:
                refused.append(i)
                continue
            entry.nbytes += nbytes
            entry.last_seen = now
        return refused

    def size(self, tenant: str, trace_id: bytes) -> int:
        entry = self._sizes.get((tenant, trace_id))
        return entry.nbytes if entry else 0

    def expire(self, now: float) -> int:
        """Forget traces idle for longer than `idle_seconds`; return how many were forgotten."""
        stale = [key for key, entry in self._sizes.items() if now - entry.last_seen > self._idle_seconds]
        for key in stale:
            del self._sizes[key]
        # A sweep walks every entry: at most one per idle period keeps the cost per admit constant.
        self._next_sweep = now + self._idle_seconds
        return len(stale)


def drop_spans_over_trace_limit(
    request: ExportTraceServiceRequest, tenant: str, tracker: TraceSizeTracker, now: float
) -> int:
    """Remove from `request` the spans whose trace is over its byte limit; return how many were removed.

    Spans are admitted by their encoded size in request order, so a trace crossing the limit keeps its
    first spans. Scope and resource groups emptied by the removal are removed too.
    """
    refused: list[tuple[int, int, list[int]]] = []  # (resource index, scope index, span indexes)
    for r, resource_spans in enumerate(request.resource_spans):
        for s, scope_spans in enumerate(resource_spans.scope_spans):
            spans = [
                i
                for i, span in enumerate(scope_spans.spans)
                if not tracker.admit(tenant, span.trace_id, span.ByteSize(), now)
            ]
            if spans:
                refused.append((r, s, spans))
    return remove_spans(request, refused)


def remove_spans(request: ExportTraceServiceRequest, refused: list[tuple[int, int, list[int]]]) -> int:
    """Delete spans given as (resource index, scope index, ascending span indexes); return how many.

    Scope and resource groups emptied by the removal are removed too.
    """
    # Delete back to front so the indexes stay valid.
    for r, s, spans in reversed(refused):
        resource_spans = request.resource_spans[r]
        scope_spans = resource_spans.scope_spans[s]
        for i in reversed(spans):
            del scope_spans.spans[i]
        if not scope_spans.spans:
            del resource_spans.scope_spans[s]
            if not resource_spans.scope_spans:
                del request.resource_spans[r]
    return sum(len(spans) for _, _, spans in refused)

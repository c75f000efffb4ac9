"""Per-tenant ingest limits: rate/burst token bucket, attribute truncation, bytes per trace, counters."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from tempo_lite.distributor.limits import (
    DiscardReason,
    IngestionRateLimiter,
    TenantCounters,
    TenantLimits,
    TraceSizeTracker,
    drop_spans_over_trace_limit,
    fixed_limits,
    truncate_attributes,
)
from tempo_lite.errors import RateLimited


def test_defaults_are_tempos() -> None:
    limits = TenantLimits()
    assert limits.ingestion_rate_limit_bytes == 15_000_000
    assert limits.ingestion_burst_size_bytes == 20_000_000
    assert limits.max_bytes_per_trace == 5_000_000
    assert limits.max_attribute_bytes == 2048


# --- rate limit -------------------------------------------------------------------------------------------


def limiter(rate: int = 100, burst: int = 300) -> IngestionRateLimiter:
    return IngestionRateLimiter(
        fixed_limits(TenantLimits(ingestion_rate_limit_bytes=rate, ingestion_burst_size_bytes=burst))
    )


def test_rate_limiter_allows_the_burst_then_refuses_with_the_time_to_refill() -> None:
    rl = limiter(rate=100, burst=300)
    rl.check("a", 200, now=0.0)
    rl.check("a", 100, now=0.0)
    with pytest.raises(RateLimited) as refused:
        rl.check("a", 50, now=0.0)
    assert refused.value.retry_after == pytest.approx(0.5)
    assert "RATE_LIMITED" in refused.value.message and "50 bytes" in refused.value.message
    # a refused request takes nothing: after exactly retry_after it passes
    rl.check("a", 50, now=0.5)
    with pytest.raises(RateLimited):
        rl.check("a", 1, now=0.5)


def test_rate_limiter_refills_at_the_rate_and_caps_at_the_burst() -> None:
    rl = limiter(rate=100, burst=300)
    rl.check("a", 300, now=10.0)
    assert rl.statistics("a", now=11.0).available_bytes == pytest.approx(100)
    assert rl.statistics("a", now=1000.0).available_bytes == pytest.approx(300)
    rl.check("a", 300, now=1000.0)


def test_rate_limiter_tenants_have_separate_buckets() -> None:
    rl = limiter(rate=10, burst=100)
    rl.check("a", 100, now=0.0)
    with pytest.raises(RateLimited):
        rl.check("a", 1, now=0.0)
    rl.check("b", 100, now=0.0)


def test_rate_limiter_uses_per_tenant_overrides() -> None:
    small = TenantLimits(ingestion_rate_limit_bytes=10, ingestion_burst_size_bytes=10)
    rl = IngestionRateLimiter(lambda tenant: small if tenant == "small" else TenantLimits())
    with pytest.raises(RateLimited):
        rl.check("small", 11, now=0.0)
    rl.check("big", 1_000_000, now=0.0)


def test_rate_limiter_batch_over_burst_is_refused_saying_why() -> None:
    rl = limiter(rate=100, burst=300)
    with pytest.raises(RateLimited) as refused:
        rl.check("a", 301, now=0.0)
    assert "burst" in refused.value.message and "301" in refused.value.message
    assert refused.value.retry_after == pytest.approx(3.0)
    rl.check("a", 300, now=0.0)  # the refusal took no tokens


def test_rate_limiter_zero_rate_disables_it() -> None:
    rl = limiter(rate=0, burst=0)
    for _ in range(10):
        rl.check("a", 10**9, now=0.0)


def test_rate_limiter_clock_going_backwards_adds_no_tokens() -> None:
    rl = limiter(rate=100, burst=300)
    rl.check("a", 300, now=5.0)
    with pytest.raises(RateLimited):
        rl.check("a", 100, now=4.0)
    rl.check("a", 100, now=6.0)


# --- attribute truncation ---------------------------------------------------------------------------------


def kv(key: str, value: AnyValue | str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value) if isinstance(value, str) else value)


def request_with(
    span_attrs: Sequence[KeyValue] = (),
    resource_attrs: Sequence[KeyValue] = (),
    event_attrs: Sequence[KeyValue] = (),
    link_attrs: Sequence[KeyValue] = (),
) -> ExportTraceServiceRequest:
    span = Span(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="op", attributes=span_attrs)
    if event_attrs:
        span.events.add(name="ev", attributes=event_attrs)
    if link_attrs:
        span.links.add(trace_id=b"\x03" * 16, span_id=b"\x04" * 8, attributes=link_attrs)
    rs = ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])
    rs.resource.attributes.extend(resource_attrs)
    return ExportTraceServiceRequest(resource_spans=[rs])


def test_truncate_attributes_cuts_long_values_and_keys_everywhere() -> None:
    req = request_with(
        span_attrs=[kv("short", "ok"), kv("long", "x" * 100), kv("k" * 50, "v")],
        resource_attrs=[kv("service.name", "s" * 40)],
        event_attrs=[kv("e", "e" * 33)],
        link_attrs=[kv("l", "l" * 32)],
    )
    assert truncate_attributes(req, 32) == 4
    span = req.resource_spans[0].scope_spans[0].spans[0]
    assert [(a.key, a.value.string_value) for a in span.attributes] == [
        ("short", "ok"),
        ("long", "x" * 32),
        ("k" * 32, "v"),
    ]
    assert req.resource_spans[0].resource.attributes[0].value.string_value == "s" * 32
    assert span.events[0].attributes[0].value.string_value == "e" * 32
    assert span.links[0].attributes[0].value.string_value == "l" * 32  # exactly at the limit: kept


def test_truncate_attributes_counts_an_attribute_once_and_reaches_nested_values() -> None:
    nested = AnyValue(array_value=ArrayValue(values=[AnyValue(string_value="a" * 40), AnyValue(int_value=7)]))
    kvlist = AnyValue(kvlist_value=KeyValueList(values=[kv("inner" * 10, "b" * 40)]))
    req = request_with(span_attrs=[kv("key" * 20, "v" * 40), kv("arr", nested), kv("map", kvlist)])
    assert truncate_attributes(req, 16) == 3
    attrs = req.resource_spans[0].scope_spans[0].spans[0].attributes
    assert attrs[0].key == ("key" * 20)[:16] and attrs[0].value.string_value == "v" * 16
    assert attrs[1].value.array_value.values[0].string_value == "a" * 16
    assert attrs[1].value.array_value.values[1].int_value == 7
    inner = attrs[2].value.kvlist_value.values[0]
    assert inner.key == ("inner" * 10)[:16] and inner.value.string_value == "b" * 16


def test_truncate_attributes_cuts_on_a_utf8_character_boundary() -> None:
    req = request_with(span_attrs=[kv("k", "é" * 20)])  # 2 bytes per character
    assert truncate_attributes(req, 15) == 1
    value = req.resource_spans[0].scope_spans[0].spans[0].attributes[0].value.string_value
    assert value == "é" * 7 and len(value.encode()) == 14
    req.SerializeToString()  # still valid UTF-8


def test_truncate_attributes_leaves_short_and_non_string_values_and_zero_disables() -> None:
    req = request_with(
        span_attrs=[kv("n", AnyValue(int_value=123456789)), kv("b", AnyValue(bytes_value=b"z" * 99))]
    )
    before = req.SerializeToString()
    assert truncate_attributes(req, 8) == 0
    assert req.SerializeToString() == before
    long = request_with(span_attrs=[kv("long", "x" * 10_000)])
    assert truncate_attributes(long, 0) == 0
    assert long.resource_spans[0].scope_spans[0].spans[0].attributes[0].value.string_value == "x" * 10_000


# --- bytes per trace --------------------------------------------------------------------------------------


def tracker(max_bytes: int = 100, idle: float = 10.0) -> TraceSizeTracker:
    return TraceSizeTracker(fixed_limits(TenantLimits(max_bytes_per_trace=max_bytes)), idle_seconds=idle)


def test_trace_size_refuses_bytes_beyond_the_limit_and_keeps_counting_others() -> None:
    t = tracker(max_bytes=100)
    assert t.admit("a", b"T1", 60, now=0.0)
    assert not t.admit("a", b"T1", 50, now=1.0)  # would make 110
    assert t.admit("a", b"T1", 40, now=2.0)  # exactly 100 still fits
    assert not t.admit("a", b"T1", 1, now=3.0)
    assert t.size("a", b"T1") == 100
    assert t.admit("a", b"T2", 100, now=3.0)
    assert t.admit("b", b"T1", 100, now=3.0)  # tenants are separate


def test_trace_size_forgets_idle_traces() -> None:
    t = tracker(max_bytes=100, idle=10.0)
    assert t.admit("a", b"T1", 100, now=0.0)
    assert not t.admit("a", b"T1", 1, now=10.0)
    assert t.admit("a", b"T1", 100, now=20.5)  # idle for > 10 s since last admitted bytes at 0.0
    assert t.admit("a", b"T2", 1, now=25.0)
    assert t.expire(now=40.0) == 2
    assert len(t) == 0


def test_trace_size_zero_limit_admits_everything() -> None:
    t = tracker(max_bytes=0)
    assert all(t.admit("a", b"T", 10**9, now=0.0) for _ in range(3))
    assert len(t) == 0


def test_trace_size_sweeps_stale_entries_while_admitting() -> None:
    t = tracker(max_bytes=100, idle=1.0)
    for i in range(50):
        t.admit("a", i.to_bytes(16, "big"), 1, now=0.0)
    assert len(t) == 50
    t.admit("a", b"new", 1, now=5.0)
    assert len(t) == 1


def make_span(trace: int, span: int, payload: int) -> Span:
    return Span(
        trace_id=trace.to_bytes(16, "big"),
        span_id=span.to_bytes(8, "big"),
        name="x" * payload,
    )


def test_drop_spans_over_trace_limit_keeps_first_spans_and_other_traces() -> None:
    spans = [make_span(1, 1, 50), make_span(2, 2, 50), make_span(1, 3, 50), make_span(1, 4, 50)]
    span_size = spans[0].ByteSize()
    req = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(scope_spans=[ScopeSpans(spans=spans[:2])]),
            ResourceSpans(scope_spans=[ScopeSpans(spans=spans[2:3]), ScopeSpans(spans=spans[3:])]),
        ]
    )
    t = tracker(max_bytes=2 * span_size)
    assert drop_spans_over_trace_limit(req, "a", t, now=0.0) == 1
    kept = [
        (int.from_bytes(s.trace_id, "big"), int.from_bytes(s.span_id, "big"))
        for rs in req.resource_spans
        for ss in rs.scope_spans
        for s in ss.spans
    ]
    assert kept == [(1, 1), (2, 2), (1, 3)]
    # the emptied scope group was removed, its resource group kept
    assert [len(rs.scope_spans) for rs in req.resource_spans] == [1, 1]


def test_drop_spans_over_trace_limit_removes_emptied_resource_groups() -> None:
    big = make_span(9, 1, 200)
    req = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(scope_spans=[ScopeSpans(spans=[big])]),
            ResourceSpans(scope_spans=[ScopeSpans(spans=[make_span(8, 2, 1)])]),
        ]
    )
    t = tracker(max_bytes=100)
    assert drop_spans_over_trace_limit(req, "a", t, now=0.0) == 1
    assert len(req.resource_spans) == 1
    assert req.resource_spans[0].scope_spans[0].spans[0].trace_id == (8).to_bytes(16, "big")


# --- counters ---------------------------------------------------------------------------------------------


def test_tenant_counters_count_discarded_spans_by_reason() -> None:
    counters = TenantCounters()
    counters.add("a", DiscardReason.RATE_LIMITED, 10)
    counters.add("a", DiscardReason.RATE_LIMITED, 5)
    counters.add("b", DiscardReason.TRACE_TOO_LARGE, 2)
    counters.add("b", DiscardReason.TRACE_TOO_LARGE, 0)
    assert counters.get("a", "rate_limited") == 15
    assert counters.get("a", DiscardReason.TRACE_TOO_LARGE) == 0
    assert list(counters.items()) == [(("a", "rate_limited"), 15), (("b", "trace_too_large"), 2)]
    with pytest.raises(ValueError):
        counters.add("a", DiscardReason.RATE_LIMITED, -1)

"""The distributor's wire-level fast path agrees with the protobuf-object path on random requests.

The object path is the reference (`validate_ids`, `truncate_attributes`, `drop_spans_over_trace_limit`,
`shard` applied to the parsed request, as the distributor did before `distributor.wire` existed); the
fast path is `Distributor.push` on a real embedded WAL. Both see the same random requests (hypothesis),
limits and earlier traffic, and must refuse with the same message, truncate and drop the same, leave the
trace-size tracker in the same state and write the same bytes to every WAL partition.
"""

from __future__ import annotations

import tempfile

import trio
from fuzzing import examples
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList

from tempo_lite.config import Config
from tempo_lite.distributor import SINGLE_TENANT, Distributor, shard, validate_ids, validate_times, wire
from tempo_lite.distributor.limits import (
    DiscardReason,
    TenantLimits,
    TraceSizeTracker,
    drop_spans_over_trace_limit,
    fixed_limits,
    truncate_attributes,
)
from tempo_lite.errors import InvalidRequest
from tempo_lite.metrics import Metrics
from tempo_lite.wal.embedded import open_embedded_wal

TRACE_IDS = [bytes([i]) * 16 for i in range(1, 6)]
text = st.text(alphabet=st.sampled_from("ab\u00e9\u4e2d\U0001f600"), max_size=40)


@st.composite
def any_values(draw: st.DrawFn, depth: int = 0) -> AnyValue:
    kind = draw(st.sampled_from(["s", "i", "b", "arr", "kv"] if depth < 2 else ["s", "i", "b"]))
    if kind == "s":
        return AnyValue(string_value=draw(text))
    if kind == "i":
        return AnyValue(int_value=draw(st.integers(-(2**63), 2**63 - 1)))
    if kind == "b":
        return AnyValue(bytes_value=draw(st.binary(max_size=40)))
    if kind == "arr":
        return AnyValue(array_value=ArrayValue(values=draw(st.lists(any_values(depth + 1), max_size=3))))
    return AnyValue(kvlist_value=KeyValueList(values=draw(key_values(depth + 1))))


def key_values(depth: int = 0) -> st.SearchStrategy[list[KeyValue]]:
    return st.lists(st.builds(lambda k, v: KeyValue(key=k, value=v), text, any_values(depth)), max_size=3)


@st.composite
def requests(draw: st.DrawFn) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    for _ in range(draw(st.integers(0, 3))):
        rs = request.resource_spans.add(schema_url=draw(st.sampled_from(["", "https://r"])))
        if draw(st.booleans()):
            rs.resource.attributes.extend(draw(key_values()))
        for _ in range(draw(st.integers(0, 3))):
            ss = rs.scope_spans.add(schema_url=draw(st.sampled_from(["", "https://s"])))
            if draw(st.booleans()):
                ss.scope.name = draw(text)
                ss.scope.attributes.extend(draw(key_values()))
            for _ in range(draw(st.integers(0, 5))):
                span = ss.spans.add(
                    # Mostly valid IDs; now and then a wrong length or an all-zero span ID.
                    trace_id=draw(st.one_of(st.sampled_from(TRACE_IDS), st.binary(max_size=17))
                                  if draw(st.integers(0, 30)) == 0 else st.sampled_from(TRACE_IDS)),
                    span_id=draw(st.sampled_from([b"\x00" * 8, b"\x01" * 7, b""]) if draw(st.integers(0, 30)) == 0
                                 else st.binary(min_size=8, max_size=8).filter(lambda b: any(b))),
                    name=draw(text),
                    kind=draw(st.integers(0, 5)),
                    start_time_unix_nano=draw(st.integers(0, 2**64 - 1)),
                )
                span.attributes.extend(draw(key_values()))
                for _ in range(draw(st.integers(0, 2))):
                    span.events.add(name=draw(text)).attributes.extend(draw(key_values()))
                if draw(st.booleans()):
                    span.links.add(trace_id=TRACE_IDS[0], span_id=b"\x02" * 8).attributes.extend(draw(key_values()))
    return request


def reference_push(
    request: ExportTraceServiceRequest, limits: TenantLimits, tracker: TraceSizeTracker, partitions: int
) -> tuple[str | None, dict[int, bytes], int, int]:
    """The object path: (refusal message, WAL payloads, attributes truncated, spans dropped)."""
    try:
        spans = validate_ids(request)
        validate_times(request)
    except InvalidRequest as exc:
        return exc.message, {}, 0, 0
    if spans == 0:
        return None, {}, 0, 0
    truncated = truncate_attributes(request, limits.max_attribute_bytes) if limits.max_attribute_bytes else 0
    dropped = 0
    if limits.max_bytes_per_trace:
        dropped = drop_spans_over_trace_limit(request, SINGLE_TENANT, tracker, 0.0)
    if spans == dropped:
        return None, {}, truncated, dropped
    return None, shard(request, partitions), truncated, dropped


def counter(metrics: Metrics, name: str, labels: dict[str, str]) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def fast_push(
    batch: list[ExportTraceServiceRequest], limits: TenantLimits, partitions: int
) -> tuple[list[str | None], dict[int, list[bytes]], Distributor]:
    refusals: list[str | None] = []
    with tempfile.TemporaryDirectory() as tmp:
        wal = await open_embedded_wal(tmp, partitions, ("g",), 1 << 30)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wal.run)
            distributor = Distributor(Config(), wal, Metrics(), clock=lambda: 0.0)
            distributor._limits_cache[SINGLE_TENANT] = limits
            for request in batch:
                try:
                    await distributor.push(None, request, request.ByteSize())
                    refusals.append(None)
                except InvalidRequest as exc:
                    refusals.append(exc.message)
            written = {p: [r.payload for r in await wal.read(p, 0, 1000)] for p in range(partitions)}
            await wal.aclose()
            nursery.cancel_scope.cancel()
    return refusals, written, distributor


limit_settings = st.builds(
    lambda attr, trace: TenantLimits(
        ingestion_rate_limit_bytes=0, max_attribute_bytes=attr, max_bytes_per_trace=trace
    ),
    st.sampled_from([0, 6, 20, 2048]),
    st.sampled_from([0, 150, 600, 5_000_000]),
)


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.lists(requests(), min_size=1, max_size=3), limits=limit_settings,
       partitions=st.sampled_from([1, 3]))
def test_fast_path_matches_object_path(
    batch: list[ExportTraceServiceRequest], limits: TenantLimits, partitions: int
) -> None:
    truncated, dropped = assert_paths_agree(batch, limits, partitions)
    event(f"truncated: {truncated > 0}, dropped: {dropped > 0}")


def test_long_span_attribute_is_truncated_when_resource_and_scope_are_small() -> None:
    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    spans.add(trace_id=TRACE_IDS[0], span_id=b"\x01" * 8)
    spans.add(trace_id=TRACE_IDS[1], span_id=b"\x02" * 8).attributes.add(key="k").value.string_value = "\u00e9" * 30
    limits = TenantLimits(ingestion_rate_limit_bytes=0, max_attribute_bytes=25, max_bytes_per_trace=0)
    assert assert_paths_agree([request], limits, 1) == (1, 0)


def test_spans_over_the_trace_limit_are_dropped_from_the_wal_record() -> None:
    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    for i in range(1, 5):
        spans.add(trace_id=TRACE_IDS[i % 2], span_id=bytes([i]) * 8, name="n" * 40)
    request.resource_spans.add().scope_spans.add().spans.add(trace_id=TRACE_IDS[0], span_id=b"\x09" * 8)
    limits = TenantLimits(ingestion_rate_limit_bytes=0, max_attribute_bytes=0, max_bytes_per_trace=100)
    # 70-byte spans: the second of each trace is refused, the 28-byte last span still fits its trace.
    assert assert_paths_agree([request], limits, 3) == (0, 2)


def assert_paths_agree(
    batch: list[ExportTraceServiceRequest], limits: TenantLimits, partitions: int
) -> tuple[int, int]:
    """Push `batch` both ways and compare; return (attributes truncated, spans dropped)."""
    tracker = TraceSizeTracker(fixed_limits(limits))
    expected_refusals: list[str | None] = []
    expected_written: dict[int, list[bytes]] = {p: [] for p in range(partitions)}
    truncated = dropped = 0
    for request in batch:
        copy = ExportTraceServiceRequest()
        copy.CopyFrom(request)
        refusal, payloads, t, d = reference_push(copy, limits, tracker, partitions)
        expected_refusals.append(refusal)
        truncated += t
        dropped += d
        for p, payload in payloads.items():
            expected_written[p].append(payload)

    refusals, written, distributor = trio.run(fast_push, batch, limits, partitions)

    assert refusals == expected_refusals
    assert written == expected_written
    assert {k: v.nbytes for k, v in distributor.trace_sizes._sizes.items()} == {
        k: v.nbytes for k, v in tracker._sizes.items()
    }
    metrics = distributor.metrics
    assert counter(metrics, "tempo_distributor_attributes_truncated_total", {"tenant": SINGLE_TENANT}) == truncated
    assert counter(metrics, "tempo_discarded_spans_total",
                   {"reason": DiscardReason.TRACE_TOO_LARGE.value, "tenant": SINGLE_TENANT}) == dropped
    return truncated, dropped


@settings(max_examples=examples(100), deadline=None)
@given(request=requests(), partitions=st.sampled_from([2, 3, 7]))
def test_scan_sizes_and_shards_equal_the_objects(request: ExportTraceServiceRequest, partitions: int) -> None:
    try:
        validate_ids(request)
    except InvalidRequest as exc:
        try:
            wire.scan(request.SerializeToString())
        except InvalidRequest as fast:
            assert fast.message == exc.message
            return
        raise AssertionError("the wire scan accepted IDs the object path refuses") from None
    scanned = wire.scan(request.SerializeToString())
    spans = [span for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans]
    assert scanned.sizes == [span.ByteSize() for span in spans]
    assert scanned.trace_ids == [span.trace_id for span in spans]
    assert wire.shard(request.SerializeToString(), scanned, partitions) == shard(request, partitions)


def test_span_ids_reads_the_last_occurrence_in_any_field_order() -> None:
    # status (15), span_id (2), trace_id (1), then trace_id again: the last one wins, as in protobuf.
    encoded = (b"\x7a\x00" + b"\x12\x08" + b"\x01" * 8 + b"\x0a\x10" + b"\x02" * 16
               + b"\x30\x02" + b"\x0a\x10" + b"\x03" * 16)
    assert wire.span_ids(encoded) == (b"\x03" * 16, b"\x01" * 8)


def test_scan_refuses_the_first_bad_span_in_request_order() -> None:
    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    spans.add(trace_id=TRACE_IDS[0], span_id=b"\x01" * 8)
    spans.add(trace_id=b"\x01" * 8, span_id=b"\x00" * 8)  # both wrong: the trace ID is reported
    spans.add(trace_id=TRACE_IDS[0], span_id=b"\x00" * 8)
    try:
        wire.scan(request.SerializeToString())
    except InvalidRequest as exc:
        assert exc.message == "trace ids must be 128 bit, received 64 bits"
    else:
        raise AssertionError("an 8-byte trace ID was accepted")


def test_locate_maps_flat_indexes_to_groups() -> None:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.scope_spans.add().spans.add(trace_id=TRACE_IDS[0], span_id=b"\x01" * 8)
    rs.scope_spans.add()  # empty scope: not a group
    second = rs.scope_spans.add().spans
    for i in range(3):
        second.add(trace_id=TRACE_IDS[1], span_id=bytes([i + 1]) * 8)
    request.resource_spans.add().scope_spans.add().spans.add(trace_id=TRACE_IDS[2], span_id=b"\x05" * 8)
    scanned = wire.scan(request.SerializeToString())
    assert scanned.groups == [(0, 0, 1), (0, 2, 3), (1, 0, 1)]
    assert scanned.locate([0, 2, 3, 4]) == [(0, 0, [0]), (0, 2, [1, 2]), (1, 0, [0])]

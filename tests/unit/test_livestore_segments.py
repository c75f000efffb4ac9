"""Live-store segments leave memory in two ways, one rule: flushed segments are dropped at once under
pressure (`release_flushed`) or after the recent window (`expire`), and a dropped segment's tables are
not kept alive by a cached query view."""

from __future__ import annotations

import gc
import weakref
from types import SimpleNamespace
from typing import Any

import numpy as np
import pyarrow as pa
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tempo_lite import spantable
from tempo_lite.livestore import LiveStore
from tempo_lite.metrics import Metrics


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def table(first_trace: int, spans: int = 3) -> spantable.SpanTable:
    request = ExportTraceServiceRequest()
    scope_spans = request.resource_spans.add().scope_spans.add()
    for i in range(first_trace, first_trace + spans):
        scope_spans.spans.append(Span(trace_id=i.to_bytes(16, "big"), span_id=(i + 1).to_bytes(8, "big"),
                                      name="op", start_time_unix_nano=10, end_time_unix_nano=20))
    return spantable.flatten_bytes(request.SerializeToString())


def tracked(t: spantable.SpanTable) -> tuple[spantable.SpanTable, weakref.ref]:
    """`t` with its start times in a numpy array, and a weak reference telling whether anything (a
    segment, a cached view) still holds that memory."""
    starts = np.array(t.spans.column("start_unix_nano").to_pylist(), dtype=np.int64)
    index = t.spans.schema.get_field_index("start_unix_nano")
    spans = t.spans.set_column(index, "start_unix_nano", pa.array(starts))  # zero-copy: Arrow holds `starts`
    return spantable.SpanTable(spans, t.resources), weakref.ref(starts)


def store(clock: Clock, metrics: Metrics | None = None) -> LiveStore:
    wal: Any = SimpleNamespace(partitions=1)
    return LiveStore(wal, metrics or Metrics(), max_bytes=1 << 30, complete_block_timeout=60, clock=clock)


def trace_ids(live: LiveStore) -> set[int]:
    snap = live.snapshot("t")
    return {int.from_bytes(t, "big") for t in snap.spans.column("trace_id").to_pylist()}


def test_expire_drops_flushed_segments_past_the_window_and_keeps_the_rest() -> None:
    clock = Clock()
    metrics = Metrics()
    live = store(clock, metrics)
    live.add_segment(0, 0, 1, {"t": table(0)})
    live.add_segment(0, 1, 2, {"t": table(100)})
    live.add_segment(0, 2, 3, {"t": table(200)})
    live.mark_flushed(0, 1)  # the first segment is in a block now
    clock.now += 30
    live.mark_flushed(0, 2)  # the second one 30 s later
    clock.now += 31  # the first is past the 60 s window, the second is not
    freed = live.expire()
    assert freed > 0
    assert trace_ids(live) == {100, 101, 102, 200, 201, 202}
    assert live.nbytes == sum(s.nbytes for s in live.segments[0])
    assert metrics.livestore_bytes._value.get() == live.nbytes
    assert live.expire() == 0  # nothing more to drop yet


def test_release_flushed_drops_every_flushed_segment_at_once() -> None:
    clock = Clock()
    live = store(clock)
    live.add_segment(0, 0, 1, {"t": table(0)})
    live.add_segment(0, 1, 2, {"t": table(100)})
    live.mark_flushed(0, 1)
    live.release_flushed()
    assert trace_ids(live) == {100, 101, 102}
    assert [s.first_offset for s in live.segments[0]] == [1]
    assert live.pending_bytes() == live.nbytes


def test_a_cached_view_does_not_keep_expired_tables_alive() -> None:
    clock = Clock()
    live = store(clock)
    expired, gone = tracked(table(0))
    live.add_segment(0, 0, 1, {"t": expired})
    live.add_segment(0, 1, 2, {"t": table(100)})
    assert trace_ids(live) == {0, 1, 2, 100, 101, 102}  # builds and caches the tenant's view
    del expired
    live.mark_flushed(0, 1)
    clock.now += 61
    live.expire()
    gc.collect()
    assert gone() is None, "the view cached before the expiry still holds the expired segment's table"
    assert trace_ids(live) == {100, 101, 102}


def test_a_cached_view_does_not_keep_released_tables_alive() -> None:
    clock = Clock()
    live = store(clock)
    released, gone = tracked(table(0))
    live.add_segment(0, 0, 1, {"t": released})
    live.add_segment(0, 1, 2, {"t": table(100)})
    live.snapshot("t")
    del released
    live.mark_flushed(0, 1)
    live.release_flushed()
    gc.collect()
    assert gone() is None
    assert trace_ids(live) == {100, 101, 102}

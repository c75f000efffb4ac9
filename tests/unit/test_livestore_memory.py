"""The live-store's memory watch counts what the process really holds (its RSS): above `max_bytes +
memory_overhead` over its start-up RSS it flushes early, releases flushed segments, gives free allocator
pages back and refuses writes, but only while the live-store holds something a flush can free."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import trio
import trio.testing
from test_livestore_segments import Clock, table

from tempo_lite.livestore import PRESSURE_FRACTION, LiveStore
from tempo_lite.livestore.memory import MemoryWatch, process_rss
from tempo_lite.metrics import Metrics

MiB = 1 << 20


class Rss:
    def __init__(self, value: int) -> None:
        self.value = value

    def __call__(self) -> int:
        return self.value


def test_the_watch_is_over_while_rss_exceeds_its_start_by_more_than_the_limit() -> None:
    rss = Rss(100 * MiB)
    watch = MemoryWatch(50 * MiB, rss=rss, trim=lambda: True)
    assert not watch.check()  # the first sample is the baseline
    assert watch.baseline == 100 * MiB
    rss.value = 150 * MiB
    assert not watch.check()  # exactly at the limit
    rss.value = 151 * MiB
    assert watch.check() and watch.times_over == 1
    assert watch.check() and watch.times_over == 1  # still the same episode
    rss.value = 120 * MiB
    assert not watch.check()
    rss.value = 200 * MiB
    assert watch.check() and watch.times_over == 2
    assert watch.peak_above_baseline == 100 * MiB


async def test_the_watch_trims_at_most_once_a_second_and_reports_each_change(
    mock_clock: trio.testing.MockClock,
) -> None:
    mock_clock.rate = 20  # virtual seconds per real second: the trims run in real worker threads
    rss = Rss(100 * MiB)
    trims: list[int] = []
    changes: list[bool] = []

    def trim() -> bool:  # runs in a worker thread
        trims.append(1)
        return True

    watch = MemoryWatch(10 * MiB, rss=rss, trim=trim)
    async with trio.open_nursery() as nursery:
        await nursery.start(watch.run, changes.append)
        await trio.sleep(2.0)
        assert trims == [] and changes == []  # under the limit: nothing to do
        rss.value = 200 * MiB
        await trio.sleep(3.05)
        assert changes == [True]
        assert 3 <= len(trims) <= 4, len(trims)  # sampled 30 times, trimmed once a second
        rss.value = 105 * MiB
        await trio.sleep(2.0)
        assert changes == [True, False]
        count = len(trims)
        await trio.sleep(2.0)
        assert len(trims) == count  # back under: no more trims
        nursery.cancel_scope.cancel()


def store(max_bytes: int, batch_bytes: int) -> LiveStore:
    wal: Any = SimpleNamespace(partitions=1)
    live = LiveStore(wal, Metrics(), max_bytes=max_bytes, complete_block_timeout=60, clock=Clock(),
                     batch_bytes=batch_bytes, memory_overhead=0)
    assert live.memory is not None
    return live


def test_over_the_memory_bound_the_live_store_flushes_and_refuses_only_what_a_flush_can_free() -> None:
    one = table(0)
    live = store(max_bytes=one.nbytes * PRESSURE_FRACTION * 4, batch_bytes=one.nbytes)
    assert live.memory is not None
    live.add_segment(0, 0, 1, {"t": one})
    assert not live.under_pressure and not live.saturated  # far below max_bytes / 8
    live.memory.over = True
    assert live.under_pressure, "a decode batch's worth is pending: flush it now"
    assert not live.saturated, "refusing writes would not free enough to matter"
    for offset in range(1, PRESSURE_FRACTION * 2):
        live.add_segment(0, offset, offset + 1, {"t": table(offset * 10)})
    assert live.nbytes >= live.pressure_bytes
    assert live.saturated, "over the memory bound with a pressure flush's worth held: refuse"
    live.memory.over = False
    assert not live.saturated  # the same spans within the memory bound: below max_bytes, accepted
    live.release_flushed()


def test_going_over_the_memory_bound_releases_flushed_segments_and_wakes_the_block_builder() -> None:
    live = store(max_bytes=1 << 30, batch_bytes=1 << 20)
    live.add_segment(0, 0, 1, {"t": table(0)})
    live.add_segment(0, 1, 2, {"t": table(100)})
    live.mark_flushed(0, 1)
    woken = live.changed
    live._memory_changed(True)
    assert woken.is_set()
    assert [s.first_offset for s in live.segments[0]] == [1]
    assert live.nbytes == live.pending_bytes()


def test_without_a_watch_the_live_store_is_never_over_its_memory_bound() -> None:
    wal: Any = SimpleNamespace(partitions=1)
    live = LiveStore(wal, Metrics(), max_bytes=1 << 20, complete_block_timeout=60, clock=Clock())
    assert live.memory is None and not live.memory_over


def test_the_watch_reads_this_process_rss_and_is_never_over_where_it_cannot() -> None:
    rss = process_rss()
    assert rss is None or rss > 1 << 20  # Linux: this interpreter's resident set
    watch = MemoryWatch(0, rss=lambda: None, trim=lambda: True)
    assert not watch.check() and watch.baseline is None

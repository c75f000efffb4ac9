"""The live-store's memory watch: the process's resident memory as the OS counts it, against its bound.

The span tables are bounded by `live_store.max_bytes`, and each transient holder by a fraction of it
(request bytes in flight, the WAL batch being decoded, the block being encoded); what those counts miss
(parsed objects, allocator slack, several holders peaking together at a high ingest rate) is what made
the peak grow with the rate. The watch closes that gap by measuring: every `interval` it reads the RSS,
and while it is more than `max_bytes + overhead` above the RSS the process had when the live-store
started, the live-store is `over` its bound (the caller adds the block cache's bound to `overhead`:
it fills as blocks are written and no flush frees it): the block-builder flushes now (pressure), flushed segments
leave memory at once, free allocator pages are given back (`allocator.trim`), and new writes are refused
with 503 while the live-store holds a pressure flush's worth of spans (refusing when it holds less
could free nothing, so ingest is never stopped by memory a flush cannot give back).
docs/reliability.md, "Memory under sustained ingest", states the bound and its measured figures.
"""

from __future__ import annotations

import logging
import resource
from collections.abc import Callable
from dataclasses import dataclass

import trio

from tempo_lite.livestore.allocator import trim as trim_allocator

log = logging.getLogger(__name__)

INTERVAL_SECONDS = 0.1
TRIM_INTERVAL_SECONDS = 1.0  # at most one malloc_trim a second while over the bound
LOG_INTERVAL_SECONDS = 60.0


def process_rss() -> int | None:
    """This process's resident set in bytes (Linux `/proc`); None where it cannot be read (no watch)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        return None


@dataclass
class MemoryWatch:
    """`over` while RSS exceeds the start-up RSS by more than `limit` bytes (`run` keeps it current)."""

    limit: int
    rss: Callable[[], int | None] = process_rss
    trim: Callable[[], bool] = trim_allocator
    interval: float = INTERVAL_SECONDS
    baseline: int | None = None  # RSS when `run` started
    over: bool = False
    times_over: int = 0  # transitions into `over` so far
    above: int = 0  # the last sample's RSS above the baseline
    peak_above_baseline: int = 0

    def check(self) -> bool:
        """Sample once; returns `over`."""
        current = self.rss()
        if current is None:  # not measurable here: never over
            return False
        if self.baseline is None:
            self.baseline = current
        above = self.above = current - self.baseline
        self.peak_above_baseline = max(self.peak_above_baseline, above)
        over = above > self.limit
        if over and not self.over:
            self.times_over += 1
        self.over = over
        return over

    async def run(self, on_change: Callable[[bool], None] | None = None,
                  *, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
        self.check()
        task_status.started()
        last_trim = last_log = -float("inf")
        while True:
            was = self.over
            over = self.check()
            if over != was and on_change is not None:
                on_change(over)
            now = trio.current_time()
            if over and now - last_trim >= TRIM_INTERVAL_SECONDS:
                last_trim = now
                await trio.to_thread.run_sync(self.trim)
            if over and now - last_log >= LOG_INTERVAL_SECONDS:
                last_log = now
                log.warning("resident memory is %d MiB above its start (%d MiB allowed: live_store.max_bytes + "
                            "live_store.memory_overhead_bytes + storage.trace.cache_bytes); flushing early "
                            "and refusing writes until it is back",
                            self.above >> 20, self.limit >> 20)
            await trio.sleep(self.interval)

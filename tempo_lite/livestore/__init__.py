"""The live-store: consumes the WAL into in-memory span tables and serves recent data.

It holds what the block-builder has not yet flushed, plus flushed segments for a short window so a
trace never disappears between leaving memory and its block becoming visible. After a restart it
replays the WAL from the block-builder's committed offset: exactly what is not yet in blocks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import trio

from tempo_lite import spantable
from tempo_lite.livestore.decode import (
    DIGEST_MODULUS,
    decode_isolating,
    decode_records,
    range_digest_hex,
    record_digest,
    unbuildable,
)
from tempo_lite.livestore.memory import MemoryWatch
from tempo_lite.metrics import Metrics
from tempo_lite.wal import WalRecord, WriteAheadLog
from tempo_lite.wal.quarantine import set_aside as keep_record

__all__ = [
    "BLOCKBUILDER_GROUP", "DIGEST_MODULUS", "GROUP", "LiveStore", "Segment", "decode_isolating", "decode_records",
    "range_digest_hex", "record_digest", "unbuildable",
]

log = logging.getLogger(__name__)

GROUP = "livestore"
BLOCKBUILDER_GROUP = "blockbuilder"
# Memory (docs/reliability.md): flush early once max_bytes / PRESSURE_FRACTION is in use. 1/4 kept the
# live-store at ~145 MiB of the default 512 MiB and peak RSS at 514-595 MiB; 1/8 at ~80 MiB and 449-468
# MiB; 1/16 (with 16 MiB pressure blocks and 4 MiB batches) at ~40-53 MiB and 346-427 MiB. Not below
# min(MIN_PRESSURE_BYTES, max_bytes / 8): with max_bytes 64 MiB, 1/16 meant 2 MiB blocks, ~20% fewer
# spans/s and the block cache filling twice as fast.
PRESSURE_FRACTION = 16
MIN_PRESSURE_BYTES = 8 << 20
# Span-table bytes per OTLP payload byte (bench/payloads.py, 1,000-span requests: 631 KB from 373 KB).
DECODED_BYTES_PER_PAYLOAD_BYTE = 1.7
# WAL payload decoded at once: max_bytes / BATCH_FRACTION within these (4 MiB at the defaults; 8 MiB
# batches held ~30 MiB of transient at the peak, and peak RSS went from 427 to 346 MiB with 4 MiB).
MAX_BATCH_BYTES = 4 << 20
MIN_BATCH_BYTES = 256 << 10
BATCH_FRACTION = 64


@dataclass
class Segment:
    """Decoded records [first_offset, end_offset) of one partition, per tenant."""

    partition: int
    first_offset: int
    end_offset: int
    tables: dict[str, spantable.SpanTable]
    nbytes: int
    digest: int = 0
    flushed_at: float | None = None


@dataclass
class _TenantView:
    version: int = -1
    table: spantable.SpanTable = field(default_factory=spantable.empty_span_table)


class LiveStore:
    def __init__(
        self,
        wal: WriteAheadLog,
        metrics: Metrics,
        *,
        max_bytes: int,
        complete_block_timeout: float,
        clock: Callable[[], float] = trio.current_time,
        batch_records: int = 256,
        batch_bytes: int | None = None,
        on_batch: Callable[[str, spantable.SpanTable], None] | None = None,
        quarantine: Path | None = None,
        partitions: tuple[int, ...] | None = None,
        group: str | None = GROUP,
        memory_overhead: int | None = None,
    ) -> None:
        self.wal = wal
        self.metrics = metrics
        self.max_bytes = max_bytes
        self.complete_block_timeout = complete_block_timeout
        self.clock = clock
        self.batch_records = batch_records
        # WAL payload decoded per batch: its transient (payloads, parsed messages, Arrow) is several times
        # the bytes, so it scales with the bound (4 MiB at the default 512 MiB).
        self.batch_bytes = batch_bytes or min(MAX_BATCH_BYTES, max(MIN_BATCH_BYTES, max_bytes // BATCH_FRACTION))
        self.on_batch = on_batch  # the metrics-generator, when enabled
        self.quarantine = quarantine  # where poison records are set aside (None: only logged and counted)
        # The partitions consumed (a `live-store` role may take a subset; docs/scaling.md).
        self.partitions = tuple(range(wal.partitions)) if partitions is None else partitions
        # The consumer group progress is committed to; None: commit nothing (a block-builder or generator
        # process's private copy must not move the live-stores' group).
        self.group = group
        self.segments: dict[int, list[Segment]] = {p: [] for p in self.partitions}
        self.consumed: dict[int, int] = {}
        # partition -> offset no read may cross: the end of a range whose blocks an interrupted flush
        # already wrote (set by BlockBuilder.recover, cleared once that range is committed).
        self.cuts: dict[int, int] = {}
        self.nbytes = 0
        # Payload bytes appended to the WAL (by this process's distributor) and not yet decoded here.
        self.backlog_bytes = 0
        self.version = 0
        self._views: dict[str, _TenantView] = {}
        self.decode_limiter = trio.CapacityLimiter(1)
        self.changed = trio.Event()  # set whenever new data arrives (block-builder size trigger)
        self.replayed = trio.Event()  # set once every partition has caught up with the WAL at start-up
        # The process's RSS against max_bytes + memory_overhead (None: not watched; `memory.py`).
        self.memory = MemoryWatch(max_bytes + memory_overhead) if memory_overhead is not None else None
        # Live-store bytes from which the block-builder flushes at once (see PRESSURE_FRACTION).
        self.pressure_bytes = max(max_bytes // PRESSURE_FRACTION, min(MIN_PRESSURE_BYTES, max_bytes // 8))

    # --- consuming -------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            if self.memory is not None:  # first: its baseline is the RSS before any replayed record
                await nursery.start(self.memory.run, self._memory_changed)
            caught_up = []
            for p in self.partitions:
                start = await self.wal.committed(BLOCKBUILDER_GROUP, p)
                self.consumed[p] = start
                done = trio.Event()
                caught_up.append(done)
                nursery.start_soon(self._consume, p, done)
            task_status.started()
            for done in caught_up:
                await done.wait()
            self.replayed.set()
            nursery.start_soon(self._expire_loop)

    async def _consume(self, partition: int, caught_up: trio.Event) -> None:
        end = await self.wal.end_offset(partition)
        record_size = 1
        while True:
            offset = self.consumed[partition]
            if offset >= end and not caught_up.is_set():
                caught_up.set()
            # Bound a batch by bytes too: decoding holds the joined payloads and their parsed messages
            # (several times the bytes) at once; 256 records of 1,000 spans were ~250 MB of transient.
            limit = max(1, min(self.batch_records, self.batch_bytes // max(1, record_size)))
            cut = self.cuts.get(partition)
            if cut is not None and offset < cut:
                limit = min(limit, cut - offset)
            records = await self.wal.read(partition, offset, limit)
            if records:
                record_size = max(1, sum(len(r.payload) for r in records) // len(records))
            if not records:
                if not caught_up.is_set():
                    caught_up.set()
                await self.wal.wait_for_records(partition, offset, 1.0)
                continue
            tables, poison = await trio.to_thread.run_sync(decode_isolating, records, limiter=self.decode_limiter)
            for record, problem in poison:
                await self.set_aside(record, "livestore-decode", problem)
            if self.on_batch is not None:
                bad = {id(r) for r, _ in poison}
                await self._observe(tables, [r for r in records if id(r) not in bad])
            self.backlog_bytes = max(0, self.backlog_bytes - sum(len(r.payload) for r in records))
            digest = sum(record_digest(r) for r in records) % DIGEST_MODULUS
            self.add_segment(partition, records[0].offset, records[-1].offset + 1, tables, digest)
            if self.group is not None:
                await self.wal.commit(self.group, partition, records[-1].offset + 1)

    async def _observe(self, tables: dict[str, spantable.SpanTable], records: list[WalRecord]) -> None:
        """Feed the metrics-generator; a record it fails on is set aside (and left out of `tables`)."""
        assert self.on_batch is not None
        for tenant, table in list(tables.items()):
            try:
                self.on_batch(tenant, table)
                continue
            except Exception as exc:  # noqa: BLE001 - isolate the record(s) to blame below
                log.warning("metrics-generator failed on a batch of tenant %s (%s); observing record by record",
                            tenant, exc)
            kept = []
            for record in (r for r in records if r.tenant == tenant):
                one = await trio.to_thread.run_sync(spantable.flatten_payloads, [record.payload],
                                                    limiter=self.decode_limiter)
                try:
                    self.on_batch(tenant, one)
                except Exception as exc:  # noqa: BLE001
                    await self.set_aside(record, "generator", f"{type(exc).__name__}: {exc}")
                    continue
                kept.append(one)
            tables[tenant] = spantable.concat(kept)

    async def set_aside(self, record: WalRecord, stage: str, problem: str) -> None:
        """Keep a record no consumer can take (quarantine), count it, log it once; consumers move on."""
        self.metrics.wal_records_set_aside.labels(stage).inc()
        log.error("WAL record partition %d offset %d (tenant %s) set aside by %s: %s", record.partition,
                  record.offset, record.tenant, stage, problem)
        if self.quarantine is not None:
            await trio.to_thread.run_sync(keep_record, self.quarantine, record, stage, problem)

    def add_segment(
        self, partition: int, first: int, end: int, tables: dict[str, spantable.SpanTable], digest: int = 0
    ) -> None:
        nbytes = sum(t.nbytes for t in tables.values())
        self.segments[partition].append(Segment(partition, first, end, tables, nbytes, digest))
        self.consumed[partition] = end
        self.nbytes += nbytes
        self.version += 1
        self.metrics.livestore_bytes.set(self.nbytes)
        self._notify()

    async def catch_up(self, timeout: float = 30.0) -> bool:
        """Wait until everything appended to the WAL so far has been consumed (used before a final flush)."""
        targets = {p: await self.wal.end_offset(p) for p in self.partitions}
        with trio.move_on_after(timeout):
            while any(self.consumed.get(p, 0) < end for p, end in targets.items()):
                await self.changed.wait()
            return True
        log.warning("live-store did not catch up with the WAL within %.0fs", timeout)
        return False

    async def wait_consumed(self, timeout: float) -> bool:
        """Read after write: wait until every record the WAL holds now has been consumed into memory.

        Takes the end offsets at the call, so a query sees every span acknowledged before it arrived;
        gives up after `timeout` seconds (False) and the query answers with what is there.
        """
        targets = [(p, await self.wal.end_offset(p)) for p in self.partitions]
        with trio.move_on_after(timeout):
            while any(self.consumed.get(p, 0) < end for p, end in targets):
                await self.changed.wait()
            return True
        return False

    # --- block-builder interface -------------------------------------------------------------

    def cut_at(self, partition: int, offset: int | None) -> None:
        """Make reads of `partition` stop at `offset` (None: no longer) so a segment ends exactly there."""
        if offset is None:
            self.cuts.pop(partition, None)
        else:
            self.cuts[partition] = offset

    def pending(
        self, partition: int, from_offset: int, until: int | None = None, max_bytes: int | None = None
    ) -> tuple[int, dict[str, list[spantable.SpanTable]]]:
        """(end offset, tables per tenant) of the unflushed records at or after `from_offset` (and
        before `until`, when given), stopping after the segment that reaches `max_bytes`, when given."""
        end = from_offset
        size = 0
        out: dict[str, list[spantable.SpanTable]] = {}
        for seg in self.segments[partition]:
            if seg.end_offset <= from_offset or seg.flushed_at is not None:
                continue
            if until is not None and seg.end_offset > until:
                continue
            if max_bytes is not None and size >= max_bytes:
                break
            for tenant, table in seg.tables.items():
                out.setdefault(tenant, []).append(table)
            end = max(end, seg.end_offset)
            size += seg.nbytes
        return end, out

    @property
    def under_pressure(self) -> bool:
        """`pressure_bytes` in use (a sixteenth of `max_bytes`), or the process over its memory bound with
        a decode batch's worth pending: flush now, in smaller blocks, and free flushed segments at once
        (docs/reliability.md, "Memory under sustained ingest")."""
        if self.nbytes >= self.pressure_bytes:
            return True
        return self.memory_over and self.pending_bytes() >= min(self.batch_bytes, self.pressure_bytes)

    @property
    def memory_over(self) -> bool:
        """The process's RSS is above its bound (`memory.py`; False when not watched)."""
        return self.memory is not None and self.memory.over

    def _memory_changed(self, over: bool) -> None:
        if over:
            self.release_flushed()
            self._notify()  # the block-builder re-checks `under_pressure`

    def _notify(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    def release_flushed(self) -> None:
        """Drop every flushed segment now (their blocks are in the block list) instead of after the
        recent window: what keeps memory under `max_bytes` while ingest runs at full speed."""
        self._drop_segments(lambda s: s.flushed_at is None)

    def _drop_segments(self, keep: Callable[[Segment], bool]) -> int:
        """Forget every segment `keep` refuses; returns the bytes freed.

        Cached per-tenant views are dropped with them: a view concatenates the segments' tables, so a
        stale one would keep the dropped tables alive until the next query rebuilt it (queries already
        running hold their own reference and free it when they finish).
        """
        dropped = False
        freed = 0
        for p, segs in self.segments.items():
            kept = [s for s in segs if keep(s)]
            if len(kept) != len(segs):
                freed += sum(s.nbytes for s in segs) - sum(s.nbytes for s in kept)
                self.segments[p] = kept
                dropped = True
        if dropped:
            self.nbytes -= freed
            self.version += 1
            self._views.clear()
            self.metrics.livestore_bytes.set(self.nbytes)
        return freed

    def range_digest(self, partition: int, from_offset: int, end: int) -> str:
        """The digest of the unflushed records in [from_offset, end) (see `record_digest`)."""
        total = sum(
            seg.digest for seg in self.segments[partition]
            if seg.flushed_at is None and from_offset < seg.end_offset <= end
        )
        return range_digest_hex(total)

    def pending_bytes(self) -> int:
        return sum(s.nbytes for segs in self.segments.values() for s in segs if s.flushed_at is None)

    def mark_flushed(self, partition: int, end_offset: int) -> None:
        now = self.clock()
        for seg in self.segments[partition]:
            if seg.end_offset <= end_offset and seg.flushed_at is None:
                seg.flushed_at = now

    def expire(self) -> int:
        """Drop flushed segments older than the recent window; returns the bytes freed."""
        cutoff = self.clock() - self.complete_block_timeout
        return self._drop_segments(lambda s: s.flushed_at is None or s.flushed_at > cutoff)

    async def follow_flushes(self, interval: float, *, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
        """When another process builds the blocks: mark what its committed offsets cover as flushed, so it
        leaves memory `complete_block_timeout` later (after queriers' block lists have caught up)."""
        task_status.started()
        while True:
            for p in self.partitions:
                self.mark_flushed(p, await self.wal.committed(BLOCKBUILDER_GROUP, p))
            await trio.sleep(interval)

    async def _expire_loop(self) -> None:
        while True:
            await trio.sleep(max(1.0, self.complete_block_timeout / 4))
            self.expire()

    @property
    def saturated(self) -> bool:
        """`max_bytes` held, counting what is acknowledged but not yet decoded (under full-speed ingest the
        WAL runs ahead of the decoder, and without the backlog the tables overshot to twice `max_bytes`);
        or the process over its memory bound while a pressure flush's worth is held (refusing when less
        is held would free nothing: `memory.py`)."""
        held = self.nbytes + int(self.backlog_bytes * DECODED_BYTES_PER_PAYLOAD_BYTE)
        return held >= self.max_bytes or (self.memory_over and held >= self.pressure_bytes)

    def note_appended(self, payload_bytes: int) -> None:
        """The distributor appended this many payload bytes to partitions this live-store consumes."""
        self.backlog_bytes += payload_bytes

    # --- queries -----------------------------------------------------------------------------

    def snapshot(self, tenant: str) -> spantable.SpanTable:
        """Every span of `tenant` in memory, as one table (rebuilt only after changes)."""
        view = self._views.get(tenant)
        if view is None:  # not setdefault: a new view builds an empty span table (~1-5 ms, on every lookup)
            view = self._views[tenant] = _TenantView()
        if view.version != self.version:
            tables = [s.tables[tenant] for segs in self.segments.values() for s in segs if tenant in s.tables]
            view.table = spantable.concat(tables)
            view.version = self.version
        return view.table

    def tenants(self) -> list[str]:
        return sorted({t for segs in self.segments.values() for s in segs for t in s.tables})

    def find_trace(self, tenant: str, trace_id: bytes) -> spantable.SpanTable | None:
        table = self.snapshot(tenant)
        if table.num_spans == 0:
            return None
        mask = pc.equal(table.spans.column("trace_id"), pa.scalar(trace_id, pa.binary(16)))
        spans = table.spans.filter(mask)
        if spans.num_rows == 0:
            return None
        return spantable.SpanTable(spans, table.resources)

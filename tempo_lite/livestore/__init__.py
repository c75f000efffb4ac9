"""The live-store: consumes the WAL into in-memory span tables and serves recent data.

It holds what the block-builder has not yet flushed, plus flushed segments for a short window so a
trace never disappears between leaving memory and its block becoming visible. After a restart it
replays the WAL from the block-builder's committed offset: exactly what is not yet in blocks.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import trio

from tempo_lite import spantable
from tempo_lite.metrics import Metrics
from tempo_lite.wal import WalRecord, WriteAheadLog

log = logging.getLogger(__name__)

GROUP = "livestore"
BLOCKBUILDER_GROUP = "blockbuilder"


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


DIGEST_MODULUS = 1 << 64


def record_digest(record: WalRecord) -> int:
    """A record's 64-bit fingerprint; a range's digest is the sum of its records' (mod 2^64), so it does
    not depend on how the range was cut into read batches."""
    h = hashlib.blake2b(digest_size=8)
    h.update(f"{record.partition}/{record.offset}/{record.tenant}/".encode())
    h.update(record.payload)
    return int.from_bytes(h.digest(), "big")


def range_digest_hex(digest: int) -> str:
    return f"{digest % DIGEST_MODULUS:016x}"


def decode_records(records: list[WalRecord]) -> dict[str, spantable.SpanTable]:
    """WAL records -> one span table per tenant (CPU-bound; run in a thread)."""
    by_tenant: dict[str, list[bytes]] = {}
    for r in records:
        by_tenant.setdefault(r.tenant, []).append(r.payload)
    return {t: spantable.flatten_payloads(payloads) for t, payloads in by_tenant.items()}


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
        on_batch: Callable[[str, spantable.SpanTable], None] | None = None,
    ) -> None:
        self.wal = wal
        self.metrics = metrics
        self.max_bytes = max_bytes
        self.complete_block_timeout = complete_block_timeout
        self.clock = clock
        self.batch_records = batch_records
        self.on_batch = on_batch  # the metrics-generator, when enabled
        self.segments: dict[int, list[Segment]] = {p: [] for p in range(wal.partitions)}
        self.consumed: dict[int, int] = {}
        # partition -> offset no read may cross: the end of a range whose blocks an interrupted flush
        # already wrote (set by BlockBuilder.recover, cleared once that range is committed).
        self.cuts: dict[int, int] = {}
        self.nbytes = 0
        self.version = 0
        self._views: dict[str, _TenantView] = {}
        self.decode_limiter = trio.CapacityLimiter(1)
        self.changed = trio.Event()  # set whenever new data arrives (block-builder size trigger)
        self.replayed = trio.Event()  # set once every partition has caught up with the WAL at start-up

    # --- consuming -------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            caught_up = []
            for p in range(self.wal.partitions):
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
        while True:
            offset = self.consumed[partition]
            if offset >= end and not caught_up.is_set():
                caught_up.set()
            limit = self.batch_records
            cut = self.cuts.get(partition)
            if cut is not None and offset < cut:
                limit = min(limit, cut - offset)
            records = await self.wal.read(partition, offset, limit)
            if not records:
                if not caught_up.is_set():
                    caught_up.set()
                await self.wal.wait_for_records(partition, offset, 1.0)
                continue
            tables = await trio.to_thread.run_sync(decode_records, records, limiter=self.decode_limiter)
            if self.on_batch is not None:
                for tenant, table in tables.items():
                    self.on_batch(tenant, table)
            digest = sum(record_digest(r) for r in records) % DIGEST_MODULUS
            self.add_segment(partition, records[0].offset, records[-1].offset + 1, tables, digest)
            await self.wal.commit(GROUP, partition, records[-1].offset + 1)

    def add_segment(
        self, partition: int, first: int, end: int, tables: dict[str, spantable.SpanTable], digest: int = 0
    ) -> None:
        nbytes = sum(t.nbytes for t in tables.values())
        self.segments[partition].append(Segment(partition, first, end, tables, nbytes, digest))
        self.consumed[partition] = end
        self.nbytes += nbytes
        self.version += 1
        self.metrics.livestore_bytes.set(self.nbytes)
        self.changed.set()
        self.changed = trio.Event()

    async def catch_up(self, timeout: float = 30.0) -> bool:
        """Wait until everything appended to the WAL so far has been consumed (used before a final flush)."""
        targets = {p: await self.wal.end_offset(p) for p in range(self.wal.partitions)}
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
        targets = [(p, await self.wal.end_offset(p)) for p in range(self.wal.partitions)]
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
        self, partition: int, from_offset: int, until: int | None = None
    ) -> tuple[int, dict[str, list[spantable.SpanTable]]]:
        """(end offset, tables per tenant) of the unflushed records at or after `from_offset` (and
        before `until`, when given)."""
        end = from_offset
        out: dict[str, list[spantable.SpanTable]] = {}
        for seg in self.segments[partition]:
            if seg.end_offset <= from_offset or seg.flushed_at is not None:
                continue
            if until is not None and seg.end_offset > until:
                continue
            for tenant, table in seg.tables.items():
                out.setdefault(tenant, []).append(table)
            end = max(end, seg.end_offset)
        return end, out

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

    def expire(self) -> None:
        """Drop flushed segments older than the recent window."""
        cutoff = self.clock() - self.complete_block_timeout
        dropped = False
        for p, segs in self.segments.items():
            keep = [s for s in segs if s.flushed_at is None or s.flushed_at > cutoff]
            if len(keep) != len(segs):
                self.nbytes -= sum(s.nbytes for s in segs) - sum(s.nbytes for s in keep)
                self.segments[p] = keep
                dropped = True
        if dropped:
            self.version += 1
            self.metrics.livestore_bytes.set(self.nbytes)

    async def _expire_loop(self) -> None:
        while True:
            await trio.sleep(max(1.0, self.complete_block_timeout / 4))
            self.expire()

    @property
    def saturated(self) -> bool:
        return self.nbytes >= self.max_bytes

    # --- queries -----------------------------------------------------------------------------

    def snapshot(self, tenant: str) -> spantable.SpanTable:
        """Every span of `tenant` in memory, as one table (rebuilt only after changes)."""
        view = self._views.setdefault(tenant, _TenantView())
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

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
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import trio

from tempo_lite import spantable
from tempo_lite.distributor.tenant import tenant_id_problem
from tempo_lite.metrics import Metrics
from tempo_lite.wal import WalRecord, WriteAheadLog
from tempo_lite.wal.quarantine import set_aside as keep_record

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


MAX_UNIX_NANO = (1 << 63) - 1
MAX_DURATION_NANO = (1 << 53) - 1  # the distributor's bound (distributor.wire): what the generator handles


def unbuildable(table: spantable.SpanTable) -> str | None:
    """Why later stages (block-builder, generator, trace by ID) cannot take this table, else None.

    The distributor refuses such spans at the door; records already in the WAL (written before that
    rule, or by another writer) are checked again here.
    """
    spans = table.spans
    if spans.num_rows == 0:
        return None
    start, duration = spans.column("start_unix_nano"), spans.column("duration_nano")
    if pc.any(pc.less(start, 0)).as_py():
        return "a span's start_time_unix_nano is not below 2^63"
    if pc.any(pc.greater(duration, MAX_DURATION_NANO)).as_py():
        return "a span's duration is not below 2^53 ns"
    if pc.any(pc.greater(start, pc.subtract(pa.scalar(MAX_UNIX_NANO), pc.max_element_wise(duration, 0)))).as_py():
        return "a span's end_time_unix_nano is not below 2^63"
    return None


def decode_isolating(records: list[WalRecord]) -> tuple[dict[str, spantable.SpanTable], list[tuple[WalRecord, str]]]:
    """`decode_records`, setting aside the records that fail to decode or are `unbuildable`.

    The whole batch is decoded at once; only when that fails is each record decoded alone. A record
    whose tenant ID cannot name a directory (written before the distributor checked) is set aside too:
    its blocks could never be written.
    """
    poison: list[tuple[WalRecord, str]] = []
    if any(tenant_id_problem(r.tenant) for r in records):
        poison = [(r, f"{tenant_id_problem(r.tenant)}") for r in records if tenant_id_problem(r.tenant)]
        records = [r for r in records if not tenant_id_problem(r.tenant)]
    try:
        tables = decode_records(records)
        if not any(unbuildable(t) for t in tables.values()):
            return tables, poison
    except Exception:  # noqa: BLE001 - any decode failure: find the records to blame below
        pass
    good: dict[str, list[spantable.SpanTable]] = {}
    for r in records:
        try:
            table = spantable.flatten_payloads([r.payload])
            problem = unbuildable(table)
        except Exception as exc:  # noqa: BLE001 - whatever the decoder raises, the record is poison
            problem = f"cannot decode: {type(exc).__name__}: {exc}"
        if problem:
            poison.append((r, problem))
        else:
            good.setdefault(r.tenant, []).append(table)
    return {t: spantable.concat(ts) for t, ts in good.items()}, poison


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
        batch_bytes: int = 8 << 20,
        on_batch: Callable[[str, spantable.SpanTable], None] | None = None,
        quarantine: Path | None = None,
        partitions: tuple[int, ...] | None = None,
        group: str | None = GROUP,
    ) -> None:
        self.wal = wal
        self.metrics = metrics
        self.max_bytes = max_bytes
        self.complete_block_timeout = complete_block_timeout
        self.clock = clock
        self.batch_records = batch_records
        self.batch_bytes = batch_bytes
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
        self.version = 0
        self._views: dict[str, _TenantView] = {}
        self.decode_limiter = trio.CapacityLimiter(1)
        self.changed = trio.Event()  # set whenever new data arrives (block-builder size trigger)
        self.replayed = trio.Event()  # set once every partition has caught up with the WAL at start-up

    # --- consuming -------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
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
        self.changed.set()
        self.changed = trio.Event()

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
        """Half of `max_bytes` in use: flush now, in smaller blocks, and free flushed segments at once."""
        return self.nbytes >= self.max_bytes // 4

    def release_flushed(self) -> None:
        """Drop every flushed segment now (their blocks are in the block list) instead of after the
        recent window: what keeps memory under `max_bytes` while ingest runs at full speed."""
        dropped = False
        for p, segs in self.segments.items():
            keep = [s for s in segs if s.flushed_at is None]
            if len(keep) != len(segs):
                self.nbytes -= sum(s.nbytes for s in segs) - sum(s.nbytes for s in keep)
                self.segments[p] = keep
                dropped = True
        if dropped:
            self.version += 1
            self._views.clear()  # a snapshot would keep the dropped tables alive
            self.metrics.livestore_bytes.set(self.nbytes)

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
        return self.nbytes >= self.max_bytes

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

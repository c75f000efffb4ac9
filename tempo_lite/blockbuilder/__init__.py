"""The block-builder: turns the WAL (as decoded by the live-store) into per-tenant Parquet blocks.

Each cycle, for each partition, it takes the records after its committed offset, writes one block
per tenant and commits the offset only after every block's meta.json exists. Store failures are
retried with backoff and nothing is committed until the blocks are written.

Block IDs derive from the WAL's identity, the tenant, the partition and the range's first offset. A
block is immutable once its meta.json exists: a crash between the meta.json and the WAL commit leaves
blocks that the replay finds (`recover`, before the live-store replays) and reuses, cutting the replayed
range where the earlier attempt cut it; a block of another source under the same ID is never replaced
(`BlockConflict` stops the server, naming both). See docs/reliability.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from tempo_lite import spantable
from tempo_lite.block import paths
from tempo_lite.block.blocklist import BlockList
from tempo_lite.block.meta import BlockConflict, BlockMeta, block_id_for, source_of
from tempo_lite.block.writer import EncodedBlock, encode_block, write_block
from tempo_lite.config import BlockConfig
from tempo_lite.errors import StorageError
from tempo_lite.faults import fault_point
from tempo_lite.livestore import BLOCKBUILDER_GROUP, LiveStore
from tempo_lite.livestore.allocator import trim as trim_allocator
from tempo_lite.metrics import Metrics
from tempo_lite.storage.retry import with_backoff
from tempo_lite.storage.store import ObjectNotFound, ObjectStore
from tempo_lite.wal import WriteAheadLog

log = logging.getLogger(__name__)

# Under memory pressure blocks are cut at max_bytes / PRESSURE_BLOCK_FRACTION of span table (encoding
# holds ~3-4x the table at its peak; docs/reliability.md, "Memory under sustained ingest"), but not below
# min(MIN_PRESSURE_BLOCK_BYTES, max_bytes / 16): smaller blocks cost spans/s and fill the block cache.
PRESSURE_BLOCK_FRACTION = 32
MIN_PRESSURE_BLOCK_BYTES = 4 << 20


class BlockBuilder:
    def __init__(
        self,
        wal: WriteAheadLog,
        livestore: LiveStore,
        store: ObjectStore,
        blocklist: BlockList,
        metrics: Metrics,
        *,
        cycle: float,
        max_block_bytes: int,
        block: BlockConfig,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self.wal = wal
        self.livestore = livestore
        self.store = store
        self.blocklist = blocklist
        self.metrics = metrics
        self.cycle = cycle
        self.max_block_bytes = max_block_bytes
        self.block = block
        self.clock = clock
        self.encode_limiter = trio.CapacityLimiter(1)
        self.lock = trio.Lock()
        self.last_error: str | None = None
        self.retry_base = 0.5
        self.retry_cap = 30.0
        # Attempts per block and flush: then the next tenant gets its turn, and the failed one is
        # retried at the next flush (one tenant's failing store writes never hold back another's).
        self.write_attempts = 3
        smallest = min(MIN_PRESSURE_BLOCK_BYTES, livestore.max_bytes // 16)
        self.pressure_block_bytes = max(1, min(max_block_bytes, max(livestore.max_bytes // PRESSURE_BLOCK_FRACTION,
                                                                    smallest)))

    async def run(self, *, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            with trio.move_on_after(self.cycle):
                while self.livestore.pending_bytes() < self.max_block_bytes and not self.livestore.under_pressure:
                    await self.livestore.changed.wait()
            await self.flush_all()
            if self.last_error is not None:  # a tenant's block failed: let the store recover first
                await trio.sleep(min(self.cycle, self.retry_cap))

    async def flush_all(self) -> int:
        """Cut blocks for everything pending in every partition; returns blocks written."""
        written = 0
        async with self.lock:
            for partition in self.livestore.partitions:
                written += await self._flush_partition(partition)
        return written

    def block_id(self, tenant: str, partition: int, first: int) -> str:
        return block_id_for(tenant, partition, first, wal_id=self.wal.identity)

    async def recover(self) -> dict[int, int]:
        """Find blocks an earlier run wrote for a range it never committed; returns {partition: end}.

        Run before the live-store replays: it makes the live-store cut its reads at each such range's
        end offset, so the replayed range is exactly the one those blocks hold and they are reused.
        One read per tenant and partition (the ranges start at the committed offsets).
        """
        tenants = await with_backoff(lambda: self.store.list(paths.ROOT), what="listing tenants", base=self.retry_base,
                                     cap=self.retry_cap)
        cuts: dict[int, int] = {}
        for partition in self.livestore.partitions:
            first = await self.wal.committed(BLOCKBUILDER_GROUP, partition)
            for tenant in tenants:
                try:
                    existing = await self._existing(tenant, self.block_id(tenant, partition, first))
                except StorageError as exc:
                    # Unreadable now: the flush checks again before it writes, and never replaces a block.
                    log.warning("recovery: cannot check tenant %s for interrupted flushes: %s", tenant, exc.message)
                    continue
                if existing is None:
                    continue
                self._check_source(existing, partition, first, existing.source_end_offset, existing.source_digest)
                end = existing.source_end_offset
                if cuts.setdefault(partition, end) != end:
                    raise BlockConflict(
                        f"blocks of WAL {self.wal.identity} partition {partition} from offset {first} disagree on "
                        f"the range's end ({cuts[partition]} and {end}, block {tenant}/{existing.block_id})"
                    )
        for partition, end in cuts.items():
            log.info("partition %d: blocks for offsets up to %d exist from an interrupted flush; reusing them",
                     partition, end)
            self.livestore.cut_at(partition, end)
        return cuts

    async def _existing(self, tenant: str, block_id: str) -> BlockMeta | None:
        """The meta of a block already stored under this ID (live or marked compacted), else None."""
        for name in (paths.META, paths.COMPACTED_META):
            path = paths.block_file(tenant, block_id, name)

            async def read(path: str = path) -> bytes | None:
                try:
                    return await self.store.read(path)
                except ObjectNotFound:
                    return None

            raw = await with_backoff(read, what=f"reading {path}", attempts=self.write_attempts,
                                     base=self.retry_base, cap=self.retry_cap)
            if raw is None:
                continue
            try:
                return BlockMeta.from_json(raw)
            except (ValueError, TypeError) as exc:
                raise BlockConflict(
                    f"block {tenant}/{block_id} exists with an unreadable {name} ({exc}); refusing to replace it"
                ) from exc
        return None

    def _check_source(self, existing: BlockMeta, partition: int, first: int, end: int, digest: str) -> None:
        ours = (self.wal.identity, partition, first, end, digest)
        theirs = (existing.source_wal, existing.source_partition, existing.source_first_offset,
                  existing.source_end_offset, existing.source_digest)
        if theirs != ours:
            raise BlockConflict(
                f"block {existing.tenant}/{existing.block_id} in {self.store!r} came from {source_of(existing)}; "
                f"this tempo-lite would replace it with wal {self.wal.identity} partition {partition} offsets "
                f"[{first}, {end}) digest {digest}. Refusing to overwrite stored data: is another tempo-lite "
                "sharing this storage with a copy of this WAL?"
            )

    async def _flush_partition(self, partition: int) -> int:
        first = await self.wal.committed(BLOCKBUILDER_GROUP, partition)
        cut = self.livestore.cuts.get(partition)
        # Under memory pressure blocks are cut smaller: encoding takes ~2-3x the table's size at its peak.
        # Never while an interrupted range is being finished (its end is fixed).
        chunk = self.pressure_block_bytes if cut is None and self.livestore.under_pressure else None
        end, per_tenant = self.livestore.pending(partition, first, until=cut, max_bytes=chunk)
        if end <= first or (cut is not None and end < cut):
            return 0  # nothing, or not yet the whole range an interrupted flush already wrote
        digest = self.livestore.range_digest(partition, first, end)
        metas: list[BlockMeta] = []
        failed: list[str] = []
        written = 0
        for tenant, tables in sorted(per_tenant.items()):
            table = spantable.concat(tables)
            if table.num_spans == 0:
                continue
            block_id = self.block_id(tenant, partition, first)
            try:
                existing = await self._existing(tenant, block_id)
            except StorageError as exc:
                failed.append(tenant)
                self.metrics.flush_errors.inc()
                self.last_error = exc.message
                continue
            if existing is not None:
                # Written by an attempt that died before its WAL commit: immutable, so reuse it.
                self._check_source(existing, partition, first, end, digest)
                if existing.compacted_unix == 0:
                    metas.append(existing)
                continue
            try:
                block = await self._encode(table, tenant, block_id, partition, first, end, digest)
            except Exception as exc:  # noqa: BLE001 - a record that cannot be built must not stop every flush
                log.error("building block %s/%s from partition %d offsets [%d, %d) failed (%s: %s); "
                          "setting aside the records that cannot be built", tenant, block_id, partition, first,
                          end, type(exc).__name__, exc)
                table = await self._without_unbuildable(tenant, partition, first, end)
                if table.num_spans == 0:
                    continue
                block = await self._encode(table, tenant, block_id, partition, first, end, digest)
            try:
                await self._write_with_retry(block)
            except StorageError:
                failed.append(tenant)  # the other tenants' blocks are still written
                continue
            metas.append(block.meta)
            written += 1
            self.metrics.blocks_flushed.labels(tenant).inc()
            self.metrics.flushed_bytes.inc(block.meta.size_bytes)
            fault_point("after-block-meta")
        if failed:
            # The written blocks become visible now; the range stays uncommitted and the next attempt
            # cuts it at the same end and reuses them, retrying only the tenants that failed.
            for meta in metas:
                self.blocklist.add(meta)
            self.livestore.cut_at(partition, end)
            self.last_error = f"blocks of tenant(s) {', '.join(failed)} not written: {self.last_error}"
            log.warning("partition %d offsets [%d, %d): %s; %d other block(s) written, the range stays in the WAL "
                        "and is retried at the next flush", partition, first, end, self.last_error, written)
            return written
        # Every block of this range is durable: only now may the WAL forget it.
        await self.wal.commit(BLOCKBUILDER_GROUP, partition, end)
        fault_point("after-wal-commit")
        self.livestore.mark_flushed(partition, end)
        if cut is not None:
            self.livestore.cut_at(partition, None)
            log.info("partition %d offsets [%d, %d): reused the block(s) an interrupted flush wrote",
                     partition, first, end)
        for meta in metas:
            self.blocklist.add(meta)
        if self.livestore.under_pressure or self.livestore.memory_over:
            self.livestore.release_flushed()
            # The released tables' memory goes back to the system, not only into glibc's free lists.
            await trio.to_thread.run_sync(trim_allocator, limiter=self.encode_limiter)
        if cut is not None or chunk is not None:  # the rest of the partition
            written += await self._flush_partition(partition)
        return written

    async def _encode(self, table: spantable.SpanTable, tenant: str, block_id: str, partition: int, first: int,
                      end: int, digest: str) -> EncodedBlock:
        return await trio.to_thread.run_sync(
            lambda: encode_block(
                table,
                block_id=block_id,
                tenant=tenant,
                row_group_spans=self.block.row_group_spans,
                max_dedicated_columns=self.block.max_dedicated_columns,
                bloom_false_positive=self.block.bloom_false_positive,
                source=(partition, first, end),
                source_wal=self.wal.identity,
                source_digest=digest,
            ),
            limiter=self.encode_limiter,
        )

    async def _without_unbuildable(self, tenant: str, partition: int, first: int, end: int) -> spantable.SpanTable:
        """`tenant`'s records of [first, end), read again from the WAL (the block-builder has not committed
        them), each built alone; those that fail are set aside, the rest returned as one table."""
        kept = []
        offset = first
        while offset < end:
            records = await self.wal.read(partition, offset, min(256, end - offset))
            if not records:
                break
            offset = records[-1].offset + 1
            for record in records:
                if record.tenant != tenant:
                    continue
                try:
                    table = await trio.to_thread.run_sync(self._build_alone, record.payload, tenant,
                                                          limiter=self.encode_limiter)
                except Exception as exc:  # noqa: BLE001
                    await self.livestore.set_aside(record, "block-builder", f"{type(exc).__name__}: {exc}")
                    continue
                kept.append(table)
        return spantable.concat(kept)

    def _build_alone(self, payload: bytes, tenant: str) -> spantable.SpanTable:
        table = spantable.flatten_payloads([payload])
        encode_block(table, block_id="trial", tenant=tenant, row_group_spans=self.block.row_group_spans,
                     max_dedicated_columns=self.block.max_dedicated_columns,
                     bloom_false_positive=self.block.bloom_false_positive)
        return table

    async def _write_with_retry(self, block: EncodedBlock) -> None:
        def failed(what: str, exc: BaseException, attempt: int, delay: float) -> None:
            self.metrics.flush_errors.inc()
            self.last_error = getattr(exc, "message", str(exc))
            log.warning("writing %s failed (attempt %d), retrying in %.1fs: %s", what, attempt, delay, self.last_error)

        what = f"block {block.meta.tenant}/{block.meta.block_id}"
        try:
            await with_backoff(
                lambda: write_block(self.store, block),
                what=what,
                attempts=self.write_attempts,
                base=self.retry_base,
                cap=self.retry_cap,
                on_error=failed,
            )
        except StorageError as exc:
            self.metrics.flush_errors.inc()
            self.last_error = exc.message
            log.warning("writing %s failed %d times, retrying at the next flush: %s", what, self.write_attempts,
                        exc.message)
            raise
        self.last_error = None

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
from tempo_lite.block.meta import COMPACTED_META, META, BlockConflict, BlockMeta, block_id_for, source_of
from tempo_lite.block.writer import EncodedBlock, encode_block, write_block
from tempo_lite.config import BlockConfig
from tempo_lite.faults import fault_point
from tempo_lite.livestore import BLOCKBUILDER_GROUP, LiveStore
from tempo_lite.metrics import Metrics
from tempo_lite.querier.blocklist import BlockList
from tempo_lite.storage.retry import with_backoff
from tempo_lite.storage.store import ObjectNotFound, ObjectStore
from tempo_lite.wal import WriteAheadLog

log = logging.getLogger(__name__)


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

    async def run(self, *, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            with trio.move_on_after(self.cycle):
                while self.livestore.pending_bytes() < self.max_block_bytes:
                    await self.livestore.changed.wait()
            await self.flush_all()

    async def flush_all(self) -> int:
        """Cut blocks for everything pending in every partition; returns blocks written."""
        written = 0
        async with self.lock:
            for partition in range(self.wal.partitions):
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
        tenants = await with_backoff(lambda: self.store.list(""), what="listing tenants", base=self.retry_base,
                                     cap=self.retry_cap)
        cuts: dict[int, int] = {}
        for partition in range(self.wal.partitions):
            first = await self.wal.committed(BLOCKBUILDER_GROUP, partition)
            for tenant in tenants:
                existing = await self._existing(tenant, self.block_id(tenant, partition, first))
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
        for name in (META, COMPACTED_META):
            path = f"{tenant}/{block_id}/{name}"

            async def read(path: str = path) -> bytes | None:
                try:
                    return await self.store.read(path)
                except ObjectNotFound:
                    return None

            raw = await with_backoff(read, what=f"reading {path}", base=self.retry_base, cap=self.retry_cap)
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
        end, per_tenant = self.livestore.pending(partition, first, until=cut)
        if end <= first or (cut is not None and end < cut):
            return 0  # nothing, or not yet the whole range an interrupted flush already wrote
        digest = self.livestore.range_digest(partition, first, end)
        metas: list[BlockMeta] = []
        written = 0
        for tenant, tables in sorted(per_tenant.items()):
            table = spantable.concat(tables)
            if table.num_spans == 0:
                continue
            block_id = self.block_id(tenant, partition, first)
            existing = await self._existing(tenant, block_id)
            if existing is not None:
                # Written by an attempt that died before its WAL commit: immutable, so reuse it.
                self._check_source(existing, partition, first, end, digest)
                if existing.compacted_unix == 0:
                    metas.append(existing)
                continue
            block = await trio.to_thread.run_sync(
                lambda t=table, tn=tenant, b=block_id: encode_block(
                    t,
                    block_id=b,
                    tenant=tn,
                    row_group_spans=self.block.row_group_spans,
                    max_dedicated_columns=self.block.max_dedicated_columns,
                    bloom_false_positive=self.block.bloom_false_positive,
                    source=(partition, first, end),
                    source_wal=self.wal.identity,
                    source_digest=digest,
                ),
                limiter=self.encode_limiter,
            )
            await self._write_with_retry(block)
            metas.append(block.meta)
            written += 1
            self.metrics.blocks_flushed.labels(tenant).inc()
            self.metrics.flushed_bytes.inc(block.meta.size_bytes)
            fault_point("after-block-meta")
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
        if cut is not None:  # the rest of the partition, now that the interrupted range is committed
            written += await self._flush_partition(partition)
        return written

    async def _write_with_retry(self, block: EncodedBlock) -> None:
        def failed(what: str, exc: BaseException, attempt: int, delay: float) -> None:
            self.metrics.flush_errors.inc()
            self.last_error = getattr(exc, "message", str(exc))
            log.warning("writing %s failed (attempt %d), retrying in %.1fs: %s", what, attempt, delay, self.last_error)

        await with_backoff(
            lambda: write_block(self.store, block),
            what=f"block {block.meta.tenant}/{block.meta.block_id}",
            base=self.retry_base,
            cap=self.retry_cap,
            on_error=failed,
        )
        self.last_error = None

"""The block-builder: turns the WAL (as decoded by the live-store) into per-tenant Parquet blocks.

Each cycle, for each partition, it takes the records after its committed offset, writes one block
per tenant (ID derived from tenant, partition and first offset, so a replay rewrites the same block),
and commits the offset only after every block's meta.json exists. Store failures are retried with
backoff and nothing is committed until the blocks are written.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from tempo_lite import spantable
from tempo_lite.block.meta import block_id_for
from tempo_lite.block.writer import EncodedBlock, encode_block, write_block
from tempo_lite.config import BlockConfig
from tempo_lite.livestore import BLOCKBUILDER_GROUP, LiveStore
from tempo_lite.metrics import Metrics
from tempo_lite.querier.blocklist import BlockList
from tempo_lite.storage.retry import with_backoff
from tempo_lite.storage.store import ObjectStore
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

    async def _flush_partition(self, partition: int) -> int:
        first = await self.wal.committed(BLOCKBUILDER_GROUP, partition)
        end, per_tenant = self.livestore.pending(partition, first)
        if end <= first:
            return 0
        metas = []
        for tenant, tables in sorted(per_tenant.items()):
            table = spantable.concat(tables)
            if table.num_spans == 0:
                continue
            block = await trio.to_thread.run_sync(
                lambda t=table, tn=tenant: encode_block(
                    t,
                    block_id=block_id_for(tn, partition, first),
                    tenant=tn,
                    row_group_spans=self.block.row_group_spans,
                    max_dedicated_columns=self.block.max_dedicated_columns,
                    bloom_false_positive=self.block.bloom_false_positive,
                    source=(partition, first, end),
                ),
                limiter=self.encode_limiter,
            )
            await self._write_with_retry(block)
            metas.append(block.meta)
        # Every block of this range is durable: only now may the WAL forget it.
        await self.wal.commit(BLOCKBUILDER_GROUP, partition, end)
        self.livestore.mark_flushed(partition, end)
        for meta in metas:
            self.blocklist.add(meta)
            self.metrics.blocks_flushed.labels(meta.tenant).inc()
            self.metrics.flushed_bytes.inc(meta.size_bytes)
        return len(metas)

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

"""The compactor: merges small blocks, drops duplicate spans, and expires blocks past retention.

Blocks are immutable. A compaction writes the merged block first (its ID derived from its inputs, so a
retry after a crash rewrites the same block), then marks each input compacted by writing
`meta.compacted.json` and removing `meta.json`, which makes it invisible to new queries. Marked blocks
are deleted only after `compacted_block_retention`, so a query that already listed them can finish.
Retention marks blocks whose newest span is older than `block_retention` the same way.

The compactor shares the process (and the GIL) with queries: inputs are decoded in worker threads, and
the merge runs in worker threads in slices of whole traces with pauses between them (`merge.py`), so
the event loop keeps serving while a compaction runs.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable

import trio

from tempo_lite.block import paths
from tempo_lite.block.blocklist import BlockList
from tempo_lite.block.meta import BlockMeta, compacted_block_id
from tempo_lite.block.reader import open_block
from tempo_lite.block.writer import write_block
from tempo_lite.compactor.merge import SLICE_SPANS, merge_in_slices
from tempo_lite.config import BlockConfig, CompactionConfig
from tempo_lite.errors import StorageError
from tempo_lite.metrics import Metrics
from tempo_lite.storage.cache import ByteCache
from tempo_lite.storage.store import ObjectNotFound, ObjectStore

log = logging.getLogger(__name__)

# At most this many blocks are merged at once, which bounds the memory a compaction takes.
MAX_INPUT_BLOCKS = 8


def plan_compactions(
    metas: list[BlockMeta], *, window_ns: int, max_block_bytes: int, max_inputs: int = MAX_INPUT_BLOCKS
) -> list[list[BlockMeta]]:
    """Groups of blocks to merge: same compaction level, same time window, within the size bound."""
    buckets: dict[tuple[int, int], list[BlockMeta]] = {}
    for m in metas:
        buckets.setdefault((m.compaction_level, m.start_unix_nano // max(1, window_ns)), []).append(m)
    plans = []
    for _, group in sorted(buckets.items()):
        group.sort(key=lambda m: (m.start_unix_nano, m.block_id))
        current: list[BlockMeta] = []
        size = 0
        for m in group:
            if current and (size + m.size_bytes > max_block_bytes or len(current) >= max_inputs):
                if len(current) > 1:
                    plans.append(current)
                current, size = [], 0
            current.append(m)
            size += m.size_bytes
        if len(current) > 1:
            plans.append(current)
    return plans


class Compactor:
    def __init__(
        self,
        store: ObjectStore,
        blocklist: BlockList,
        cache: ByteCache,
        metrics: Metrics,
        *,
        compaction: CompactionConfig,
        block: BlockConfig,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.blocklist = blocklist
        self.cache = cache
        self.metrics = metrics
        self.config = compaction
        self.block = block
        self.wall_clock = wall_clock
        self.encode_limiter = trio.CapacityLimiter(1)
        self.slice_spans = SLICE_SPANS

    async def run(self, *, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await trio.sleep(self.config.compaction_cycle)
            try:
                await self.cycle()
            except StorageError as exc:
                log.warning("compaction cycle failed, retrying next cycle: %s", exc.message)

    async def cycle(self) -> int:
        """One pass over every tenant: retention, compaction, deletion of old compacted blocks."""
        done = 0
        for tenant in self.blocklist.tenants():
            await self.apply_retention(tenant)
            plans = plan_compactions(
                self.blocklist.blocks(tenant),
                window_ns=int(self.config.compaction_window * 1e9),
                max_block_bytes=self.config.max_block_bytes,
            )
            for inputs in plans:
                await self.compact(inputs)
                done += 1
        await self.delete_expired()
        return done

    async def compact(self, inputs: list[BlockMeta]) -> BlockMeta:
        tenant = inputs[0].tenant
        # Reading decodes in a worker thread (the store's limiter); the merge runs in worker threads in
        # slices, so queries served by this process keep getting the event loop and the GIL.
        tables = [await open_block(self.store, m, self.cache).read_all() for m in inputs]
        block = await merge_in_slices(
            tables,
            self.encode_limiter,
            slice_spans=self.slice_spans,
            block_id=compacted_block_id(tenant, [m.block_id for m in inputs]),
            tenant=tenant,
            row_group_spans=self.block.row_group_spans,
            max_dedicated_columns=self.block.max_dedicated_columns,
            bloom_false_positive=self.block.bloom_false_positive,
            compaction_level=max(m.compaction_level for m in inputs) + 1,
        )
        await write_block(self.store, block)
        self.blocklist.add(block.meta)
        for m in inputs:
            await self.mark_compacted(m)
        self.metrics.compactions.inc()
        log.info(
            "compacted %d blocks of %s into %s (%d spans)", len(inputs), tenant, block.meta.block_id,
            block.meta.total_spans,
        )
        return block.meta

    async def mark_compacted(self, meta: BlockMeta) -> None:
        marked = dataclasses.replace(meta, compacted_unix=self.wall_clock())
        await self.store.write(paths.block_file(meta.tenant, meta.block_id, paths.COMPACTED_META), marked.to_json())
        await self.store.delete(paths.block_file(meta.tenant, meta.block_id, paths.META))
        self.blocklist.remove(meta.tenant, meta.block_id)

    async def apply_retention(self, tenant: str) -> int:
        cutoff_ns = int((self.wall_clock() - self.config.block_retention) * 1e9)
        expired = [m for m in self.blocklist.blocks(tenant) if m.end_unix_nano < cutoff_ns]
        for m in expired:
            await self.mark_compacted(m)
        if expired:
            log.info("retention: %d block(s) of %s past %ss", len(expired), tenant, self.config.block_retention)
        return len(expired)

    async def delete_expired(self) -> int:
        """Delete blocks marked compacted longer ago than the grace period."""
        deleted = 0
        cutoff = self.wall_clock() - self.config.compacted_block_retention
        for tenant in await self.store.list(paths.ROOT):
            for block_id in await self.store.list(paths.tenant_dir(tenant)):
                path = paths.block_file(tenant, block_id, paths.COMPACTED_META)
                try:
                    raw = await self.store.read(path)
                except ObjectNotFound:
                    continue
                try:
                    marked = BlockMeta.from_json(raw)
                except ValueError:
                    continue
                if marked.compacted_unix and marked.compacted_unix < cutoff:
                    await self.store.delete(paths.block_dir(tenant, block_id))
                    self.metrics.blocks_deleted.inc()
                    deleted += 1
        return deleted

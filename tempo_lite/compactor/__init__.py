"""The compactor: merges small blocks, drops duplicate spans, and expires blocks past retention.

Planning (`plan`, over the block list; `jobs.py`) and executing one job (`execute`) are separate: in one
process `cycle` does both; in a split deployment the backend-scheduler plans and backend-workers execute
(tempo_lite/backend/).

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
from tempo_lite.block.meta import BlockMeta
from tempo_lite.block.reader import open_block
from tempo_lite.block.writer import write_block
from tempo_lite.compactor.jobs import (
    MAX_INPUT_BLOCKS,
    CompactionJob,
    Job,
    RetentionJob,
    plan_compactions,
    plan_tenant,
)
from tempo_lite.compactor.merge import SLICE_SPANS, merge_in_slices
from tempo_lite.config import BlockConfig, CompactionConfig
from tempo_lite.errors import StorageError
from tempo_lite.faults import fault_point
from tempo_lite.metrics import Metrics
from tempo_lite.storage.cache import ByteCache
from tempo_lite.storage.store import ObjectNotFound, ObjectStore

__all__ = ["MAX_INPUT_BLOCKS", "CompactionJob", "Compactor", "Job", "RetentionJob", "plan_compactions",
           "plan_tenant"]

log = logging.getLogger(__name__)

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
        """One pass over every tenant: plan its jobs, execute each (retention first); returns the number of
        compactions done."""
        done = 0
        for tenant in await self.tenants():
            for job in self.plan(tenant):
                if await self.execute(job) is not None and isinstance(job, CompactionJob):
                    done += 1
        return done

    async def tenants(self) -> list[str]:
        """Every tenant with visible blocks or blocks in the store (marked ones still to be deleted)."""
        return sorted(set(self.blocklist.tenants()) | set(await self.store.list(paths.ROOT)))

    def plan(self, tenant: str, busy: frozenset[str] = frozenset()) -> list[Job]:
        """The tenant's jobs from the block list, leaving out the blocks in `busy` (taken by running jobs)."""
        return plan_tenant(
            tenant, self.blocklist.blocks(tenant), now=self.wall_clock(),
            block_retention=float(self.config.block_retention),
            window_ns=int(self.config.compaction_window * 1e9), max_block_bytes=self.config.max_block_bytes,
            busy=busy,
        )

    async def execute(self, job: Job) -> BlockMeta | None:
        """Run one job. A compaction returns its output block's meta (None: its inputs are gone and its
        output was never written, so there is nothing to do); retention returns None."""
        if isinstance(job, CompactionJob):
            return await self.compact(list(job.inputs))
        await self.retain(job)
        return None

    async def retain(self, job: RetentionJob) -> int:
        """Mark the job's expired blocks compacted (invisible), then delete the tenant's blocks marked longer
        ago than `compacted_block_retention`."""
        marked = 0
        for m in job.expired:
            if await self.store.exists(paths.block_file(m.tenant, m.block_id, paths.META)):
                await self.mark_compacted(m)
                marked += 1
            else:
                self.blocklist.remove(m.tenant, m.block_id)
        if marked:
            log.info("retention: %d block(s) of %s past %ss", marked, job.tenant, self.config.block_retention)
        await self.delete_expired(job.tenant)
        return marked

    async def compact(self, inputs: list[BlockMeta]) -> BlockMeta | None:
        """Merge the inputs into one block and mark them compacted. Idempotent: the output's ID is derived from
        the inputs, so when it exists already (a run that crashed, or timed out and was handed to another
        worker) only the inputs still visible are marked; when it does not and an input was already marked
        (another job took it), nothing is written."""
        job = CompactionJob(tuple(inputs))
        tenant = job.tenant
        visible = [await self.store.exists(paths.block_file(tenant, m.block_id, paths.META)) for m in inputs]
        existing = await self._read_meta(tenant, job.output_id)
        if existing is not None:
            log.info("compaction %s was done already: marking its %d remaining input(s)", job.output_id,
                     sum(visible))
            if existing.compacted_unix is None:
                self.blocklist.add(existing)
            for m, still in zip(inputs, visible, strict=True):
                if still:
                    await self.mark_compacted(m)
                else:
                    self.blocklist.remove(m.tenant, m.block_id)
            return existing
        if not all(visible):
            log.info("compaction %s skipped: an input is no longer visible", job.output_id)
            for m, still in zip(inputs, visible, strict=True):
                if not still:
                    self.blocklist.remove(m.tenant, m.block_id)
            return None
        return await self._merge(inputs, job.output_id)

    async def _read_meta(self, tenant: str, block_id: str) -> BlockMeta | None:
        """The block's meta.json, else its meta.compacted.json, else None."""
        for name in (paths.META, paths.COMPACTED_META):
            try:
                return BlockMeta.from_json(await self.store.read(paths.block_file(tenant, block_id, name)))
            except (ObjectNotFound, ValueError):
                continue
        return None

    async def _merge(self, inputs: list[BlockMeta], block_id: str) -> BlockMeta:
        tenant = inputs[0].tenant
        # Reading decodes in a worker thread (the store's limiter); the merge runs in worker threads in
        # slices, so queries served by this process keep getting the event loop and the GIL.
        tables = [await open_block(self.store, m, self.cache).read_all() for m in inputs]
        block = await merge_in_slices(
            tables,
            self.encode_limiter,
            slice_spans=self.slice_spans,
            block_id=block_id,
            tenant=tenant,
            row_group_spans=self.block.row_group_spans,
            max_dedicated_columns=self.block.max_dedicated_columns,
            bloom_false_positive=self.block.bloom_false_positive,
            compaction_level=max(m.compaction_level for m in inputs) + 1,
        )
        await write_block(self.store, block)
        fault_point("after-compacted-block")  # crash tests: the output written, no input marked yet
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
        """Mark the tenant's blocks past `block_retention` compacted (and delete old marked blocks)."""
        job = self.plan(tenant)[0]
        assert isinstance(job, RetentionJob)
        return await self.retain(job)

    async def delete_expired(self, only_tenant: str | None = None) -> int:
        """Delete blocks marked compacted longer ago than the grace period (of one tenant, or all)."""
        deleted = 0
        cutoff = self.wall_clock() - self.config.compacted_block_retention
        tenants = [only_tenant] if only_tenant is not None else await self.store.list(paths.ROOT)
        for tenant in tenants:
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

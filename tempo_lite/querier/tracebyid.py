"""Trace by ID: the live-store and every candidate block, merged, duplicates dropped by (span ID, kind)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import trio

from tempo_lite import spantable
from tempo_lite.block.blocklist import BlockList
from tempo_lite.block.meta import BlockMeta
from tempo_lite.block.reader import BlockReader, open_block
from tempo_lite.errors import StorageError
from tempo_lite.metrics import Metrics
from tempo_lite.querier.live import LiveSource
from tempo_lite.storage.cache import ByteCache
from tempo_lite.storage.store import ObjectStore

log = logging.getLogger(__name__)

# Warm a block's caches only while the cache is below this share of its bound: warming must not evict
# what queries are using (search's trace tables share the cache).
_WARM_SHARE = 0.75


def _inspected(table: spantable.SpanTable) -> int:
    """Bytes of the buffers a found trace was sliced from: the row groups decoded for it. (`nbytes`
    of a slice of nested columns walks every child: ~1 ms, more than the slice's worth.)"""
    return int(table.spans.get_total_buffer_size())


@dataclass
class TraceLookup:
    table: spantable.SpanTable | None
    inspected_bytes: int = 0
    failed_blocks: list[str] = field(default_factory=list)


class Querier:
    def __init__(
        self,
        live: LiveSource,
        blocklist: BlockList,
        store: ObjectStore,
        cache: ByteCache,
        metrics: Metrics,
        *,
        concurrency: int = 8,
    ) -> None:
        self.live = live  # recent spans: this process's live-store or remote ones
        self.blocklist = blocklist
        self.store = store
        self.cache = cache
        self.metrics = metrics
        self.limiter = trio.CapacityLimiter(concurrency)
        # Footers, bloom filters and trace indexes are loaded when the block list first sees a block.
        blocklist.warmers.append(self.warm)

    def reader(self, meta: BlockMeta) -> BlockReader:
        return open_block(self.store, meta, self.cache)

    async def warm(self, meta: BlockMeta) -> bool:
        """Load what trace by ID needs of a block into the cache; False (nothing loaded) once the cache is
        full enough."""
        if self.cache.total_bytes >= self.cache.max_bytes * _WARM_SHARE:
            return False
        await self.reader(meta).warm()
        return True

    def _candidates(self, tenant: str, trace_id: bytes, start_ns: int, end_ns: int) -> list[BlockReader]:
        """Blocks that may hold the trace: its ID within a block's trace-ID range, and not ruled out by
        a cached bloom filter (checked here, so that no task is started for the blocks that cannot)."""
        out = []
        for meta in self.blocklist.blocks(tenant, start_ns, end_ns):
            if not meta.row_groups_for(trace_id):
                continue
            reader = self.reader(meta)
            if not reader.bloom_rejects(trace_id):
                out.append(reader)
        return out

    async def find_trace(self, tenant: str, trace_id: bytes, start_ns: int = 0, end_ns: int = 0) -> TraceLookup:
        parts: list[spantable.SpanTable] = []
        result = TraceLookup(None)
        live = await self.live.find_trace(tenant, trace_id)
        if live is not None:
            parts.append(live)
            result.inspected_bytes += _inspected(live)

        async def from_block(reader: BlockReader) -> None:
            async with self.limiter:
                try:
                    found = await reader.find_trace(trace_id)
                except StorageError as exc:
                    self.metrics.blocks_unreadable.inc()
                    log.warning("trace by id: %s", exc.message)
                    result.failed_blocks.append(exc.message)
                    return
            if found is not None:
                parts.append(found)
                result.inspected_bytes += _inspected(found)

        candidates = self._candidates(tenant, trace_id, start_ns, end_ns)
        if len(candidates) == 1:
            await from_block(candidates[0])  # the common case: no task to start
        elif candidates:
            async with trio.open_nursery() as nursery:
                for reader in candidates:
                    nursery.start_soon(from_block, reader)
        if len(parts) == 1:
            # One source (the common case): block rows are already sorted and de-duplicated, and
            # `encode_traces_data` reads dedicated columns directly, so skip folding them back.
            only = parts[0]
            result.table = only if only.dedicated else spantable.sort_by_trace(spantable.dedupe_spans(only))
        elif parts:
            merged = spantable.dedupe_spans(spantable.concat(parts))
            result.table = spantable.sort_by_trace(merged)
        return result

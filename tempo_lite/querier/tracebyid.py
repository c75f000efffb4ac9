"""Trace by ID: the live-store and every candidate block, merged, duplicates dropped by (span ID, kind)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import trio

from tempo_lite import spantable
from tempo_lite.block.reader import BlockReader
from tempo_lite.errors import StorageError
from tempo_lite.metrics import Metrics
from tempo_lite.querier.blocklist import BlockList
from tempo_lite.querier.live import LiveSource
from tempo_lite.storage.cache import ByteCache
from tempo_lite.storage.store import ObjectStore

log = logging.getLogger(__name__)


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

    def reader(self, meta) -> BlockReader:  # noqa: ANN001 - BlockMeta
        return BlockReader(self.store, meta, self.cache)

    async def find_trace(self, tenant: str, trace_id: bytes, start_ns: int = 0, end_ns: int = 0) -> TraceLookup:
        parts: list[spantable.SpanTable] = []
        result = TraceLookup(None)
        live = await self.live.find_trace(tenant, trace_id)
        if live is not None:
            parts.append(live)
            result.inspected_bytes += live.nbytes

        async def from_block(meta) -> None:  # noqa: ANN001
            async with self.limiter:
                try:
                    found = await self.reader(meta).find_trace(trace_id)
                except StorageError as exc:
                    self.metrics.blocks_unreadable.inc()
                    log.warning("trace by id: %s", exc.message)
                    result.failed_blocks.append(exc.message)
                    return
            if found is not None:
                parts.append(found)
                result.inspected_bytes += found.nbytes

        async with trio.open_nursery() as nursery:
            for meta in self.blocklist.blocks(tenant, start_ns, end_ns):
                nursery.start_soon(from_block, meta)
        if len(parts) == 1:
            # One source (the common case): block rows are already sorted and de-duplicated, and
            # `encode_traces_data` reads dedicated columns directly, so skip folding them back.
            only = parts[0]
            result.table = only if only.dedicated else spantable.sort_by_trace(spantable.dedupe_spans(only))
        elif parts:
            merged = spantable.dedupe_spans(spantable.concat(parts))
            result.table = spantable.sort_by_trace(merged)
        return result

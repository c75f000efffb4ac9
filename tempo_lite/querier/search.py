"""Search, tag names and tag values over the live-store and blocks, with results identical wherever a trace lives.

A trace may be split across sources (live-store and several blocks, until the compactor merges them).
Traces found in exactly one source are evaluated there, column-wise; traces found in several are
first assembled from every source (spans deduplicated) and evaluated once, so a query sees the whole
trace. Which traces are split is known exactly from each block's trace table, not guessed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc
import trio

from tempo_lite import spantable
from tempo_lite._gen import tempopb_pb2 as pb
from tempo_lite.block.meta import BlockMeta
from tempo_lite.errors import StorageError
from tempo_lite.querier import pushdown
from tempo_lite.querier.result_columns import ResultColumns
from tempo_lite.querier.search_blocks import (
    BlockSearch,
    BlockTraces,
    _StageTwo,
)
from tempo_lite.querier.search_request import (
    Matcher,
    SearchRequest,
    SearchStats,
    column_matcher_for,
    columns_for,
    matcher_for,
    parse_search_query,
)
from tempo_lite.traceql.engine import (
    candidate_trace_ids,
)

log = logging.getLogger(__name__)

_BLOCKS_AT_ONCE = 2


class Searcher(BlockSearch):
    """Search and tag discovery over the live-store and the blocks of a tenant."""

    # --- search --------------------------------------------------------------------------------

    async def search(self, tenant: str, request: SearchRequest) -> tuple[list[pb.TraceSearchMetadata], SearchStats]:
        """`search_columns` with the results as protobuf messages."""
        found, stats = await self.search_columns(tenant, request)
        return found.messages(), stats

    async def search_columns(self, tenant: str, request: SearchRequest) -> tuple[ResultColumns, SearchStats]:
        """The search answer for one tenant: newest first, at most `limit` traces."""
        stats = SearchStats()
        match = column_matcher_for(request)
        columns = columns_for(request.query)
        live = await self.querier.live.snapshot(tenant)
        blocks = [] if request.live_only else self._blocks(tenant, request.start_ns, request.end_ns)
        stats.total_blocks = len(blocks)
        stats.total_jobs = 1 + len(blocks)
        stats.total_block_bytes = sum(m.size_bytes for m in blocks)
        if (
            request.query is not None and not live.num_spans
            and not any(pushdown.block_may_match(request.query, m.attribute_keys) for m in blocks)
        ):
            # No source can hold a span passing a filter of the query (block key catalogues).
            stats.completed_jobs = stats.total_jobs
            return ResultColumns.empty(), stats

        # Which traces live in more than one source: those are evaluated on their assembled spans.
        id_lists: list[pa.Array] = []
        if live.num_spans:
            id_lists.append(unique_trace_ids(live))
        block_ids: dict[str, pa.Array] = {}
        newest: dict[str, int] = {}
        for meta in blocks:
            try:
                info = await self.block_traces(meta)
            except StorageError as exc:
                stats.failed_blocks.append(exc.message)
                continue
            block_ids[meta.block_id] = info.ids
            newest[meta.block_id] = info.newest
            id_lists.append(info.ids)
        split = spantable.trace_ids_in_several(id_lists)

        results: list[ResultColumns] = []
        split_candidates: list[pa.Array] = []
        enough = trio.Event()

        def newest_found() -> int | None:
            """Start of the `limit`-th newest trace found so far (most_recent): older ones cannot win."""
            if sum(len(r) for r in results) < request.limit:
                return None
            return ResultColumns.concat(results).kth_newest_start(request.limit)

        def take(
            table: spantable.SpanTable | None, found: ResultColumns, split_cands: pa.Array | None,
            spans: int = 0,
        ) -> None:
            """Results of one source (`table`, or just its span count `spans` when split candidates are given)."""
            stats.inspected_spans += table.num_spans if table is not None else spans
            stats.completed_jobs += 1
            results.append(found.overlapping(request.start_ns, request.end_ns))
            if split_cands is not None:
                split_candidates.append(split_cands)
            elif len(split) and table is not None and request.query is not None:
                split_candidates.append(
                    pc.filter(cands := candidate_trace_ids(request.query, table), pc.is_in(cands, split))
                )
            elif len(split) and table is not None:
                split_candidates.append(pc.filter(ids := unique_trace_ids(table), pc.is_in(ids, split)))
            if (
                not request.most_recent and sum(len(r) for r in results) >= request.limit
                and ResultColumns.concat(results).distinct() >= request.limit
            ):
                enough.set()

        if live.num_spans:
            stats.inspected_bytes += live.nbytes
            take(live, match(spantable.without_traces(live, split)), None)

        # Newest blocks first; at most `_BLOCKS_AT_ONCE` in flight, so that a block is only started
        # once the ones before it have had a chance to fill the answer.
        ordered = sorted((m for m in blocks if m.block_id in block_ids), key=lambda m: -newest[m.block_id])
        slots = trio.Semaphore(_BLOCKS_AT_ONCE)

        async def block_job(meta: BlockMeta) -> None:
            try:
                await self._block_job(meta, request, columns, split, stats, match, take, enough, newest_found,
                                      newest[meta.block_id])
            finally:
                slots.release()

        async with trio.open_nursery() as nursery:
            for meta in ordered:
                await slots.acquire()
                if enough.is_set():
                    slots.release()
                    break
                nursery.start_soon(block_job, meta)

        if split_candidates:
            wanted = pc.unique(pa.concat_arrays([c.cast(pa.binary(16)) for c in split_candidates]))
            if len(wanted):
                assembled = await self.assemble(tenant, wanted, live, blocks, block_ids, stats)
                results.append(match(assembled).overlapping(request.start_ns, request.end_ns))
        stats.inspected_traces = sum(len(a) for a in id_lists)
        return ResultColumns.concat(results).merged(request.limit), stats

    async def _block_job(
        self, meta: BlockMeta, request: SearchRequest, columns: list[str] | None, split: pa.Array,
        stats: SearchStats, match: Matcher,
        take: Callable[..., None], enough: trio.Event, newest_found: Callable[[], int | None], block_newest: int,
    ) -> None:
        if enough.is_set():
            return
        bound = newest_found() if request.most_recent else None
        split_cands: pa.Array | None = None
        if bound is not None and block_newest < bound and not len(split):
            stats.completed_jobs += 1  # every trace of the block starts before the answer's oldest
            return
        if request.query is not None and columns is not None:
            async with self.limiter:
                try:
                    plan, split_cands = await self._read_candidates(meta, request, split, stats, newest_found)
                    if plan is not None and len(plan.batches) > 1:
                        await self._walk_batches(plan, request, split, stats, match, take, split_cands, enough)
                        return
                    table = None if plan is None else await self._read_batch(plan, plan.batches[0], stats)
                except StorageError as exc:
                    self.querier.metrics.blocks_unreadable.inc()
                    log.warning("search: %s", exc.message)
                    stats.failed_blocks.append(exc.message)
                    return
            if table is None:
                take(spantable.empty_span_table(), ResultColumns.empty(), split_cands)
                return
        else:
            table = await self._read_block(meta, columns, stats)
        if table is not None and not enough.is_set():
            whole = spantable.without_traces(table, split)
            found = await trio.to_thread.run_sync(match, whole)
            if not enough.is_set():
                take(table, found, split_cands)

    async def _walk_batches(
        self, plan: _StageTwo, request: SearchRequest, split: pa.Array, stats: SearchStats, match: Matcher,
        take: Callable[..., None], split_cands: pa.Array, enough: trio.Event,
    ) -> None:
        """Evaluate candidate traces a batch at a time until `limit` of them match. With `most_recent`
        batches go newest first and each holds every trace starting at its oldest start (ties), so later
        batches can only add older traces; otherwise any `limit` matches will do."""
        found: list[ResultColumns] = []
        spans = 0
        for batch in plan.batches:
            table = await self._read_batch(plan, batch, stats)
            spans += table.num_spans
            found.append(await trio.to_thread.run_sync(match, spantable.without_traces(table, split)))
            if enough.is_set() or (
                sum(len(r) for r in found) >= request.limit and ResultColumns.concat(found).distinct() >= request.limit
            ):
                break
        if not enough.is_set():
            take(None, ResultColumns.concat(found), split_cands, spans)

    async def assemble(
        self,
        tenant: str,
        trace_ids: pa.Array,
        live: spantable.SpanTable,
        blocks: list[BlockMeta],
        block_ids: dict[str, pa.Array],
        stats: SearchStats,
    ) -> spantable.SpanTable:
        """Every span of the given traces from every source, duplicates dropped."""
        parts: list[spantable.SpanTable] = []
        if live.num_spans:
            parts.append(live.take(pc.indices_nonzero(pc.is_in(live.spans.column("trace_id"), trace_ids))))

        async def from_block(meta: BlockMeta) -> None:
            ids = block_ids.get(meta.block_id)
            if ids is None or not pc.any(pc.is_in(ids, trace_ids)).as_py():
                return
            async with self.limiter:
                try:
                    parts.append(await self.querier.reader(meta).read_traces(trace_ids))
                except StorageError as exc:
                    stats.failed_blocks.append(exc.message)

        async with trio.open_nursery() as nursery:
            for meta in blocks:
                nursery.start_soon(from_block, meta)
        return _assembled(parts)


def _assembled(parts: list[spantable.SpanTable]) -> spantable.SpanTable:
    """Parts of the same traces from several sources as one table, duplicate spans dropped.

    Nested sets were numbered per block (and the live-store has none), so they are dropped: the engine
    numbers the assembled traces again when a query needs them."""
    table = spantable.dedupe_spans(spantable.concat(parts))
    stale = [f.name for f in spantable.NESTED_SET_FIELDS if f.name in table.spans.column_names]
    return spantable.SpanTable(table.spans.drop_columns(stale), table.resources, dict(table.dedicated))


def unique_trace_ids(table: spantable.SpanTable) -> pa.Array:
    """The distinct trace IDs of a table, as one fixed-size binary(16) array."""
    ids = pc.unique(table.spans.column("trace_id"))
    ids = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
    return ids.cast(pa.binary(16))


__all__ = [
    "BlockTraces",
    "Matcher",
    "SearchRequest",
    "SearchStats",
    "Searcher",
    "column_matcher_for",
    "columns_for",
    "matcher_for",
    "parse_search_query",
    "unique_trace_ids",
]

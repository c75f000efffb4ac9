"""Search, tag names and tag values over the live-store and blocks, with results identical wherever a trace lives.

A trace may be split across sources (live-store and several blocks, until the compactor merges them).
Traces found in exactly one source are evaluated there, column-wise; traces found in several are
first assembled from every source (spans deduplicated) and evaluated once, so a query sees the whole
trace. Which traces are split is known exactly from each block's trace table, not guessed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import trio

from tempo_lite import spantable
from tempo_lite._gen import tempopb_pb2 as pb
from tempo_lite.block.meta import DATA, TRACES, BlockMeta
from tempo_lite.block.reader import Footer
from tempo_lite.errors import InvalidRequest, StorageError
from tempo_lite.querier import pushdown
from tempo_lite.querier.result_columns import ResultColumns, from_matches, from_summaries
from tempo_lite.querier.results import (
    LegacySearch,
    legacy_tag_search,
    merge_search_results,
    search_results,
    trace_metadata,
)
from tempo_lite.querier.tracebyid import Querier
from tempo_lite.traceql import parse
from tempo_lite.traceql.ast import Attribute, AttributeRef, Intrinsic, Query, Scope
from tempo_lite.traceql.engine import (
    _needs_nested_sets,
    candidate_trace_ids,
    evaluate,
    evaluate_columns,
    referenced_fields,
    trace_matches,
)
from tempo_lite.traceql.engine_context import TRACE_DEPENDENT, TraceLevel, hex_ids
from tempo_lite.traceql.engine_summary import trace_summaries

log = logging.getLogger(__name__)

# Columns every evaluation needs (structure, intrinsics, result fields); attribute, event and link
# columns are read only when the query refers to them.
_BASE_COLUMNS = [
    "trace_id", "span_id", "parent_span_id", "name", "kind", "status_code", "status_message",
    "start_unix_nano", "duration_nano", "resource_index", "service_name",
    "nested_set_left", "nested_set_right", "parent_index",
]
_EVENT_INTRINSICS = {Intrinsic.EVENT_NAME, Intrinsic.EVENT_TIME_SINCE_START}
_LINK_INTRINSICS = {Intrinsic.LINK_TRACE_ID, Intrinsic.LINK_SPAN_ID}


def columns_for(query: Query | None) -> list[str] | None:
    """The span columns a query reads; None means all (legacy tag search, tag discovery)."""
    if query is None:
        return None
    cols = list(_BASE_COLUMNS)
    extra: set[str] = set()
    for ref in referenced_fields(query):
        if isinstance(ref, Attribute):
            if ref.scope in (Scope.NONE, Scope.SPAN):
                extra.add("attrs")
            elif ref.scope is Scope.EVENT:
                extra.add("events")
            elif ref.scope is Scope.LINK:
                extra.add("links")
        elif ref in _EVENT_INTRINSICS:
            extra.add("events")
        elif ref in _LINK_INTRINSICS:
            extra.add("links")
    return cols + sorted(extra)


_BLOCKS_AT_ONCE = 2


@dataclass(frozen=True)
class BlockTraces:
    """A block's trace table: IDs (sorted, as in data.parquet), start and end times, and, from the span
    counts, the first data row of each trace (`first_row`, length n + 1) and each row's trace
    (`row_trace`); both None if the counts do not add up to the block's spans."""

    ids: pa.Array
    starts: np.ndarray
    ends: np.ndarray
    first_row: np.ndarray | None
    row_trace: np.ndarray | None
    # Root span service and name per trace (blocks written before traces.parquet held them: None).
    root_service: pa.Array | None = None
    root_name: pa.Array | None = None

    @classmethod
    def from_table(cls, table: pa.Table, total_spans: int) -> BlockTraces:
        ids = table.column("trace_id").combine_chunks().cast(pa.binary(16))
        starts = table.column("start_unix_nano").to_numpy().astype(np.int64)
        ends = table.column("end_unix_nano").to_numpy().astype(np.int64)
        first_row = row_trace = None
        if "span_count" in table.column_names:
            counts = table.column("span_count").to_numpy().astype(np.int64)
            first_row = np.concatenate([[0], np.cumsum(counts)])
            raw = np.frombuffer(ids.buffers()[1], dtype="S16", count=len(ids), offset=ids.offset * 16)
            if first_row[-1] == total_spans and (len(raw) < 2 or bool(np.all(raw[1:] > raw[:-1]))):
                row_trace = np.repeat(np.arange(len(ids), dtype=np.int32), counts)
            else:
                first_row = None
        roots = None, None
        if "root_service_name" in table.column_names and "root_span_name" in table.column_names:
            roots = (table.column("root_service_name").combine_chunks(),
                     table.column("root_span_name").combine_chunks())
        return cls(ids, starts, ends, first_row, row_trace, *roots)

    def trace_level(self, span_trace: np.ndarray) -> TraceLevel | None:
        """Trace-level intrinsics for rows whose traces are `span_trace` (None: the table lacks roots)."""
        if self.root_service is None or self.root_name is None:
            return None
        return TraceLevel(span_trace, self.ends - self.starts, self.root_service, self.root_name)

    @property
    def newest(self) -> int:
        return int(self.starts.max()) if len(self.starts) else 0

    @property
    def nbytes(self) -> int:
        extra = 0 if self.row_trace is None or self.first_row is None else self.row_trace.nbytes + self.first_row.nbytes
        roots = sum(a.nbytes for a in (self.root_service, self.root_name) if a is not None)
        return self.ids.nbytes + self.starts.nbytes + self.ends.nbytes + extra + roots + 128


@dataclass
class SearchStats:
    inspected_traces: int = 0
    inspected_spans: int = 0
    inspected_bytes: int = 0
    total_blocks: int = 0
    completed_jobs: int = 0
    total_jobs: int = 0
    total_block_bytes: int = 0
    failed_blocks: list[str] = field(default_factory=list)

    def message(self) -> pb.SearchMetrics:
        return pb.SearchMetrics(
            inspectedTraces=self.inspected_traces,
            inspectedBytes=self.inspected_bytes,
            totalBlocks=self.total_blocks,
            completedJobs=self.completed_jobs,
            totalJobs=self.total_jobs,
            totalBlockBytes=self.total_block_bytes,
            inspectedSpans=self.inspected_spans,
        )


@dataclass(frozen=True)
class SearchRequest:
    """What to find: a TraceQL query or a legacy tag search, in a time range (ns, 0 = unbounded)."""

    query: Query | None
    legacy: LegacySearch | None
    start_ns: int
    end_ns: int
    limit: int
    spss: int
    live_only: bool

    @property
    def most_recent(self) -> bool:
        hint = self.query.hints.get("most_recent") if self.query is not None else None
        return bool(hint is not None and hint.value is True)


Matcher = Callable[[spantable.SpanTable], ResultColumns]


def _overlapping(results: list[pb.TraceSearchMetadata], start_ns: int, end_ns: int) -> list[pb.TraceSearchMetadata]:
    if not start_ns and not end_ns:
        return results
    end = end_ns or (1 << 63) - 1
    return [
        r for r in results
        if r.startTimeUnixNano <= end and r.startTimeUnixNano + r.durationMs * 1_000_000 >= start_ns
    ]


def matcher_for(request: SearchRequest) -> Matcher:
    """Evaluate the request over a table holding whole traces -> search results.

    Only the `limit` newest matches of a table can reach the merged answer (results are ordered newest
    first), so only those are built, and trace summaries are computed over their spans alone.
    """
    if request.query is not None:
        query = request.query

        def traceql(table: spantable.SpanTable) -> list[pb.TraceSearchMetadata]:
            matches = evaluate(query, table, spss=request.spss, limit=request.limit)
            if not matches:
                return []
            ids = pa.array([m.trace_id for m in matches], pa.binary(16))
            mine = pc.is_in(table.spans.column("trace_id"), ids)
            subset = spantable.SpanTable(table.spans.filter(mine), table.resources, dict(table.dedicated))
            return search_results(matches, trace_summaries(subset))

        return traceql
    legacy = request.legacy
    assert legacy is not None

    def tags(table: spantable.SpanTable) -> list[pb.TraceSearchMetadata]:
        ids = legacy_tag_search(table, legacy)
        if not ids:
            return []
        by_id = trace_summaries(table).by_trace_id()
        return [trace_metadata(None, by_id[t], with_spansets=False) for t in ids]

    return tags


def column_matcher_for(request: SearchRequest) -> Matcher:
    """`matcher_for` column-wise: the same results as `ResultColumns`, rendered from whole columns."""
    if request.query is not None:
        query = request.query

        def traceql(table: spantable.SpanTable) -> ResultColumns:
            matches = evaluate_columns(query, table, spss=request.spss, limit=request.limit)
            if not matches.num_traces:
                return ResultColumns.empty()
            mine = pc.is_in(table.spans.column("trace_id"), matches.trace_ids)
            table = spantable.SpanTable(table.spans.filter(mine), table.resources, dict(table.dedicated))
            return from_matches(matches, trace_summaries(table))

        return traceql
    legacy = request.legacy
    assert legacy is not None

    def tags(table: spantable.SpanTable) -> ResultColumns:
        ids = legacy_tag_search(table, legacy)
        if not ids:
            return ResultColumns.empty()
        return from_summaries(trace_summaries(table), pa.array(ids, table.spans.schema.field("trace_id").type))

    return tags


class Searcher:
    def __init__(self, querier: Querier, *, concurrency: int = 8) -> None:
        self.querier = querier
        self.limiter = trio.CapacityLimiter(concurrency)

    # --- sources -------------------------------------------------------------------------------

    def _blocks(self, tenant: str, start_ns: int, end_ns: int) -> list[BlockMeta]:
        return self.querier.blocklist.blocks(tenant, start_ns, end_ns)

    async def block_traces(self, meta: BlockMeta) -> BlockTraces:
        """A block's trace table (IDs, start and end times, span rows), read once and cached."""
        store, cache = self.querier.store, self.querier.cache
        path = f"{meta.tenant}/{meta.block_id}/{TRACES}"

        async def load() -> BlockTraces:
            data = await store.read(path)

            def decode() -> BlockTraces:
                return BlockTraces.from_table(pq.read_table(pa.BufferReader(data)), meta.total_spans)

            return await trio.to_thread.run_sync(decode)

        try:
            return await cache.get_or_load(f"{store.name}:{path}#traces", load, lambda t: t.nbytes)
        except (OSError, ValueError, KeyError, pa.ArrowException) as exc:
            raise StorageError(f"block {meta.tenant}/{meta.block_id}: reading {TRACES}: {exc}") from exc

    async def block_trace_ids(self, meta: BlockMeta) -> pa.Array:
        """Every trace ID of a block, from its (small, cached) trace table."""
        return (await self.block_traces(meta)).ids

    async def generic_keys(self, meta: BlockMeta) -> frozenset[str]:
        """Attribute keys present in the block's generic `attrs` column: from the key catalogue (keys not
        dedicated, and dedicated keys that also have values of another type), else read once and cached."""
        span_keys = meta.attribute_keys.get("span")
        if span_keys is not None:
            return frozenset(k for k, types in span_keys.items() if k not in meta.dedicated_columns or len(types) > 1)
        reader = self.querier.reader(meta)
        footer = await reader.footer_info()

        def read() -> frozenset[str]:
            with reader.open_data() as f:
                keys = pq.ParquetFile(f, metadata=footer.metadata).read(columns=["attrs.list.element.key"])
            reader.count_native_read(footer, None, ["attrs.list.element.key"])
            flat = pc.list_flatten(keys.column("attrs"))
            return frozenset(pc.unique(pc.struct_field(flat, "key")).to_pylist()) if len(flat) else frozenset()

        key = f"{self.querier.store.name}:{reader.prefix}/{DATA}#generic-keys"
        return await self.querier.cache.get_or_load(
            key, lambda: trio.to_thread.run_sync(read), lambda k: 64 + sum(len(x) + 50 for x in k)
        )

    async def _read_groups(
        self, meta: BlockMeta, groups: list[int], columns: list[str], stats: SearchStats
    ) -> spantable.SpanTable:
        reader = self.querier.reader(meta)
        spans = await reader.read_columns(groups, columns)
        stats.inspected_bytes += spans.nbytes
        dedicated = {k: c for k, c in meta.dedicated_columns.items() if c in spans.column_names}
        return spantable.SpanTable(spans, await reader.resources(), dedicated)

    async def _read_candidates(
        self, meta: BlockMeta, request: SearchRequest, split: pa.Array, stats: SearchStats,
        newest_found: Callable[[], int | None],
    ) -> tuple[_StageTwo | None, pa.Array]:
        """(what stage two reads and evaluates exactly, candidate traces that are split across sources).

        Stage one reads the filter columns of the row groups statistics cannot rule out and finds the
        candidate traces (and, for column-wise pipelines, the exact matches), mapping rows to traces
        through the trace table. Stage two reads every column evaluation needs, from just the row
        groups holding the traces that can still reach the answer: when matches are exact, the newest
        `limit` of them; with `most_recent`, none older than the `limit`-th newest result found so far.
        """
        query = request.query
        assert query is not None
        no_split = pa.array([], pa.binary(16))
        if not pushdown.block_may_match(query, meta.attribute_keys):
            return None, no_split
        reader = self.querier.reader(meta)
        footer = await reader.footer_info()
        info = await self.block_traces(meta)
        n_traces = len(info.ids)
        groups = pushdown.row_groups(query, footer)
        if not groups:
            return None, no_split
        is_split = (
            pc.is_in(info.ids, split).to_numpy(zero_copy_only=False)
            if len(split) else np.zeros(n_traces, dtype=bool)
        )
        plan = pushdown.filter_plan(query, meta.dedicated_columns)
        exact: np.ndarray | None = None
        if plan is None:
            wanted = np.ones(n_traces, dtype=bool)
            split_candidates = info.ids.filter(pa.array(is_split))
        else:
            first = list(plan.columns)
            if plan.needs_generic and "attrs" not in first and plan.needs_generic & await self.generic_keys(meta):
                first.append("attrs")
            row_index = info.row_trace is not None and len(info.row_trace) == footer.num_rows
            if row_index:
                first.remove("trace_id")
            if not first:
                first = ["kind"]  # `{ }` reads nothing; one small column keeps the row count
            needs_ids = any(ref is Intrinsic.TRACE_ID or ref in TRACE_DEPENDENT for ref in referenced_fields(query))
            in_range = _overlaps(info, request.start_ns, request.end_ns) if request.start_ns or request.end_ns else None
            # Without most_recent any `limit` matches will do: read growing prefixes of the row groups and
            # stop once `limit` exact matches lie in traces read whole (spans in unread row groups could
            # change an aggregate, so only traces whose every row was read count).
            early = not request.most_recent and not len(split) and row_index
            parts: list[pa.Table] = []
            read = 0
            for end in _prefix_ends(len(groups)) if early else [len(groups)]:
                chunk = await self._read_groups(meta, groups[read:end], first, stats)
                parts.append(chunk.spans)
                read = end
                part = spantable.SpanTable(pa.concat_tables(parts), chunk.resources, chunk.dedicated)
                rows = _group_rows(footer, groups[:end])
                if "trace_id" in part.spans.column_names:
                    idx = pc.index_in(part.spans.column("trace_id"), info.ids)
                    span_trace = idx.to_numpy(zero_copy_only=False).astype(np.int64)
                else:
                    assert info.row_trace is not None
                    span_trace = info.row_trace[rows].astype(np.int64)
                    if needs_ids:
                        # Only trace summaries read trace IDs in stage one (trace:id, nested-set intrinsics).
                        ids = info.ids.take(pa.array(span_trace))
                        part = spantable.SpanTable(
                            part.spans.append_column("trace_id", ids), part.resources, part.dedicated
                        )
                part = _with_empty_lists(part)
                candidates, exact = await trio.to_thread.run_sync(
                    trace_matches, query, part, span_trace, n_traces, info.trace_level(span_trace)
                )
                if end < len(groups) and exact is not None:
                    assert info.first_row is not None
                    whole = info.first_row[1:] <= footer.group_first[groups[end - 1] + 1]
                    found = exact & whole & (True if in_range is None else in_range)
                    if int(found.sum()) >= request.limit:
                        exact = found
                        break
            split_candidates = info.ids.filter(pa.array(candidates & is_split))
            wanted = (exact if exact is not None else candidates) & ~is_split
        if request.start_ns or request.end_ns:
            wanted &= _overlaps(info, request.start_ns, request.end_ns)
        chosen = np.flatnonzero(wanted)
        starts = info.starts[chosen]
        if request.most_recent and len(chosen):
            bound = newest_found()
            if bound is not None:
                keep = starts >= bound
                chosen, starts = chosen[keep], starts[keep]
        if exact is not None and len(chosen) > request.limit:
            if request.most_recent:
                # Every chosen trace matches: only the newest `limit` (and ties) can be in the answer.
                kth = np.partition(starts, len(starts) - request.limit)[len(starts) - request.limit]
                chosen = chosen[starts >= kth]
            else:
                # Any `limit` matches will do (as in Tempo): the first ones in file order share row groups,
                # so stage two reads one or two row groups instead of one per (randomly placed) trace.
                chosen = chosen[: request.limit]
        if not len(chosen):
            return None, split_candidates
        needed = pushdown.evaluation_columns(
            query, meta.dedicated_columns,
            await self.generic_keys(meta) if "attrs" in (columns_for(query) or []) else frozenset(),
            nested_sets=_needs_nested_sets(query.pipeline),
        )
        columns = needed if needed is not None else _with_dedicated(columns_for(query), meta)
        batches = (
            [chosen] if exact is not None
            else _candidate_batches(chosen, info.starts[chosen], request.limit, newest_first=request.most_recent)
        )
        return _StageTwo(meta, info, footer, batches, columns), split_candidates

    async def _read_batch(self, plan: _StageTwo, chosen: np.ndarray, stats: SearchStats) -> spantable.SpanTable:
        """Stage two for some chosen traces: every column evaluation needs, from their row groups only."""
        groups = _groups_for_traces(plan.meta, plan.info, plan.footer, chosen)
        table = _with_empty_lists(await self._read_groups(plan.meta, groups, plan.columns, stats))
        if len(chosen) < len(plan.info.ids):
            keep = pc.is_in(table.spans.column("trace_id"), plan.info.ids.take(pa.array(chosen)))
            table = spantable.SpanTable(table.spans.filter(keep), table.resources, dict(table.dedicated))
        return table

    async def _read_block(
        self, meta: BlockMeta, columns: list[str] | None, stats: SearchStats, *, exact: bool = False
    ) -> spantable.SpanTable | None:
        """A whole block (only `columns`; with `attrs`, every dedicated column too unless `exact`)."""
        if columns is not None and "attrs" in columns and not exact:
            columns = columns + sorted(meta.dedicated_columns.values())
        async with self.limiter:
            try:
                table = await self.querier.reader(meta).read_all(columns)
            except StorageError as exc:
                self.querier.metrics.blocks_unreadable.inc()
                log.warning("search: %s", exc.message)
                stats.failed_blocks.append(exc.message)
                return None
        stats.inspected_bytes += table.nbytes
        return table

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
        split = _split_trace_ids(id_lists)

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
            elif len(split) and request.query is not None:
                split_candidates.append(
                    pc.filter(cands := candidate_trace_ids(request.query, table), pc.is_in(cands, split))
                )
            elif len(split):
                split_candidates.append(pc.filter(ids := unique_trace_ids(table), pc.is_in(ids, split)))
            if (
                not request.most_recent and sum(len(r) for r in results) >= request.limit
                and ResultColumns.concat(results).distinct() >= request.limit
            ):
                enough.set()

        if live.num_spans:
            stats.inspected_bytes += live.nbytes
            take(live, match(_without(live, split)), None)

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
            whole = _without(table, split)
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
            found.append(await trio.to_thread.run_sync(match, _without(table, split)))
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

    # --- tag discovery -------------------------------------------------------------------------

    async def tables(
        self, tenant: str, start_ns: int, end_ns: int, stats: SearchStats, *,
        columns: list[str] | None = None, whole_traces: bool = False,
        fields: list[AttributeRef] | None = None,
    ) -> list[spantable.SpanTable]:
        """Every source overlapping the range: the live-store, then the blocks (only `columns`, or only
        the columns each block keeps these `fields` in: tag values read one dedicated column, not all).

        Tag discovery takes them as they are. With `whole_traces` (TraceQL metrics), traces found in more
        than one source are assembled into one extra table, duplicate spans dropped, so every span is
        seen once and each trace whole.
        """
        out = []
        live = await self.querier.live.snapshot(tenant)
        if live.num_spans:
            out.append(live)
            stats.inspected_bytes += live.nbytes
        blocks = self._blocks(tenant, start_ns, end_ns)
        stats.total_blocks += len(blocks)
        stats.total_jobs += 1 + len(blocks)
        stats.completed_jobs += 1
        stats.total_block_bytes += sum(m.size_bytes for m in blocks)

        async def job(meta: BlockMeta) -> None:
            wanted = columns
            if fields is not None and columns is None:
                generic = await self.generic_keys(meta) if any(
                    isinstance(f, Attribute) and f.name in meta.dedicated_columns for f in fields) else frozenset()
                wanted = pushdown.field_columns(fields, meta.dedicated_columns, generic)
            table = await self._read_block(meta, wanted, stats, exact=fields is not None)
            if table is not None and fields is not None:
                table = _with_empty_lists(table)
            if table is not None:
                stats.completed_jobs += 1
                out.append(table)

        async with trio.open_nursery() as nursery:
            for meta in blocks:
                nursery.start_soon(job, meta)
        if not whole_traces:
            return out
        split = _split_trace_ids(unique_trace_ids(t) for t in out)
        if not len(split):
            return out
        parts = [t.take(pc.indices_nonzero(pc.is_in(t.spans.column("trace_id"), split))) for t in out]
        assembled = _assembled([p for p in parts if p.num_spans])
        whole = [_without(t, split) for t in out]
        return [t for t in whole if t.num_spans] + [assembled]


def _assembled(parts: list[spantable.SpanTable]) -> spantable.SpanTable:
    """Parts of the same traces from several sources as one table, duplicate spans dropped.

    Nested sets were numbered per block (and the live-store has none), so they are dropped: the engine
    numbers the assembled traces again when a query needs them."""
    table = spantable.dedupe_spans(spantable.concat(parts))
    stale = [f.name for f in spantable.NESTED_SET_FIELDS if f.name in table.spans.column_names]
    return spantable.SpanTable(table.spans.drop_columns(stale), table.resources, dict(table.dedicated))


@dataclass(frozen=True)
class _StageTwo:
    """What stage two of a block search reads: `columns` of the row groups holding each batch of chosen
    traces (indices into the trace table), batches newest first."""

    meta: BlockMeta
    info: BlockTraces
    footer: Footer
    batches: list[np.ndarray]
    columns: list[str] | None


def _candidate_batches(chosen: np.ndarray, starts: np.ndarray, limit: int, *, newest_first: bool) -> list[np.ndarray]:
    """Chosen traces in growing batches (4 x limit, then doubling): newest first when the answer is the
    newest matches (a batch boundary never splits traces with the same start, so they are found
    whatever the ties), else in file order (neighbouring traces share row groups)."""
    if len(chosen) <= 4 * max(limit, 16):
        return [chosen]
    if newest_first:
        order = np.argsort(-starts, kind="stable")
        chosen, starts = chosen[order], starts[order]
    else:
        starts = np.arange(len(chosen))  # no ties to keep together
    batches = []
    lo, size = 0, 4 * max(limit, 16)
    while lo < len(chosen):
        hi = min(lo + size, len(chosen))
        while hi < len(chosen) and starts[hi] == starts[hi - 1]:
            hi += 1
        batches.append(chosen[lo:hi])
        lo, size = hi, size * 2
    return batches


def _with_empty_lists(table: spantable.SpanTable) -> spantable.SpanTable:
    """Stage-one tables without `attrs`/`events`/`links` get empty lists there (no generic values)."""
    spans = table.spans
    n = spans.num_rows
    for name in ("attrs", "events", "links"):
        if name not in spans.column_names:
            typ = spantable.SPAN_SCHEMA.field(name).type
            empty = pa.ListArray.from_arrays(pa.array(np.zeros(n + 1, np.int32)), pa.array([], typ.value_type))
            spans = spans.append_column(pa.field(name, typ), empty)
    return spantable.SpanTable(spans, table.resources, dict(table.dedicated))


def _with_dedicated(columns: list[str] | None, meta: BlockMeta) -> list[str] | None:
    if columns is not None and "attrs" in columns:
        return columns + sorted(meta.dedicated_columns.values())
    return columns


def _prefix_ends(n: int) -> list[int]:
    """Growing prefixes of n row groups to read in turn: 1, 4, 16, ... n."""
    ends, end = [], 1
    while end < n:
        ends.append(end)
        end *= 4
    return [*ends, n]


def _group_rows(footer: Footer, groups: list[int]) -> np.ndarray:
    """Row numbers (in the file) of the given row groups, in order."""
    firsts = footer.group_first
    if len(groups) == footer.num_row_groups:
        return np.arange(firsts[-1])
    return np.concatenate([np.arange(firsts[g], firsts[g + 1]) for g in groups]) if groups else np.zeros(0, np.int64)


def _groups_for_traces(meta: BlockMeta, info: BlockTraces, footer: Footer, chosen: np.ndarray) -> list[int]:
    """Row groups holding the spans of the chosen traces (indices into the trace table)."""
    if info.row_trace is None or len(info.row_trace) != footer.num_rows:
        return _groups_holding(meta, info.ids.take(pa.array(chosen)))
    group_end = footer.group_first[1:]
    first = info.first_row[chosen]
    last = info.first_row[chosen + 1] - 1
    lo = np.searchsorted(group_end, first, side="right")
    hi = np.searchsorted(group_end, last, side="right")
    hit = np.zeros(footer.num_row_groups + 1, dtype=np.int64)
    np.add.at(hit, lo, 1)
    np.add.at(hit, hi + 1, -1)
    return np.flatnonzero(np.cumsum(hit)[:-1] > 0).tolist()


def _overlaps(info: BlockTraces, start_ns: int, end_ns: int) -> np.ndarray:
    """Traces a result would keep for the time range (as `_overlapping` judges search results)."""
    end = end_ns or (1 << 63) - 1
    duration_ms = (info.ends - info.starts) // 1_000_000
    return (info.starts <= end) & (info.starts + duration_ms * 1_000_000 >= start_ns)


def _groups_holding(meta: BlockMeta, trace_ids: pa.Array) -> list[int]:
    """Row groups whose trace-ID range holds one of the given IDs (ranges are sorted by trace ID)."""
    hexes = np.sort(np.asarray(hex_ids(trace_ids.cast(pa.binary(16))).to_pylist(), dtype="U32"))
    lows = np.asarray([rg.min_trace_id for rg in meta.row_groups], dtype="U32")
    highs = np.asarray([rg.max_trace_id for rg in meta.row_groups], dtype="U32")
    # A group holds some ID if the first ID >= its low is <= its high.
    pos = np.searchsorted(hexes, lows, side="left")
    inside = pos < len(hexes)
    inside[inside] = hexes[pos[inside]] <= highs[inside]
    return np.flatnonzero(inside).tolist()


def unique_trace_ids(table: spantable.SpanTable) -> pa.Array:
    """The distinct trace IDs of a table, as one fixed-size binary(16) array."""
    ids = pc.unique(table.spans.column("trace_id"))
    ids = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
    return ids.cast(pa.binary(16))


def _split_trace_ids(id_lists: Iterable[pa.Array]) -> pa.Array:
    lists = [a.cast(pa.binary(16)) for a in id_lists if len(a)]
    if len(lists) < 2:
        return pa.array([], pa.binary(16))
    counts = pc.value_counts(pa.concat_arrays(lists))
    return counts.field("values").filter(pc.greater(counts.field("counts"), 1))


def _without(table: spantable.SpanTable, trace_ids: pa.Array) -> spantable.SpanTable:
    if not len(trace_ids):
        return table
    keep = pc.invert(pc.is_in(table.spans.column("trace_id"), trace_ids))
    return spantable.SpanTable(table.spans.filter(keep), table.resources, dict(table.dedicated))


def parse_search_query(q: str) -> Query:
    query = parse(q)
    if query.metrics is not None:
        raise InvalidRequest(
            "invalid TraceQL query: metrics queries are answered by /api/metrics/query_range and "
            "/api/metrics/query, not /api/search"
        )
    return query

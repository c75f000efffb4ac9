"""Block access for search: a block's trace table (`BlockTraces`), and `BlockSearch`, which reads a block in
two stages (filter columns of the row groups statistics keep, then evaluation columns of the row groups
holding the chosen traces); `Searcher` (querier/search.py) builds on it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import trio

from tempo_lite import spantable
from tempo_lite.block.meta import BlockMeta
from tempo_lite.block.paths import DATA, TRACES
from tempo_lite.block.reader import Footer
from tempo_lite.errors import StorageError
from tempo_lite.querier import pushdown
from tempo_lite.querier.search_request import SearchRequest, SearchStats, columns_for
from tempo_lite.querier.tracebyid import Querier
from tempo_lite.traceql.ast import Intrinsic
from tempo_lite.traceql.engine import trace_matches
from tempo_lite.traceql.engine_attrs import hex_ids
from tempo_lite.traceql.engine_query import TRACE_DEPENDENT, referenced_fields
from tempo_lite.traceql.engine_query import needs_nested_sets as _needs_nested_sets
from tempo_lite.traceql.engine_span_values import TraceLevel

log = logging.getLogger(__name__)


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


class BlockSearch:
    """Reading blocks for a search: trace tables, generic-key sets, and the two stages of a block search
    (candidate traces from the filter columns, then the columns evaluation needs, from just the row
    groups holding chosen traces)."""

    def __init__(self, querier: Querier, *, concurrency: int = 8) -> None:
        self.querier = querier
        self.limiter = trio.CapacityLimiter(concurrency)

    def _blocks(self, tenant: str, start_ns: int, end_ns: int) -> list[BlockMeta]:
        return self.querier.blocklist.blocks(tenant, start_ns, end_ns)

    async def block_traces(self, meta: BlockMeta) -> BlockTraces:
        """A block's trace table (IDs, start and end times, span rows), read once and cached."""
        reader = self.querier.reader(meta)

        async def load() -> BlockTraces:
            return BlockTraces.from_table(await reader.trace_table(), meta.total_spans)

        try:
            return await self.querier.cache.get_or_load(reader.cache_key(f"{TRACES}#traces"), load, lambda t: t.nbytes)
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

        async def read() -> frozenset[str]:
            keys = await reader.read_columns(None, ["attrs.list.element.key"])
            flat = pc.list_flatten(keys.column("attrs"))
            return frozenset(pc.unique(pc.struct_field(flat, "key")).to_pylist()) if len(flat) else frozenset()

        key = reader.cache_key(f"{DATA}#generic-keys")
        return await self.querier.cache.get_or_load(key, read, lambda k: 64 + sum(len(x) + 50 for x in k))

    async def _read_groups(
        self, meta: BlockMeta, groups: list[int], columns: list[str] | None, stats: SearchStats
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
        # Stage one's table, the columns of it read from the file, and its row groups (stage two reuses them).
        kept: tuple[pa.Table, list[str], list[int]] | None = None
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
            # change an aggregate, so only traces whose every row was read count). A limit above the block's
            # trace count cannot stop early: one read.
            early = not request.most_recent and not len(split) and row_index and request.limit <= n_traces
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
                kept = part.spans, [c for c in first if c in part.spans.column_names], groups[:end]
                part = spantable.with_empty_lists(part)
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
        # Every match fits the answer: evaluating traces that were not chosen (non-matching, split, out of the
        # time range: each dropped from the results later) cannot crowd chosen ones out.
        every_match = request.limit >= n_traces and len(batches) == 1
        return _StageTwo(meta, info, footer, batches, columns, kept, every_match), split_candidates

    async def _read_batch(self, plan: _StageTwo, chosen: np.ndarray, stats: SearchStats) -> spantable.SpanTable:
        """Stage two for some chosen traces: every column evaluation needs, from their row groups only."""
        groups = _groups_for_traces(plan.meta, plan.info, plan.footer, chosen)
        reuse: list[str] = []
        if plan.stage_one is not None and plan.columns is not None and plan.stage_one[2] == groups:
            # Stage one read these row groups already (every or most traces are chosen): read only the
            # columns it did not, and take its own from its table, row for row.
            reuse = [c for c in plan.stage_one[1] if c in plan.columns]
        rest = [c for c in plan.columns or [] if c not in reuse]
        if reuse and rest:
            assert plan.stage_one is not None
            read = await self._read_groups(plan.meta, groups, rest, stats)
            first = plan.stage_one[0]
            spans = read.spans
            for name in reuse:
                spans = spans.append_column(first.schema.field(name), first.column(name))
            dedicated = {k: c for k, c in plan.meta.dedicated_columns.items() if c in spans.column_names}
            read = spantable.SpanTable(spans, read.resources, dedicated)
        else:
            read = await self._read_groups(plan.meta, groups, plan.columns, stats)
        table = spantable.with_empty_lists(read)
        if len(chosen) < len(plan.info.ids):
            info = plan.info
            if info.row_trace is not None and len(info.row_trace) == plan.footer.num_rows:
                # Rows are the row groups' rows in file order: their traces come from the trace table.
                wanted = np.zeros(len(info.ids), dtype=bool)
                wanted[chosen] = True
                rows = wanted[info.row_trace[_group_rows(plan.footer, groups)]]
                if plan.every_match and len(groups) == plan.footer.num_row_groups and 2 * rows.sum() >= len(rows):
                    # Most rows are kept and every trace is whole: evaluating the others costs less than
                    # copying every column of the kept rows.
                    return table
                keep = pa.array(rows)
            else:
                keep = pc.is_in(table.spans.column("trace_id"), info.ids.take(pa.array(chosen)))
            spans = await trio.to_thread.run_sync(table.spans.filter, keep)
            table = spantable.SpanTable(spans, table.resources, dict(table.dedicated))
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


@dataclass(frozen=True)
class _StageTwo:
    """What stage two of a block search reads: `columns` of the row groups holding each batch of chosen
    traces (indices into the trace table), batches newest first."""

    meta: BlockMeta
    info: BlockTraces
    footer: Footer
    batches: list[np.ndarray]
    columns: list[str] | None
    # Stage one's table, the columns of it read from the file, and the row groups it holds.
    stage_one: tuple[pa.Table, list[str], list[int]] | None = None
    # The answer takes every match of the block (limit above its trace count), in one batch.
    every_match: bool = False


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
    assert info.first_row is not None  # set together with row_trace
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

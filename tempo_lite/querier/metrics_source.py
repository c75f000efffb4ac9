"""Span tables for TraceQL metrics, streamed from the live-store and the blocks a few row groups at a time.

A metrics query reads every span of its range, so it must not hold whole blocks (at 5M spans reading
every block at once took the server to 5 GiB). `stream_span_tables` hands `consume` one table at a time:

* the live-store's spans;
* each overlapping block in slices of about `chunk_rows` rows (whole row groups), with only the columns
  the query needs (`MetricsRead`: e.g. start time, resource index and duration), and row groups whose
  start-time statistics lie outside the range skipped;
* last, the traces found in more than one source, assembled from all of them with duplicate spans
  dropped, so every span counts once and such traces are seen whole.

Which traces are split is known before any span is read, from the block trace tables (cached) and the
live-store's trace IDs; their rows are left out of the slices. When the query needs whole traces
(`traceql.metrics.needs_whole_traces`), slices end at trace boundaries: the rows of a trace that goes on
into the next row groups are carried into the next slice. Reading a slice overlaps the evaluation of the
previous one (a one-slot channel), so at most three slices are in memory.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import trio

from tempo_lite import spantable
from tempo_lite.block.footer import Footer
from tempo_lite.block.meta import BlockMeta
from tempo_lite.errors import StorageError
from tempo_lite.querier import pushdown
from tempo_lite.querier.search import BlockTraces, Searcher, SearchStats, unique_trace_ids
from tempo_lite.traceql.ast import Attribute, AttributeRef, Intrinsic, MetricsOp, Query, Scope
from tempo_lite.traceql.metrics import EXEMPLAR_REF, Series, metrics_fields, needs_whole_traces

log = logging.getLogger(__name__)

CHUNK_ROWS = 131_072
# Slices of fixed-width columns only (start time, resource index, duration: `{ } | rate() by (resource...)`)
# hold up to this many decoded bytes instead of CHUNK_ROWS rows: every slice costs a few ms of fixed work
# (a read call, a thread hop, a span context, exemplar upkeep), which at 128k-row slices was a fifth of
# such a query (1M spans, 2 columns: 82 -> 58 ms CPU with one slice; docs/benchmarks.md).
CHUNK_BYTES = 12 << 20
_REF_SHIFT = 40
# What whole-trace evaluation reads besides the query's fields: trace summaries, structure, dedupe keys.
_WHOLE_TRACE_COLUMNS = frozenset(pushdown.RESULT_COLUMNS) | frozenset(pushdown.NESTED_SET_COLUMNS) | {"kind"}

Consume = Callable[[spantable.SpanTable], Awaitable[None]]


@dataclass(frozen=True)
class MetricsRead:
    """What the metrics queries of one request read: their fields (None: every column, for compare()),
    whether tables must hold whole traces, and whether exemplars need trace and span IDs."""

    fields: tuple[AttributeRef, ...] | None
    whole_traces: bool
    ids: bool

    @classmethod
    def of(cls, queries: list[Query], *, exemplars: bool) -> MetricsRead:
        every = any(q.metrics is not None and q.metrics.op is MetricsOp.COMPARE for q in queries)
        fields = None if every else tuple(dict.fromkeys(f for q in queries for f in metrics_fields(q)))
        return cls(fields, any(needs_whole_traces(q) for q in queries), exemplars)


def _uses_resources(ref: AttributeRef) -> bool:
    if isinstance(ref, Attribute):
        return ref.scope in (Scope.NONE, Scope.RESOURCE, Scope.INSTRUMENTATION)
    return ref in (Intrinsic.INSTRUMENTATION_NAME, Intrinsic.INSTRUMENTATION_VERSION)


def _chunks(groups: list[int], group_first: np.ndarray, chunk_rows: int) -> Iterator[list[int]]:
    """Row groups in runs of at least `chunk_rows` rows (the last run may be shorter)."""
    run: list[int] = []
    rows = 0
    for g in groups:
        run.append(g)
        rows += int(group_first[g + 1] - group_first[g])
        if rows >= chunk_rows:
            yield run
            run, rows = [], 0
    if run:
        yield run


def _file_rows(group_first: np.ndarray, groups: list[int]) -> np.ndarray:
    """The block rows of some row groups, in order."""
    if groups and groups[-1] - groups[0] == len(groups) - 1:  # a contiguous run (no group skipped)
        return np.arange(group_first[groups[0]], group_first[groups[-1] + 1])
    return np.concatenate([np.arange(group_first[g], group_first[g + 1]) for g in groups])


class MetricsSource:
    """The spans of one tenant in a time range, as a stream of tables (see the module docstring)."""

    def __init__(self, searcher: Searcher, read: MetricsRead, *, chunk_rows: int | None = None) -> None:
        self.searcher = searcher
        self.querier = searcher.querier
        self.read = read
        self.chunk_rows = chunk_rows  # None: CHUNK_ROWS, or CHUNK_BYTES of fixed-width columns
        # Blocks streamed so far, numbered for exemplar references: (number << 40) | row in the block.
        self._numbered: list[tuple[BlockMeta, BlockTraces]] = []
        self._broken: set[str] = set()

    async def stream(self, tenant: str, start_ns: int, end_ns: int, stats: SearchStats, consume: Consume) -> None:
        live = await self.querier.live.snapshot(tenant)
        blocks = self.querier.blocklist.blocks(tenant, start_ns, end_ns)
        stats.total_blocks += len(blocks)
        stats.total_jobs += 1 + len(blocks)
        stats.completed_jobs += 1
        stats.total_block_bytes += sum(m.size_bytes for m in blocks)
        infos: dict[str, BlockTraces] = {}

        async def trace_table(meta: BlockMeta) -> None:
            try:
                async with self.searcher.limiter:
                    infos[meta.block_id] = await self.searcher.block_traces(meta)
            except StorageError as exc:
                self._failed(stats, exc)

        async with trio.open_nursery() as nursery:  # trace tables (cached) load side by side
            for meta in blocks:
                nursery.start_soon(trace_table, meta)
        live_ids = unique_trace_ids(live) if live.num_spans else pa.array([], pa.binary(16))
        split = await self._split(live_ids, infos)

        send, receive = trio.open_memory_channel[spantable.SpanTable](1)

        async def produce() -> None:
            async with send:
                if live.num_spans:
                    stats.inspected_bytes += live.nbytes
                    stats.inspected_traces += len(live_ids)
                    await send.send(spantable.without_traces(live, split))
                for meta in blocks:
                    info = infos.get(meta.block_id)
                    if info is not None:
                        await self._block(meta, info, split, start_ns, end_ns, stats, send)
                if len(split):
                    # Blocks that failed above are not read again (their spans are missing either way).
                    block_ids = {block_id: info.ids for block_id, info in infos.items() if block_id not in self._broken}
                    live_part = live if live.num_spans else spantable.empty_span_table()
                    await send.send(await self.searcher.assemble(tenant, split, live_part, blocks, block_ids, stats))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(produce)
            async with receive:
                async for table in receive:
                    if table.num_spans:
                        stats.inspected_spans += table.num_spans
                        await consume(table)

    async def _split(self, live_ids: pa.Array, infos: dict[str, BlockTraces]) -> pa.Array:
        """Trace IDs in more than one source. Between blocks: computed once per set of blocks (cached);
        the live-store's IDs are looked up in each block's IDs."""

        async def between_blocks() -> pa.Array:
            return await trio.to_thread.run_sync(spantable.trace_ids_in_several, [info.ids for info in infos.values()])

        key = f"{self.querier.store.name}:metrics-split:{','.join(sorted(infos))}"
        split = await self.querier.cache.get_or_load(key, between_blocks, lambda a: a.nbytes + 64)
        if not len(live_ids):
            return split

        def with_live() -> pa.Array:
            hits = [info.ids.filter(pc.is_in(info.ids, live_ids)) for info in infos.values()]
            return pc.unique(pa.concat_arrays([split, *(h.cast(pa.binary(16)) for h in hits)]))

        return await trio.to_thread.run_sync(with_live)

    def _failed(self, stats: SearchStats, exc: StorageError) -> None:
        self.querier.metrics.blocks_unreadable.inc()
        log.warning("metrics: %s", exc.message)
        stats.failed_blocks.append(exc.message)

    async def _columns(self, meta: BlockMeta, *, trace_ids: bool) -> list[str] | None:
        fields = self.read.fields
        if fields is None:
            return None
        generic: frozenset[str] = frozenset()
        if any(isinstance(f, Attribute) and f.name in meta.dedicated_columns for f in fields):
            generic = await self.searcher.generic_keys(meta)
        cols = pushdown.field_columns(fields, meta.dedicated_columns, generic)
        if cols is None:
            return None
        wanted = set(cols) | {"start_unix_nano"}
        if not any(_uses_resources(f) for f in fields):
            wanted.discard("resource_index")
        if self.read.whole_traces:
            wanted |= _WHOLE_TRACE_COLUMNS
        if trace_ids:
            wanted.add("trace_id")
            if self.read.ids:
                wanted.add("span_id")  # else exemplars get IDs afterwards, from their row (`resolve`)
        return sorted(wanted)

    async def _block(
        self, meta: BlockMeta, info: BlockTraces, split: pa.Array, start_ns: int, end_ns: int, stats: SearchStats,
        send: trio.MemorySendChannel[spantable.SpanTable],
    ) -> None:
        reader = self.querier.reader(meta)
        whole = self.read.whole_traces
        self._numbered.append((meta, info))
        try:
            footer = await reader.footer_info()
            row_trace = info.row_trace
            if row_trace is not None and len(row_trace) != footer.num_rows:
                row_trace = None
            # Rows map to traces through the trace table; without it, trace IDs are read.
            columns = await self._columns(meta, trace_ids=row_trace is None or whole)
            groups = list(range(footer.num_row_groups))
            stats_start = footer.statistics("start_unix_nano")
            if not whole and stats_start is not None:
                lo, hi, known = stats_start
                outside = known & ((hi <= start_ns) | (lo > end_ns))
                groups = [g for g in groups if not outside[g]]
            is_split = (
                pc.is_in(info.ids, split).to_numpy(zero_copy_only=False) if len(split) and row_trace is not None
                else None
            )
            resources = await reader.resources()
            dedicated = {k: c for k, c in meta.dedicated_columns.items() if columns is None or c in columns}
            chunk_rows = self._slice_rows(footer, columns)
            runs = list(_chunks(groups, footer.group_first, chunk_rows)) if row_trace is not None else [groups]
            carry: tuple[pa.Table, np.ndarray] | None = None
            for i, run in enumerate(runs):
                if not run:
                    continue
                spans = await reader.read_columns(run, columns)
                stats.inspected_bytes += spans.nbytes
                rows = _file_rows(footer.group_first, run) if row_trace is not None else None
                if carry is not None and rows is not None:
                    spans, rows = pa.concat_tables([carry[0], spans]), np.concatenate([carry[1], rows])
                    carry = None
                if whole and rows is not None and row_trace is not None and info.first_row is not None \
                        and i + 1 < len(runs) and len(rows):
                    last = int(row_trace[rows[-1]])
                    if info.first_row[last + 1] > rows[-1] + 1:  # the trace goes on in the next row groups
                        cut = int(np.searchsorted(rows, info.first_row[last]))
                        carry = (spans.slice(cut), rows[cut:])
                        spans, rows = spans.slice(0, cut), rows[:cut]
                await send.send(self._slice(spans, rows, row_trace, is_split, split, resources, dedicated))
            stats.inspected_traces += len(info.ids)
            stats.completed_jobs += 1
        except StorageError as exc:
            self._broken.add(meta.block_id)
            self._failed(stats, exc)

    def _slice_rows(self, footer: Footer, columns: list[str] | None) -> int:
        """Rows per slice: CHUNK_ROWS, or as many as CHUNK_BYTES of the columns when all are fixed-width."""
        if self.chunk_rows is not None:
            return self.chunk_rows
        if columns is None:
            return CHUNK_ROWS
        width = 8 if self.read.ids else 0  # exemplar references, appended per row
        schema = footer.metadata.schema.to_arrow_schema()
        for name in columns:
            typ = schema.field(name).type if name in schema.names else None
            if typ is None or not pa.types.is_primitive(typ) or pa.types.is_boolean(typ):
                return CHUNK_ROWS
            width += typ.bit_width // 8
        return max(CHUNK_ROWS, CHUNK_BYTES // max(width, 1))

    def _slice(
        self, spans: pa.Table, rows: np.ndarray | None, row_trace: np.ndarray | None,
        is_split: np.ndarray | None, split: pa.Array, resources: pa.Table, dedicated: dict[str, str],
    ) -> spantable.SpanTable:
        """One slice as a span table: split traces' rows dropped; without span IDs, each row's reference for
        exemplars (block number and row)."""
        if rows is not None and row_trace is not None:
            if is_split is not None:
                keep = ~is_split[row_trace[rows]]
                if not keep.all():
                    spans, rows = spans.filter(pa.array(keep)), rows[keep]
            if self.read.ids and "span_id" not in spans.column_names:
                ref = (len(self._numbered) - 1) << _REF_SHIFT
                spans = spans.append_column(EXEMPLAR_REF, pa.array(rows.astype(np.int64) + ref))
            table = spantable.SpanTable(spans, resources, dict(dedicated))
        else:
            table = spantable.without_traces(spantable.SpanTable(spans, resources, dict(dedicated)), split)
        return spantable.with_empty_lists(table) if self.read.fields is not None else table

    async def resolve(self, series: list[Series], stats: SearchStats) -> None:
        """Trace and span IDs for exemplars that carry a row reference: the span IDs of just the row groups
        holding them, trace IDs from the trace tables."""
        wanted = [e for s in series for e in s.exemplars if e.ref >= 0]
        by_block: dict[int, list[int]] = {}
        for e in wanted:
            by_block.setdefault(e.ref >> _REF_SHIFT, []).append(e.ref & ((1 << _REF_SHIFT) - 1))
        found: dict[int, tuple[bytes, bytes]] = {}
        for number, file_rows in by_block.items():
            meta, info = self._numbered[number]
            reader = self.querier.reader(meta)
            try:
                footer = await reader.footer_info()
                rows = np.unique(np.asarray(file_rows, dtype=np.int64))
                groups = np.unique(np.searchsorted(footer.group_first, rows, side="right") - 1).tolist()
                span_ids = (await reader.read_columns(groups, ["span_id"])).column("span_id")
            except StorageError as exc:
                self._failed(stats, exc)
                continue
            at = np.searchsorted(_file_rows(footer.group_first, groups), rows)
            assert info.row_trace is not None  # references are only given with the trace table's row index
            trace_ids = info.ids.take(pa.array(info.row_trace[rows])).to_pylist()
            for row, i, tid in zip(rows.tolist(), at.tolist(), trace_ids, strict=True):
                found[(number << _REF_SHIFT) | row] = (tid, span_ids[i].as_py())
        for e in wanted:
            ids = found.get(e.ref)
            if ids is not None:
                e.with_ids(*ids)

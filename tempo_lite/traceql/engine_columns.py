"""Search matches column-wise (`SpansetColumns`): the `_Evaluator` half that gives `evaluate_columns` its
answer without a Python object per trace, spanset or shown span.

`ColumnResults` is mixed into `engine._Evaluator` (it uses the evaluator's masks, trace index, nested
sets and shown values). Pipelines of filters are answered with numpy over whole columns, other pipelines
by `engine_pipeline.PipelineColumns` (structural operators, `&&`/`||`, scalar filters, `by()`...);
the per-trace walk's matches of what that leaves to the walk are collected into the same columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from tempo_lite.traceql.ast import Pipeline, SpansetFilter
from tempo_lite.traceql.engine_pipeline import PipelineColumns, WalkNeeded
from tempo_lite.traceql.engine_results import Spanset, result_fields
from tempo_lite.traceql.engine_structural import NestedSets
from tempo_lite.traceql.engine_values import Col, TypedValue

if TYPE_CHECKING:
    from tempo_lite.spantable import SpanTable
    from tempo_lite.traceql.ast import AttributeRef, Query
    from tempo_lite.traceql.engine_aggregates import Aggregates

@dataclass
class SpansetColumns:
    """The matches of one evaluation column-wise (what `evaluate` returns, without a Python object per
    trace, spanset or span): traces in answer order, their spansets in order, and the shown spans (the
    first `spss` of each spanset) with the columns a search result shows.

    `set_trace[i]` is spanset i's trace (index into `trace_ids`, non-decreasing); `shown_set[j]` is shown
    span j's spanset (non-decreasing); `values` are the result fields (key, value per shown span) in the
    order a result lists them; `name` is None unless the query refers to the span name."""

    trace_ids: pa.Array
    set_trace: np.ndarray
    set_matched: np.ndarray
    set_attrs: list[list[tuple[str, TypedValue]]] | None
    shown_set: np.ndarray
    span_id: pa.Array
    start: pa.Array
    duration: pa.Array
    name: pa.Array | None
    values: list[tuple[str, Col]]
    # The evaluated table's trace index (`trace_index` of its trace IDs), when rows kept the order of the
    # table given to `evaluate_columns`: trace summaries of that table can reuse it.
    table_index: tuple[pa.Array, np.ndarray] | None = None

    @property
    def num_traces(self) -> int:
        return len(self.trace_ids)


class ColumnResults:
    """Column-wise results; mixed into `engine._Evaluator`, whose state and methods it uses."""

    query: Query
    table: SpanTable
    n: int
    _masks: dict[SpansetFilter, np.ndarray]
    _mask_ids: dict[int, np.ndarray]
    trace_index: tuple[pa.Array, np.ndarray] | None
    aggregates: Aggregates

    if TYPE_CHECKING:
        def _candidates(self, limit: int | None) -> tuple[pa.Array, np.ndarray, np.ndarray, bool]: ...

        def _walk(self, ids: pa.Array, span_trace: np.ndarray, candidates: np.ndarray,
                  limit: int | None) -> list[tuple[bytes, list[Spanset]]]: ...

        def _nested_sets(self) -> NestedSets: ...

        def trace_matches(self, span_trace: np.ndarray, n_traces: int) -> np.ndarray | None: ...

        def _shown_values(self, ref: AttributeRef) -> list[Col]: ...

    def run_columns(self, spss: int, limit: int | None = None) -> SpansetColumns:
        ids, span_trace, candidates, column_wise = self._candidates(limit)
        if column_wise:
            return self._filter_columns(ids, span_trace, candidates[:limit], spss, self._passing())
        try:
            return self._pipeline_columns(ids, span_trace, candidates, spss, limit)
        except WalkNeeded:
            pass
        return self._walk_columns(self._walk(ids, span_trace, candidates, limit), ids.type, spss)

    def _passing(self) -> np.ndarray:
        """Rows passing every filter of a pipeline of filters."""
        passing = np.ones(self.n, dtype=bool)
        assert isinstance(self.query.pipeline, Pipeline)
        for st in self.query.pipeline.stages:
            if isinstance(st, SpansetFilter):
                passing &= self._mask_ids[id(st)]
        return passing

    def _pipeline_columns(self, ids: pa.Array, span_trace: np.ndarray, candidates: np.ndarray, spss: int,
                          limit: int | None) -> SpansetColumns:
        """Any pipeline `PipelineColumns` evaluates, over all traces at once; raises `WalkNeeded` else.
        The answer is the matching candidates, in candidate order, up to `limit`, as the walk gives."""
        assert isinstance(self.query.pipeline, Pipeline)
        cols = PipelineColumns(self._mask_of, self.aggregates, span_trace, len(ids), self._nested_sets)
        sets, by = cols.run(self.query.pipeline)
        chosen = candidates[cols.alive(sets.rows)[candidates]][:limit]
        attrs: list[list[tuple[str, TypedValue]]] | None = None
        if sets.attrs:
            columns = [(key, values(chosen)) for key, values in sets.attrs]
            attrs = [[(key, vs[i]) for key, vs in columns] for i in range(len(chosen))]
        if by is None:
            return self._filter_columns(ids, span_trace, chosen, spss, sets.rows, attrs)
        position = np.full(len(ids), -1, dtype=np.int64)
        position[chosen] = np.arange(len(chosen))
        groups = cols.groups(by, sets.rows, position)
        set_position = groups.set_position
        set_attrs = [[*(attrs[p] if attrs else []), (groups.key, v)]
                     for p, v in zip(set_position.tolist(), groups.values, strict=True)]
        rows = np.flatnonzero(groups.set_of_row >= 0)
        key = groups.set_of_row[rows]
        by_set = np.argsort(key, kind="stable")
        rows, key = rows[by_set], key[by_set]
        matched = np.bincount(key, minlength=len(set_position))
        first = np.concatenate([[0], np.cumsum(matched)])[:-1]
        shown = (np.arange(len(rows)) - first[key]) < spss
        return self._columns(ids.take(pa.array(chosen, pa.int64())), set_position, matched, set_attrs,
                             key[shown], rows[shown])

    def _mask_of(self, f: SpansetFilter) -> np.ndarray:
        mask = self._mask_ids.get(id(f))
        return mask if mask is not None else self._masks[f]

    def _filter_columns(
        self, ids: pa.Array, span_trace: np.ndarray, chosen: np.ndarray, spss: int, passing: np.ndarray,
        attrs: list[list[tuple[str, TypedValue]]] | None = None,
    ) -> SpansetColumns:
        """`_filter_spansets` + `_materialize` column-wise: one spanset per chosen trace (its rows passing
        `passing`, ascending), its first `spss` rows shown, with `attrs` (per chosen trace) if given."""
        position = np.full(len(ids), -1, dtype=np.int64)
        position[chosen] = np.arange(len(chosen))
        rows = np.flatnonzero(passing & (position[span_trace] >= 0))
        key = position[span_trace[rows]]
        by_trace = np.argsort(key, kind="stable")  # rows stay ascending within a trace
        rows, key = rows[by_trace], key[by_trace]
        matched = np.bincount(key, minlength=len(chosen))
        first = np.concatenate([[0], np.cumsum(matched)])[:-1]
        shown = (np.arange(len(rows)) - first[key]) < spss
        return self._columns(ids.take(pa.array(chosen, pa.int64())), np.arange(len(chosen)), matched, attrs,
                             key[shown], rows[shown])

    def _walk_columns(self, matches: list[tuple[bytes, list[Spanset]]], id_type: pa.DataType,
                      spss: int) -> SpansetColumns:
        """The walk's matches column-wise (one small Python step per spanset, none per shown span)."""
        set_trace: list[int] = []
        matched: list[int] = []
        attrs: list[list[tuple[str, TypedValue]]] = []
        shown_set: list[np.ndarray] = []
        shown_rows: list[np.ndarray] = []
        for t, (_, sets) in enumerate(matches):
            for ss in sets:
                rows = ss.rows[:spss]
                shown_set.append(np.full(len(rows), len(set_trace), dtype=np.int64))
                shown_rows.append(rows)
                set_trace.append(t)
                matched.append(len(ss.rows))
                attrs.append(ss.attrs)
        cat = (lambda xs: np.concatenate(xs).astype(np.int64)) if shown_rows else (lambda _: np.zeros(0, np.int64))
        return self._columns(
            pa.array([t for t, _ in matches], id_type), np.asarray(set_trace, np.int64),
            np.asarray(matched, np.int64), attrs if any(attrs) else None, cat(shown_set), cat(shown_rows),
        )

    def empty_columns(self) -> SpansetColumns:
        none = np.zeros(0, np.int64)
        empty = pa.array([], pa.int64())
        return SpansetColumns(pa.array([], self.table.spans.schema.field("trace_id").type), none, none, None,
                              none, pa.array([], pa.binary()), empty, empty, None, [])

    def _columns(self, trace_ids: pa.Array, set_trace: np.ndarray, matched: np.ndarray,
                 attrs: list[list[tuple[str, TypedValue]]] | None, shown_set: np.ndarray,
                 shown_rows: np.ndarray) -> SpansetColumns:
        want_name, fields = result_fields(self.query)
        spans = self.table.spans
        idx = pa.array(shown_rows, pa.int64())
        values = [(key, col.take(shown_rows)) for key, ref in fields.items() for col in self._shown_values(ref)]
        return SpansetColumns(
            trace_ids, set_trace, matched, attrs, shown_set,
            _array(spans.column("span_id").take(idx)), _array(spans.column("start_unix_nano").take(idx)),
            _array(spans.column("duration_nano").take(idx)),
            _array(spans.column("name").take(idx)) if want_name else None, values,
        )


def _array(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values

"""TraceQL search evaluation over a span table holding complete traces: the entry points and the walk of
a query's pipeline stages.

`evaluate(query, table, spss=...)` first computes every `{ ... }` filter of the query column-wise
(`engine_context.SpanContext`), then walks only the traces that have a span passing some filter (or
all traces when a pipeline starts with `by()`, `select()` or a scalar filter) and applies spanset
operators, structural operators, aggregates, `by()`, `coalesce()` and `select()` on numpy arrays of
row indices per trace: the per-trace walk, kept as the reference. `evaluate_columns` gives the same
answer column-wise over the whole table (`engine_pipeline.PipelineColumns`): filters, `&&`/`||` across
spansets, every structural operator with its negated and union forms (`engine_structural_cols`),
scalar filters, `coalesce()`, `select()` and a final `by()`. It falls back to the walk only for:
`by()` followed by anything but `select()` (or inside an operand), an operand of `&&`/`||`/structural
that adds spanset attributes (a scalar filter inside parentheses), `sum`/`avg`/`min`/`max` over float
values or integer sums reaching 2**52 (the walk's summation order decides the last bit), and stages
the walk rejects with an error. `candidate_trace_ids` and `trace_matches` are the cheap supersets (and
exact matches) for traces split across sources.

The other parts of the engine, one job each:
- `engine_query`: what a query reads and how its pipeline is shaped (AST walks, shared with the querier).
- `engine_context`: field expressions and `{ }` filters column-wise, over the values `engine_span_values`
  looks up (attribute indexes in `engine_attrs`) as typed columns (`engine_values`).
- `engine_aggregates`: scalar filters over aggregates and `by()`; `engine_structural`: `>`, `>>`, `~`...
  per trace, `engine_structural_cols` over all traces; `engine_pipeline`: pipelines over all traces.
- `engine_results` and `engine_columns`: the answer as objects per trace, or column-wise.

Semantics decisions (docs/traceql.md has the language notes):
* `{ !(<cond>) }` is evaluated logically (Tempo's storage push-down makes it return nothing).
* int `^` int computes lhs to the power rhs (Tempo's Go code swaps the operands).
* Unscoped `.a` matches if the span value or the resource value satisfies the comparison (never event,
  link or instrumentation values, as in Tempo's storage; docs/traceql.md). Returned spans show each of
  the two values that passes the query's conditions on `.a` (both under the key `a` when both pass).
* Event/link attributes in returned spans: the span's last event (link) value passing the query's
  comparisons of that attribute with a literal (any value for select()/by()), as Tempo collects them.
* Disconnected spans (nested-set left 0) never take part in structural results, negated ones included.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tempo_lite.spantable import SpanTable, with_nested_sets
from tempo_lite.traceql.ast import (
    Attribute,
    AttributeRef,
    Coalesce,
    GroupBy,
    Pipeline,
    Query,
    ScalarFilter,
    Scope,
    Select,
    SpansetFilter,
    SpansetOp,
    SpansetOperation,
    TraceQLError,
    render,
)
from tempo_lite.traceql.engine_aggregates import Aggregates
from tempo_lite.traceql.engine_attrs import np_int
from tempo_lite.traceql.engine_columns import ColumnResults, SpansetColumns
from tempo_lite.traceql.engine_context import SpanContext
from tempo_lite.traceql.engine_query import (
    TRACE_DEPENDENT,
    TRACE_TABLE_INTRINSICS,
    filters_only,
    needs_nested_sets,
    referenced_fields,
    rescope,
    shown_conditions,
    stage_filters,
    starts_unfiltered,
)
from tempo_lite.traceql.engine_results import Spanset, TraceMatch, materialize, merge_attrs, result_fields
from tempo_lite.traceql.engine_span_values import TraceLevel
from tempo_lite.traceql.engine_structural import NestedSets, structural
from tempo_lite.traceql.engine_summary import trace_index
from tempo_lite.traceql.engine_values import Col, EvaluationError

MULTIPLE_SPANSETS = (
    "spanset operators are not supported for multiple spansets per trace. consider using coalesce()"
)


def _as_query(query: Query | str) -> Query:
    if isinstance(query, str):
        from tempo_lite.traceql import parse

        return parse(query)
    return query


# --------------------------------------------------------------------------------------------------
# Candidates


def candidate_trace_ids(query: Query | str, table: SpanTable) -> pa.Array:
    """Trace IDs of `table` that might match `query` once joined with spans stored elsewhere.

    A superset: trace-dependent intrinsics (trace duration, root name/service, nested sets) count as
    unknown, structure is ignored, and a pipeline that does not start with a filter takes every trace.
    """
    q = _as_query(query)
    ids = table.spans.column("trace_id")
    if table.num_spans == 0:
        return pa.array([], pa.binary(16))
    if starts_unfiltered(q.pipeline):
        return pc.unique(ids)
    filters: list[SpansetFilter] = []
    stage_filters(q.pipeline, filters)
    ctx = SpanContext(table, candidate=True)
    mask = np.zeros(table.num_spans, dtype=bool)
    for f in dict.fromkeys(filters):
        mask |= ctx.filter_mask(f.expr)
    return pc.unique(ids.filter(pa.array(mask)))


def trace_matches(
    query: Query | str, table: SpanTable, span_trace: np.ndarray, n_traces: int,
    trace_level: TraceLevel | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Per trace of `table` (`span_trace[row]` is its trace's index, below `n_traces`): (candidates,
    exact matches or None). With `trace_level` (the block's trace table), `traceDuration`, `rootName`
    and `rootServiceName` are known for every trace, so queries on them can be exact too.

    The table may hold only the columns the query's filters (and aggregates) read, and only the rows
    of some row groups, as long as every span that passes a filter is there. Candidates are the
    superset `candidate_trace_ids` computes; exact matches are given when the pipeline is column-wise
    (`_Evaluator.trace_matches`) and reads nothing that depends on other spans of the trace.
    """
    q = _as_query(query)
    filters: list[SpansetFilter] = []
    stage_filters(q.pipeline, filters)
    if starts_unfiltered(q.pipeline):
        return np.ones(n_traces, dtype=bool), None
    unknown = TRACE_DEPENDENT - TRACE_TABLE_INTRINSICS if trace_level is not None else TRACE_DEPENDENT
    if any(ref in unknown for ref in referenced_fields(q)):
        ctx = SpanContext(table, candidate=True, trace_level=trace_level)
        mask = np.zeros(table.num_spans, dtype=bool)
        for f in dict.fromkeys(filters):
            mask |= ctx.filter_mask(f.expr)
        return np.bincount(span_trace[mask], minlength=n_traces) > 0, None
    ev = _Evaluator(q, table, trace_level)
    mask = np.zeros(table.num_spans, dtype=bool)
    for f in dict.fromkeys(filters):
        ev._masks[f] = ev.ctx.filter_mask(f.expr)
        mask |= ev._masks[f]
    candidates = np.bincount(span_trace[mask], minlength=n_traces) > 0
    exact = ev.trace_matches(span_trace, n_traces) if candidates.any() else candidates
    return candidates, exact


# --------------------------------------------------------------------------------------------------
# Evaluation


def evaluate(
    query: Query | str, table: SpanTable, *, spss: int = 3, limit: int | None = None
) -> list[TraceMatch]:
    """Exact TraceQL search over `table` (which must hold complete traces), one TraceMatch per trace.

    With `limit`, only the `limit` matching traces that start last are returned: candidate traces are
    walked newest first and the walk stops at `limit` matches, so the per-trace stage and result
    building cost O(limit) instead of O(matches) (search results are ordered newest first anyway).
    """
    q = _as_query(query)
    if table.num_spans == 0:
        return []
    order: np.ndarray | None = None
    if needs_nested_sets(q.pipeline) and "nested_set_left" not in table.spans.column_names:
        sorted_idx = pc.sort_indices(
            table.spans, sort_keys=[("trace_id", "ascending"), ("start_unix_nano", "ascending")]
        )
        order = sorted_idx.to_numpy()
        table = with_nested_sets(table.take(sorted_idx))
    ev = _Evaluator(q, table)
    results = ev.run(spss, limit)
    if order is not None:
        for tm in results:
            for ss in tm.spansets:
                ss.rows = [int(order[r]) for r in ss.rows]
                for sp in ss.spans:
                    sp.row = int(order[sp.row])
    return results


def evaluate_columns(
    query: Query | str, table: SpanTable, *, spss: int = 3, limit: int | None = None
) -> SpansetColumns:
    """`evaluate` with the matches column-wise (`SpansetColumns`): the same traces, spansets and shown
    spans in the same order, without building Python objects per trace for pipelines of filters."""
    q = _as_query(query)
    if table.num_spans == 0:
        return _Evaluator(q, table).empty_columns()
    if needs_nested_sets(q.pipeline) and "nested_set_left" not in table.spans.column_names:
        sorted_idx = pc.sort_indices(
            table.spans, sort_keys=[("trace_id", "ascending"), ("start_unix_nano", "ascending")]
        )
        return _Evaluator(q, with_nested_sets(table.take(sorted_idx))).run_columns(spss, limit)
    ev = _Evaluator(q, table)
    out = ev.run_columns(spss, limit)
    out.table_index = ev.trace_index
    return out


class _Evaluator(ColumnResults):
    """One query over one table: its filters' masks (computed once, column-wise), the per-trace walk of
    its pipeline and the column-wise shortcuts (`trace_matches`, `ColumnResults.run_columns`)."""

    def __init__(self, query: Query, table: SpanTable, trace_level: TraceLevel | None = None) -> None:
        self.query = query
        self.table = table
        self.ctx = SpanContext(table, trace_level=trace_level)
        self.n = table.num_spans
        self._masks: dict[SpansetFilter, np.ndarray] = {}
        # The same masks by filter object identity: hashing a filter walks its whole expression, and the
        # per-trace walk looks a mask up once per stage and trace.
        self._mask_ids: dict[int, np.ndarray] = {}
        self.aggregates = Aggregates(self.ctx)
        self._nested: NestedSets | None = None
        self.trace_index: tuple[pa.Array, np.ndarray] | None = None

    # -- driver

    def run(self, spss: int, limit: int | None = None) -> list[TraceMatch]:
        ids, span_trace, candidates, column_wise = self._candidates(limit)
        pipeline = self.query.pipeline
        if column_wise:
            return self._materialize(self._filter_spansets(pipeline, ids, span_trace, candidates[:limit]), spss)
        return self._materialize(self._walk(ids, span_trace, candidates, limit), spss)

    def _candidates(self, limit: int | None) -> tuple[pa.Array, np.ndarray, np.ndarray, bool]:
        """(trace IDs, each row's trace, traces to evaluate in answer order, whether their spansets are
        the rows passing every filter: a column-wise pipeline of filters whose matches are exact)."""
        pipeline = self.query.pipeline
        filters: list[SpansetFilter] = []
        stage_filters(pipeline, filters)
        for f in dict.fromkeys(filters):
            self._masks[f] = self.ctx.filter_mask(f.expr)
        for f in filters:
            self._mask_ids[id(f)] = self._masks[f]
        ids, span_trace = self.trace_index = trace_index(self.table.spans.column("trace_id"))
        if starts_unfiltered(pipeline):
            wanted = np.ones(len(ids), dtype=bool)
        else:
            any_mask = np.zeros(self.n, dtype=bool)
            for m in self._masks.values():
                any_mask |= m
            wanted = np.zeros(len(ids), dtype=bool)
            wanted[span_trace[any_mask]] = True
        exact = self.trace_matches(span_trace, len(ids))
        if exact is not None:
            wanted &= exact
        candidates = np.flatnonzero(wanted)
        if limit is not None and len(candidates) > limit:
            order = np.argsort(span_trace, kind="stable")
            bounds = np.searchsorted(span_trace[order], np.arange(len(ids) + 1))
            starts = np_int(self.table.spans.column("start_unix_nano"))[order]
            trace_start = np.minimum.reduceat(starts, bounds[:-1]) if len(starts) else starts
            candidates = candidates[np.argsort(-trace_start[candidates], kind="stable")]
        return ids, span_trace, candidates, exact is not None and filters_only(pipeline)

    def _walk(
        self, ids: pa.Array, span_trace: np.ndarray, candidates: np.ndarray, limit: int | None
    ) -> list[tuple[bytes, list[Spanset]]]:
        """The per-trace walk of the pipeline over the candidate traces, up to `limit` matches."""
        order = np.argsort(span_trace, kind="stable")
        bounds = np.searchsorted(span_trace[order], np.arange(len(ids) + 1))
        matches: list[tuple[bytes, list[Spanset]]] = []
        pipeline = self.query.pipeline
        for t in candidates.tolist():
            rows = order[bounds[t] : bounds[t + 1]]
            out = self._pipeline(pipeline, [Spanset(np.sort(rows))])
            if out:
                matches.append((ids[t].as_py(), out))
                if limit is not None and len(matches) >= limit:
                    break
        return matches

    def _filter_spansets(
        self, pipeline: Pipeline, ids: pa.Array, span_trace: np.ndarray, chosen: np.ndarray
    ) -> list[tuple[bytes, list[Spanset]]]:
        """The spansets of a pipeline of filters (and select()) for traces known to match, column-wise:
        one spanset per trace, the trace's rows passing every filter (what the per-trace walk gives)."""
        if not len(chosen):
            return []
        passing = np.ones(self.n, dtype=bool)
        for st in pipeline.stages:
            if isinstance(st, SpansetFilter):
                passing &= self._mask_ids[id(st)]
        position = np.full(len(ids), -1, dtype=np.int64)
        position[chosen] = np.arange(len(chosen))
        rows = np.flatnonzero(passing & (position[span_trace] >= 0))
        key = position[span_trace[rows]]
        by_trace = np.argsort(key, kind="stable")  # rows stay ascending within a trace
        rows, key = rows[by_trace], key[by_trace]
        groups = np.split(rows, np.searchsorted(key, np.arange(1, len(chosen))))
        trace_ids = ids.take(pa.array(chosen, pa.int64())).to_pylist()
        return [(t, [Spanset(g)]) for t, g in zip(trace_ids, groups, strict=True)]

    # -- column-wise trace matching

    def trace_matches(self, span_trace: np.ndarray, n_traces: int) -> np.ndarray | None:
        """Per trace, whether the query matches it, computed column-wise; None when the pipeline's shape
        needs the per-trace walk.

        Handled: a top-level pipeline `{f} (| {f} | <aggregate> <op> <number> | select(...))*` optionally
        ending in `by()`/`coalesce()`/`select()` stages (which never drop a non-empty spanset).
        Aggregates must give the per-trace walk's exact values: sums of floats are left to the walk
        (summation order could change the last bit), integer sums must stay below 2**52.
        """
        stages = self.query.pipeline.stages if isinstance(self.query.pipeline, Pipeline) else ()
        if not stages or not isinstance(stages[0], SpansetFilter):
            return None
        rows: np.ndarray | None = None
        alive = np.ones(n_traces, dtype=bool)
        tail = False
        for st in stages:
            if isinstance(st, SpansetFilter) and not tail:
                m = self._mask_ids.get(id(st))
                if m is None:
                    m = self._masks.get(st)
                    if m is None:
                        m = self._masks[st] = self.ctx.filter_mask(st.expr)
                    self._mask_ids[id(st)] = m
                rows = m if rows is None else rows & m
            elif isinstance(st, ScalarFilter) and not tail:
                assert rows is not None
                ok = self.aggregates.scalar_per_trace(st, rows, span_trace, n_traces)
                if ok is None:
                    return None
                alive &= ok
            elif isinstance(st, Select):
                continue
            elif isinstance(st, (GroupBy, Coalesce)):
                tail = True
            else:
                return None
        assert rows is not None
        alive &= np.bincount(span_trace[rows], minlength=n_traces) > 0
        return alive

    # -- pipelines

    def _pipeline(self, p: Pipeline, inputs: list[Spanset]) -> list[Spanset]:
        current = inputs
        for st in p.stages:
            if not current:
                return []
            current = self._stage(st, current)
        return current

    def _stage(self, st: object, inputs: list[Spanset]) -> list[Spanset]:
        if isinstance(st, SpansetFilter):
            mask = self._mask_ids.get(id(st))
            if mask is None:
                mask = self._mask_ids[id(st)] = self._masks[st]
            out = []
            for ss in inputs:
                rows = ss.rows[mask[ss.rows]]
                if len(rows):
                    out.append(Spanset(rows, list(ss.attrs)))
            return out
        if isinstance(st, Pipeline):
            return self._pipeline(st, inputs)
        if isinstance(st, SpansetOperation):
            out = []
            for ss in inputs:
                out.extend(self._operation(st, ss))
            return out
        if isinstance(st, ScalarFilter):
            return self.aggregates.scalar_filter(st, inputs)
        if isinstance(st, GroupBy):
            return self.aggregates.group_by(st, inputs)
        if isinstance(st, Coalesce):
            rows = np.unique(np.concatenate([ss.rows for ss in inputs]))
            return [Spanset(rows)]
        if isinstance(st, Select):
            return inputs
        raise TraceQLError("unsupported", f"{render(st)} not yet supported")

    def _operand(self, node: object, ss: Spanset) -> Spanset | None:
        out = self._stage(node, [ss])
        if len(out) > 1:
            raise EvaluationError(MULTIPLE_SPANSETS)
        return out[0] if out else None

    def _operation(self, op: SpansetOperation, ss: Spanset) -> list[Spanset]:
        lhs = self._operand(op.lhs, ss)
        rhs = self._operand(op.rhs, ss)
        attrs = merge_attrs(lhs, rhs)
        kind = op.op
        if kind is SpansetOp.AND:
            if lhs is None or rhs is None:
                return []
            return [Spanset(np.union1d(lhs.rows, rhs.rows), attrs)]
        if kind is SpansetOp.UNION:
            parts = [s.rows for s in (lhs, rhs) if s is not None]
            return [Spanset(np.unique(np.concatenate(parts)), attrs)] if parts else []
        if rhs is None:
            return []
        a_rows = lhs.rows if lhs is not None else np.zeros(0, np.int64)
        rows = structural(kind, a_rows, rhs.rows, self._nested_sets())
        return [Spanset(rows, attrs)] if len(rows) else []

    def _nested_sets(self) -> NestedSets:
        if self._nested is None:
            self._nested = NestedSets(
                self.ctx.nested("nested_set_left"),
                self.ctx.nested("nested_set_right"),
                self.ctx.nested("parent_index"),
            )
        return self._nested

    # -- results

    def _materialize(self, matches: list[tuple[bytes, list[Spanset]]], spss: int) -> list[TraceMatch]:
        want_name, fields = result_fields(self.query)
        shown = [(key, col) for key, ref in fields.items() for col in self._shown_values(ref)]
        return materialize(self.table, matches, spss, want_name, shown)

    def _shown_values(self, ref: AttributeRef) -> list[Col]:
        """A result field per span row, as Tempo's storage collects it: event and link attributes from
        the last qualifying event (link); an unscoped attribute as its span value and its resource value,
        each where it passes the query's conditions on the attribute (both when both do)."""
        if not isinstance(ref, Attribute):
            return [self.ctx.span_value(ref)]
        if ref.scope in (Scope.EVENT, Scope.LINK):
            return [self.ctx.shown_sub_attr(ref, shown_conditions(self.query, ref))]
        if ref.scope is not Scope.NONE:
            return [self.ctx.span_value(ref)]
        conds = shown_conditions(self.query, ref)
        out = []
        for scope in (Scope.SPAN, Scope.RESOURCE):
            scoped = Attribute(ref.name, scope)
            ok = np.zeros(self.n, dtype=bool)
            for cond in conds:
                ok |= self.ctx.filter_mask(rescope(cond, ref, scoped))
            out.append(self.ctx.span_value(scoped).take(np.where(ok, np.arange(self.n), -1)))
        return out

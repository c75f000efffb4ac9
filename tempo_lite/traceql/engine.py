"""TraceQL search evaluation over a span table holding complete traces.

`evaluate(query, table, spss=...)` first computes every `{ ... }` filter of the query column-wise
(`engine_context.SpanContext`), then walks only the traces that have a span passing some filter (or
all traces when a pipeline starts with `by()`, `select()` or a scalar filter) and applies spanset
operators, structural operators (nested-set integer comparisons), aggregates, `by()`, `coalesce()`
and `select()` on numpy arrays of row indices per trace. `candidate_trace_ids(query, table)` is the
cheap superset for traces split across sources.

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

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tempo_lite.spantable import SpanTable, sort_by_trace, with_nested_sets
from tempo_lite.traceql.ast import (
    Aggregate,
    AggregateOp,
    Attribute,
    AttributeRef,
    BinaryOp,
    Coalesce,
    FieldExpr,
    GroupBy,
    Intrinsic,
    Op,
    Pipeline,
    Query,
    ScalarFilter,
    Scope,
    Select,
    SpansetFilter,
    SpansetOp,
    SpansetOperation,
    Static,
    StaticType,
    TraceQLError,
    UnaryOp,
    render,
    result_key,
)
from tempo_lite.traceql.engine_columns import ColumnResults, SpansetColumns, TypedValue, _Spanset
from tempo_lite.traceql.engine_context import (
    TRACE_DEPENDENT,
    TRACE_TABLE_INTRINSICS,
    SpanContext,
    TraceLevel,
    _np,
    uses_nested_sets,
)
from tempo_lite.traceql.engine_summary import trace_index
from tempo_lite.traceql.engine_values import NUMERIC, Col, EvaluationError, group_codes

# Fields never returned as span attributes (traceql-api §3.2); `name` has its own field.
_NOT_SPAN_ATTRIBUTES = frozenset(
    {
        Intrinsic.NAME,
        Intrinsic.DURATION,
        Intrinsic.TRACE_DURATION,
        Intrinsic.TRACE_ROOT_NAME,
        Intrinsic.TRACE_ROOT_SERVICE,
        Intrinsic.TRACE_ID,
        Intrinsic.SPAN_ID,
        Intrinsic.EVENT_NAME,
        Intrinsic.EVENT_TIME_SINCE_START,
        Intrinsic.LINK_SPAN_ID,
        Intrinsic.LINK_TRACE_ID,
        Intrinsic.PARENT,
    }
)
MULTIPLE_SPANSETS = (
    "spanset operators are not supported for multiple spansets per trace. consider using coalesce()"
)


@dataclass
class MatchedSpan:
    """A result span: `name` is None unless the query referenced the span name."""

    row: int
    span_id: bytes
    start_unix_nano: int
    duration_nano: int
    name: str | None = None
    attributes: list[tuple[str, TypedValue]] = field(default_factory=list)


@dataclass
class SpansetMatch:
    rows: list[int]  # all span rows of the spanset (rows of the table given to evaluate)
    matched: int
    attributes: list[tuple[str, TypedValue]] = field(default_factory=list)
    spans: list[MatchedSpan] = field(default_factory=list)  # the first `spss` spans


@dataclass
class TraceMatch:
    trace_id: bytes
    spansets: list[SpansetMatch]




# --------------------------------------------------------------------------------------------------
# Query walking


def _stages_filters(node: object, out: list[SpansetFilter]) -> None:
    if isinstance(node, SpansetFilter):
        out.append(node)
    elif isinstance(node, SpansetOperation):
        _stages_filters(node.lhs, out)
        _stages_filters(node.rhs, out)
    elif isinstance(node, Pipeline):
        for st in node.stages:
            _stages_filters(st, out)


def _starts_unfiltered(node: object) -> bool:
    """True if some pipeline starts with a stage that passes spans without a filter."""
    if isinstance(node, Pipeline):
        first = node.stages[0]
        if isinstance(first, (ScalarFilter, GroupBy, Select, Coalesce)):
            return True
        return any(_starts_unfiltered(st) for st in node.stages)
    if isinstance(node, SpansetOperation):
        return _starts_unfiltered(node.lhs) or _starts_unfiltered(node.rhs)
    return False


def _field_refs(expr: object, out: list[AttributeRef]) -> None:
    if isinstance(expr, (Attribute, Intrinsic)):
        out.append(expr)
    elif isinstance(expr, BinaryOp):
        _field_refs(expr.lhs, out)
        _field_refs(expr.rhs, out)
    elif isinstance(expr, UnaryOp):
        _field_refs(expr.operand, out)


def referenced_fields(node: object, out: list[AttributeRef] | None = None) -> list[AttributeRef]:
    """Every attribute and intrinsic the query reads (conditions, select(), by(), aggregates)."""
    out = [] if out is None else out
    if isinstance(node, Query):
        referenced_fields(node.pipeline, out)
    elif isinstance(node, Pipeline):
        for st in node.stages:
            referenced_fields(st, out)
    elif isinstance(node, SpansetFilter):
        _field_refs(node.expr, out)
    elif isinstance(node, SpansetOperation):
        referenced_fields(node.lhs, out)
        referenced_fields(node.rhs, out)
    elif isinstance(node, ScalarFilter):
        referenced_fields(node.lhs, out)
        referenced_fields(node.rhs, out)
    elif isinstance(node, Aggregate):
        if node.expr is not None:
            _field_refs(node.expr, out)
    elif isinstance(node, GroupBy):
        _field_refs(node.expr, out)
    elif isinstance(node, Select):
        out.extend(node.attributes)
    return out


def _needs_nested_sets(node: object) -> bool:
    if isinstance(node, SpansetOperation):
        return node.op.is_structural or _needs_nested_sets(node.lhs) or _needs_nested_sets(node.rhs)
    if isinstance(node, Pipeline):
        return any(_needs_nested_sets(st) for st in node.stages)
    if isinstance(node, SpansetFilter):
        return uses_nested_sets(node.expr)
    if isinstance(node, GroupBy):
        return uses_nested_sets(node.expr)
    if isinstance(node, ScalarFilter):
        return (
            isinstance(node.lhs, Aggregate) and node.lhs.expr is not None and uses_nested_sets(node.lhs.expr)
        )
    if isinstance(node, Select):
        return any(uses_nested_sets(a) for a in node.attributes)
    return False


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
    if _starts_unfiltered(q.pipeline):
        return pc.unique(ids)
    filters: list[SpansetFilter] = []
    _stages_filters(q.pipeline, filters)
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
    _stages_filters(q.pipeline, filters)
    if _starts_unfiltered(q.pipeline):
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
    if _needs_nested_sets(q.pipeline) and "nested_set_left" not in table.spans.column_names:
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
    if _needs_nested_sets(q.pipeline) and "nested_set_left" not in table.spans.column_names:
        sorted_idx = pc.sort_indices(
            table.spans, sort_keys=[("trace_id", "ascending"), ("start_unix_nano", "ascending")]
        )
        return _Evaluator(q, with_nested_sets(table.take(sorted_idx))).run_columns(spss, limit)
    ev = _Evaluator(q, table)
    out = ev.run_columns(spss, limit)
    out.table_index = ev.trace_index
    return out


class _Evaluator(ColumnResults):
    def __init__(self, query: Query, table: SpanTable, trace_level: TraceLevel | None = None) -> None:
        self.query = query
        self.table = table
        self.ctx = SpanContext(table, trace_level=trace_level)
        self.n = table.num_spans
        self._masks: dict[SpansetFilter, np.ndarray] = {}
        # The same masks by filter object identity: hashing a filter walks its whole expression, and the
        # per-trace walk looks a mask up once per stage and trace.
        self._mask_ids: dict[int, np.ndarray] = {}
        self._codes: dict[FieldExpr, tuple[np.ndarray, list[tuple[str, object]]]] = {}
        self._nested: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._numeric: dict[FieldExpr, list[tuple[str, np.ndarray, np.ndarray]]] = {}
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
        _stages_filters(pipeline, filters)
        for f in dict.fromkeys(filters):
            self._masks[f] = self.ctx.filter_mask(f.expr)
        for f in filters:
            self._mask_ids[id(f)] = self._masks[f]
        ids, span_trace = self.trace_index = trace_index(self.table.spans.column("trace_id"))
        if _starts_unfiltered(pipeline):
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
            starts = _np(self.table.spans.column("start_unix_nano"))[order]
            trace_start = np.minimum.reduceat(starts, bounds[:-1]) if len(starts) else starts
            candidates = candidates[np.argsort(-trace_start[candidates], kind="stable")]
        return ids, span_trace, candidates, exact is not None and _filters_only(pipeline)

    def _walk(
        self, ids: pa.Array, span_trace: np.ndarray, candidates: np.ndarray, limit: int | None
    ) -> list[tuple[bytes, list[_Spanset]]]:
        """The per-trace walk of the pipeline over the candidate traces, up to `limit` matches."""
        order = np.argsort(span_trace, kind="stable")
        bounds = np.searchsorted(span_trace[order], np.arange(len(ids) + 1))
        matches: list[tuple[bytes, list[_Spanset]]] = []
        pipeline = self.query.pipeline
        for t in candidates.tolist():
            rows = order[bounds[t] : bounds[t + 1]]
            out = self._pipeline(pipeline, [_Spanset(np.sort(rows))])
            if out:
                matches.append((ids[t].as_py(), out))
                if limit is not None and len(matches) >= limit:
                    break
        return matches

    def _filter_spansets(
        self, pipeline: Pipeline, ids: pa.Array, span_trace: np.ndarray, chosen: np.ndarray
    ) -> list[tuple[bytes, list[_Spanset]]]:
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
        return [(t, [_Spanset(g)]) for t, g in zip(trace_ids, groups, strict=True)]

    def _result_fields(self) -> tuple[bool, dict[str, AttributeRef]]:
        """(whether results show the span name, the fields shown as span attributes by result key)."""
        refs = referenced_fields(self.query)
        fields: dict[str, AttributeRef] = {}
        for ref in refs:
            if isinstance(ref, Intrinsic) and ref in _NOT_SPAN_ATTRIBUTES:
                continue
            if isinstance(ref, Attribute) and ref.parent:
                continue
            fields.setdefault(result_key(ref), ref)
        return Intrinsic.NAME in refs, fields

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
                ok = self._scalar_per_trace(st, rows, span_trace, n_traces)
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

    def _scalar_per_trace(
        self, st: ScalarFilter, rows: np.ndarray, span_trace: np.ndarray, n_traces: int
    ) -> np.ndarray | None:
        if not isinstance(st.lhs, Aggregate) or not isinstance(st.rhs, Static):
            return None
        if not st.rhs.type.is_numeric:
            return np.zeros(n_traces, dtype=bool)
        y = st.rhs.value
        if not isinstance(y, (int, float)) or abs(y) >= 2**52:
            return None
        agg = st.lhs
        if agg.op is AggregateOp.COUNT:
            value = np.bincount(span_trace[rows], minlength=n_traces).astype(np.float64)
            has = value > 0
        else:
            assert agg.expr is not None
            count = np.zeros(n_traces, dtype=np.int64)
            total = np.zeros(n_traces, dtype=np.float64)
            low = np.full(n_traces, np.inf)
            high = np.full(n_traces, -np.inf)
            for slot, dense, valid in self._numeric_slots(agg.expr):
                sel = rows & valid
                if not sel.any():
                    continue
                if slot == "float":
                    return None
                v = dense[sel].astype(np.float64)
                if np.abs(v).sum() >= 2**52:
                    return None
                t = span_trace[sel]
                count += np.bincount(t, minlength=n_traces)
                total += np.bincount(t, weights=v, minlength=n_traces)
                if agg.op is AggregateOp.MIN:
                    np.minimum.at(low, t, v)
                elif agg.op is AggregateOp.MAX:
                    np.maximum.at(high, t, v)
            has = count > 0
            if agg.op is AggregateOp.AVG:
                value = total / np.maximum(count, 1)
            elif agg.op is AggregateOp.MIN:
                value = low
            elif agg.op is AggregateOp.MAX:
                value = high
            elif agg.op is AggregateOp.SUM:
                value = total
            else:
                return None
        cmp = {
            Op.EQ: np.equal, Op.NEQ: np.not_equal, Op.LT: np.less, Op.LTE: np.less_equal,
            Op.GT: np.greater, Op.GTE: np.greater_equal,
        }.get(st.op)
        if cmp is None:
            return np.zeros(n_traces, dtype=bool)
        with np.errstate(invalid="ignore"):
            return has & cmp(value, float(y))

    # -- pipelines

    def _pipeline(self, p: Pipeline, inputs: list[_Spanset]) -> list[_Spanset]:
        current = inputs
        for st in p.stages:
            if not current:
                return []
            current = self._stage(st, current)
        return current

    def _stage(self, st: object, inputs: list[_Spanset]) -> list[_Spanset]:
        if isinstance(st, SpansetFilter):
            mask = self._mask_ids.get(id(st))
            if mask is None:
                mask = self._mask_ids[id(st)] = self._masks[st]
            out = []
            for ss in inputs:
                rows = ss.rows[mask[ss.rows]]
                if len(rows):
                    out.append(_Spanset(rows, list(ss.attrs)))
            return out
        if isinstance(st, Pipeline):
            return self._pipeline(st, inputs)
        if isinstance(st, SpansetOperation):
            out = []
            for ss in inputs:
                out.extend(self._operation(st, ss))
            return out
        if isinstance(st, ScalarFilter):
            return self._scalar_filter(st, inputs)
        if isinstance(st, GroupBy):
            return self._group_by(st, inputs)
        if isinstance(st, Coalesce):
            rows = np.unique(np.concatenate([ss.rows for ss in inputs]))
            return [_Spanset(rows)]
        if isinstance(st, Select):
            return inputs
        raise TraceQLError("unsupported", f"{render(st)} not yet supported")

    def _operand(self, node: object, ss: _Spanset) -> _Spanset | None:
        out = self._stage(node, [ss])
        if len(out) > 1:
            raise EvaluationError(MULTIPLE_SPANSETS)
        return out[0] if out else None

    def _operation(self, op: SpansetOperation, ss: _Spanset) -> list[_Spanset]:
        lhs = self._operand(op.lhs, ss)
        rhs = self._operand(op.rhs, ss)
        attrs = _merge_attrs(lhs, rhs)
        kind = op.op
        if kind is SpansetOp.AND:
            if lhs is None or rhs is None:
                return []
            return [_Spanset(np.union1d(lhs.rows, rhs.rows), attrs)]
        if kind is SpansetOp.UNION:
            parts = [s.rows for s in (lhs, rhs) if s is not None]
            return [_Spanset(np.unique(np.concatenate(parts)), attrs)] if parts else []
        if rhs is None:
            return []
        rows = self._structural(kind, lhs.rows if lhs is not None else np.zeros(0, np.int64), rhs.rows)
        return [_Spanset(rows, attrs)] if len(rows) else []

    def _nested_sets(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._nested is None:
            self._nested = (
                self.ctx.nested("nested_set_left"),
                self.ctx.nested("nested_set_right"),
                self.ctx.nested("parent_index"),
            )
        return self._nested

    def _structural(self, op: SpansetOp, a_rows: np.ndarray, b_rows: np.ndarray) -> np.ndarray:
        left, right, parent = self._nested_sets()
        a = a_rows[left[a_rows] > 0]
        b = b_rows[left[b_rows] > 0]
        if len(b) == 0:
            return b
        base = op
        for neg, pos in (
            (SpansetOp.NOT_CHILD, SpansetOp.CHILD),
            (SpansetOp.NOT_PARENT, SpansetOp.PARENT),
            (SpansetOp.NOT_DESCENDANT, SpansetOp.DESCENDANT),
            (SpansetOp.NOT_ANCESTOR, SpansetOp.ANCESTOR),
            (SpansetOp.NOT_SIBLING, SpansetOp.SIBLING),
            (SpansetOp.UNION_CHILD, SpansetOp.CHILD),
            (SpansetOp.UNION_PARENT, SpansetOp.PARENT),
            (SpansetOp.UNION_DESCENDANT, SpansetOp.DESCENDANT),
            (SpansetOp.UNION_ANCESTOR, SpansetOp.ANCESTOR),
            (SpansetOp.UNION_SIBLING, SpansetOp.SIBLING),
        ):
            if op is neg:
                base = pos
        # rel[i, j]: relation holds between a[i] and b[j].
        la, ra, pa_ = left[a][:, None], right[a][:, None], parent[a][:, None]
        lb, rb, pb = left[b][None, :], right[b][None, :], parent[b][None, :]
        if base is SpansetOp.DESCENDANT:  # b descends from a
            rel = (la < lb) & (rb < ra)
        elif base is SpansetOp.ANCESTOR:  # b is an ancestor of a
            rel = (lb < la) & (ra < rb)
        elif base is SpansetOp.CHILD:  # b's parent is a
            rel = pb == la
        elif base is SpansetOp.PARENT:  # b is a's parent
            rel = pa_ == lb
        else:  # sibling: same parent, different span
            rel = (pb == pa_) & (a[:, None] != b[None, :])
        hit_b = rel.any(axis=0)
        if op.is_negated:
            return b[~hit_b]
        if op.is_union:
            hit_a = rel[:, hit_b].any(axis=1)
            return np.union1d(b[hit_b], a[hit_a])
        return b[hit_b]

    # -- aggregates

    def _scalar_filter(self, st: ScalarFilter, inputs: list[_Spanset]) -> list[_Spanset]:
        if not isinstance(st.lhs, Aggregate) or not isinstance(st.rhs, Static):
            raise TraceQLError("unsupported", f"{render(st)} not yet supported")
        key = render(st.lhs)
        out = []
        for ss in inputs:
            value = self._aggregate(st.lhs, ss.rows)
            if value is None:
                continue
            if _compare_scalar(st.op, value, st.rhs):
                out.append(_Spanset(ss.rows, [*ss.attrs, (key, value)]))
        return out

    def _aggregate(self, agg: Aggregate, rows: np.ndarray) -> TypedValue | None:
        if agg.op is AggregateOp.COUNT:
            return ("int", len(rows))
        assert agg.expr is not None
        kinds = []
        values: list[np.ndarray] = []
        # Numeric slots as numpy (values, valid) once per expression: per trace only numpy indexing.
        for slot, arr, valid in self._numeric_slots(agg.expr):
            sub = arr[rows][valid[rows]]
            if len(sub):
                kinds.append(slot)
                values.append(sub)
        if not values:
            return None
        kind = kinds[0] if len(set(kinds)) == 1 else "float"
        data = np.concatenate([v.astype(np.float64) if kind == "float" else v for v in values])
        if agg.op is AggregateOp.AVG:
            mean = float(data.astype(np.float64).sum() / len(data))
            return ("dur", int(round(mean))) if kind == "dur" and mean.is_integer() else ("float", mean)
        if agg.op is AggregateOp.MIN:
            r = data.min()
        elif agg.op is AggregateOp.MAX:
            r = data.max()
        else:
            r = data.sum()
        return (kind, float(r) if kind == "float" else int(r))

    def _numeric_slots(self, expr: FieldExpr) -> list[tuple[str, np.ndarray, np.ndarray]]:
        if expr not in self._numeric:
            col = self.ctx.span_value(expr).primary()
            out = []
            for slot in NUMERIC:
                v = col.slots.get(slot)
                if v is None:
                    continue
                arr = v if not isinstance(v, pa.Scalar) else pa.array([v.as_py()] * self.n, v.type)
                if isinstance(arr, pa.ChunkedArray):
                    arr = arr.combine_chunks()
                valid = np.asarray(pc.is_valid(arr).to_numpy(zero_copy_only=False), dtype=bool)
                dense = arr.fill_null(0).to_numpy(zero_copy_only=False)
                out.append((slot, dense, valid))
            self._numeric[expr] = out
        return self._numeric[expr]

    # -- by()

    def _group_by(self, st: GroupBy, inputs: list[_Spanset]) -> list[_Spanset]:
        if st.expr not in self._codes:
            self._codes[st.expr] = group_codes(self.ctx.span_value(st.expr))
        codes, values = self._codes[st.expr]
        key = render(st)
        out = []
        for ss in inputs:
            c = codes[ss.rows]
            uniq, first = np.unique(c, return_index=True)
            for code in uniq[np.argsort(first)]:
                rows = ss.rows[c == code]
                value: TypedValue = ("str", "nil") if code < 0 else values[code]
                out.append(_Spanset(rows, [*ss.attrs, (key, value)]))
        return out

    # -- results

    def _materialize(self, matches: list[tuple[bytes, list[_Spanset]]], spss: int) -> list[TraceMatch]:
        want_name, fields = self._result_fields()
        shown: list[int] = []
        for _, sets in matches:
            for ss in sets:
                shown.extend(ss.rows[:spss].tolist())
        idx = pa.array(np.array(shown, dtype=np.int64))
        spans = self.table.spans
        span_ids = spans.column("span_id").take(idx).to_pylist()
        starts = spans.column("start_unix_nano").take(idx).to_pylist()
        durations = spans.column("duration_nano").take(idx).to_pylist()
        names = spans.column("name").take(idx).to_pylist() if want_name else [None] * len(shown)
        values = [(key, _typed_values(col, idx)) for key, ref in fields.items() for col in self._shown_values(ref)]
        pos = 0
        results = []
        for trace_id, sets in matches:
            out_sets = []
            for ss in sets:
                shown_spans = []
                for row in ss.rows[:spss].tolist():
                    attrs = [(k, v[pos]) for k, v in values if v[pos] is not None]
                    shown_spans.append(
                        MatchedSpan(
                            row, span_ids[pos], starts[pos], durations[pos], names[pos] or None, attrs
                        )
                    )
                    pos += 1
                out_sets.append(SpansetMatch(ss.rows.tolist(), len(ss.rows), ss.attrs, shown_spans))
            results.append(TraceMatch(trace_id, out_sets))
        return results


    def _shown_values(self, ref: AttributeRef) -> list[Col]:
        """A result field per span row, as Tempo's storage collects it: event and link attributes from
        the last qualifying event (link); an unscoped attribute as its span value and its resource value,
        each where it passes the query's conditions on the attribute (both when both do)."""
        if not isinstance(ref, Attribute):
            return [self.ctx.span_value(ref)]
        if ref.scope in (Scope.EVENT, Scope.LINK):
            return [self.ctx.shown_sub_attr(ref, _shown_conditions(self.query, ref))]
        if ref.scope is not Scope.NONE:
            return [self.ctx.span_value(ref)]
        conds = _shown_conditions(self.query, ref)
        out = []
        for scope in (Scope.SPAN, Scope.RESOURCE):
            scoped = Attribute(ref.name, scope)
            ok = np.zeros(self.n, dtype=bool)
            for cond in conds:
                ok |= self.ctx.filter_mask(_rescope(cond, ref, scoped))
            out.append(self.ctx.span_value(scoped).take(np.where(ok, np.arange(self.n), -1)))
        return out


def _rescope(expr: FieldExpr, old: Attribute, new: Attribute) -> FieldExpr:
    """A condition on `old` (one side of a comparison) as the same condition on `new`."""
    assert isinstance(expr, BinaryOp)
    lhs = new if expr.lhs == old else expr.lhs
    rhs = new if expr.rhs == old else expr.rhs
    return BinaryOp(expr.op, lhs, rhs)


_COMPARISONS = frozenset({Op.EQ, Op.NEQ, Op.LT, Op.LTE, Op.GT, Op.GTE, Op.REGEX, Op.NOT_REGEX})


def _shown_conditions(query: Query, attr: Attribute) -> list[FieldExpr]:
    """The conditions an event/link attribute's shown value must pass: Tempo's storage keeps only the
    values that pass a comparison of the attribute with a literal pushed down from the query, or every
    value when some reference has no such comparison (select(), by(), aggregates, other expressions)."""
    every: list[FieldExpr] = [BinaryOp(Op.NEQ, attr, Static(StaticType.NIL, None))]
    filters: list[SpansetFilter] = []
    _stages_filters(query.pipeline, filters)
    conds: list[FieldExpr] = []
    in_filters: list[AttributeRef] = []
    for f in filters:
        if not _attr_conditions(f.expr, attr, conds):
            return every
        _field_refs(f.expr, in_filters)
    if referenced_fields(query).count(attr) > in_filters.count(attr) or not conds:
        return every
    return conds


def _attr_conditions(expr: object, attr: Attribute, out: list[FieldExpr]) -> bool:
    """Collect `attr op literal` comparisons; False if `attr` is used any other way."""
    if expr == attr:
        return False
    if isinstance(expr, BinaryOp):
        sides = (expr.lhs, expr.rhs)
        if expr.op in _COMPARISONS and attr in sides and any(isinstance(x, Static) for x in sides):
            out.append(expr)
            return True
        return _attr_conditions(expr.lhs, attr, out) and _attr_conditions(expr.rhs, attr, out)
    if isinstance(expr, UnaryOp):
        return _attr_conditions(expr.operand, attr, out)
    return True


def _filters_only(pipeline: object) -> bool:
    """A top-level pipeline of `{ }` filters and select() stages (one spanset per matching trace)."""
    return isinstance(pipeline, Pipeline) and all(isinstance(st, (SpansetFilter, Select)) for st in pipeline.stages)


def _merge_attrs(*sets: _Spanset | None) -> list[tuple[str, TypedValue]]:
    out: dict[str, TypedValue] = {}
    for s in sets:
        if s is not None:
            for k, v in s.attrs:
                out.setdefault(k, v)
    return list(out.items())


def _typed_values(col: Col, idx: pa.Array) -> list[TypedValue | None]:
    """Per selected row, the first present typed value (arrays as lists), or None."""
    col = col.primary()
    sub = col.take(idx.to_numpy())
    out: list[TypedValue | None] = [None] * len(idx)
    for slot, v in sub.slots.items():
        if isinstance(v, pa.Scalar):
            vals = [v.as_py()] * len(idx) if v.is_valid else [None] * len(idx)
        else:
            vals = v.to_pylist()
        for i, x in enumerate(vals):
            if x is not None and out[i] is None:
                out[i] = (slot, x)
    if sub.arr is not None:
        elems: dict[int, list[object]] = {}
        lists = {k: v.to_pylist() for k, v in sub.arr.slots.items()}
        for j, parent in enumerate(sub.arr.parents.tolist()):
            for values in lists.values():
                if values[j] is not None:
                    elems.setdefault(parent, []).append(values[j])
                    break
        for i in np.flatnonzero(sub.arr.has).tolist():
            if out[i] is None:
                out[i] = ("array", elems.get(i, []))
    return out


def _compare_scalar(op: Op, value: TypedValue, rhs: Static) -> bool:
    """An aggregate result against a numeric literal (numbers compare by value; durations as ns)."""
    if not rhs.type.is_numeric:
        return False
    x = value[1]
    y = rhs.value
    assert isinstance(x, (int, float)) and isinstance(y, (int, float))
    if op is Op.EQ:
        return x == y
    if op is Op.NEQ:
        return x != y
    if op is Op.LT:
        return x < y
    if op is Op.LTE:
        return x <= y
    if op is Op.GT:
        return x > y
    if op is Op.GTE:
        return x >= y
    return False


def traces_matching(matches: Iterable[TraceMatch]) -> set[bytes]:
    return {m.trace_id for m in matches}


__all__ = [
    "MatchedSpan",
    "SpansetColumns",
    "SpansetMatch",
    "TraceMatch",
    "TypedValue",
    "EvaluationError",
    "StaticType",
    "candidate_trace_ids",
    "evaluate",
    "evaluate_columns",
    "trace_matches",
    "referenced_fields",
    "sort_by_trace",
]

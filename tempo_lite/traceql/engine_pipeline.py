"""TraceQL pipelines over every trace of a table at once (`PipelineColumns`): the column-wise twin of
`engine._Evaluator._walk`, giving the same spansets without a Python step per trace.

Until a `by()`, every stage turns a trace's one spanset into at most one spanset, so the state of a
pipeline is a row mask (the rows of each trace's spanset; a trace without rows has no spanset) and the
attributes stages gave the spansets (`count()`, `avg(...)` values), one column per attribute:

- `{ }` filters: the mask and the filter's mask;
- `{a} && {b}`, `{a} || {b}`: both operands from the same input, combined with per-trace any()
  (`np.bincount` over the row -> trace index);
- structural operators, negated and union forms: `engine_structural_cols.structural_mask`;
- scalar filters (`count()`, `sum/avg/min/max` of integers and durations): `Aggregates.scalar_columns`;
- `select()`: nothing to do (result fields come from the query); `coalesce()`: drops the attributes;
- a final `by()` (followed by `select()` only): spansets split by group code, ordered by first row.

Anything else raises `WalkNeeded` and the caller walks: `by()` before other stages or inside an operand,
an operand adding attributes, aggregates of float values (summation order could change the last bit),
integer sums reaching 2**52, unsupported stages (the walk raises their error).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from tempo_lite.traceql.ast import (
    Coalesce,
    GroupBy,
    Pipeline,
    ScalarFilter,
    Select,
    SpansetFilter,
    SpansetOp,
    SpansetOperation,
    render,
)
from tempo_lite.traceql.engine_aggregates import Aggregates
from tempo_lite.traceql.engine_structural import NestedSets
from tempo_lite.traceql.engine_structural_cols import structural_mask
from tempo_lite.traceql.engine_values import TypedValue


class WalkNeeded(Exception):
    """The pipeline has a part only the per-trace walk evaluates."""


# A spanset attribute column: (key, the values of a list of traces, each of which has a value).
AttrColumn = tuple[str, Callable[[np.ndarray], list[TypedValue]]]


@dataclass
class Spansets:
    """Each trace's spanset at some stage: its rows (`rows` mask) and its attributes (in stage order)."""

    rows: np.ndarray
    attrs: list[AttrColumn] = field(default_factory=list)


@dataclass
class Groups:
    """The spansets of a final `by()`: spanset per row (-1: none) and, per spanset in answer order, its
    trace's place in the answer and its group value."""

    set_of_row: np.ndarray
    set_position: np.ndarray
    key: str
    values: list[TypedValue]


class PipelineColumns:
    """One pipeline over all traces of a table: `mask(filter)` gives a filter's row mask."""

    def __init__(
        self, mask: Callable[[SpansetFilter], np.ndarray], aggregates: Aggregates, span_trace: np.ndarray,
        n_traces: int, nested: Callable[[], NestedSets],
    ) -> None:
        self.mask = mask
        self.aggregates = aggregates
        self.span_trace = span_trace
        self.n_traces = n_traces
        self.nested = nested

    def alive(self, rows: np.ndarray) -> np.ndarray:
        """Per trace, whether it has a row in `rows`."""
        return np.bincount(self.span_trace[rows], minlength=self.n_traces) > 0

    def run(self, pipeline: Pipeline) -> tuple[Spansets, GroupBy | None]:
        """The spansets of `pipeline` started from every trace's spans, and its final `by()` (applied
        by `groups` to the traces chosen) if it ends in one."""
        stages = list(pipeline.stages)
        final: GroupBy | None = None
        rest = [i for i, st in enumerate(stages) if not isinstance(st, Select)]
        if rest and isinstance(stages[rest[-1]], GroupBy):
            group = stages.pop(rest[-1])
            assert isinstance(group, GroupBy)
            final = group
        current = Spansets(np.ones(len(self.span_trace), dtype=bool))
        for st in stages:
            current = self.stage(st, current)
        return current, final

    def stage(self, st: object, ss: Spansets) -> Spansets:
        if isinstance(st, SpansetFilter):
            return Spansets(ss.rows & self.mask(st), ss.attrs)
        if isinstance(st, Pipeline):
            for inner in st.stages:
                ss = self.stage(inner, ss)
            return ss
        if isinstance(st, SpansetOperation):
            return self.operation(st, ss)
        if isinstance(st, ScalarFilter):
            found = self.aggregates.scalar_columns(st, ss.rows, self.span_trace, self.n_traces)
            if found is None:
                raise WalkNeeded(render(st))
            keep, per = found
            rows = ss.rows & keep[self.span_trace]
            if per is None:
                return Spansets(rows, ss.attrs)
            return Spansets(rows, [*ss.attrs, (render(st.lhs), per.typed)])
        if isinstance(st, Select):
            return ss
        if isinstance(st, Coalesce):
            return Spansets(ss.rows)
        raise WalkNeeded(render(st))

    def operation(self, op: SpansetOperation, ss: Spansets) -> Spansets:
        lhs = self.stage(op.lhs, ss)
        rhs = self.stage(op.rhs, ss)
        if len(lhs.attrs) != len(ss.attrs) or len(rhs.attrs) != len(ss.attrs):
            raise WalkNeeded("an operand adds spanset attributes")
        attrs: list[AttrColumn] = []
        for key, values in ss.attrs:  # merged as `merge_attrs` does: the first value of a key wins
            if all(key != k for k, _ in attrs):
                attrs.append((key, values))
        if op.op is SpansetOp.AND:
            both = self.alive(lhs.rows) & self.alive(rhs.rows)
            return Spansets((lhs.rows | rhs.rows) & both[self.span_trace], attrs)
        if op.op is SpansetOp.UNION:
            return Spansets(lhs.rows | rhs.rows, attrs)
        return Spansets(structural_mask(op.op, lhs.rows, rhs.rows, self.span_trace, self.nested()), attrs)

    def groups(self, by: GroupBy, rows: np.ndarray, position: np.ndarray) -> Groups:
        """A final `by()` over the rows of the chosen traces (`position[trace]`: its place in the answer,
        -1 if not chosen): one spanset per (trace, group value), a trace's groups in the order of their
        first row, as `Aggregates.group_by` splits each spanset."""
        codes, values = self.aggregates.codes(by.expr)
        chosen = np.flatnonzero(rows & (position[self.span_trace] >= 0))
        pos = position[self.span_trace[chosen]]
        order = np.argsort(pos, kind="stable")  # rows stay ascending within a trace
        chosen, pos = chosen[order], pos[order]
        width = len(values) + 1
        uniq, first, inverse = np.unique(pos * width + codes[chosen] + 1, return_index=True, return_inverse=True)
        rank = np.empty(len(uniq), dtype=np.int64)
        rank[np.argsort(first, kind="stable")] = np.arange(len(uniq))
        set_of_row = np.full(len(rows), -1, dtype=np.int64)
        set_of_row[chosen] = rank[inverse.reshape(-1)]
        in_order = np.argsort(first, kind="stable")
        group_code = (uniq[in_order] % width) - 1
        nil: TypedValue = ("str", "nil")
        return Groups(set_of_row, uniq[in_order] // width, render(by),
                      [nil if c < 0 else values[c] for c in group_code.tolist()])

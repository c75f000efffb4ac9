"""The TraceQL stages that compute a value per spanset: scalar filters over aggregates
(`| count() > 2`, `| avg(duration) > 1s`) and `by()` grouping.

`Aggregates` holds a table's numeric slots and group codes (computed once per expression, so the
per-trace walk only indexes numpy arrays) and evaluates those stages per spanset (`scalar_filter`,
`group_by`) or, for a pipeline whose matches are computed column-wise, per trace (`scalar_per_trace`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tempo_lite.traceql.ast import (
    Aggregate,
    AggregateOp,
    FieldExpr,
    GroupBy,
    Op,
    ScalarFilter,
    Static,
    TraceQLError,
    render,
)
from tempo_lite.traceql.engine_context import SpanContext
from tempo_lite.traceql.engine_results import Spanset
from tempo_lite.traceql.engine_values import NUMERIC, TypedValue, group_codes

# A numeric slot of an expression's values per span row: (slot name, values with nulls as 0, valid).
NumericSlot = tuple[str, np.ndarray, np.ndarray]

_NP_COMPARE: dict[Op, Callable[[np.ndarray, float], np.ndarray]] = {
    Op.EQ: np.equal, Op.NEQ: np.not_equal, Op.LT: np.less, Op.LTE: np.less_equal,
    Op.GT: np.greater, Op.GTE: np.greater_equal,
}


@dataclass
class PerTrace:
    """An aggregate of every trace's rows at once: whether the trace has a value, the value as float64
    (exact: integers below 2**52), the count of rows aggregated and, per numeric slot, the traces with
    rows of that slot (which decide the kind of the value, as `Aggregates.aggregate` does)."""

    op: AggregateOp
    has: np.ndarray
    value: np.ndarray
    count: np.ndarray
    kinds: dict[str, np.ndarray]

    def typed(self, traces: np.ndarray) -> list[TypedValue]:
        """The values of traces `traces` (each with a value) as `Aggregates.aggregate` gives them."""
        if self.op is AggregateOp.COUNT:
            return [("int", c) for c in self.count[traces].tolist()]
        kind = np.full(len(traces), "float", dtype=object)
        n_kinds = np.zeros(len(traces), dtype=np.int64)
        for slot, present in self.kinds.items():
            here = present[traces]
            kind[here & (n_kinds == 0)] = slot
            n_kinds += here
        kind[n_kinds > 1] = "float"
        out: list[TypedValue] = []
        for k, v in zip(kind.tolist(), self.value[traces].tolist(), strict=True):
            if self.op is AggregateOp.AVG:
                out.append(("dur", int(round(v))) if k == "dur" and v.is_integer() else ("float", v))
            else:
                out.append(("float", float(v)) if k == "float" else (k, int(v)))
        return out


class Aggregates:
    """Scalar filters and `by()` over the spansets of one table (`ctx`), with per-expression caches."""

    def __init__(self, ctx: SpanContext) -> None:
        self.ctx = ctx
        self.n = ctx.n
        self._numeric: dict[FieldExpr, list[NumericSlot]] = {}
        self._codes: dict[FieldExpr, tuple[np.ndarray, list[TypedValue]]] = {}

    def scalar_filter(self, st: ScalarFilter, inputs: list[Spanset]) -> list[Spanset]:
        """The spansets whose aggregate passes the comparison, each with the aggregate's value as an attribute."""
        if not isinstance(st.lhs, Aggregate) or not isinstance(st.rhs, Static):
            raise TraceQLError("unsupported", f"{render(st)} not yet supported")
        key = render(st.lhs)
        out = []
        for ss in inputs:
            value = self.aggregate(st.lhs, ss.rows)
            if value is None:
                continue
            if compare_scalar(st.op, value, st.rhs):
                out.append(Spanset(ss.rows, [*ss.attrs, (key, value)]))
        return out

    def aggregate(self, agg: Aggregate, rows: np.ndarray) -> TypedValue | None:
        """The aggregate over span rows `rows`; None when no row has a numeric value."""
        if agg.op is AggregateOp.COUNT:
            return ("int", len(rows))
        assert agg.expr is not None
        kinds = []
        values: list[np.ndarray] = []
        # Numeric slots as numpy (values, valid) once per expression: per trace only numpy indexing.
        for slot, arr, valid in self.numeric_slots(agg.expr):
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

    def numeric_slots(self, expr: FieldExpr) -> list[NumericSlot]:
        """The numeric slots (int, float, dur) of `expr`'s value per span row, as dense numpy arrays."""
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

    def scalar_per_trace(
        self, st: ScalarFilter, rows: np.ndarray, span_trace: np.ndarray, n_traces: int
    ) -> np.ndarray | None:
        """Per trace, whether the aggregate of its rows passing the mask `rows` passes the comparison;
        None when only the per-trace walk gives the exact value (sums of floats, whose order could
        change the last bit; integer sums reaching 2**52)."""
        found = self.scalar_columns(st, rows, span_trace, n_traces)
        return None if found is None else found[0]

    def scalar_columns(
        self, st: ScalarFilter, rows: np.ndarray, span_trace: np.ndarray, n_traces: int
    ) -> tuple[np.ndarray, PerTrace | None] | None:
        """`scalar_per_trace` with the aggregate per trace (None when the comparison can never hold)."""
        if not isinstance(st.lhs, Aggregate) or not isinstance(st.rhs, Static):
            return None
        if not st.rhs.type.is_numeric:
            return np.zeros(n_traces, dtype=bool), None
        y = st.rhs.value
        if not isinstance(y, (int, float)) or abs(y) >= 2**52:
            return None
        per = self.per_trace(st.lhs, rows, span_trace, n_traces)
        if per is None:
            return None
        cmp = _NP_COMPARE.get(st.op)
        if cmp is None:
            return np.zeros(n_traces, dtype=bool), per
        with np.errstate(invalid="ignore"):
            return per.has & cmp(per.value, float(y)), per

    def per_trace(self, agg: Aggregate, rows: np.ndarray, span_trace: np.ndarray, n_traces: int) -> PerTrace | None:
        """`aggregate` of every trace's rows passing the mask `rows` at once; None when only the
        per-trace walk gives the exact value (float values, integer sums reaching 2**52)."""
        if agg.op is AggregateOp.COUNT:
            count = np.bincount(span_trace[rows], minlength=n_traces)
            return PerTrace(agg.op, count > 0, count.astype(np.float64), count, {})
        assert agg.expr is not None
        count = np.zeros(n_traces, dtype=np.int64)
        total = np.zeros(n_traces, dtype=np.float64)
        low = np.full(n_traces, np.inf)
        high = np.full(n_traces, -np.inf)
        kinds: dict[str, np.ndarray] = {}
        for slot, dense, valid in self.numeric_slots(agg.expr):
            sel = rows & valid
            if not sel.any():
                continue
            if slot == "float":
                return None
            v = dense[sel].astype(np.float64)
            if np.abs(v).sum() >= 2**52:
                return None
            t = span_trace[sel]
            per_slot = np.bincount(t, minlength=n_traces)
            kinds[slot] = per_slot > 0
            count += per_slot
            total += np.bincount(t, weights=v, minlength=n_traces)
            if agg.op is AggregateOp.MIN:
                np.minimum.at(low, t, v)
            elif agg.op is AggregateOp.MAX:
                np.maximum.at(high, t, v)
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
        return PerTrace(agg.op, count > 0, value, count, kinds)

    def codes(self, expr: FieldExpr) -> tuple[np.ndarray, list[TypedValue]]:
        """`expr`'s group code per span row (-1: no value) and the value of each code."""
        if expr not in self._codes:
            self._codes[expr] = group_codes(self.ctx.span_value(expr))
        return self._codes[expr]

    def group_by(self, st: GroupBy, inputs: list[Spanset]) -> list[Spanset]:
        """`by(expr)`: each spanset split by the value of `expr` (nil for spans without one), groups in
        the order of their first span, the group's value as an attribute."""
        codes, values = self.codes(st.expr)
        key = render(st)
        out = []
        for ss in inputs:
            c = codes[ss.rows]
            uniq, first = np.unique(c, return_index=True)
            for code in uniq[np.argsort(first)]:
                rows = ss.rows[c == code]
                value: TypedValue = ("str", "nil") if code < 0 else values[code]
                out.append(Spanset(rows, [*ss.attrs, (key, value)]))
        return out


def compare_scalar(op: Op, value: TypedValue, rhs: Static) -> bool:
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

"""What a TraceQL search evaluation answers, as Python objects: the spansets a pipeline passes between its
stages (`Spanset`) and the per-trace results built from them (`TraceMatch` > `SpansetMatch` >
`MatchedSpan`, from `materialize`). `engine_columns.SpansetColumns` is the same answer column-wise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from tempo_lite.spantable import SpanTable
from tempo_lite.traceql.ast import Attribute, AttributeRef, Intrinsic, Query, result_key
from tempo_lite.traceql.engine_query import referenced_fields
from tempo_lite.traceql.engine_values import Col, TypedValue

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


@dataclass
class Spanset:
    """One spanset during evaluation: sorted span rows of the evaluated table, and the attributes stages
    gave it (`count()`, `by(...)` values)."""

    rows: np.ndarray
    attrs: list[tuple[str, TypedValue]] = field(default_factory=list)


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


def result_fields(query: Query) -> tuple[bool, dict[str, AttributeRef]]:
    """(whether results show the span name, the fields shown as span attributes by result key)."""
    refs = referenced_fields(query)
    fields: dict[str, AttributeRef] = {}
    for ref in refs:
        if isinstance(ref, Intrinsic) and ref in _NOT_SPAN_ATTRIBUTES:
            continue
        if isinstance(ref, Attribute) and ref.parent:
            continue
        fields.setdefault(result_key(ref), ref)
    return Intrinsic.NAME in refs, fields


def merge_attrs(*sets: Spanset | None) -> list[tuple[str, TypedValue]]:
    """The attributes of spansets merged, the first value of a key winning."""
    out: dict[str, TypedValue] = {}
    for s in sets:
        if s is not None:
            for k, v in s.attrs:
                out.setdefault(k, v)
    return list(out.items())


def materialize(
    table: SpanTable, matches: list[tuple[bytes, list[Spanset]]], spss: int, want_name: bool,
    shown: list[tuple[str, Col]],
) -> list[TraceMatch]:
    """Result objects of `matches` (trace ID, spansets) over `table`: each spanset's first `spss` spans
    with their ID, start, duration, name (when `want_name`) and the `shown` fields (key, value per row)."""
    rows_shown: list[int] = []
    for _, sets in matches:
        for ss in sets:
            rows_shown.extend(ss.rows[:spss].tolist())
    idx = pa.array(np.array(rows_shown, dtype=np.int64))
    spans = table.spans
    span_ids = spans.column("span_id").take(idx).to_pylist()
    starts = spans.column("start_unix_nano").take(idx).to_pylist()
    durations = spans.column("duration_nano").take(idx).to_pylist()
    names = spans.column("name").take(idx).to_pylist() if want_name else [None] * len(rows_shown)
    values = [(key, typed_values(col, idx)) for key, col in shown]
    pos = 0
    results = []
    for trace_id, sets in matches:
        out_sets = []
        for ss in sets:
            shown_spans = []
            for row in ss.rows[:spss].tolist():
                attrs = [(k, value) for k, v in values if (value := v[pos]) is not None]
                shown_spans.append(
                    MatchedSpan(row, span_ids[pos], starts[pos], durations[pos], names[pos] or None, attrs)
                )
                pos += 1
            out_sets.append(SpansetMatch(ss.rows.tolist(), len(ss.rows), ss.attrs, shown_spans))
        results.append(TraceMatch(trace_id, out_sets))
    return results


def typed_values(col: Col, idx: pa.Array) -> list[TypedValue | None]:
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

"""TraceQL metrics `compare({filter}, topN, start, end)` (pure): per-interval counts of every attribute
value among the selection (spans matching the filter) and the baseline (the others), the topN values per
attribute by total count, per-attribute totals, and Tempo's `__too_many_values__` marker series."""

from __future__ import annotations

import numpy as np

from tempo_lite.traceql.ast import Attribute, AttributeRef, Intrinsic, MetricsAggregate, Scope, render
from tempo_lite.traceql.engine_context import SpanContext
from tempo_lite.traceql.engine_values import group_codes
from tempo_lite.traceql.metrics_series import Series, TypedValue
from tempo_lite.traceql.tag_names import tag_names

# compare() counts every span and resource attribute plus these intrinsics (Tempo's select-all minus
# durations, start time and trace ID, whose cardinality is not useful).
COMPARE_INTRINSICS: dict[str, AttributeRef] = {
    "name": Intrinsic.NAME,
    "status": Intrinsic.STATUS,
    "statusMessage": Intrinsic.STATUS_MESSAGE,
    "kind": Intrinsic.KIND,
    "rootServiceName": Intrinsic.TRACE_ROOT_SERVICE,
    "rootName": Intrinsic.TRACE_ROOT_NAME,
}
_COMPARE_SLOTS = ("str", "int", "float", "bool", "status", "kind")


class CompareCounts:
    """Accumulates compare() over span tables (each holding whole traces), then gives its series."""

    def __init__(self, m: MetricsAggregate, intervals: int) -> None:
        assert m.compare_filter is not None
        self.m = m
        self.intervals = intervals
        # (meta type, attribute key) -> typed value -> counts per interval; totals likewise.
        self.values: dict[tuple[str, str], dict[TypedValue, np.ndarray]] = {}
        self.totals: dict[tuple[str, str], np.ndarray] = {}

    def observe(self, ctx: SpanContext, rows: np.ndarray, interval: np.ndarray, starts: np.ndarray) -> None:
        m = self.m
        assert m.compare_filter is not None
        t = self.intervals
        selected = ctx.filter_mask(m.compare_filter.expr)[rows]
        if m.start_ns and m.end_ns:
            selected &= (starts >= m.start_ns) & (starts < m.end_ns)
        refs: list[AttributeRef] = [COMPARE_INTRINSICS[k] for k in sorted(COMPARE_INTRINSICS)]
        names = tag_names(ctx.table)
        refs += [Attribute(k, Scope.SPAN) for k in sorted(names["span"])]
        refs += [Attribute(k, Scope.RESOURCE) for k in sorted(names["resource"])]
        for ref in refs:
            codes, values = group_codes(ctx.span_value(ref))
            # arrays and durations are not counted, nor unset intrinsic strings (no status message)
            allowed = np.array(
                [v[0] in _COMPARE_SLOTS and not (isinstance(ref, Intrinsic) and v == ("str", "")) for v in values]
                + [False]
            )
            c = codes[rows]
            has = allowed[c]  # code -1 (nil) picks the trailing False
            if not has.any():
                continue
            key = render(ref)
            for meta, mask in (("baseline", ~selected), ("selection", selected)):
                mine = has & mask
                if not mine.any():
                    continue
                counts = np.bincount(c[mine] * t + interval[mine], minlength=len(values) * t).reshape(-1, t)
                dest = self.values.setdefault((meta, key), {})
                for code in np.flatnonzero(counts.sum(axis=1)).tolist():
                    value = values[code]
                    if value in dest:
                        dest[value] = dest[value] + counts[code]
                    else:
                        dest[value] = counts[code].astype(np.float64)
                total = np.bincount(interval[mine], minlength=t).astype(np.float64)
                prev = self.totals.get((meta + "_total", key))
                self.totals[(meta + "_total", key)] = total if prev is None else prev + total

    def series(self) -> list[Series]:
        out = []
        too_many: set[str] = set()
        for (meta, key), values in self.values.items():
            # Ties broken by value, so the topN do not depend on the order tables were observed in.
            ranked = sorted(values.items(), key=lambda kv: (-kv[1].sum(), kv[0][0], str(kv[0][1])))
            if len(ranked) > self.m.top_n:
                too_many.add(key)
            for value, counts in ranked[: self.m.top_n]:
                out.append(Series((("__meta_type", ("str", meta)), (key, value)), counts))
        for (meta, key), counts in self.totals.items():
            out.append(Series((("__meta_type", ("str", meta)), (key, ("nil", None))), counts))
        # Tempo marks attributes with more than topN values; the series has no samples but is kept so
        # clients can tell the values shown are a subset.
        for key in too_many:
            out.append(Series((("__meta_error", ("str", "__too_many_values__")), (key, ("nil", None))),
                              np.zeros(0)))
        return out

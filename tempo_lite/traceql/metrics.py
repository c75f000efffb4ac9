"""TraceQL metrics (pure): the `| rate() by (...)` stage over matched spans -> time series.

`MetricsEvaluator(query, TimeBuckets.range(...) | TimeBuckets.instant(...), exemplars=N)` takes span tables
one by one (`observe(table)`: the spanset pipeline, then per-(series, interval) partial aggregates with
numpy `bincount`/`ufunc.at`, no per-span Python loop), merges partials across tables by label set, and
`result()` applies the function, the second stage (topk/bottomk/comparison filters) and Tempo's output
rules (NaN samples omitted, empty series dropped, series sorted). Semantics: docs/traceql-metrics.md.

Tables may be any slices of the spans (a block is fed a few row groups at a time), as long as every span
is in exactly one table and, when `needs_whole_traces(query)`, each table holds whole traces (structural
or trace-level conditions); the querier assembles traces split across sources and drops duplicates.
Counts and histograms are exact whatever the slicing; float sums may differ in the last bits.

Decisions worth knowing:
* A span matched by several spansets of one trace (after `by()` or `||`) is counted once.
* Empty intervals: count/rate/histogram series are 0 there (a count of nothing); min/max/sum/avg are NaN
  (omitted); quantile series are 0.0 there, as Tempo's `HistogramAggregator.Results` writes them.
* Exemplars are picked spread over time: at most ceil(N / intervals) per interval, then N overall.
* compare(): `traceql.metrics_compare`. Buckets: `traceql.metrics_buckets`; which series a span is in:
  `traceql.metrics_groups`; series, exemplar selection and
  the second stage: `traceql.metrics_series`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tempo_lite.spantable import SpanTable
from tempo_lite.traceql.ast import (
    AttributeRef,
    Intrinsic,
    MetricsAggregate,
    MetricsOp,
    Query,
    SpansetFilter,
    Static,
    StaticType,
    TraceQLError,
)
from tempo_lite.traceql.engine import evaluate
from tempo_lite.traceql.engine_context import SpanContext
from tempo_lite.traceql.engine_query import TRACE_DEPENDENT, referenced_fields, uses_nested_sets
from tempo_lite.traceql.engine_values import _broadcast_slot
from tempo_lite.traceql.metrics_buckets import SECOND, TimeBuckets, log2_bucketize, log2_exponent, log2_quantile
from tempo_lite.traceql.metrics_compare import COMPARE_INTRINSICS, CompareCounts
from tempo_lite.traceql.metrics_groups import factorize, series_of
from tempo_lite.traceql.metrics_series import (
    EXEMPLAR_REF,
    Exemplar,
    Label,
    Labels,
    Series,
    TypedValue,
    apply_second_stage,
    label_sort_key,
    limit_exemplars,
    limit_total_exemplars,
    spread_pick,
    trim_exemplars,
)

__all__ = [
    "COMPARE_INTRINSICS", "EXEMPLAR_REF", "Exemplar", "Label", "Labels", "MetricsEvaluator", "Series", "TimeBuckets",
    "TypedValue", "apply_second_stage", "evaluate_metrics", "label_sort_key", "log2_bucketize", "log2_quantile",
    "matched_rows", "metrics_fields", "needs_whole_traces",
]

_VALUE_OPS = (MetricsOp.MIN_OVER_TIME, MetricsOp.MAX_OVER_TIME, MetricsOp.SUM_OVER_TIME, MetricsOp.AVG_OVER_TIME)
_HIST_OPS = (MetricsOp.QUANTILE_OVER_TIME, MetricsOp.HISTOGRAM_OVER_TIME)
_TRUE = Static(StaticType.BOOL, True)
# Trace-level fields: a table must hold the whole trace to give them (trace:id is per trace too).
_TRACE_FIELDS = TRACE_DEPENDENT | {Intrinsic.TRACE_ID}


def metrics_fields(query: Query) -> list[AttributeRef]:
    """Every field the query reads: the pipeline's, the `by()` fields and the measured attribute."""
    m = query.metrics
    assert m is not None
    refs = referenced_fields(query)
    refs += list(m.by) + ([m.attribute] if m.attribute is not None else [])
    return refs


def needs_whole_traces(query: Query) -> bool:
    """Whether each table must hold whole traces: anything but one `{ }` filter over span-level fields
    (structural operators, several stages, trace-level intrinsics, compare())."""
    m = query.metrics
    assert m is not None
    stages = query.pipeline.stages
    if m.op is MetricsOp.COMPARE or len(stages) != 1 or not isinstance(stages[0], SpansetFilter):
        return True
    if uses_nested_sets(stages[0].expr):
        return True
    return any(ref in _TRACE_FIELDS for ref in metrics_fields(query))


@dataclass
class _Measure:
    """Per span row: the measured float (NaN if none) and, for quantile/histogram, its log2 bucket as a
    code: k for 2^k ns reported in seconds (durations), 64 + k for 2^k (ints), -1 for none."""

    value: np.ndarray
    bucket: np.ndarray | None

    def take(self, idx: np.ndarray) -> _Measure:
        return _Measure(self.value[idx], None if self.bucket is None else self.bucket[idx])


_INT_BUCKETS = 64


def bucket_values(codes: np.ndarray) -> np.ndarray:
    """The bucket maximum of each code (as `log2_bucketize`, divided by 1e9 for durations)."""
    codes = np.asarray(codes, dtype=np.int64)
    ints = codes >= _INT_BUCKETS
    return np.where(ints, np.ldexp(1.0, codes - _INT_BUCKETS * ints), np.ldexp(1.0, codes) / SECOND)


def _numeric(ctx: SpanContext, attr: AttributeRef) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(float value, int value or -1 marker, duration ns or -1) per row: NaN / invalid where absent."""
    n = ctx.n
    value = np.full(n, np.nan)
    ints = np.zeros(n, dtype=np.int64)
    int_ok = np.zeros(n, dtype=bool)
    durs = np.zeros(n, dtype=np.int64)
    dur_ok = np.zeros(n, dtype=bool)
    col = ctx.span_value(attr).primary()
    for slot in ("int", "float", "dur"):
        raw = col.slots.get(slot)
        if raw is None:
            continue
        arr = _broadcast_slot(raw, n, slot)
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        valid = pc.is_valid(arr).to_numpy(zero_copy_only=False) & np.isnan(value)
        data = arr.fill_null(0).to_numpy(zero_copy_only=False)
        value[valid] = data[valid].astype(np.float64)
        if slot == "int":
            ints[valid], int_ok[valid] = data[valid], True
        elif slot == "dur":
            durs[valid], dur_ok[valid] = data[valid], True
    return value, np.where(int_ok, ints, -1), np.where(dur_ok, durs, -1)


def _measure(ctx: SpanContext, m: MetricsAggregate, rows: np.ndarray | None) -> _Measure:
    """The measure of the given rows (None: every row)."""
    attr = m.attribute
    assert attr is not None
    if attr is Intrinsic.DURATION:
        ns = np.asarray(ctx.spans.column("duration_nano").to_numpy(), dtype=np.int64)
        if rows is not None:
            ns = ns[rows]
        return _Measure(ns / SECOND, log2_exponent(ns) if m.op in _HIST_OPS else None)
    value, ints, durs = _numeric(ctx, attr)
    if rows is not None:
        value, ints, durs = value[rows], ints[rows], durs[rows]
    bucket = None
    if m.op in _HIST_OPS:
        # ints bucket as ints, durations as ns reported in seconds; floats are not supported (dropped).
        int_codes = log2_exponent(ints)
        bucket = np.where(durs >= 0, log2_exponent(durs), np.where(int_codes >= 0, int_codes + _INT_BUCKETS, -1))
    return _Measure(value, bucket)


@dataclass
class _Acc:
    count: np.ndarray
    vcount: np.ndarray | None = None
    total: np.ndarray | None = None
    lo: np.ndarray | None = None
    hi: np.ndarray | None = None
    hist: dict[float, np.ndarray] = field(default_factory=dict)
    exemplars: list[Exemplar] = field(default_factory=list)


def matched_rows(query: Query, table: SpanTable, ctx: SpanContext | None = None) -> np.ndarray:
    """Rows of `table` in some spanset the pipeline yields (each row once), sorted."""
    stages = query.pipeline.stages
    if len(stages) == 1 and isinstance(stages[0], SpansetFilter) and stages[0].expr == _TRUE:
        return np.arange(table.num_spans)  # `{ }`
    if len(stages) == 1 and isinstance(stages[0], SpansetFilter) and not uses_nested_sets(stages[0].expr):
        ctx = ctx or SpanContext(table)
        return np.flatnonzero(ctx.filter_mask(stages[0].expr))
    parts = [np.asarray(ss.rows, dtype=np.int64) for tm in evaluate(query, table, spss=0) for ss in tm.spansets]
    return np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)


class MetricsEvaluator:
    """Accumulates one metrics query over span tables, then produces its series."""

    def __init__(self, query: Query, buckets: TimeBuckets, *, exemplars: int = 0) -> None:
        if query.metrics is None:
            raise TraceQLError("validate", "not a metrics query")
        self.query = query
        self.m: MetricsAggregate = query.metrics
        self.buckets = buckets
        self.max_exemplars = 0 if buckets.instant else max(0, exemplars)
        self.accs: dict[Labels, _Acc] = {}
        self.compare = CompareCounts(self.m, buckets.count) if self.m.op is MetricsOp.COMPARE else None
        self.inspected_spans = 0

    # -- accumulation

    def observe(self, table: SpanTable) -> None:
        if table.num_spans == 0:
            return
        self.inspected_spans += table.num_spans
        ctx = SpanContext(table)
        rows = matched_rows(self.query, table, ctx)
        if not len(rows):
            return
        every = len(rows) == table.num_spans  # all rows matched ({ }): no row selection to apply
        starts = np.asarray(table.spans.column("start_unix_nano").to_numpy(), dtype=np.int64)
        if not every:
            starts = starts[rows]
        interval = self.buckets.interval_of(starts)
        keep = interval >= 0
        m = self.m
        if self.compare is not None:
            self.compare.observe(ctx, rows[keep], interval[keep], starts[keep])
            return
        measure = _measure(ctx, m, None if every else rows) if m.attribute is not None else None
        bucket = measure.bucket if measure is not None else None
        if bucket is not None:
            keep &= bucket >= 0  # quantile/histogram drop spans without a bucketable value
        if not keep.all():
            every = False
            rows, interval, starts = rows[keep], interval[keep], starts[keep]
            if measure is not None:
                measure = measure.take(keep)
                bucket = measure.bucket
        if not len(rows):
            return
        base: Labels = () if m.op in _HIST_OPS else (("__name__", ("str", m.op.value)),)
        series_idx, labels = series_of(m, ctx, None if every else rows, base)
        t = self.buckets.count
        s = len(labels)
        key = series_idx * t + interval
        if bucket is not None:
            self._observe_hist(labels, series_idx, interval, bucket)
        else:
            count = np.bincount(key, minlength=s * t).reshape(s, t)
            parts: dict[str, np.ndarray] = {"count": count}
            if measure is not None:
                value = measure.value
                ok = ~np.isnan(value)
                parts["vcount"] = np.bincount(key[ok], minlength=s * t).reshape(s, t)
                parts["total"] = np.bincount(key[ok], weights=value[ok], minlength=s * t).reshape(s, t)
                lo = np.full(s * t, np.inf)
                hi = np.full(s * t, -np.inf)
                np.minimum.at(lo, key[ok], value[ok])
                np.maximum.at(hi, key[ok], value[ok])
                parts["lo"], parts["hi"] = lo.reshape(s, t), hi.reshape(s, t)
            for i, lab in enumerate(labels):
                self._merge(lab, {k: v[i] for k, v in parts.items()})
        if self.max_exemplars:
            self._observe_exemplars(ctx, rows, interval, starts, series_idx, labels, measure)

    def _acc(self, labels: Labels) -> _Acc:
        acc = self.accs.get(labels)
        if acc is None:
            t = self.buckets.count
            acc = _Acc(np.zeros(t, dtype=np.int64))
            if self.m.attribute is not None and self.m.op not in _HIST_OPS:
                acc.vcount = np.zeros(t, dtype=np.int64)
                acc.total = np.zeros(t)
                acc.lo = np.full(t, np.inf)
                acc.hi = np.full(t, -np.inf)
            self.accs[labels] = acc
        return acc

    def _merge(self, labels: Labels, part: dict[str, np.ndarray]) -> None:
        acc = self._acc(labels)
        acc.count += part["count"]
        if "vcount" in part:
            assert acc.vcount is not None and acc.total is not None and acc.lo is not None and acc.hi is not None
            acc.vcount += part["vcount"]
            acc.total += part["total"]
            np.minimum(acc.lo, part["lo"], out=acc.lo)
            np.maximum(acc.hi, part["hi"], out=acc.hi)

    def _observe_hist(
        self, labels: list[Labels], series_idx: np.ndarray, interval: np.ndarray, bucket: np.ndarray
    ) -> None:
        """Counts per (series, bucket, interval); `bucket` holds bucket codes (`_Measure`)."""
        t = self.buckets.count
        codes, b_idx = factorize(bucket)
        maxes = bucket_values(codes)
        nb = len(maxes)
        key = (series_idx * nb + b_idx) * t + interval
        counts = np.bincount(key, minlength=len(labels) * nb * t).reshape(len(labels), nb, t)
        for i, lab in enumerate(labels):
            acc = self._acc(lab)
            present = np.flatnonzero(counts[i].sum(axis=1))
            for b in present.tolist():
                bmax = float(maxes[b])
                if bmax in acc.hist:
                    acc.hist[bmax] += counts[i, b]
                else:
                    acc.hist[bmax] = counts[i, b].copy()
                acc.count += counts[i, b]

    def _observe_exemplars(
        self, ctx: SpanContext, rows: np.ndarray, interval: np.ndarray, starts: np.ndarray,
        series_idx: np.ndarray, labels: list[Labels], measure: _Measure | None,
    ) -> None:
        """Exemplars of this table (`measure` is per row of `rows`); each series keeps a bounded number."""
        pick = spread_pick(interval, self.max_exemplars, self.buckets.count)
        if not len(pick):
            return
        sel = rows[pick]
        spans = ctx.spans
        refs: list[int] | None = None
        if "span_id" in spans.column_names:
            trace_ids = spans.column("trace_id").take(pa.array(sel)).to_pylist()
            span_ids = spans.column("span_id").take(pa.array(sel)).to_pylist()
        else:  # IDs are looked up later by the table's source, for the exemplars kept
            refs = spans.column(EXEMPLAR_REF).take(pa.array(sel)).to_pylist()
        values = measure.value[pick] if measure is not None else np.full(len(sel), np.nan)
        buckets = bucket_values(measure.bucket[pick]) if measure is not None and measure.bucket is not None else None
        touched: set[Labels] = set()
        for j, i in enumerate(pick.tolist()):
            lab = labels[int(series_idx[i])]
            ex_labels: list[Label] = [x for x in lab if x[0] != "__name__"]
            ex = Exemplar(ex_labels, float(values[j]), int(starts[i]) // 1_000_000, int(interval[i]))
            if refs is None:
                ex.with_ids(trace_ids[j], span_ids[j])
            else:
                ex.ref = refs[j]
            if buckets is not None:
                ex.labels.append(("__bucket", ("float", float(buckets[j]))))
            self._acc(lab).exemplars.append(ex)
            touched.add(lab)
        per = math.ceil(self.max_exemplars / max(self.buckets.count, 1))
        for lab in touched:
            acc = self._acc(lab)
            acc.exemplars = trim_exemplars(acc.exemplars, per)

    # -- results

    def result(self) -> list[Series]:
        if self.compare is not None:
            series = self.compare.series()
            series.sort(key=lambda s: label_sort_key(s.labels))
            return series
        series = self._finish()
        series.sort(key=lambda s: label_sort_key(s.labels))
        series = apply_second_stage(series, self.query.second_stage)
        out = []
        for s in series:
            if np.isnan(s.values).all():
                continue
            s.exemplars = limit_exemplars(
                [e for e in s.exemplars if not math.isnan(s.values[e.interval])], self.max_exemplars
            )
            for e in s.exemplars:
                # rate() and count_over_time() measure no span value: as Tempo does before answering, an
                # exemplar takes the sample value of its interval.
                if math.isnan(e.value):
                    e.value = float(s.values[e.interval])
            out.append(s)
        limit_total_exemplars(out, self.max_exemplars)
        return out

    def _finish(self) -> list[Series]:
        op = self.m.op
        out = []
        for labels, acc in self.accs.items():
            if op in _HIST_OPS:
                out.extend(self._finish_hist(labels, acc))
                continue
            if op is MetricsOp.COUNT_OVER_TIME:
                values = acc.count.astype(np.float64)
            elif op is MetricsOp.RATE:
                values = acc.count / self.buckets.rate_divisor_s
            else:
                assert acc.vcount is not None and acc.total is not None and acc.lo is not None and acc.hi is not None
                has = acc.vcount > 0
                with np.errstate(divide="ignore", invalid="ignore"):
                    raw = {
                        MetricsOp.MIN_OVER_TIME: acc.lo,
                        MetricsOp.MAX_OVER_TIME: acc.hi,
                        MetricsOp.SUM_OVER_TIME: acc.total,
                        MetricsOp.AVG_OVER_TIME: acc.total / acc.vcount,
                    }[op]
                values = np.where(has, raw, np.nan)
            out.append(Series(labels, values.astype(np.float64), acc.exemplars))
        return out

    def _finish_hist(self, labels: Labels, acc: _Acc) -> list[Series]:
        if not acc.hist:
            return []
        maxes = np.array(sorted(acc.hist))
        counts = np.vstack([acc.hist[b] for b in maxes.tolist()])
        if self.m.op is MetricsOp.HISTOGRAM_OVER_TIME:
            out = []
            for b, row in zip(maxes.tolist(), counts, strict=True):
                mine = [e for e in acc.exemplars if e.labels and e.labels[-1] == ("__bucket", ("float", b))]
                out.append(Series((*labels, ("__bucket", ("float", b))), row.astype(np.float64), mine))
            for e in acc.exemplars:
                e.labels = [x for x in e.labels if x[0] != "__bucket"]
            return out
        for e in acc.exemplars:
            e.labels = [x for x in e.labels if x[0] != "__bucket"]
        qs = self.m.quantiles
        overall = np.array([log2_quantile(q, maxes, counts.sum(axis=1, keepdims=True))[0] for q in qs])
        owner = [int(np.argmin(np.abs(overall - e.value))) if not math.isnan(e.value) else -1 for e in acc.exemplars]
        return [
            Series(
                (*labels, ("p", ("float", float(q)))),
                log2_quantile(q, maxes, counts),
                [e for e, o in zip(acc.exemplars, owner, strict=True) if o == qi],
            )
            for qi, q in enumerate(qs)
        ]


def evaluate_metrics(
    query: Query, tables: Iterable[SpanTable], buckets: TimeBuckets, *, exemplars: int = 0
) -> list[Series]:
    ev = MetricsEvaluator(query, buckets, exemplars=exemplars)
    for t in tables:
        ev.observe(t)
    return ev.result()

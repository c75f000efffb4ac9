"""TraceQL metrics output (pure): series with their exemplars, label ordering, exemplar selection, and the
second stage (`topk`/`bottomk`, comparison filters on samples)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from tempo_lite.traceql.ast import BottomK, MetricsFilter, Op, SecondStage, TopK

EXEMPLAR_REF = "__exemplar_ref"
TypedValue = tuple[str, object]
Label = tuple[str, TypedValue]
Labels = tuple[Label, ...]


@dataclass
class Exemplar:
    labels: list[Label]
    value: float
    timestamp_ms: int
    interval: int
    # A table without span IDs gives each row a reference instead (`EXEMPLAR_REF` column): the labels then
    # lack `trace:id` and `span:id` until `with_ids` adds them (the caller looks the reference up).
    ref: int = -1

    def with_ids(self, trace_id: bytes, span_id: bytes) -> None:
        self.labels[:0] = [
            ("trace:id", ("str", trace_id.hex().lstrip("0") or "0")),
            ("span:id", ("str", span_id.hex())),
        ]
        self.ref = -1


@dataclass
class Series:
    """Output series: `values` has one entry per interval, NaN where there is no sample."""

    labels: Labels
    values: np.ndarray
    exemplars: list[Exemplar] = field(default_factory=list)

    def samples(self, timestamps_ms: np.ndarray) -> list[tuple[int, float]]:
        keep = ~np.isnan(self.values)
        return list(zip(timestamps_ms[keep].tolist(), self.values[keep].tolist(), strict=True))


def label_sort_key(labels: Labels) -> tuple:
    out = []
    for key, (_slot, value) in labels:
        num = isinstance(value, (int, float)) and not isinstance(value, bool)
        out.append((key, 0 if num else 1, value if num else str(value)))
    return tuple(out)


_PREFIX_MAX = 65_536


def spread_pick(interval: np.ndarray, limit: int, intervals: int) -> np.ndarray:
    """Indices of up to `limit` items spread over time: <= ceil(limit/intervals) per interval, earliest first.

    Only the first `per` items of each interval can be chosen, and they usually all lie in a short prefix:
    prefixes of growing length (up to `_PREFIX_MAX` items) are tried until one holds them (checked with
    interval counts); the items after it of intervals it still lacks are added (sparse intervals, such as
    the range's edges, would otherwise take the prefix to the whole input), and just those candidates are
    sorted (a stable radix sort: intervals are small non-negative ints).
    """
    if limit <= 0 or not len(interval):
        return np.zeros(0, dtype=np.int64)
    per = max(1, math.ceil(limit / max(intervals, 1)))
    iv = np.asarray(interval, dtype=np.int64)
    wanted = np.minimum(np.bincount(iv), per)
    size = 4096
    while size < min(len(iv), _PREFIX_MAX) and np.any(np.bincount(iv[:size], minlength=len(wanted)) < wanted):
        size *= 4
    rows = np.arange(min(size, len(iv)))
    if size < len(iv):
        short = np.bincount(iv[:size], minlength=len(wanted)) < wanted
        if short.any():
            rows = np.concatenate([rows, size + np.flatnonzero(short[iv[size:]])])
    sub = iv[rows]
    counts = np.bincount(sub, minlength=len(wanted))
    run_start = np.cumsum(counts) - counts
    order = np.argsort(sub.astype(np.uint16) if len(counts) <= 1 << 16 else sub, kind="stable")
    sorted_iv = sub[order]
    rank = np.arange(len(order)) - run_start[sorted_iv]
    ok = rank < per
    cand, cand_rank, cand_iv = rows[order[ok]], rank[ok], sorted_iv[ok]
    chosen = np.lexsort((cand_iv, cand_rank))[:limit]
    return np.sort(cand[chosen])


def limit_exemplars(exemplars: list[Exemplar], limit: int) -> list[Exemplar]:
    if len(exemplars) <= limit:
        return exemplars
    pick = spread_pick(np.array([e.interval for e in exemplars], dtype=np.int64), limit, 0)
    return [exemplars[i] for i in pick.tolist()]


def limit_total_exemplars(series: list[Series], limit: int) -> None:
    """At most `limit` exemplars in the whole answer, taken round-robin over series."""
    total = sum(len(s.exemplars) for s in series)
    if total <= limit:
        return
    kept: list[list[Exemplar]] = [[] for _ in series]
    left = limit
    depth = 0
    while left > 0:
        progressed = False
        for i, s in enumerate(series):
            if depth < len(s.exemplars) and left > 0:
                kept[i].append(s.exemplars[depth])
                left -= 1
                progressed = True
        if not progressed:
            break
        depth += 1
    for s, k in zip(series, kept, strict=True):
        s.exemplars = sorted(k, key=lambda e: e.timestamp_ms)


_CMP = {
    Op.EQ: np.equal,
    Op.NEQ: np.not_equal,
    Op.LT: np.less,
    Op.LTE: np.less_equal,
    Op.GT: np.greater,
    Op.GTE: np.greater_equal,
}


def apply_second_stage(series: list[Series], stages: Sequence[SecondStage]) -> list[Series]:
    """topk/bottomk per timestamp and comparison filters, left to right; dropped points become NaN."""
    if not stages or not series:
        return series
    matrix = np.vstack([s.values for s in series])
    for st in stages:
        if isinstance(st, (TopK, BottomK)):
            valid = ~np.isnan(matrix)
            fill = -np.inf if isinstance(st, TopK) else np.inf
            ranked = np.where(valid, matrix, fill)
            order = np.argsort(-ranked if isinstance(st, TopK) else ranked, axis=0, kind="stable")
            rank = np.empty_like(order)
            np.put_along_axis(rank, order, np.arange(len(series))[:, None].repeat(matrix.shape[1], 1), axis=0)
            matrix = np.where(valid & (rank < st.k), matrix, np.nan)
        elif isinstance(st, MetricsFilter):
            with np.errstate(invalid="ignore"):
                keep = _CMP[st.op](matrix, st.threshold)
            matrix = np.where(keep, matrix, np.nan)
    return [Series(s.labels, matrix[i], s.exemplars) for i, s in enumerate(series)]


def trim_exemplars(exemplars: list[Exemplar], per_interval: int) -> list[Exemplar]:
    """The first `per_interval` exemplars of each interval, in order: what a series keeps while tables
    stream in (ceil(N / intervals), the documented cap per interval), so memory does not grow with them."""
    seen: dict[int, int] = {}
    out = []
    for e in exemplars:
        n = seen.get(e.interval, 0)
        if n < per_interval:
            out.append(e)
            seen[e.interval] = n + 1
    return out

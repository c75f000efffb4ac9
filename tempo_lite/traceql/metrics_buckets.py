"""Time buckets and log2 histograms of TraceQL metrics (pure): which interval a span falls in, and Tempo's
power-of-two buckets and quantile interpolation over them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SECOND = 1_000_000_000


@dataclass(frozen=True)
class TimeBuckets:
    """Intervals `(start + i*step, start + (i+1)*step]`, i < count; instant: one `[start, end]`."""

    start_ns: int
    end_ns: int
    step_ns: int
    count: int
    instant: bool = False

    @staticmethod
    def range(start_ns: int, end_ns: int, step_ns: int) -> TimeBuckets:
        """Start aligned down to the step then one extra leading step, end aligned up (Tempo's AlignRequest)."""
        if step_ns <= 0 or end_ns <= start_ns:
            raise ValueError("need step > 0 and end > start")
        start = start_ns - start_ns % step_ns
        end = end_ns if end_ns % step_ns == 0 else end_ns + step_ns - end_ns % step_ns
        if start > step_ns:
            start -= step_ns
        return TimeBuckets(start, end, step_ns, (end - start) // step_ns)

    @staticmethod
    def instant_range(start_ns: int, end_ns: int) -> TimeBuckets:
        if end_ns <= start_ns:
            raise ValueError("need end > start")
        return TimeBuckets(start_ns, end_ns, end_ns - start_ns, 1, instant=True)

    @property
    def rate_divisor_s(self) -> float:
        return self.step_ns / SECOND

    def interval_of(self, ts_ns: np.ndarray) -> np.ndarray:
        """Interval index per timestamp, -1 outside the range (a boundary belongs to the interval it ends)."""
        ts = ts_ns.astype(np.int64, copy=False)
        if self.instant:
            return np.where((ts >= self.start_ns) & (ts <= self.end_ns), 0, -1)
        idx = (ts - (self.start_ns + 1)) // self.step_ns  # (start + i*step, start + (i+1)*step] -> i
        idx[(idx < 0) | (idx >= self.count)] = -1
        return idx

    def timestamps_ms(self) -> np.ndarray:
        if self.instant:
            return np.array([self.end_ns // 1_000_000], dtype=np.int64)
        ends = self.start_ns + (np.arange(self.count, dtype=np.int64) + 1) * self.step_ns
        return ends // 1_000_000





def log2_bucketize(values: np.ndarray) -> np.ndarray:
    """Next power of two >= value (Tempo's Log2Bucketize) as float; NaN for values < 2."""
    k = log2_exponent(values)
    out = np.full(len(k), np.nan)
    ok = k >= 0
    out[ok] = np.ldexp(1.0, k[ok])
    return out


def log2_exponent(values: np.ndarray) -> np.ndarray:
    """k such that 2^k is `log2_bucketize`'s bucket (the smallest power of two >= value, k <= 63); -1 for
    values < 2."""
    v = np.asarray(values, dtype=np.int64)
    if len(v) and int(v.min()) >= 2 and int(v.max()) <= 1 << 53:  # the usual case: fewer passes
        _, k = np.frexp((v - 1).astype(np.float64))
        return k.astype(np.int64)
    out = np.full(len(v), -1, dtype=np.int64)
    ok = v >= 2
    x = v[ok] - 1
    # 2^(k-1) <= x < 2^k: frexp's exponent, exact while x converts to float exactly (below 2^53).
    _, k = np.frexp(x.astype(np.float64))
    k = k.astype(np.int64)
    big = x >= 1 << 53
    if big.any():
        k[big] = _exponent_exact(x[big].astype(np.uint64))
    out[ok] = np.minimum(k, 63)
    return out


def _exponent_exact(x: np.ndarray) -> np.ndarray:
    """k with 2^(k-1) <= x < 2^k for large x (float log2 can be off by one near powers of two)."""
    k = np.floor(np.log2(x.astype(np.float64))).astype(np.int64) + 1
    k = np.clip(k, 1, 63)
    one = np.uint64(1)
    too_high = np.left_shift(one, (k - 1).astype(np.uint64)) > x
    k = k - too_high
    too_low = (k < 64) & (np.left_shift(one, np.minimum(k, 63).astype(np.uint64)) <= x)
    return k + too_low


def log2_quantile(p: float, maxes: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Tempo's Log2Quantile per column of `counts` (buckets x intervals, bucket maxes ascending).

    Columns without observations give 0.0, as Tempo does.
    """
    counts = np.asarray(counts, dtype=np.float64)
    nb, nt = counts.shape
    total = counts.sum(axis=0)
    target = np.maximum(np.ceil(p * total), 1.0)
    cum = np.cumsum(counts, axis=0)
    reached = cum >= target[None, :]
    first = np.argmax(reached, axis=0)  # first bucket where the cumulative count reaches the target
    cols = np.arange(nt)
    hit_cum = cum[first, cols]
    consumed = np.where(first > 0, cum[np.maximum(first - 1, 0), cols], 0.0)
    count = counts[first, cols]
    # The previous bucket *present in this interval* bounds the interpolation from below.
    present_idx = np.where(counts > 0, np.arange(nb)[:, None], -1)
    last_present = np.maximum.accumulate(present_idx, axis=0)
    prev = np.where(first > 0, last_present[np.maximum(first - 1, 0), cols], -1)
    max_v = np.log2(maxes[first])
    min_v = np.where(prev >= 0, np.log2(maxes[np.maximum(prev, 0)]), max_v - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        interp = (target - consumed) / count
        value = np.where(hit_cum == target, maxes[first], np.exp2(min_v + (max_v - min_v) * interp))
    return np.where(total > 0, value, 0.0)

"""A `MetricsEvaluator`'s accumulated state as JSON, and merging such states (pure): how a sharding
query-frontend combines the TraceQL metrics jobs its queriers ran (frontend/sharding.py).

Every accumulator of `traceql.metrics` is a sum, a minimum or a maximum per series and interval (span
counts, value counts, totals, lows, highs, histogram bucket counts; compare()'s value and total counts),
so the state after observing tables A and then B is the merge of the states of A and of B: merging the
jobs' states and calling `result()` once gives the series one process gives over all their spans (sums of
floats up to the order of addition). Exemplars are a bounded sample: the merged lists are trimmed to the
per-interval cap as one process trims while tables stream in, so which spans are picked can differ.
Floats travel as JSON numbers (Python's `repr`: exact), infinities and NaN as `Infinity`/`NaN`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tempo_lite.traceql.metrics import _HIST_OPS, Exemplar, Labels, MetricsEvaluator
from tempo_lite.traceql.metrics_series import trim_exemplars

_ARRAYS = ("count", "vcount", "total", "lo", "hi")


def _labels(raw: Any) -> Labels:
    return tuple((str(k), (str(v[0]), v[1])) for k, v in raw)


def _exemplar_json(e: Exemplar) -> dict[str, Any]:
    return {"labels": [[k, list(v)] for k, v in e.labels], "value": e.value, "timestamp_ms": e.timestamp_ms,
            "interval": e.interval}


def _exemplar(raw: dict[str, Any]) -> Exemplar:
    return Exemplar(list(_labels(raw["labels"])), float(raw["value"]), int(raw["timestamp_ms"]), int(raw["interval"]))


def to_partial(ev: MetricsEvaluator) -> dict[str, Any]:
    """The evaluator's accumulated state (resolve its exemplars' IDs first: `MetricsSource.resolve`)."""
    accs = []
    for labels, acc in ev.accs.items():
        entry: dict[str, Any] = {"labels": [[k, list(v)] for k, v in labels]}
        for name in _ARRAYS:
            array = getattr(acc, name)
            if array is not None:
                entry[name] = array.tolist()
        entry["hist"] = [[b, counts.tolist()] for b, counts in acc.hist.items()]
        # An exemplar still naming a block row (its IDs unresolved: the block failed) cannot travel.
        entry["exemplars"] = [_exemplar_json(e) for e in acc.exemplars if e.ref < 0]
        accs.append(entry)
    out: dict[str, Any] = {"accs": accs, "inspected_spans": ev.inspected_spans}
    if ev.compare is not None:
        out["compare"] = {
            "values": [[list(key), [[list(v), c.tolist()] for v, c in values.items()]]
                       for key, values in ev.compare.values.items()],
            "totals": [[list(key), c.tolist()] for key, c in ev.compare.totals.items()],
        }
    return out


def merge_partial(ev: MetricsEvaluator, state: dict[str, Any]) -> None:
    """Add a state (`to_partial` of an evaluator of the same query and buckets) into `ev`."""
    t = ev.buckets.count
    ev.inspected_spans += int(state.get("inspected_spans", 0))
    per = math.ceil(ev.max_exemplars / max(t, 1))
    for entry in state["accs"]:
        acc = ev._acc(_labels(entry["labels"]))  # noqa: SLF001 - the evaluator's own accumulator factory
        if "vcount" in entry and acc.vcount is not None:
            assert acc.total is not None and acc.lo is not None and acc.hi is not None
            acc.vcount += np.asarray(entry["vcount"], dtype=np.int64)
            acc.total += np.asarray(entry["total"], dtype=np.float64)
            np.minimum(acc.lo, np.asarray(entry["lo"], dtype=np.float64), out=acc.lo)
            np.maximum(acc.hi, np.asarray(entry["hi"], dtype=np.float64), out=acc.hi)
        if ev.m.op not in _HIST_OPS:
            acc.count += np.asarray(entry["count"], dtype=np.int64)
        for bmax, counts in entry["hist"]:
            part = np.asarray(counts, dtype=np.int64)
            b = float(bmax)
            if b in acc.hist:
                acc.hist[b] += part
            else:
                acc.hist[b] = part.copy()
            acc.count += part
        if entry["exemplars"]:
            acc.exemplars = trim_exemplars(acc.exemplars + [_exemplar(e) for e in entry["exemplars"]], per)
    compare = state.get("compare")
    if compare is not None:
        assert ev.compare is not None, "a compare() state merged into another query's evaluator"
        for key, values in compare["values"]:
            dest = ev.compare.values.setdefault((str(key[0]), str(key[1])), {})
            for value, counts in values:
                typed = (str(value[0]), value[1])
                part = np.asarray(counts, dtype=np.float64)
                dest[typed] = dest[typed] + part if typed in dest else part
        for key, counts in compare["totals"]:
            k = (str(key[0]), str(key[1]))
            part = np.asarray(counts, dtype=np.float64)
            prev = ev.compare.totals.get(k)
            ev.compare.totals[k] = part if prev is None else prev + part

"""Generated series (counters and histograms) as a prometheus-client collector, bounded per tenant.

prometheus-client's own `Histogram` takes one observation per call; the generator adds whole
per-batch bucket counts at once, removes series that went stale and refuses new series beyond the
tenant's limit, so it keeps its series here and hands them to the registry at scrape time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

LabelValues = tuple[str, ...]


@dataclass
class _Series:
    tenant: str
    updated: float
    value: float = 0.0  # counter value, or histogram sum
    buckets: np.ndarray | None = None  # histogram: non-cumulative counts, last one is +Inf


@dataclass
class Family:
    """One metric name: its label names and the series by (tenant, label values)."""

    name: str
    doc: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] | None  # None for a counter
    owner: SeriesRegistry
    series: dict[tuple[str, LabelValues], _Series] = field(default_factory=dict)

    @property
    def cost(self) -> int:
        """Prometheus series per label set: 1 for a counter, each bucket plus +Inf, _sum, _count."""
        return 1 if self.buckets is None else len(self.buckets) + 3

    def _get(self, tenant: str, values: LabelValues, now: float) -> _Series | None:
        if not self.owner.tenant_label:
            tenant = ""  # one series for every tenant, and one series budget
        s = self.series.get((tenant, values))
        if s is None:
            if not self.owner._admit(tenant, self.cost):
                return None
            s = _Series(tenant, now)
            if self.buckets is not None:
                s.buckets = np.zeros(len(self.buckets) + 1, dtype=np.float64)
            self.series[(tenant, values)] = s
        s.updated = now
        return s

    def inc(self, tenant: str, values: LabelValues, amount: float) -> None:
        with self.owner.lock:
            s = self._get(tenant, values, self.owner.clock())
            if s is not None:
                s.value += amount

    def observe_counts(self, tenant: str, values: LabelValues, counts: np.ndarray, total: float) -> None:
        """Add `counts` (one per bucket plus +Inf, not cumulative) and `total` seconds to a histogram."""
        with self.owner.lock:
            s = self._get(tenant, values, self.owner.clock())
            if s is not None:
                assert s.buckets is not None
                s.buckets += counts
                s.value += total

    def metric(self) -> Metric:
        names = list(self.labels)
        if self.owner.tenant_label:
            names.append(self.owner.tenant_label)
        with_tenant = bool(self.owner.tenant_label)
        if self.buckets is None:
            fam = CounterMetricFamily(self.name, self.doc, labels=names)
            for (tenant, values), s in sorted(self.series.items()):
                fam.add_metric([*values, tenant] if with_tenant else list(values), s.value)
            return fam
        hfam = HistogramMetricFamily(self.name, self.doc, labels=names)
        bounds = [floatToGoString(b) for b in self.buckets] + ["+Inf"]
        for (tenant, values), s in sorted(self.series.items()):
            assert s.buckets is not None
            cumulative = np.cumsum(s.buckets).tolist()
            hfam.add_metric([*values, tenant] if with_tenant else list(values),
                            list(zip(bounds, cumulative, strict=True)), s.value)
        return hfam


class SeriesRegistry(Collector):
    """Every generated family, registered once on the process registry; counts series per tenant."""

    def __init__(
        self, registry: CollectorRegistry, *, max_series: int, tenant_label: str, clock: Callable[[], float]
    ) -> None:
        self.max_series = max_series
        self.tenant_label = tenant_label
        self.clock = clock
        self.lock = threading.Lock()  # scrapes may run in another thread than observe()
        self.families: list[Family] = []
        self.active: dict[str, int] = {}
        self.active_gauge = Gauge(
            "tempo_metrics_generator_registry_active_series", "Active generated series.", ["tenant"],
            registry=registry,
        )
        self.limited = Counter(
            "tempo_metrics_generator_registry_series_limited",
            "New series refused because the tenant had reached max_active_series.", ["tenant"], registry=registry,
        )
        registry.register(self)

    def counter(self, name: str, doc: str, labels: Sequence[str]) -> Family:
        fam = Family(name, doc, tuple(labels), None, self)
        self.families.append(fam)
        return fam

    def histogram(self, name: str, doc: str, labels: Sequence[str], buckets: Sequence[float]) -> Family:
        fam = Family(name, doc, tuple(labels), tuple(buckets), self)
        self.families.append(fam)
        return fam

    def _admit(self, tenant: str, cost: int) -> bool:
        active = self.active.get(tenant, 0)
        if active + cost > self.max_series:
            self.limited.labels(tenant).inc()
            return False
        self.active[tenant] = active + cost
        self.active_gauge.labels(tenant).set(active + cost)
        return True

    def remove_stale(self, cutoff: float) -> int:
        """Drop series not updated since `cutoff`; returns how many label sets went."""
        removed = 0
        with self.lock:
            for fam in self.families:
                stale = [k for k, s in fam.series.items() if s.updated < cutoff]
                for key in stale:
                    del fam.series[key]
                    self.active[key[0]] -= fam.cost
                    self.active_gauge.labels(key[0]).set(self.active[key[0]])
                removed += len(stale)
        return removed

    def samples(self) -> dict[str, list[tuple[tuple[tuple[str, str], ...], float]]]:
        """Every series as Prometheus samples, by tenant: (labels sorted by name, with `__name__`; value).

        Counters are `<name>_total`; histograms `<name>_bucket` (cumulative, `le`), `_sum` and `_count`.
        The tenant is the key, not a label: remote write sends each tenant on its own (Tempo's way)."""
        out: dict[str, list[tuple[tuple[tuple[str, str], ...], float]]] = {}
        with self.lock:
            for fam in self.families:
                for (tenant, values), s in fam.series.items():
                    base = list(zip(fam.labels, values, strict=True))
                    rows = out.setdefault(tenant, [])
                    if s.buckets is None:
                        rows.append((_labels(fam.name + "_total", base), s.value))
                        continue
                    assert fam.buckets is not None
                    cumulative = np.cumsum(s.buckets).tolist()
                    bounds = [floatToGoString(b) for b in fam.buckets] + ["+Inf"]
                    for le, count in zip(bounds, cumulative, strict=True):
                        rows.append((_labels(fam.name + "_bucket", [*base, ("le", le)]), count))
                    rows.append((_labels(fam.name + "_sum", base), s.value))
                    rows.append((_labels(fam.name + "_count", base), cumulative[-1]))
        return out

    def collect(self) -> Iterator[Metric]:
        with self.lock:
            metrics = [fam.metric() for fam in self.families if fam.series]
        yield from metrics


def _labels(name: str, pairs: list[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted([("__name__", name), *pairs]))

"""The span-metrics processor: RED metrics per (service, span name, kind, status, dimensions).

One pyarrow group-by per batch over (labels, latency bucket); Python only touches the groups.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tempo_lite.config.generator import SpanMetricsConfig, label_name
from tempo_lite.errors import ConfigError
from tempo_lite.generator.columns import SPAN_KINDS, STATUS_CODES, estimated_sizes, label_values
from tempo_lite.generator.series import SeriesRegistry
from tempo_lite.spantable import SpanTable

INTRINSIC_LABELS = ("service", "span_name", "span_kind", "status_code")


class SpanMetrics:
    def __init__(self, series: SeriesRegistry, config: SpanMetricsConfig) -> None:
        self.dimensions = tuple(config.dimensions)
        labels = [*INTRINSIC_LABELS, *(label_name(d) for d in self.dimensions)]
        if len(set(labels)) != len(labels) or series.tenant_label in labels:
            raise ConfigError(f"metrics_generator.processor.span_metrics.dimensions {list(self.dimensions)} "
                             f"collide with each other or with {[*INTRINSIC_LABELS, series.tenant_label]}")
        self.buckets = np.asarray(config.histogram_buckets, dtype=np.float64)
        self.calls = series.counter("traces_spanmetrics_calls", "Spans seen.", labels)
        self.latency = series.histogram("traces_spanmetrics_latency", "Span durations in seconds.", labels,
                                        config.histogram_buckets)
        self.size = series.counter("traces_spanmetrics_size", "Estimated encoded span bytes.", labels)

    def observe(self, tenant: str, table: SpanTable) -> None:
        spans = table.spans
        if spans.num_rows == 0:
            return
        seconds = pc.divide(pc.cast(pc.fill_null(spans.column("duration_nano"), 0), pa.float64()), 1e9)
        seconds_np = seconds.to_numpy()
        # Prometheus `le` buckets: the first bound >= the value (len(buckets) is +Inf).
        bucket = np.searchsorted(self.buckets, seconds_np, side="left")
        columns = {
            "service": pc.fill_null(spans.column("service_name"), ""),
            "span_name": pc.fill_null(spans.column("name"), ""),
            "kind": pc.fill_null(spans.column("kind"), 0),
            "status": pc.fill_null(spans.column("status_code"), 0),
        }
        for i, key in enumerate(self.dimensions):
            columns[f"dim{i}"] = label_values(table, key)
        keys = list(columns)
        columns["bucket"] = pa.array(bucket, pa.int32())
        columns["seconds"] = seconds
        columns["size"] = pa.array(estimated_sizes(table))
        groups = pa.table(columns).group_by([*keys, "bucket"]).aggregate(
            [("seconds", "count"), ("seconds", "sum"), ("size", "sum")]
        )
        nb = len(self.buckets) + 1
        acc: dict[tuple[str, ...], list] = {}
        key_lists = [groups.column(k).to_pylist() for k in keys]
        rows = zip(*key_lists, groups.column("bucket").to_pylist(), groups.column("seconds_count").to_pylist(),
                   groups.column("seconds_sum").to_pylist(), groups.column("size_sum").to_pylist(), strict=True)
        for row in rows:
            service, name, kind, status, *dims = row[: len(keys)]
            b, count, total, size = row[len(keys):]
            kind_label = SPAN_KINDS[kind] if 0 <= kind < len(SPAN_KINDS) else SPAN_KINDS[0]
            status_label = STATUS_CODES[status] if 0 <= status < len(STATUS_CODES) else STATUS_CODES[0]
            labels = (service, name, kind_label, status_label, *dims)
            entry = acc.get(labels)
            if entry is None:
                entry = acc[labels] = [np.zeros(nb), 0.0, 0, 0.0]
            entry[0][b] += count
            entry[1] += total
            entry[2] += count
            entry[3] += size
        for labels, (counts, total, count, size) in acc.items():
            self.calls.inc(tenant, labels, count)
            self.latency.observe_counts(tenant, labels, counts, total)
            self.size.inc(tenant, labels, size)

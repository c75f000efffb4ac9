"""A metrics evaluator's state as JSON and merged (traceql/metrics_partial.py): what a sharding query-frontend
does with its queriers' metrics jobs. Evaluating trace A's spans and trace B's spans separately and merging
the two states gives the series of one evaluator over both, for every aggregate."""

from __future__ import annotations

import json
import math

import pytest
from test_traceql_metrics import RANGE, TRACE_A, resource_spans

from tempo_lite.spantable import flatten
from tempo_lite.traceql import parse
from tempo_lite.traceql.metrics import MetricsEvaluator, Series, TimeBuckets
from tempo_lite.traceql.metrics_partial import merge_partial, to_partial

PARTS = [flatten([r for r in resource_spans() if r.scope_spans[0].spans[0].trace_id == TRACE_A]),
         flatten([r for r in resource_spans() if r.scope_spans[0].spans[0].trace_id != TRACE_A])]
QUERIES = [
    "{ } | rate()",
    "{ } | count_over_time() by (resource.service.name)",
    "{ } | rate() by (span.code)",
    "{ } | avg_over_time(duration) by (resource.service.name)",
    "{ } | min_over_time(duration)",
    "{ } | max_over_time(span.code) by (name)",
    "{ } | sum_over_time(duration)",
    "{ } | quantile_over_time(duration, .5, .9, .99) by (resource.service.name)",
    "{ } | histogram_over_time(duration)",
    "{ } | count_over_time() by (name) | topk(1)",
    '{ } | compare({ resource.service.name = "frontend" })',
    '{ status = error } | rate()',
]


def comparable(series: list[Series]) -> dict[tuple, list[float]]:
    return {s.labels: [round(v, 12) if not math.isnan(v) else "nan" for v in s.values.tolist()] for s in series}


@pytest.mark.parametrize("query", QUERIES)
@pytest.mark.parametrize("buckets", [RANGE, TimeBuckets.instant_range(RANGE.start_ns, RANGE.end_ns)])
def test_merged_job_states_give_the_single_evaluators_series(query: str, buckets: TimeBuckets) -> None:
    whole = MetricsEvaluator(parse(query), buckets)
    for table in PARTS:
        whole.observe(table)
    merged = MetricsEvaluator(parse(query), buckets)
    for table in PARTS:
        job = MetricsEvaluator(parse(query), buckets)
        job.observe(table)
        merge_partial(merged, json.loads(json.dumps(to_partial(job))))  # across processes as JSON
    assert comparable(merged.result()) == comparable(whole.result())
    assert merged.inspected_spans == whole.inspected_spans == 5


def test_exemplars_travel_with_their_ids_and_stay_within_the_cap() -> None:
    query = parse("{ } | avg_over_time(duration)")
    merged = MetricsEvaluator(query, RANGE, exemplars=100)
    for table in PARTS:
        job = MetricsEvaluator(query, RANGE, exemplars=100)
        job.observe(table)
        merge_partial(merged, json.loads(json.dumps(to_partial(job))))
    [series] = merged.result()
    ids = sorted(dict(e.labels)["span:id"][1] for e in series.exemplars)
    assert ids == [f"{i:016x}" for i in range(1, 6)]
    capped = MetricsEvaluator(query, RANGE, exemplars=3)
    for table in PARTS:
        job = MetricsEvaluator(query, RANGE, exemplars=3)
        job.observe(table)
        merge_partial(capped, to_partial(job))
    assert len(capped.result()[0].exemplars) <= 3

"""TraceQL metrics: bucketing, functions, labels and second stages on hand-computed data, the parameters of
/api/metrics/*, and the HTTP endpoints end to end (OTLP/HTTP ingest, live-store then blocks)."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import trio
from conftest import Running, start_tempo, tempo_config_text
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from tempo_lite._gen import tempopb_pb2 as pb
from tempo_lite.errors import InvalidRequest
from tempo_lite.frontend.metrics_params import (
    default_step_ns,
    parse_query_instant,
    parse_query_range,
    parse_step_ns,
    parse_timestamp_ns,
)
from tempo_lite.spantable import flatten
from tempo_lite.traceql import parse
from tempo_lite.traceql.metrics import TimeBuckets, evaluate_metrics, log2_bucketize, log2_quantile

S = 1_000_000_000
T0 = 1_700_000_040  # a multiple of 60 s
TRACE_A = bytes.fromhex("0000000000000000000000000000a0a0")
TRACE_B = bytes.fromhex("b0b0000000000000000000000000b0b0")

# (trace, span id, parent, service, name, start offset s, duration ms, span.code, error status)
SPANS = [
    (TRACE_A, 1, 0, "frontend", "GET", 5, 3, 200, False),
    (TRACE_A, 2, 1, "backend", "db", 10, 10, 500, False),
    (TRACE_A, 3, 1, "frontend", "GET", 65, 100, None, False),
    (TRACE_B, 4, 0, "backend", "db", 70, 1000, 200, False),
    (TRACE_B, 5, 4, "frontend", "POST", 130, 5, 200, True),
]
NAN = float("nan")


def resource_spans() -> list[ResourceSpans]:
    out = []
    for trace, sid, parent, service, name, start_s, dur_ms, code, error in SPANS:
        start = (T0 + start_s) * S
        span = Span(
            trace_id=trace, span_id=sid.to_bytes(8, "big"), name=name,
            parent_span_id=parent.to_bytes(8, "big") if parent else b"",
            start_time_unix_nano=start, end_time_unix_nano=start + dur_ms * 1_000_000, kind=Span.SPAN_KIND_SERVER,
            status=Status(code=Status.STATUS_CODE_ERROR if error else Status.STATUS_CODE_UNSET),
        )
        if code is not None:
            span.attributes.append(KeyValue(key="code", value=AnyValue(int_value=code)))
        res = Resource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value=service))])
        out.append(ResourceSpans(resource=res, scope_spans=[ScopeSpans(spans=[span])]))
    return out


TABLE = flatten(resource_spans())
RANGE = TimeBuckets.range(T0 * S, (T0 + 180) * S, 60 * S)
STAMPS = [(T0 + 60 * i) * 1000 for i in range(4)]


def run(q: str, buckets: TimeBuckets = RANGE, exemplars: int = 0) -> dict[tuple, list[float]]:
    """labels -> values per interval (NaN where no sample), from one table."""
    series = evaluate_metrics(parse(q), [TABLE], buckets, exemplars=exemplars)
    return {tuple((k, v[1]) for k, v in s.labels): s.values.tolist() for s in series}


def same(got: dict, want: dict) -> bool:
    if set(got) != set(want):
        return False
    for k, vals in want.items():
        g = got[k]
        if len(g) != len(vals) or any(
            not (math.isnan(a) and math.isnan(b)) and not math.isclose(a, b, rel_tol=1e-12)
            for a, b in zip(g, vals, strict=True)
        ):
            return False
    return True


# ------------------------------------------------------------------------------------------------ pure


def test_range_aligns_start_down_end_up_and_adds_a_leading_step() -> None:
    b = TimeBuckets.range((T0 + 10) * S, (T0 + 130) * S, 60 * S)
    assert (b.start_ns, b.end_ns, b.count) == ((T0 - 60) * S, (T0 + 180) * S, 4)
    assert b.timestamps_ms().tolist() == STAMPS


def test_intervals_are_right_closed_and_spans_outside_are_dropped() -> None:
    ts = np.array([T0 - 60, T0 - 59, T0, T0 + 1, T0 + 180, T0 + 181]) * S
    assert RANGE.interval_of(ts).tolist() == [-1, 0, 0, 1, 3, -1]


def test_instant_bucket_includes_both_ends() -> None:
    b = TimeBuckets.instant_range(T0 * S, (T0 + 10) * S)
    assert b.interval_of(np.array([T0 - 1, T0, T0 + 10, T0 + 11]) * S).tolist() == [-1, 0, 0, -1]
    assert b.timestamps_ms().tolist() == [(T0 + 10) * 1000]


def test_log2_buckets_a_3ms_span_lands_in_0_004194304_s() -> None:
    assert log2_bucketize(np.array([3_000_000]))[0] / S == 0.004194304
    got = log2_bucketize(np.array([0, 1, 2, 3, 4, 5, 2**40, 2**40 + 1]))
    assert np.isnan(got[:2]).all()
    assert got[2:].tolist() == [2.0, 4.0, 4.0, 8.0, 2.0**40, 2.0**41]


def test_log2_quantile_exact_bucket_and_exponential_interpolation() -> None:
    maxes = np.array([2.0, 4.0, 8.0])
    counts = np.array([[1, 0, 0], [1, 3, 0], [2, 0, 0]])  # three intervals: mixed, only 4s, empty
    assert log2_quantile(0.5, maxes, counts).tolist()[0] == 4.0  # target 2 = cumulative count at bucket 4
    assert log2_quantile(1.0, maxes, counts).tolist()[0] == 8.0
    # target ceil(0.5*3) = 2 of 3 in the only bucket: 2^(log2(2) + (log2(4) - log2(2)) * 2/3)
    assert math.isclose(log2_quantile(0.5, maxes, counts)[1], 2 ** (1 + 2 / 3))
    assert log2_quantile(0.5, maxes, counts)[2] == 0.0  # Tempo writes 0.0 for an empty interval
    # Interpolation starts from the previous bucket present in the interval: 2 then 8, target 2 of 3.
    got = log2_quantile(0.6, maxes, np.array([[1], [0], [2]]))[0]
    assert math.isclose(got, 2 ** (1 + (3 - 1) * (2 - 1) / 2))


def test_count_over_time_by_service_is_dense_with_zeros() -> None:
    want = {
        (("resource.service.name", "backend"),): [0, 1, 1, 0],
        (("resource.service.name", "frontend"),): [0, 1, 1, 1],
    }
    assert same(run("{} | count_over_time() by (resource.service.name)"), want)


def test_ungrouped_series_has_the_function_name_label() -> None:
    assert same(run("{} | count_over_time()"), {(("__name__", "count_over_time"),): [0, 2, 2, 1]})
    assert same(run("{} | rate()"), {(("__name__", "rate"),): [0, 2 / 60, 2 / 60, 1 / 60]})


def test_duration_functions_are_in_seconds_and_empty_intervals_are_nan() -> None:
    q = "{} | {fn}(duration) by (resource.service.name)"
    be, fe = (("resource.service.name", "backend"),), (("resource.service.name", "frontend"),)
    assert same(run(q.replace("{fn}", "max_over_time")), {be: [NAN, 0.01, 1.0, NAN], fe: [NAN, 0.003, 0.1, 0.005]})
    assert same(run(q.replace("{fn}", "min_over_time")), {be: [NAN, 0.01, 1.0, NAN], fe: [NAN, 0.003, 0.1, 0.005]})
    assert same(run("{} | sum_over_time(span:duration)"), {(("__name__", "sum_over_time"),): [NAN, 0.013, 1.1, 0.005]})
    assert same(run("{} | avg_over_time(duration)"), {(("__name__", "avg_over_time"),): [NAN, 0.0065, 0.55, 0.005]})


def test_attribute_values_skip_missing_and_group_by_typed_values_with_nil() -> None:
    fe = (("resource.service.name", "frontend"),)
    be = (("resource.service.name", "backend"),)
    assert same(run("{} | sum_over_time(span.code) by (resource.service.name)"),
                {fe: [NAN, 200, NAN, 200], be: [NAN, 500, 200, NAN]})
    got = run("{} | count_over_time() by (span.code)")
    assert same(got, {(("span.code", 200),): [0, 1, 1, 1], (("span.code", 500),): [0, 1, 0, 0],
                      (("span.code", "nil"),): [0, 0, 1, 0]})
    # Nil labels are dropped individually; the value type is kept (int 200, not "200").
    got = run("{} | count_over_time() by (span.code, name)")
    assert (("name", "GET"),) in got and (("span.code", 200), ("name", "GET")) in got
    series = evaluate_metrics(parse("{} | count_over_time() by (span.code)"), [TABLE], RANGE)
    assert ("span.code", ("int", 200)) in [lab for s in series for lab in s.labels]


def test_quantile_over_time_uses_log2_buckets_per_interval() -> None:
    got = run("{} | quantile_over_time(duration, 0.5, 0.9)")
    assert same(got, {
        (("p", 0.5),): [0.0, 0.004194304, 0.134217728, 0.008388608],
        (("p", 0.9),): [0.0, 0.016777216, 1.073741824, 0.008388608],
    })


def test_histogram_over_time_has_one_series_per_bucket() -> None:
    got = run("{} | histogram_over_time(duration)")
    assert same(got, {
        (("__bucket", 0.004194304),): [0, 1, 0, 0],
        (("__bucket", 0.008388608),): [0, 0, 0, 1],
        (("__bucket", 0.016777216),): [0, 1, 0, 0],
        (("__bucket", 0.134217728),): [0, 0, 1, 0],
        (("__bucket", 1.073741824),): [0, 0, 1, 0],
    })
    got = run("{} | histogram_over_time(span.code) by (resource.service.name)")
    assert got[(("resource.service.name", "backend"), ("__bucket", 512.0))] == [0, 1, 0, 0]


def test_topk_and_bottomk_select_per_timestamp() -> None:
    q = "{} | max_over_time(duration) by (resource.service.name) | "
    be, fe = (("resource.service.name", "backend"),), (("resource.service.name", "frontend"),)
    assert same(run(q + "topk(1)"), {be: [NAN, 0.01, 1.0, NAN], fe: [NAN, NAN, NAN, 0.005]})
    assert same(run(q + "bottomk(1)"), {fe: [NAN, 0.003, 0.1, 0.005]})


def test_comparison_filter_drops_samples_and_converts_durations() -> None:
    q = "{} | max_over_time(duration) by (resource.service.name) "
    want = {(("resource.service.name", "backend"),): [NAN, NAN, 1.0, NAN],
            (("resource.service.name", "frontend"),): [NAN, NAN, 0.1, NAN]}
    assert same(run(q + "> 0.05"), want)
    assert same(run(q + "> 50ms"), want)
    assert run("{} | count_over_time() > 5") == {}


def test_filters_and_structural_pipelines_select_spans() -> None:
    assert same(run("{ status = error } | count_over_time()"), {(("__name__", "count_over_time"),): [0, 0, 0, 1]})
    assert same(run('{ name = "GET" } > { name = "db" } | count_over_time()'),
                {(("__name__", "count_over_time"),): [0, 1, 0, 0]})
    # trace A lasts 60.1 s, trace B 60.005 s
    assert same(run("{ trace:duration > 60050ms } | count_over_time()"),
                {(("__name__", "count_over_time"),): [0, 2, 1, 0]})


def test_instant_query_has_one_value_over_start_to_end() -> None:
    inst = TimeBuckets.instant_range(T0 * S, (T0 + 180) * S)
    assert same(run("{} | rate() by (resource.service.name)", inst),
                {(("resource.service.name", "backend"),): [2 / 180],
                 (("resource.service.name", "frontend"),): [3 / 180]})


def test_exemplars_carry_trace_id_are_limited_and_count_exemplars_carry_the_sample() -> None:
    series = evaluate_metrics(parse("{} | count_over_time()"), [TABLE], RANGE, exemplars=2)
    (s,) = series
    assert len(s.exemplars) == 2
    assert {e.interval for e in s.exemplars} == {1, 2}  # spread over time
    for e in s.exemplars:
        labels = dict(e.labels)
        assert labels["trace:id"][1] in (TRACE_A.hex().lstrip("0"), TRACE_B.hex())
        assert e.value == 2.0  # count_over_time measures nothing: the exemplar carries its interval's sample
    (r,) = evaluate_metrics(parse("{} | rate() by (resource.service.name)"), [TABLE], RANGE, exemplars=100)[1:]
    assert [(e.interval, e.value) for e in r.exemplars] == [(1, 1 / 60), (2, 1 / 60), (3, 1 / 60)]  # frontend
    (d,) = evaluate_metrics(parse("{} | max_over_time(duration)"), [TABLE], RANGE, exemplars=100)
    assert sorted(e.value for e in d.exemplars) == [0.003, 0.005, 0.01, 0.1, 1.0]


def test_compare_counts_attribute_values_of_selection_and_baseline() -> None:
    got = run('{} | compare({resource.service.name = "backend"}, 1)')
    meta = "__meta_type"
    # selection = the two backend spans, baseline = the three frontend spans
    assert got[((meta, "selection"), ("name", "db"))] == [0, 1, 1, 0]
    assert got[((meta, "baseline"), ("resource.service.name", "frontend"))] == [0, 1, 1, 1]
    assert got[((meta, "selection_total"), ("span.code", None))] == [0, 1, 1, 0]
    assert got[((meta, "baseline_total"), ("span.code", None))] == [0, 1, 0, 1]  # one frontend span has no code
    # topN=1: only the most frequent value per attribute, and the attribute is flagged
    names = [k for k in got if k[0] == (meta, "baseline") and k[1][0] == "name"]
    assert names == [((meta, "baseline"), ("name", "GET"))]
    assert got[(("__meta_error", "__too_many_values__"), ("name", None))] == []
    assert ((meta, "baseline_total"), ("statusMessage", None)) not in got  # empty status messages are not values
    windowed = run(f'{{}} | compare({{resource.service.name = "backend"}}, 10, {(T0 + 60) * S}, {(T0 + 120) * S})')
    assert windowed[((meta, "selection"), ("name", "db"))] == [0, 0, 1, 0]
    assert windowed[((meta, "baseline"), ("name", "db"))] == [0, 1, 0, 0]


# ------------------------------------------------------------------------------------------------ params


def test_timestamps_in_seconds_nanoseconds_fractions_and_rfc3339() -> None:
    assert parse_timestamp_ns("1700000000") == 1_700_000_000 * S
    assert parse_timestamp_ns("1700000000123456789") == 1_700_000_000_123_456_789
    assert parse_timestamp_ns("1700000000.1234") == 1_700_000_000_123_000_000
    assert parse_timestamp_ns("2023-11-14T22:13:20Z") == 1_700_000_000 * S
    assert parse_timestamp_ns("2023-11-14T23:13:20.5+01:00") == 1_700_000_000_500_000_000
    with pytest.raises(ValueError, match="invalid syntax"):
        parse_timestamp_ns("yesterday")


def test_step_as_seconds_or_duration_and_default_step() -> None:
    assert parse_step_ns("30") == 30 * S and parse_step_ns("0.5") == S // 2
    assert parse_step_ns("1m") == 60 * S and parse_step_ns("1h30m") == 5400 * S and parse_step_ns("1.5s") == 3 * S // 2
    with pytest.raises(InvalidRequest, match='cannot parse "abc" to a valid duration'):
        parse_step_ns("abc")
    assert default_step_ns(0, 3600 * S) == 15 * S
    assert default_step_ns(0, 86400 * S) == 300 * S
    assert default_step_ns(0, 30 * S) == 100_000_000
    assert default_step_ns(0, 5 * S) == 50_000_000


def test_range_parameters_defaults_and_limits() -> None:
    now = 1_700_003_600 * S
    p = parse_query_range({"query": "{} | rate()", "since": "15m"}, now)
    assert (p.start_ns, p.end_ns, p.step_ns, p.exemplars) == (now - 900 * S, now, 3 * S, 100)
    p = parse_query_range({"q": "{} | rate()", "query": "x", "start": "1700000000", "end": "1700000600",
                           "step": "30s", "exemplars": "500", "maxSeries": "3"}, now)
    assert (p.query, p.step_ns, p.exemplars, p.max_series) == ("{} | rate()", 30 * S, 100, 3)
    i = parse_query_instant({"q": "{} | rate()", "start": "1700000000", "end": "1700000600"}, now)
    assert i.instant and i.step_ns == 600 * S
    bad = {
        "end must be greater than start": {"start": "1700000600", "end": "1700000000"},
        "exceeds the maximum allowed duration of 24h0m0s": {"start": "1700000000", "end": "1700100000"},
        "step of 0.1s is too small": {"start": "1700000000", "end": "1700003600", "step": "0.1"},
        "could not parse 'start' parameter": {"start": "soon"},
        "zero or negative": {"step": "0"},
        "query is required": {"q": ""},
    }
    for message, extra in bad.items():
        with pytest.raises(InvalidRequest, match=message):
            parse_query_range({"q": "{} | rate()", **extra}, now)


def test_query_end_cutoff_clamps_recent_ends_like_tempo() -> None:
    now = 1_700_003_600 * S + 123_456_789
    q = {"q": "{} | rate()", "start": str(1_700_000_000), "step": "60s"}
    # An end within the cutoff moves back to now - 30s, floored to a step boundary.
    p = parse_query_range({**q, "end": str(now)}, now, end_cutoff_ns=30 * S)
    assert p.end_ns == 1_700_003_520 * S
    assert parse_query_range({**q, "end": str(now)}, now).end_ns == now  # 0 disables it
    # An end before the cutoff is left alone.
    assert parse_query_range({**q, "end": "1700003000"}, now, end_cutoff_ns=30 * S).end_ns == 1_700_003_000 * S
    # Instant: back by the fewest whole seconds, so end - start stays a whole number of seconds.
    i = parse_query_instant({"q": "{} | rate()", "since": "6h", "end": str(now)}, now, end_cutoff_ns=30 * S)
    assert i.end_ns == now - 30 * S and (i.end_ns - i.start_ns) % S == 0
    i = parse_query_instant({"q": "{} | rate()", "since": "1h", "end": str(now - 10 * S - 1)}, now,
                            end_cutoff_ns=30 * S)
    assert i.end_ns == now - 30 * S - 1  # back 20 s, the fewest whole seconds
    for parse_fn in (parse_query_range, parse_query_instant):
        with pytest.raises(InvalidRequest, match="query window falls entirely within query_end_cutoff"):
            parse_fn({"q": "{} | rate()", "start": str(now - 10 * S), "end": str(now)}, now, end_cutoff_ns=30 * S)


# ------------------------------------------------------------------------------------------------ HTTP


@pytest.fixture
async def metrics_tempo(
    nursery: trio.Nursery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Running]:
    """tempo-lite with the metrics routes (registered here until create_api registers them itself)."""
    import tempo_lite.api.app as api_app
    from tempo_lite.api.metrics import register_metrics_routes

    original = api_app.create_api

    def create_api(tl):  # noqa: ANN001, ANN202
        app = original(tl)
        if not any(r.rule == "/api/metrics/query_range" for r in app.url_map.iter_rules()):
            register_metrics_routes(app, tl)
        return app

    monkeypatch.setattr(api_app, "create_api", create_api)
    running = await start_tempo(nursery, tempo_config_text(tmp_path))
    yield running
    await running.stop()


def _series(doc: dict) -> dict[tuple, list[tuple[int, float]]]:
    out = {}
    for s in doc.get("series", []):
        labels = tuple((lab["key"], next(iter(lab["value"].values()))) for lab in s["labels"])
        out[labels] = [(int(x["timestampMs"]), x.get("value", 0.0)) for x in s.get("samples", [])]
    return out


async def _check_endpoints(tempo: Running, http: httpx.AsyncClient, where: str) -> None:
    base = tempo.url() + "/api/metrics/"
    window = {"start": str(T0), "end": str(T0 + 180), "step": "60s", "exemplars": "0"}
    by_service = "{} | count_over_time() by (resource.service.name)"
    r = await http.get(base + "query_range", params={"q": by_service, **window})
    assert r.status_code == 200, (where, r.text)
    assert _series(r.json()) == {
        (("resource.service.name", "backend"),): [(STAMPS[0], 0.0), (STAMPS[1], 1), (STAMPS[2], 1), (STAMPS[3], 0.0)],
        (("resource.service.name", "frontend"),): [(STAMPS[0], 0.0), (STAMPS[1], 1), (STAMPS[2], 1), (STAMPS[3], 1)],
    }, where
    assert r.json()["series"][0]["samples"][0] == {"timestampMs": str(STAMPS[0])}  # zero value omitted
    r = await http.get(base + "query_range", params={"q": "{} | max_over_time(duration) by (span.code)", **window})
    assert _series(r.json()) == {
        (("span.code", "200"),): [(STAMPS[1], 0.003), (STAMPS[2], 1.0), (STAMPS[3], 0.005)],
        (("span.code", "500"),): [(STAMPS[1], 0.01)],
        (("span.code", "nil"),): [(STAMPS[2], 0.1)],
    }, where
    r = await http.get(base + "query", params={"query": "{ resource.service.name = \"frontend\" } | count_over_time()",
                                               "start": str(T0), "end": str(T0 + 180)})
    assert r.json()["series"] == [{"labels": [{"key": "__name__", "value": {"stringValue": "count_over_time"}}],
                                   "value": 3.0}], where
    # protobuf on request, exemplars with trace IDs, maxSeries -> PARTIAL
    r = await http.get(base + "query_range", headers={"Accept": "application/protobuf"},
                       params={"q": "{} | rate() by (name)", **window, "exemplars": "10", "maxSeries": "2"})
    msg = pb.QueryRangeResponse.FromString(r.content)
    assert msg.status == pb.PARTIAL and "maximum series limit of 2" in msg.message
    assert [s.labels[0].value.string_value for s in msg.series] == ["GET", "POST"]
    ids = {lab.value.string_value for s in msg.series for e in s.exemplars for lab in e.labels if lab.key == "trace:id"}
    assert ids and ids <= {TRACE_A.hex().lstrip("0"), TRACE_B.hex()}
    r = await http.get(base + "query_range", params={"q": "{} | compare({status = error})", **window})
    totals = [s for s in r.json()["series"] if s["labels"][0]["value"] == {"stringValue": "selection_total"}]
    assert {"key": "name", "value": {}} in [s["labels"][1] for s in totals], where
    r = await http.get(base + "query_range", params={"q": "{} | rate(", **window})
    assert r.status_code == 400 and r.text.startswith("invalid TraceQL query: parse error"), r.text
    r = await http.get(base + "query_range", params={"q": "{}", **window})
    assert r.status_code == 400 and "not a metrics query" in r.text


async def test_metrics_endpoints_from_live_store_then_blocks(metrics_tempo: Running, http: httpx.AsyncClient) -> None:
    tempo = metrics_tempo
    body = ExportTraceServiceRequest(resource_spans=resource_spans()).SerializeToString()
    r = await http.post(tempo.url("otlp_http") + "/v1/traces", content=body,
                        headers={"Content-Type": "application/x-protobuf"})
    assert r.status_code == 200, r.text
    with trio.fail_after(10):
        while tempo.tl.livestore.snapshot("single-tenant").num_spans < len(SPANS):
            await trio.sleep(0.02)
    await _check_endpoints(tempo, http, "live")
    assert await tempo.tl.blockbuilder.flush_all() == 1
    assert tempo.tl.livestore.snapshot("single-tenant").num_spans == len(SPANS)  # recent window kept
    await _check_endpoints(tempo, http, "live and block")  # spans in both sources count once
    tempo.tl.livestore.complete_block_timeout = 0
    tempo.tl.livestore.expire()
    assert tempo.tl.livestore.snapshot("single-tenant").num_spans == 0
    await _check_endpoints(tempo, http, "block")

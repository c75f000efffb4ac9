"""The frontend's request parameters (tempo_lite/frontend/params.py, metrics_params.py): what each search and
metrics parameter accepts, the defaults, and the 400 message for what it refuses (Tempo's wording)."""

from __future__ import annotations

import pytest

from tempo_lite.errors import InvalidRequest
from tempo_lite.frontend.metrics_params import (
    DEFAULT_SINCE_NS,
    MAX_EXEMPLARS,
    SECOND,
    default_step_ns,
    parse_query_instant,
    parse_query_range,
    parse_step_ns,
    parse_timestamp_ns,
)
from tempo_lite.frontend.params import parse_go_duration_ns, parse_logfmt, parse_search, parse_time_range

LIMITS = {"default_limit": 20, "max_limit": 500, "max_spss": 100, "max_duration_s": 3600.0}
NOW_NS = 1_700_000_000 * SECOND


def test_search_defaults_when_only_a_query_is_given() -> None:
    p = parse_search({"q": "{}"}, **LIMITS)
    assert (p.query, p.tags, p.limit, p.spss, p.min_duration_ns, p.max_duration_ns) == ("{}", None, 20, 3, 0, 0)
    assert not p.time.is_set


def test_search_reads_durations_limit_spss_and_the_time_range() -> None:
    p = parse_search({"q": "{}", "minDuration": "1.5ms", "maxDuration": "2s", "limit": "7", "spss": "9",
                      "start": "100", "end": "200"}, **LIMITS)
    assert (p.min_duration_ns, p.max_duration_ns, p.limit, p.spss) == (1_500_000, 2 * SECOND, 7, 9)
    assert (p.time.start_ns, p.time.end_ns) == (100 * SECOND, 200 * SECOND)


@pytest.mark.parametrize(("params", "message"), [
    ({"q": "{}", "tags": "a=b"}, "can't specify tags and q in the same query"),
    ({"q": "{}", "limit": "0"}, "invalid limit: must be a positive number"),
    ({"q": "{}", "limit": "501"}, "invalid limit: must be less than or equal to 500"),
    ({"q": "{}", "limit": "ten"}, "invalid limit: strconv.ParseUint"),
    ({"q": "{}", "spss": "101"}, "invalid spss: must be less than or equal to 100"),
    ({"q": "{}", "minDuration": "5s", "maxDuration": "1s"}, "invalid maxDuration: must be greater than minDuration"),
    ({"q": "{}", "minDuration": "5 seconds"}, "invalid minDuration: time: invalid duration"),
    ({"q": "{}", "start": "200", "end": "100"}, "start must be before end"),
    ({"q": "{}", "start": "0", "end": "7200"}, "exceeds 3600s"),
    ({"q": "x" * (128 * 1024 + 1)}, "query is larger than the maximum"),
])
def test_search_refuses_bad_parameters_with_a_message(params: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message.replace("(", r"\(")):
        parse_search(params, **LIMITS)


def test_legacy_tags_come_from_logfmt_or_from_unknown_parameters() -> None:
    assert parse_search({"tags": 'service.name=api http.url="/a b"'}, **LIMITS).tags == {
        "service.name": "api", "http.url": "/a b"}
    assert parse_search({"service.name": "api", "limit": "5"}, **LIMITS).tags == {"service.name": "api"}
    with pytest.raises(InvalidRequest, match="duplicate key 'a'"):
        parse_logfmt("a=1 a=2")
    with pytest.raises(InvalidRequest, match="unterminated quote"):
        parse_logfmt('a="open')


def test_time_range_of_zero_means_unset_and_ids_out_of_uint32_are_refused() -> None:
    assert not parse_time_range({}).is_set
    assert parse_time_range({"start": "", "end": ""}).end_ns == 0
    with pytest.raises(InvalidRequest, match="out of range"):
        parse_time_range({"end": str(1 << 32)})


def test_go_durations_sum_their_parts() -> None:
    assert parse_go_duration_ns("1h30m", "d") == 5400 * SECOND
    assert parse_go_duration_ns("1.5us", "d") == 1500
    assert parse_go_duration_ns("0", "d") == 0


def test_metrics_range_defaults_to_the_last_hour_with_a_240_point_step() -> None:
    p = parse_query_range({"q": "{} | rate()"}, NOW_NS)
    assert (p.start_ns, p.end_ns) == (NOW_NS - DEFAULT_SINCE_NS, NOW_NS)
    assert p.step_ns == default_step_ns(p.start_ns, p.end_ns) == 15 * SECOND
    assert (p.exemplars, p.instant) == (MAX_EXEMPLARS, False)


def test_metrics_timestamps_are_seconds_nanoseconds_or_rfc3339() -> None:
    assert parse_timestamp_ns("1700000000") == NOW_NS
    assert parse_timestamp_ns(str(NOW_NS)) == NOW_NS
    assert parse_timestamp_ns("1700000000.5") == NOW_NS + SECOND // 2
    assert parse_timestamp_ns("2023-11-14T22:13:20.000000001Z") == NOW_NS + 1


def test_metrics_step_is_seconds_or_a_duration() -> None:
    assert parse_step_ns("30") == 30 * SECOND
    assert parse_step_ns("1m") == 60 * SECOND
    assert parse_step_ns("1.5s") == 1_500_000_000
    with pytest.raises(InvalidRequest, match="to a valid duration"):
        parse_step_ns("soon")


@pytest.mark.parametrize(("params", "message"), [
    ({}, "query is required"),
    ({"q": "{} | rate()", "start": "200", "end": "100"}, "end must be greater than start"),
    ({"q": "{} | rate()", "since": "2d"}, "exceeds the maximum allowed duration of 24h0m0s"),
    ({"q": "{} | rate()", "since": "an hour"}, "could not parse 'since' parameter"),
    ({"q": "{} | rate()", "step": "0"}, "zero or negative query resolution step"),
    ({"q": "{} | rate()", "step": "100ms"}, "the max number of points is 10000"),
    ({"q": "{} | rate()", "exemplars": "-1"}, "invalid exemplars: must not be negative"),
])
def test_metrics_range_refuses_bad_parameters_with_a_message(params: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        parse_query_range(params, NOW_NS)


def test_metrics_end_cutoff_clamps_the_end_to_a_step_and_instant_to_whole_seconds() -> None:
    ranged = parse_query_range({"q": "{} | rate()", "step": "60"}, NOW_NS + 30 * SECOND, end_cutoff_ns=45 * SECOND)
    assert ranged.end_ns % (60 * SECOND) == 0 and ranged.end_ns <= NOW_NS - 15 * SECOND
    instant = parse_query_instant({"q": "{} | rate()"}, NOW_NS, end_cutoff_ns=SECOND // 2)
    assert instant.instant and instant.end_ns == NOW_NS - SECOND
    assert instant.step_ns == instant.end_ns - instant.start_ns

"""TraceQL parsing under hostile text: every query parses or is a `TraceQLError` (HTTP 400), nothing else."""

from __future__ import annotations

from fuzzing import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tempo_lite.traceql import parse, parse_attribute
from tempo_lite.traceql.ast import Query, TraceQLError

# parse() raises the recursion limit once; do it before hypothesis records the limit it restores.
parse("{}")

FUZZ = settings(max_examples=examples(400), deadline=None, suppress_health_check=[HealthCheck.too_slow])

TOKENS = [
    "{", "}", "(", ")", "[", "]", ",", "|", "&&", "||", "!", "=", "!=", "=~", "!~", ">", ">=", "<", "<=",
    "+", "-", "*", "/", "%", "^", ">>", "<<", "~", "!>>", "!<<", "&>>", "&<<", "&~", "!~",
    ".a", ".service.name", "span.x", "resource.service.name", "event.name", "link.traceID", "instrumentation:name",
    "span:duration", "trace:rootService", "parent.x", "duration", "name", "status", "kind", "statusMessage",
    "rootName", "traceDuration", "nestedSetLeft", "true", "false", "nil", "ok", "error", "unset", "server", "client",
    "1", "0", "-1", "1.5", ".5", "1e9", "1.5e-3", "9223372036854775807", "9223372036854775808", "1s", "1.5ms",
    "100us", "2h30m", "1d", "1y", "1x", "\"a\"", "\"\\u00e9\"", "\"\\x\"", "`raw`", "\"unterminated",
    "count()", "avg(duration)", "min(", "max(.a)", "sum(span.x)", "by(.a)", "select(.a, .b)", "coalesce()",
    "rate()", "count_over_time()", "quantile_over_time(duration, .5, .9)", "histogram_over_time(duration)",
    "min_over_time(duration)", "compare({ .a = 1 }, 10, 0, 100)", "topk(5)", "bottomk(0)", "with(sample=0.1)",
    "with(most_recent=true)", " ", "\n", "\t", "#", "'", "\\", "\x00", "\ud800", "é", "😀",
]
token_soup = st.lists(st.sampled_from(TOKENS), max_size=40).map(" ".join)
huge_numbers = st.integers(20, 6000).map(lambda n: "{ .a = " + "9" * n + " }")
huge_durations = st.tuples(st.integers(20, 6000), st.sampled_from(["s", "ms", "h", "h1m", ".5s"])).map(
    lambda t: "{ duration > " + "1" * t[0] + t[1] + " }"
)


def parses_or_refuses(query: str) -> None:
    try:
        result = parse(query)
    except TraceQLError as exc:
        assert exc.http_status == 400 and exc.message.startswith("invalid TraceQL query")
        return
    assert isinstance(result, Query)


@FUZZ
@given(query=token_soup)
def test_token_soup_parses_or_is_a_query_error(query: str) -> None:
    parses_or_refuses(query)


@FUZZ
@given(query=st.text(max_size=200))
def test_arbitrary_text_parses_or_is_a_query_error(query: str) -> None:
    parses_or_refuses(query)


@settings(max_examples=examples(60), deadline=None)
@given(query=st.one_of(huge_numbers, huge_durations))
def test_numbers_of_thousands_of_digits_are_query_errors(query: str) -> None:
    parses_or_refuses(query)


@FUZZ
@given(name=st.one_of(token_soup, st.text(max_size=60)))
def test_tag_names_parse_or_are_query_errors(name: str) -> None:
    try:
        parse_attribute(name)
    except TraceQLError as exc:
        assert exc.http_status == 400

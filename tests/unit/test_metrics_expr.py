"""Arithmetic between TraceQL metrics queries ([main]): parsing, label matching, broadcasting, scalars with
integer math, NaN for division by zero; and through the metrics API over live, block and split data."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from test_metrics_sources import WINDOW, _data, _forms, _tempo
from test_traceql_metrics import RANGE, TABLE

from tempo_lite._gen import tempopb_pb2 as pb
from tempo_lite.frontend.metrics import run_query_instant, run_query_range
from tempo_lite.traceql.ast import TraceQLError
from tempo_lite.traceql.metrics import evaluate_metrics
from tempo_lite.traceql.metrics_expr import BinOp, Leaf, Scalar, combine, leaves, parse_metrics_expression

NAN = float("nan")
BY_SERVICE = "{ } | count_over_time() by (resource.service.name)"


def run(text: str) -> dict[tuple, list[float]]:
    expr = parse_metrics_expression(text)
    assert expr is not None
    results = {id(leaf): evaluate_metrics(leaf.query, [TABLE], RANGE) for leaf in leaves(expr)}
    return {tuple((k, v[1]) for k, v in s.labels): s.values.tolist() for s in combine(expr, results)}


def same(got: list[float], want: list[float]) -> bool:
    return len(got) == len(want) and all((math.isnan(a) and math.isnan(b)) or math.isclose(a, b)
                                         for a, b in zip(got, want, strict=True))


def test_queries_that_are_not_arithmetic_are_left_to_the_parser() -> None:
    for text in ("{ } | rate()", "({ } | rate())", '({ name = "GET" } && { }) | rate()', "{ .a = 1 + 2 } | rate()"):
        assert parse_metrics_expression(text) is None, text


def test_precedence_and_parenthesised_subexpressions() -> None:
    expr = parse_metrics_expression("2 + 3 * ({ } | rate()) - ((1 / 2) * ({ } | count_over_time()))")
    assert isinstance(expr, BinOp) and expr.op == "-"
    assert isinstance(expr.lhs, BinOp) and expr.lhs.op == "+" and expr.lhs.lhs == Scalar(2)
    assert isinstance(expr.lhs.rhs, BinOp) and expr.lhs.rhs.op == "*"
    assert [leaf.text for leaf in leaves(expr)] == ["{ } | rate()", "{ } | count_over_time()"]
    assert isinstance(leaves(expr)[0], Leaf)
    # Strings and braces may hold parentheses and operators.
    expr = parse_metrics_expression('({ name = "a)(+" } | rate()) + ({ } | rate())')
    assert [leaf.query.pipeline is not None for leaf in leaves(expr)] == [True, True]


@pytest.mark.parametrize(("text", "message"), [
    ("({ } | rate()) / ({ })", "is not a metrics query"),
    ("({ } | rate()) /", "expected `(query) op (query)`"),
    ("1 + 2", "needs at least one metrics query"),
    ("({ } | rate(x)) + ({ } | rate())", "parse error"),
])
def test_bad_expressions_are_400s(text: str, message: str) -> None:
    with pytest.raises(TraceQLError, match=re.escape(message)):
        parse_metrics_expression(text)


def test_series_match_by_labels_and_an_unlabelled_side_is_broadcast() -> None:
    got = run(f"({BY_SERVICE}) / ({{ }} | count_over_time())")  # share of each service; 0/0 is NaN
    assert set(got) == {(("resource.service.name", "backend"),), (("resource.service.name", "frontend"),)}
    assert same(got[(("resource.service.name", "backend"),)], [NAN, 0.5, 0.5, 0.0])
    assert same(got[(("resource.service.name", "frontend"),)], [NAN, 0.5, 0.5, 1.0])
    # Only matching label sets survive: errors exist for frontend only.
    got = run(f"({BY_SERVICE}) - ({{ status = error }} | count_over_time() by (resource.service.name))")
    assert list(got) == [(("resource.service.name", "frontend"),)]
    assert same(got[(("resource.service.name", "frontend"),)], [0.0, 1.0, 1.0, 0.0])


def test_scalars_use_integer_math_when_both_are_integers() -> None:
    assert run("100 * ({ status = error } | count_over_time())") == {(): [0.0, 0.0, 0.0, 100.0]}
    assert run("(1 / 2) * ({ } | count_over_time())") == {(): [0.0, 0.0, 0.0, 0.0]}
    assert run("(1.0 / 2) * ({ } | count_over_time())") == {(): [0.0, 1.0, 1.0, 0.5]}
    assert run("2 + 3 * ({ } | count_over_time())") == {(): [2.0, 8.0, 8.0, 5.0]}
    assert run("(2) + (3) * ({ } | count_over_time())") == {(): [2.0, 8.0, 8.0, 5.0]}
    assert run("({ } | count_over_time()) / 0") == {}  # every sample NaN: the series is dropped


async def test_arithmetic_through_the_metrics_api_over_every_form(tmp_path: Path) -> None:
    q = "({ status = error } | rate() by (resource.service.name)) / ({ } | rate() by (resource.service.name))"
    live, _ = _forms(_data())["live"]
    ref = await run_query_range(await _tempo(tmp_path / "ref", live, []), ["t"], {"q": q, **WINDOW})
    assert ref.series and all(0 <= x.value <= 1 for s in ref.series for x in s.samples)
    assert all(lab.key == "resource.service.name" for s in ref.series for lab in s.labels)
    assert not any(s.exemplars for s in ref.series)
    for name, (live, blocks) in _forms(_data()).items():
        got = await run_query_range(await _tempo(tmp_path / name.replace(" ", "-"), live, blocks), ["t"],
                                    {"q": q, **WINDOW, "exemplars": "10"})
        assert [(list(s.labels), [(x.timestamp_ms, round(x.value, 12)) for x in s.samples]) for s in got.series] == [
            (list(s.labels), [(x.timestamp_ms, round(x.value, 12)) for x in s.samples]) for s in ref.series], name
    instant = await run_query_instant(await _tempo(tmp_path / "instant", live, []), ["t"],
                                      {"q": "100 * (" + q + ")", "start": WINDOW["start"], "end": WINDOW["end"]})
    assert isinstance(instant, pb.QueryInstantResponse) and instant.series
    assert all(0 <= s.value <= 100 for s in instant.series)

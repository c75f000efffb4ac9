"""Pipelines evaluated column-wise (`evaluate_columns` via `engine_pipeline.PipelineColumns`: structural
operators, `&&`/`||` across spansets, scalar filters, `by()`, `coalesce()`, `select()`) give exactly the
answer of the per-trace walk (`evaluate`): the same traces in the same order, the same spansets in the
same order with the same matched counts and attributes, the same shown spans (`spss`) with the same
fields, and the same errors. Checked over generated tables (hypothesis), over every query of the search
column tests, and over Tempo's conformance examples; and the walk is not used for what is column-wise."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from conformance import FIXTURE_CASES, params
from fuzzing import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData
from test_search_columns import EXTRA_QUERIES, TABLES
from test_search_pushdown import QUERIES as PUSHDOWN_QUERIES
from test_traceql_engine import _CONDS, _OPS, CASES, _traces
from traceql_fixtures import substitute

from tempo_lite import spantable
from tempo_lite.traceql import engine
from tempo_lite.traceql.ast import SpansetOp, TraceQLError
from tempo_lite.traceql.engine import evaluate, evaluate_columns
from tempo_lite.traceql.engine_columns import SpansetColumns
from tempo_lite.traceql.engine_results import TraceMatch, typed_values
from tempo_lite.traceql.engine_structural import NestedSets, structural
from tempo_lite.traceql.engine_structural_cols import structural_mask
from tempo_lite.traceql.engine_values import EvaluationError


def _from_walk(matches: list[TraceMatch]) -> list:
    return [
        (m.trace_id, [
            (ss.matched, ss.attributes, [(sp.span_id, sp.start_unix_nano, sp.duration_nano, sp.name, sp.attributes)
                                         for sp in ss.spans])
            for ss in m.spansets
        ])
        for m in matches
    ]


def _from_columns(c: SpansetColumns) -> list:
    n = len(c.shown_set)
    idx = pa.array(np.arange(n, dtype=np.int64))
    values = [(key, typed_values(col, idx)) for key, col in c.values]
    span_ids = c.span_id.to_pylist()
    starts = c.start.to_pylist()
    durations = c.duration.to_pylist()
    names = c.name.to_pylist() if c.name is not None else [None] * n
    shown = c.shown_set.tolist()
    out: list = [(t, []) for t in c.trace_ids.to_pylist()]
    for s, (t, matched) in enumerate(zip(c.set_trace.tolist(), c.set_matched.tolist(), strict=True)):
        spans = [
            (span_ids[j], starts[j], durations[j], names[j] or None,
             [(k, value) for k, v in values if (value := v[j]) is not None])
            for j in range(n) if shown[j] == s
        ]
        out[t][1].append((matched, c.set_attrs[s] if c.set_attrs is not None else [], spans))
    return out


def _outcome(run, *args, **kwargs) -> object:
    try:
        return run(*args, **kwargs)
    except (EvaluationError, TraceQLError) as exc:
        return (type(exc), str(exc))


def _assert_same(query: str, table: spantable.SpanTable, spss: int, limit: int | None) -> None:
    walk = _outcome(evaluate, query, table, spss=spss, limit=limit)
    cols = _outcome(evaluate_columns, query, table, spss=spss, limit=limit)
    if isinstance(walk, tuple) or isinstance(cols, tuple):
        assert walk == cols, query
        return
    assert _from_columns(cols) == _from_walk(walk), f"{query} spss={spss} limit={limit}"


# ---------------------------------------------------------------------------------------------
# Every query of the column-wise search tests, and Tempo's conformance examples.


@pytest.mark.parametrize("q", PUSHDOWN_QUERIES + EXTRA_QUERIES)
@pytest.mark.parametrize("table_name", list(TABLES))
def test_search_column_queries_agree_with_the_walk(q: str, table_name: str) -> None:
    for spss, limit in ((1, None), (3, None), (2, 3)):
        _assert_same(q, TABLES[table_name], spss, limit)



@pytest.mark.parametrize("case", params(FIXTURE_CASES, CASES, lambda i, c: f"{i}-{c['query'][:40]}"))
@pytest.mark.parametrize("table_name", ["fixture A", "fixture A in a block"])
def test_tempo_examples_agree_with_the_walk(case: dict, table_name: str) -> None:
    query = substitute(case["query"])
    for spss in (1, 100):
        _assert_same(query, TABLES[table_name], spss, None)


# ---------------------------------------------------------------------------------------------
# Generated traces and pipelines.

_TAILS = [
    "", " | count() > 1", " | count() = 1", " | avg(duration) > 1020", " | sum(duration) >= 2000",
    " | min(span.code) < 500", " | max(duration) > 2030", " | by(resource.service.name)",
    " | count() > 0 | by(name)", " | by(span.code) | select(.tag)", " | select(.tag)", " | coalesce()",
    " | count() > 1 | coalesce()", " | avg(duration) > 0 | count() > 0", " | select(event.ev)",
]


@st.composite
def _queries(draw: st.DrawFn) -> str:
    def filt() -> str:
        a = draw(st.sampled_from(_CONDS))
        if draw(st.booleans()):
            a = f"{a} {draw(st.sampled_from(['&&', '||']))} {draw(st.sampled_from(_CONDS))}"
        return "{ " + a + " }"

    def spanset(depth: int) -> str:
        if depth == 0 or draw(st.booleans()):
            return filt()
        return f"({spanset(depth - 1)} {draw(st.sampled_from(_OPS))} {spanset(depth - 1)})"

    q = spanset(2)
    if draw(st.booleans()):
        q = f"{q} {draw(st.sampled_from(_OPS))} {spanset(1)}"
    q += draw(st.sampled_from(_TAILS))
    if draw(st.integers(0, 3)) == 0:
        q += f" | {spanset(1)}"
    return q


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_traces(), query=_queries(), spss=st.integers(1, 4), limit=st.sampled_from([None, 1, 2]))
def test_generated_pipelines_agree_with_the_walk(data: TracesData, query: str, spss: int, limit: int | None) -> None:
    live = spantable.flatten(data.resource_spans)
    block = spantable.dedicate(spantable.with_nested_sets(spantable.sort_by_trace(live)), ["tag"])
    for table in (live, block):
        _assert_same(query, table, spss, limit)


# ---------------------------------------------------------------------------------------------
# Structural operators: the column-wise masks are the per-trace relation, for every operator.


def _nested_numbers(children: dict[int, list[int]], n: int) -> list[list[int]]:
    """Nested-set (left, right) of each span of a tree rooted at span 0, numbered depth first."""
    lr = [[0, 0] for _ in range(n)]
    counter = 0

    def visit(i: int) -> None:
        nonlocal counter
        counter += 1
        lr[i][0] = counter
        for c in children.get(i, []):
            visit(c)
        counter += 1
        lr[i][1] = counter

    visit(0)
    return lr


@st.composite
def _forest(draw: st.DrawFn) -> tuple[NestedSets, np.ndarray, np.ndarray, np.ndarray]:
    """Traces of random trees (some spans disconnected), as nested sets in trace order, and masks a, b."""
    left: list[int] = []
    right: list[int] = []
    parent: list[int] = []
    trace: list[int] = []
    for t in range(draw(st.integers(1, 4))):
        n = draw(st.integers(1, 8))
        parents = [-1] + [draw(st.integers(0, i - 1)) for i in range(1, n)]
        children: dict[int, list[int]] = {}
        for i, p in enumerate(parents[1:], 1):
            children.setdefault(p, []).append(i)
        lr = _nested_numbers(children, n)
        for i in range(n):
            gone = i > 0 and draw(st.integers(0, 7)) == 0
            left.append(0 if gone else lr[i][0])
            right.append(0 if gone else lr[i][1])
            parent.append(0 if gone else (lr[parents[i]][0] if i else -1))
            trace.append(t)
    n = len(left)
    a = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    b = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    nested = NestedSets(np.array(left, np.int64), np.array(right, np.int64), np.array(parent, np.int64))
    return nested, np.array(trace, np.int64), a, b


@settings(max_examples=examples(200), deadline=None)
@given(forest=_forest(), op=st.sampled_from([o for o in SpansetOp if o not in (SpansetOp.AND, SpansetOp.UNION)]))
def test_structural_masks_are_the_per_trace_relation(forest, op: SpansetOp) -> None:
    nested, trace, a, b = forest
    got = structural_mask(op, a, b, trace, nested)
    want = np.zeros(len(a), dtype=bool)
    for t in np.unique(trace):
        rows = np.flatnonzero(trace == t)
        want[structural(op, rows[a[rows]], rows[b[rows]], nested)] = True
    assert np.flatnonzero(got).tolist() == np.flatnonzero(want).tolist()


# ---------------------------------------------------------------------------------------------
# What is column-wise does not walk.

COLUMN_WISE = [
    '{ span.http.method = "POST" } && { status = error }',
    '{ span.http.method = "POST" } || { kind = client }',
    *(f'{{ kind = server }} {op} {{ span.http.method = "GET" }}' for op in _OPS),
    '({ kind = server } > { }) >> ({ status = error } || { span.http.method = "PUT" })',
    "{ kind = server } | count() > 1",
    "{ } | avg(duration) > 1ms | count() > 2",
    "{ } | min(duration) < 1ms",
    "{ } | max(span.http.status_code) >= 500",
    "{ } | sum(duration) > 10ms",
    "{ } | by(span.http.method)",
    "{ kind = server } | count() > 1 | by(resource.service.name) | select(span.http.method)",
    "{ } > { } | coalesce()",
    "{ status = error } | select(span.http.method, duration)",
]


@pytest.mark.parametrize("q", COLUMN_WISE)
def test_column_wise_pipelines_do_not_walk(q: str, monkeypatch: pytest.MonkeyPatch) -> None:
    table = TABLES["generated"]
    want = _from_walk(evaluate(q, table, spss=2))
    assert want, f"{q} matches nothing: not a useful case"

    def no_walk(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"{q} walked trace by trace")

    monkeypatch.setattr(engine._Evaluator, "_walk", no_walk)
    assert _from_columns(evaluate_columns(q, table, spss=2)) == want

"""TraceQL parser and validator: Tempo's own query corpus by outcome, plus focused behaviour checks."""

from __future__ import annotations

import pytest
from conformance import TRACEQL_EXAMPLES, load_yaml, params, requires

from tempo_lite.errors import InvalidRequest
from tempo_lite.traceql import compile_regex, parse, parse_attribute, parse_duration, parse_lenient_filter
from tempo_lite.traceql.ast import (
    Aggregate,
    AggregateOp,
    Attribute,
    BinaryOp,
    BottomK,
    GroupBy,
    Intrinsic,
    Kind,
    MetricsAggregate,
    MetricsFilter,
    MetricsOp,
    Op,
    Pipeline,
    Query,
    ScalarFilter,
    Scope,
    Select,
    SpansetFilter,
    SpansetOp,
    SpansetOperation,
    Static,
    StaticType,
    Status,
    TopK,
    TraceQLError,
    UnaryOp,
    format_duration,
    format_float,
    left_spine,
    render,
    result_key,
)
from tempo_lite.traceql.parser import parse_tree

EXAMPLES = load_yaml(TRACEQL_EXAMPLES)


def _cases(category: str) -> list[str]:
    return list(EXAMPLES.get(category) or [])


def _category(query: str) -> str:
    try:
        parse(query)
    except TraceQLError as exc:
        return exc.category
    return "valid"


def _filter_expr(query: str) -> object:
    result = parse(query)
    (stage,) = result.pipeline.stages
    assert isinstance(stage, SpansetFilter)
    return stage.expr


a, b, c = Attribute("a"), Attribute("b"), Attribute("c")


@requires(TRACEQL_EXAMPLES)
def test_corpus_has_every_category() -> None:
    for category in ("valid", "parse_fails", "validate_fails", "unsupported"):
        assert len(_cases(category)) > 10, category


@pytest.mark.parametrize("query", params(TRACEQL_EXAMPLES, _cases("valid")))
def test_corpus_valid_queries_parse_and_validate(query: str) -> None:
    assert isinstance(parse(query), Query)


@pytest.mark.parametrize("query", params(TRACEQL_EXAMPLES, _cases("parse_fails")))
def test_corpus_parse_failures_are_parse_errors(query: str) -> None:
    assert _category(query) == "parse"


@pytest.mark.parametrize("query", params(TRACEQL_EXAMPLES, _cases("validate_fails")))
def test_corpus_validation_failures_are_validate_errors(query: str) -> None:
    assert _category(query) == "validate"


@pytest.mark.parametrize("query", params(TRACEQL_EXAMPLES, _cases("unsupported")))
def test_corpus_unsupported_queries_parse_or_are_unsupported(query: str) -> None:
    assert _category(query) in ("valid", "unsupported")


# ---- errors


def test_error_is_an_invalid_request_with_position() -> None:
    with pytest.raises(TraceQLError) as info:
        parse("{ .a = 1 }\n  && { .b == 2 }")
    err = info.value
    assert isinstance(err, InvalidRequest) and err.http_status == 400
    assert (err.category, err.line, err.col) == ("parse", 2, 12)
    assert err.message.startswith("invalid TraceQL query: parse error at line 2, col 12: ")
    assert "'='" in err.message


def test_error_at_end_of_query_names_the_missing_token() -> None:
    with pytest.raises(TraceQLError) as info:
        parse("{ .a < 3")
    assert (info.value.line, info.value.col) == (1, 9)
    assert "end of query" in info.value.message and "'}'" in info.value.message


def test_lexical_error_positions_point_at_the_literal() -> None:
    with pytest.raises(TraceQLError) as info:
        parse('{ .a = 1 && .b = "x\\q" }')
    assert (info.value.category, info.value.col) == ("parse", 18)
    assert "invalid escape" in info.value.message


def test_queries_over_128_kib_are_refused() -> None:
    filler = " " * (128 * 1024)
    with pytest.raises(TraceQLError) as info:
        parse("{ .a = 1 }" + filler)
    assert info.value.category == "parse" and "131072" in info.value.message
    assert parse("{ .a = 1 }" + filler[: 128 * 1024 - 20]).pipeline.stages


def test_validation_and_unsupported_messages() -> None:
    with pytest.raises(TraceQLError) as info:
        parse('{ 1 = "foo" }')
    assert info.value.category == "validate" and info.value.line is None
    assert "same type" in info.value.message
    with pytest.raises(TraceQLError) as info:
        parse("{ parent.a = 1 }")
    assert info.value.category == "unsupported" and info.value.message.endswith("not yet supported")


# ---- precedence


def test_and_or_share_one_left_associative_level() -> None:
    assert _filter_expr("{ .a || .b && .c }") == BinaryOp(Op.AND, BinaryOp(Op.OR, a, b), c)
    assert _filter_expr("{ .a && .b || .c }") == BinaryOp(Op.OR, BinaryOp(Op.AND, a, b), c)


def test_not_binds_looser_than_multiplication_but_tighter_than_comparison() -> None:
    assert _filter_expr("{ !.a = .b }") == BinaryOp(Op.EQ, UnaryOp(Op.NOT, a), b)
    assert _filter_expr("{ !.a * .b }") == UnaryOp(Op.NOT, BinaryOp(Op.MUL, a, b))


def test_arithmetic_precedence_and_power_right_associativity() -> None:
    one, two, three = (Static(StaticType.INT, v) for v in (1, 2, 3))
    expr = _filter_expr("{ .a + 2 * 3 ^ .b ^ .c = 1 }")
    assert expr == BinaryOp(
        Op.EQ,
        BinaryOp(Op.ADD, a, BinaryOp(Op.MUL, two, BinaryOp(Op.POW, three, BinaryOp(Op.POW, b, c)))),
        one,
    )
    # unary minus binds tightest; on literals it is folded
    assert _filter_expr("{ -.a ^ 2 = 1 }") == BinaryOp(Op.EQ, BinaryOp(Op.POW, UnaryOp(Op.SUB, a), two), one)
    assert _filter_expr("{ .a = -1 }") == BinaryOp(Op.EQ, a, Static(StaticType.INT, -1))


def test_comparisons_chain_left() -> None:
    assert _filter_expr("{ .a = .b = .c }") == BinaryOp(Op.EQ, BinaryOp(Op.EQ, a, b), c)


def test_structural_operators_bind_tighter_than_and_or() -> None:
    fa, fb, fc = (SpansetFilter(x) for x in (a, b, c))
    (op1,) = parse("{ .a } && { .b } >> { .c }").pipeline.stages
    assert op1 == SpansetOperation(SpansetOp.AND, fa, SpansetOperation(SpansetOp.DESCENDANT, fb, fc))
    (op2,) = parse("{ .a } >> { .b } && { .c }").pipeline.stages
    assert op2 == SpansetOperation(SpansetOp.AND, SpansetOperation(SpansetOp.DESCENDANT, fa, fb), fc)
    (op3,) = parse("{ .a } !>> { .b } &~ { .c }").pipeline.stages
    assert op3 == SpansetOperation(SpansetOp.UNION_SIBLING, SpansetOperation(SpansetOp.NOT_DESCENDANT, fa, fb), fc)


def test_every_spanset_operator_parses() -> None:
    for op in SpansetOp:
        (stage,) = parse(f"{{ .a }} {op.value} {{ .b }}").pipeline.stages
        assert stage == SpansetOperation(op, SpansetFilter(a), SpansetFilter(b))


def test_pipeline_applies_to_whole_spanset_expression() -> None:
    q = parse("{ true } && { true } | count() = 4")
    assert len(q.pipeline.stages) == 2
    assert isinstance(q.pipeline.stages[0], SpansetOperation)
    assert q.pipeline.stages[1] == ScalarFilter(Op.EQ, Aggregate(AggregateOp.COUNT), Static(StaticType.INT, 4))


def test_parenthesised_pipelines_as_spanset_operands() -> None:
    (stage,) = parse("({ .a } | count() > 1) && ({ .b })").pipeline.stages
    assert isinstance(stage, SpansetOperation)
    assert isinstance(stage.lhs, Pipeline) and len(stage.lhs.stages) == 2
    assert stage.rhs == SpansetFilter(b)


# ---- attribute names and intrinsics


def test_attribute_scopes() -> None:
    cases = {
        ".x": Attribute("x"),
        "span.x": Attribute("x", Scope.SPAN),
        "resource.service.name": Attribute("service.name", Scope.RESOURCE),
        "event.x": Attribute("x", Scope.EVENT),
        "link.x": Attribute("x", Scope.LINK),
        "instrumentation.x": Attribute("x", Scope.INSTRUMENTATION),
        "parent.x": Attribute("x", Scope.NONE, parent=True),
        "parent.span.x": Attribute("x", Scope.SPAN, parent=True),
        "parent.resource.x": Attribute("x", Scope.RESOURCE, parent=True),
        ".duration": Attribute("duration"),
    }
    for text, expected in cases.items():
        assert parse_tree(text, "attribute_ref") == expected, text


def test_attribute_names_run_until_terminators() -> None:
    assert _filter_expr("{ .a+b = 2 }") == BinaryOp(Op.EQ, Attribute("a+b"), Static(StaticType.INT, 2))
    assert _filter_expr("{ .k8s/pod:x-y$@# }") == Attribute("k8s/pod:x-y$@#")
    assert _filter_expr("{ span.res-dedicated.01 }") == Attribute("res-dedicated.01", Scope.SPAN)
    assert _filter_expr("{ .a + 1 = 2 }") == BinaryOp(
        Op.EQ, BinaryOp(Op.ADD, a, Static(StaticType.INT, 1)), Static(StaticType.INT, 2)
    )
    assert _filter_expr("{.a=1}") == BinaryOp(Op.EQ, a, Static(StaticType.INT, 1))


def test_quoted_attribute_name_segments() -> None:
    assert parse_attribute('span."name with space"') == Attribute("name with space", Scope.SPAN)
    assert parse_attribute('span.attribute."name with space"') == Attribute("attribute.name with space", Scope.SPAN)
    assert parse_attribute('."a\\"b\\\\c"') == Attribute('a"b\\c')
    assert _filter_expr('{ ."x = y" = 1 }') == BinaryOp(Op.EQ, Attribute("x = y"), Static(StaticType.INT, 1))
    with pytest.raises(TraceQLError):
        parse_attribute('."a\\nb"')


def test_empty_and_bare_attribute_names_are_parse_errors() -> None:
    for query in ("{ . }", "{ span. }", "{ attribute = 4 }", "{ span:foo = 1 }", "{ id = 1 }"):
        assert _category(query) == "parse", query


def test_scoped_and_unscoped_intrinsics() -> None:
    same = {
        "name": "span:name",
        "duration": "span:duration",
        "status": "span:status",
        "statusMessage": "span:statusMessage",
        "kind": "span:kind",
        "childCount": "span:childCount",
        "rootServiceName": "trace:rootService",
        "rootName": "trace:rootName",
        "traceDuration": "trace:duration",
    }
    for bare, scoped in same.items():
        assert parse_attribute(bare) is parse_attribute(scoped), bare
    assert parse_attribute("nestedSetParent") is Intrinsic.NESTED_SET_PARENT
    assert parse_attribute("event:timeSinceStart") is Intrinsic.EVENT_TIME_SINCE_START
    assert parse_attribute("link:traceID") is Intrinsic.LINK_TRACE_ID
    assert parse_attribute("instrumentation:version") is Intrinsic.INSTRUMENTATION_VERSION
    assert parse_attribute("span:parentID") is Intrinsic.SPAN_PARENT_ID
    assert parse_attribute("trace:id") is Intrinsic.TRACE_ID


def test_parse_attribute_rejects_invalid_tag_names() -> None:
    for text in ("service.name", "foo", "", "span.", "trace:status", "trace:rootServiceName", ".a = 1"):
        with pytest.raises(TraceQLError) as info:
            parse_attribute(text)
        assert info.value.category == "parse", text
    with pytest.raises(TraceQLError) as info:
        parse_attribute("parent.a")
    assert info.value.category == "unsupported"


def test_keywords_need_a_word_boundary() -> None:
    assert _category("{ statusMessage = 'x' }") == "parse"  # single quotes are not strings
    assert _category('{ statusMessage = "x" }') == "valid"
    assert _category("{ namex = 1 }") == "parse"
    assert _category("{} | rate() by (name) | topkx(1)") == "parse"


# ---- literals


def test_durations_follow_prometheus_then_go_rules() -> None:
    assert parse_duration("1h30m") == 5400 * 10**9
    assert parse_duration("1.5s") == 1_500_000_000
    assert parse_duration("1d") == 86400 * 10**9
    assert parse_duration("1w") == 7 * 86400 * 10**9
    assert parse_duration("1y") == 365 * 86400 * 10**9
    assert parse_duration("10ns") == 10
    assert parse_duration("5us") == parse_duration("5µs") == 5000
    assert parse_duration("1m30.5s") == 90_500_000_000
    assert parse_duration("1.5d") is None
    assert parse_duration("1x") is None


def test_duration_literals_in_queries() -> None:
    expr = _filter_expr("{ duration > 1h30m }")
    assert expr == BinaryOp(Op.GT, Intrinsic.DURATION, Static(StaticType.DURATION, 5400 * 10**9))
    assert _filter_expr("{ duration > -5s }") == BinaryOp(
        Op.GT, Intrinsic.DURATION, Static(StaticType.DURATION, -5 * 10**9)
    )
    with pytest.raises(TraceQLError) as info:
        parse("{ duration > 1.5d }")
    assert (info.value.category, info.value.col) == ("parse", 14)


def test_numbers() -> None:
    assert _filter_expr("{ .a = 1.5 }").rhs == Static(StaticType.FLOAT, 1.5)  # type: ignore[union-attr]
    assert _filter_expr("{ .a = .5 }").rhs == Static(StaticType.FLOAT, 0.5)  # type: ignore[union-attr]
    assert _filter_expr("{ .a = 1e3 }").rhs == Static(StaticType.FLOAT, 1000.0)  # type: ignore[union-attr]
    assert _filter_expr("{ .a = 10. }").rhs == Static(StaticType.FLOAT, 10.0)  # type: ignore[union-attr]
    assert _filter_expr("{ .a = minInt }").rhs == Static(StaticType.INT, -(2**63))  # type: ignore[union-attr]
    assert _filter_expr("{ .a = maxInt }").rhs == Static(StaticType.INT, 2**63 - 1)  # type: ignore[union-attr]
    for query in ("{ .a = 0x1F }", "{ .a = 1_000 }", "{ .a = 9223372036854775808 }"):
        assert _category(query) == "parse", query


def test_string_escapes() -> None:
    def value(literal: str) -> object:
        return _filter_expr("{ .a = " + literal + " }").rhs  # type: ignore[union-attr]

    assert value(r'"a\"b\\c\n\t"') == Static(StaticType.STRING, 'a"b\\c\n\t')
    assert value(r'"\u00e9\x41\101\U0001F600"') == Static(StaticType.STRING, "éAA😀")
    assert value('`raw \\n "quoted"`') == Static(StaticType.STRING, 'raw \\n "quoted"')
    for bad in (r'"\q"', r'"\x4"', r'"\ud800"', '"line\nbreak"', "'single'"):
        assert _category("{ .a = " + bad + " }") == "parse", bad


def test_enum_and_nil_literals() -> None:
    assert _filter_expr("{ status = error }") == BinaryOp(
        Op.EQ, Intrinsic.STATUS, Static(StaticType.STATUS, Status.ERROR)
    )
    assert _filter_expr("{ kind = consumer }").rhs == Static(StaticType.KIND, Kind.CONSUMER)  # type: ignore[union-attr]
    assert Status.ERROR.otlp_code == 2 and Status.UNSET.otlp_code == 0 and Kind.SERVER.value == 2
    assert _filter_expr("{ .a != nil }") == BinaryOp(Op.NEQ, a, Static(StaticType.NIL, None))


def test_existence_checks_on_intrinsics_and_service_name() -> None:
    assert _category("{ .a = nil }") == "valid"
    assert _category("{ nil != .a }") == "valid"
    assert _category("{ name != nil }") == "valid"
    assert _category("{ name = nil }") == "validate"
    assert _category("{ resource.service.name = nil }") == "validate"
    assert _category("{ resource.service.name != nil }") == "valid"


def test_comments_are_whitespace() -> None:
    q = parse("{ .a = 1 // trailing\n && /* inline */ .b = 2 }")
    assert q == parse("{ .a = 1 && .b = 2 }")


# ---- regexes


def test_regex_must_compile_and_be_a_literal() -> None:
    assert _category('{ .a =~ "[" }') == "validate"
    assert _category('{ .a =~ "a\\\\1" }') == "validate"  # RE2 has no backreferences
    assert _category("{ .a =~ .b }") == "validate"
    assert _category('{ .a =~ "(?i)foo|bar" }') == "valid"


def test_compile_regex_is_fully_anchored_with_dotall() -> None:
    rx = compile_regex("foo.*")
    assert rx.match("foo\nbar") and not rx.search("xfoo")
    assert not compile_regex("bar").search("foobar")
    ci = compile_regex("(?i)foo|bar")
    assert ci.match("FOO") and ci.match("BAR") and not ci.match("foobar")
    assert compile_regex("a(?i)b").match("aB") and not compile_regex("a(?i)b").match("AB")
    assert compile_regex(r"\d+").match("123") and not compile_regex(r"\d").match("٣")  # RE2 \d is ASCII
    assert compile_regex("[[:alpha:]_]+").match("ab_C")
    assert not compile_regex("x$").match("x\n")
    assert compile_regex(r"\Qa.b\E").match("a.b") and not compile_regex(r"\Qa.b\E").match("axb")


# ---- pipelines, aggregates, metrics, hints


def test_scalar_filters_and_aggregates() -> None:
    q = parse("{ true } | by(resource.service.name) | avg(duration) > 1s | select(.a, name)")
    _, group, scalar, select = q.pipeline.stages
    assert group == GroupBy(Attribute("service.name", Scope.RESOURCE))
    assert scalar == ScalarFilter(
        Op.GT, Aggregate(AggregateOp.AVG, Intrinsic.DURATION), Static(StaticType.DURATION, 10**9)
    )
    assert select == Select((a, Intrinsic.NAME))


def test_metrics_query_shape() -> None:
    q = parse(
        "{ status = error } | quantile_over_time(duration, 0.5, .99) by (resource.service.name, name)"
        " | topk(5) > 1s | bottomk(2) with(sample=0.1, most_recent=true)"
    )
    assert q.metrics == MetricsAggregate(
        MetricsOp.QUANTILE_OVER_TIME,
        attribute=Intrinsic.DURATION,
        by=(Attribute("service.name", Scope.RESOURCE), Intrinsic.NAME),
        quantiles=(0.5, 0.99),
    )
    assert q.second_stage == (TopK(5), MetricsFilter(Op.GT, Static(StaticType.DURATION, 10**9)), BottomK(2))
    assert q.second_stage[1].threshold == 1.0  # type: ignore[union-attr]
    assert q.hint("sample", StaticType.FLOAT) == 0.1
    assert q.hint("most_recent", StaticType.BOOL) is True
    assert q.hint("sample", StaticType.BOOL) is None


def test_compare_and_metrics_limits() -> None:
    q = parse("{} | compare({ status = error }, 20, 1000, 2000)")
    assert q.metrics is not None and q.metrics.op is MetricsOp.COMPARE
    assert (q.metrics.top_n, q.metrics.start_ns, q.metrics.end_ns) == (20, 1000, 2000)
    assert parse("{} | compare({ status = error })").metrics.top_n == 10  # type: ignore[union-attr]
    assert _category("{} | compare({ status = error }, 0)") == "validate"
    assert _category("{} | compare({ status = error }, 10, 2000, 1000)") == "validate"
    assert _category("{} | rate() by (.a, .b, .c, .d, .e)") == "valid"
    assert _category("{} | rate() by (.a, .b, .c, .d, .e, .f)") == "unsupported"
    assert _category("{} | histogram_over_time(duration) by (.a, .b, .c, .d, .e)") == "unsupported"
    assert _category("{} | quantile_over_time(duration, 1.5)") == "validate"
    assert _category("{} | rate() by (1 + .a)") == "parse"


def test_hints_after_every_root_form() -> None:
    assert parse("{ .a } with(most_recent=true)").hints == {"most_recent": Static(StaticType.BOOL, True)}
    assert parse("{} | rate() with(sample=true, job_size=-3)").hints["job_size"] == Static(StaticType.INT, -3)
    assert parse("({ .a } | count() > 1) && ({ .b } | count() > 1) with(debug=true)").hints


def test_parse_lenient_filter() -> None:
    assert parse_lenient_filter('{ resource.service.name = "a" && .x = 1 }') == SpansetFilter(
        BinaryOp(
            Op.AND,
            BinaryOp(Op.EQ, Attribute("service.name", Scope.RESOURCE), Static(StaticType.STRING, "a")),
            BinaryOp(Op.EQ, Attribute("x"), Static(StaticType.INT, 1)),
        )
    )
    assert parse_lenient_filter("{}") == SpansetFilter(Static(StaticType.BOOL, True))
    for q in ("{ .a = ", "{ .a } | count() > 1", '{ 1 = "x" }', "{ .a } && { .b }", ""):
        assert parse_lenient_filter(q) is None, q


# ---- canonical text


def test_canonical_names_of_fields() -> None:
    assert render(parse_attribute("span:name")) == "name"
    assert render(parse_attribute("trace:rootService")) == "rootServiceName"
    assert render(parse_attribute("trace:rootName")) == "rootName"
    assert render(parse_attribute("trace:duration")) == "traceDuration"
    assert render(parse_attribute("span:statusMessage")) == "statusMessage"
    assert render(parse_attribute("trace:id")) == "trace:id"
    assert render(parse_attribute("event:name")) == "event:name"
    assert render(parse_attribute("resource.service.name")) == "resource.service.name"
    assert render(parse_attribute(".foo")) == ".foo"
    assert render(parse_attribute("span.foo")) == "span.foo"
    assert result_key(parse_attribute("resource.service.name")) == "service.name"
    assert result_key(Intrinsic.NESTED_SET_LEFT) == "nestedSetLeft"


def test_canonical_names_of_aggregates_and_groups() -> None:
    q = parse("{ true } | by(resource.service.name) | by(3 * .field - 2) | count() > 1 | avg(duration) > 1")
    by1, by2, count, avg = q.pipeline.stages[1:]
    assert render(by1) == "by(resource.service.name)"
    assert render(by2) == "by((3 * .field) - 2)"
    assert render(count.lhs) == "count()"  # type: ignore[union-attr]
    assert render(avg.lhs) == "avg(duration)"  # type: ignore[union-attr]
    assert render(Aggregate(AggregateOp.SUM, Attribute("bytes", Scope.SPAN))) == "sum(span.bytes)"


def test_go_formatting_helpers() -> None:
    assert format_duration(5400 * 10**9) == "1h30m0s"
    assert format_duration(1_500_000_000) == "1.5s"
    assert format_duration(100_000_000) == "100ms"
    assert format_duration(1500) == "1.5µs"
    assert format_duration(0) == "0s"
    assert format_duration(-2 * 10**9) == "-2s"
    assert [format_float(x) for x in (1.0, 0.5, 1e21, 1e20, 0.0001, 0.00001, -2.25)] == [
        "1",
        "0.5",
        "1e+21",
        "100000000000000000000",
        "0.0001",
        "1e-05",
        "-2.25",
    ]


@pytest.mark.parametrize(
    "query",
    [
        '{ resource.service.name = "a" && span.http.status_code >= 500 } >> { kind = server } | count() > 2',
        "{ .a || .b && !.c } | by(.x) | select(.y, name)",
        "{} | quantile_over_time(duration, 0.5, 0.9) by (name) | topk(3) > 1s with(sample=0.1)",
        "({ .a } | count() > 1) !~ ({ .b })",
        '{ .a =~ "x.*" && -.b ^ 2 % 3 > 1.5e-07 && .c = "q\\"" }',
    ],
)
def test_render_round_trips(query: str) -> None:
    q = parse(query)
    assert parse(render(q)) == q


def test_long_chains_and_deep_nesting() -> None:
    chain = parse("{ " + " || ".join(f".a = {i}" for i in range(2000)) + " }")
    (stage,) = chain.pipeline.stages
    first, ops = left_spine(stage.expr, {Op.AND, Op.OR})  # type: ignore[union-attr, arg-type]
    assert first == BinaryOp(Op.EQ, a, Static(StaticType.INT, 0)) and len(ops) == 1999
    assert all(op.op is Op.OR for op in ops)
    assert _filter_expr("{ " + "(" * 200 + ".a" + ")" * 200 + " }") == a
    with pytest.raises(TraceQLError) as info:
        parse("{ " + "(" * 20000 + ".a" + ")" * 20000 + " }")
    assert info.value.category == "parse"

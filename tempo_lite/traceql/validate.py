"""Semantic checks of a parsed TraceQL query (Tempo's `validate()`), and RE2 regex handling.

Errors are TraceQLError with category "validate" (wrong operand types, bad regex, limits) or
"unsupported" (what Tempo answers "... not yet supported"). The order of checks follows Tempo's so that
a query with several problems reports the same category: children first, then the node itself.

Regexes: TraceQL uses Go RE2, fully anchored as `^(?s:<re>)$`. `anchored_re2()` gives that pattern
for RE2 engines (pyarrow compute); `compile_regex()` translates it to an equivalent Python `re`
pattern for row-wise evaluation.
"""

from __future__ import annotations

import functools
import re

from tempo_lite.traceql.ast import (
    Aggregate,
    Attribute,
    BinaryOp,
    BottomK,
    Coalesce,
    FieldExpr,
    GroupBy,
    Intrinsic,
    MetricsAggregate,
    MetricsFilter,
    MetricsOp,
    Op,
    Pipeline,
    Query,
    ScalarFilter,
    ScalarOperation,
    ScalarPipeline,
    Scope,
    Select,
    SpansetFilter,
    SpansetOperation,
    Static,
    StaticType,
    TopK,
    TraceQLError,
    UnaryOp,
    binary_type_valid,
    implied_type,
    is_matching_operand,
    left_spine,
    references_span,
    render,
    unary_type_valid,
)

MAX_GROUP_BYS = 5
MAX_COMPARE_TOP_N = 1000


def _invalid(detail: str) -> TraceQLError:
    return TraceQLError("validate", detail)


def _unsupported(feature: str) -> TraceQLError:
    return TraceQLError("unsupported", f"{feature} not yet supported")


# --------------------------------------------------------------------------------------------------
# Regexes


def anchored_re2(pattern: str) -> str:
    """The pattern as Tempo/Prometheus runs it on RE2: `^(?s:<pattern>)$`."""
    return f"^(?s:{pattern})$"


@functools.lru_cache(maxsize=1024)
def re2_error(pattern: str) -> str | None:
    """RE2's complaint about `pattern` (checked with pyarrow's bundled RE2), or None if it compiles."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        pc.match_substring_regex(pa.array([""], pa.string()), pattern=pattern)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        return str(exc)
    return None


_POSIX_CLASSES = {
    "alnum": "0-9A-Za-z",
    "alpha": "A-Za-z",
    "ascii": "\\x00-\\x7f",
    "blank": "\\t ",
    "cntrl": "\\x00-\\x1f\\x7f",
    "digit": "0-9",
    "graph": "!-~",
    "lower": "a-z",
    "print": " -~",
    "punct": "!-/:-@\\[-`{-~",
    "space": "\\t\\n\\v\\f\\r ",
    "upper": "A-Z",
    "word": "0-9A-Za-z_",
    "xdigit": "0-9A-Fa-f",
}
# RE2's Perl classes are ASCII-only; Python's are Unicode, so spell them out.
_PERL_CLASSES = {"d": "0-9", "w": "0-9A-Za-z_", "s": "\\t\\n\\f\\r "}
_FLAG_GROUP = re.compile(r"\(\?([imsU]*)(?:-([imsU]*))?\)")


def re2_to_python(pattern: str) -> str:
    """Translate an RE2 pattern to Python `re` syntax with the same meaning (unanchored).

    Handles: inline flag groups anywhere (`a(?i)b` -> scoped groups), `(?P<n>` / `(?<n>`, `\\z`,
    `\\Q...\\E`, `\\x{HHHH}`, POSIX classes `[[:alpha:]]`, ASCII `\\d \\w \\s`, and `$` = end of text
    without `(?m)`. Raises ValueError for RE2 features Python lacks (`\\p{..}` classes, `(?U)`).
    """
    out: list[str] = []
    # Per open group: [scoped flag groups to close with it, whether flags appeared after content].
    groups: list[list[int]] = [[0, 0]]
    group_start: list[int] = [0]
    multiline = re.search(r"\(\?[is]*m", pattern) is not None
    i = 0
    n = len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            text, i = _translate_escape(pattern, i, in_class=False)
            out.append(text)
            continue
        if c == "[":
            text, i = _translate_class(pattern, i)
            out.append(text)
            continue
        if c == "(":
            m = _FLAG_GROUP.match(pattern, i)
            if m:
                on, off = m.group(1), m.group(2) or ""
                if "U" in on or "U" in off:
                    raise ValueError("the ungreedy flag (?U) is not supported")
                flags = on + ("-" + off if off else "")
                if flags:
                    if any(not part.startswith("(?") for part in out[group_start[-1] :]):
                        groups[-1][1] = 1
                    out.append(f"(?{flags}:")
                    groups[-1][0] += 1
                i = m.end()
                continue
            if pattern.startswith("(?<", i) and not pattern.startswith(("(?<=", "(?<!"), i):
                out.append("(?P<")
                i += 3
            else:
                out.append("(")
                i += 1
            groups.append([0, 0])
            group_start.append(len(out))
            continue
        if c == ")":
            if len(groups) > 1:
                out.append(")" * groups.pop()[0])
                group_start.pop()
            out.append(")")
            i += 1
            continue
        if c == "|" and groups[-1][1]:
            # RE2 flags set mid-group reach across later alternatives; a scoped group cannot say that.
            raise ValueError("inline flags in the middle of an alternation are not supported")
        if c == "$" and not multiline:
            out.append(r"\Z")
            i += 1
            continue
        out.append(c)
        i += 1
    out.append(")" * groups[0][0])
    return "".join(out)


def _translate_escape(pattern: str, i: int, in_class: bool) -> tuple[str, int]:
    if i + 1 >= len(pattern):
        raise ValueError("trailing backslash")
    e = pattern[i + 1]
    if e == "z" and not in_class:
        return r"\Z", i + 2
    if e == "Q":
        end = pattern.find("\\E", i + 2)
        literal = pattern[i + 2 :] if end < 0 else pattern[i + 2 : end]
        return re.escape(literal), (len(pattern) if end < 0 else end + 2)
    if e == "x" and pattern.startswith("{", i + 2):
        end = pattern.find("}", i + 3)
        if end < 0:
            raise ValueError("unterminated \\x{")
        return f"\\U{int(pattern[i + 3 : end], 16):08x}", end + 1
    if e in "pP":
        raise ValueError("Unicode class escapes \\p have no Python equivalent")
    if e.lower() in _PERL_CLASSES:
        body = _PERL_CLASSES[e.lower()]
        if e.islower():
            return (body if in_class else f"[{body}]"), i + 2
        return (f"\\{e}" if in_class else f"[^{body}]"), i + 2
    if e.isdigit() and e != "0":
        raise ValueError("backreferences are not supported")
    return pattern[i : i + 2], i + 2


def _translate_class(pattern: str, i: int) -> tuple[str, int]:
    out = ["["]
    j = i + 1
    if j < len(pattern) and pattern[j] == "^":
        out.append("^")
        j += 1
    if j < len(pattern) and pattern[j] == "]":
        out.append("\\]")
        j += 1
    while j < len(pattern) and pattern[j] != "]":
        c = pattern[j]
        if c == "\\":
            text, j = _translate_escape(pattern, j, in_class=True)
            out.append(text)
            continue
        if pattern.startswith("[:", j):
            end = pattern.find(":]", j + 2)
            name = pattern[j + 2 : end] if end > 0 else ""
            negated = name.startswith("^")
            cls = _POSIX_CLASSES.get(name.lstrip("^"))
            if cls is None:
                raise ValueError(f"unknown character class [:{name}:]")
            if negated:
                raise ValueError("negated POSIX classes are not supported")
            out.append(cls)
            j = end + 2
            continue
        if c in "[&~|":
            out.append("\\" + c)  # literal in RE2, set operations or nesting in Python
        else:
            out.append(c)
        j += 1
    if j >= len(pattern):
        raise ValueError("missing closing ]")
    out.append("]")
    return "".join(out), j + 1


@functools.lru_cache(maxsize=1024)
def compile_regex(pattern: str) -> re.Pattern[str]:
    """Compile a TraceQL regex with Tempo's semantics: RE2 syntax, fully anchored, `.` matches newline.

    The result is anchored at both ends, so `.match()`, `.fullmatch()` and `.search()` all test the
    whole string. Raises TraceQLError("validate") if RE2 rejects the pattern and
    TraceQLError("unsupported") if it uses RE2 syntax with no Python equivalent.
    """
    problem = re2_error(pattern)
    if problem is not None:
        raise _invalid(f"invalid regex {pattern!r}: {problem}")
    try:
        return re.compile(r"\A(?s:" + re2_to_python(pattern) + r")\Z")
    except (ValueError, re.error) as exc:
        raise _unsupported(f"regex syntax in {pattern!r} ({exc})") from None


# --------------------------------------------------------------------------------------------------
# Query validation


def validate(query: Query) -> None:
    """Raise TraceQLError if the query is invalid or unsupported; return None if it can run."""
    _pipeline(query.pipeline)
    if query.metrics is not None:
        _metrics(query.metrics)
        if query.metrics.op is MetricsOp.COMPARE and query.second_stage:
            raise _invalid("compare() cannot be combined with topk, bottomk or a filter")
    for stage in query.second_stage:
        if isinstance(stage, (TopK, BottomK)) and stage.k <= 0:
            name = "topk" if isinstance(stage, TopK) else "bottomk"
            raise _invalid(f"{name}() requires an integer greater than 0, got {stage.k}")
        if isinstance(stage, MetricsFilter) and not stage.value.type.is_numeric:
            raise _invalid(f"metrics filter needs a number or duration: {render(stage)}")


def _pipeline(p: Pipeline) -> None:
    for stage in p.stages:
        _stage(stage)


def _stage(stage: object) -> None:
    if isinstance(stage, SpansetFilter):
        _spanset_filter(stage)
    elif isinstance(stage, SpansetOperation):
        _stage(stage.lhs)
        _stage(stage.rhs)
    elif isinstance(stage, Pipeline):
        _pipeline(stage)
    elif isinstance(stage, ScalarFilter):
        _scalar_filter(stage)
    elif isinstance(stage, GroupBy):
        _field(stage.expr)
        if not references_span(stage.expr):
            raise _invalid(f"grouping field expressions must reference the span: {render(stage)}")
    elif isinstance(stage, Select):
        for attr in stage.attributes:
            _field(attr)
    elif isinstance(stage, Coalesce):
        return
    else:
        raise TypeError(f"unexpected pipeline stage {stage!r}")


def _spanset_filter(f: SpansetFilter) -> None:
    _field(f.expr)
    t = implied_type(f.expr)
    if t not in (StaticType.BOOL, StaticType.ATTRIBUTE):
        raise _invalid(f"span filter field expressions must resolve to a boolean: {render(f)}")


def _scalar(expr: object) -> None:
    if isinstance(expr, Aggregate):
        _aggregate(expr)
    elif isinstance(expr, ScalarOperation):
        _scalar(expr.lhs)
        _scalar(expr.rhs)
        _check_binary_types(expr.op, expr.lhs, expr.rhs, expr)
    elif isinstance(expr, ScalarPipeline):
        _pipeline(expr.pipeline)
        _aggregate(expr.aggregate)
    elif isinstance(expr, Static):
        return
    else:
        raise TypeError(f"unexpected scalar expression {expr!r}")


def _scalar_filter(f: ScalarFilter) -> None:
    _scalar(f.lhs)
    _scalar(f.rhs)
    _check_binary_types(f.op, f.lhs, f.rhs, f)
    if not isinstance(f.lhs, Aggregate):
        raise _unsupported(f"scalar filter with left-hand side {render(f.lhs)}")
    if not isinstance(f.rhs, Static):
        raise _unsupported(f"scalar filter with right-hand side {render(f.rhs)}")


def _aggregate(a: Aggregate) -> None:
    if a.expr is None:
        return
    _field(a.expr)
    t = implied_type(a.expr)
    if t is not StaticType.ATTRIBUTE and not t.is_numeric:
        raise _invalid(f"aggregate field expressions must resolve to a number type: {render(a)}")
    if not references_span(a.expr):
        raise _invalid(f"aggregate field expressions must reference the span: {render(a)}")


def _check_binary_types(op: Op, lhs: object, rhs: object, node: object) -> None:
    lt = implied_type(lhs)  # type: ignore[arg-type]
    rt = implied_type(rhs)  # type: ignore[arg-type]
    if not is_matching_operand(lt, rt):
        raise _invalid(f"binary operations must operate on the same type: {render(node)}")
    if not (binary_type_valid(op, lt) and binary_type_valid(op, rt)):
        raise _invalid(f"illegal operation for the given types: {render(node)}")


def _field(e: FieldExpr) -> None:
    if isinstance(e, Static):
        return
    if isinstance(e, Attribute):
        if e.parent:
            raise _unsupported(f"parent attribute {render(e)}")
        return
    if isinstance(e, Intrinsic):
        if e is Intrinsic.PARENT:
            raise _unsupported("intrinsic (parent)")
        return
    if isinstance(e, UnaryOp):
        _field(e.operand)
        if not unary_type_valid(e.op, implied_type(e.operand)):
            raise _invalid(f"illegal operation for the given type: {render(e)}")
        return
    if isinstance(e, BinaryOp):
        _binary(e)
        return
    raise TypeError(f"unexpected field expression {e!r}")


def _binary(expr: BinaryOp) -> None:
    # Iterate over the left spine: `a && b && ...` chains can be thousands of nodes deep.
    first, chain = left_spine(expr)
    _field(first)
    for e in chain:
        _field(e.rhs)
        _check_binary(e)


def _check_binary(e: BinaryOp) -> None:
    _check_nil_comparison(e)
    _check_binary_types(e.op, e.lhs, e.rhs, e)
    if e.op in (Op.REGEX, Op.NOT_REGEX):
        pattern = e.rhs
        if not (isinstance(pattern, Static) and pattern.type is StaticType.STRING):
            raise _invalid(f"the right-hand side of a regex operator must be a string literal: {render(e)}")
        compile_regex(str(pattern.value))


def _check_nil_comparison(e: BinaryOp) -> None:
    """`x = nil` (does not exist) is allowed for custom attributes only, except resource.service.name."""
    if e.op is not Op.EQ:
        return
    for side, other in ((e.lhs, e.rhs), (e.rhs, e.lhs)):
        if not (isinstance(other, Static) and other.type is StaticType.NIL):
            continue
        if isinstance(side, Intrinsic):
            raise _invalid(f"intrinsics cannot be compared with = nil: {render(e)}")
        if isinstance(side, Attribute) and side.scope is Scope.RESOURCE and side.name == "service.name":
            raise _invalid(f"resource.service.name always exists and cannot be compared with = nil: {render(e)}")


def _metrics(m: MetricsAggregate) -> None:
    for ref in ((m.attribute,) if m.attribute is not None else ()) + m.by:
        _field(ref)
    limit = MAX_GROUP_BYS
    if m.op in (MetricsOp.QUANTILE_OVER_TIME, MetricsOp.HISTOGRAM_OVER_TIME):
        limit -= 1  # one label is reserved for the quantile / bucket
    if len(m.by) > limit:
        raise _unsupported(f"metrics group by {len(m.by)} values (at most {limit})")
    if m.op is MetricsOp.QUANTILE_OVER_TIME:
        for q in m.quantiles:
            if not 0.0 <= q <= 1.0:
                raise _invalid(f"quantile_over_time() quantiles must be between 0 and 1, got {q}")
    if m.op is MetricsOp.COMPARE:
        assert m.compare_filter is not None
        _spanset_filter(m.compare_filter)
        if not 0 < m.top_n <= MAX_COMPARE_TOP_N:
            raise _invalid(f"compare() top number of values must be between 1 and {MAX_COMPARE_TOP_N}, got {m.top_n}")
        if m.start_ns or m.end_ns:
            if m.start_ns <= 0 or m.end_ns <= 0:
                raise _invalid("compare() timestamps must be positive integer unix nanoseconds")
            if m.end_ns <= m.start_ns:
                raise _invalid("compare() end timestamp must be greater than start timestamp")

"""TraceQL text -> AST: runs the parsimonious grammar and turns its parse tree into `ast` nodes.

Also decodes literals the way Tempo's lexer does: Go string escapes (`strconv.Unquote`), backtick raw
strings, int64 integers, Go floats, and durations (Prometheus `model.ParseDuration` first, then Go
`time.ParseDuration`). Pure functions, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from fractions import Fraction
from typing import cast

from parsimonious.exceptions import IncompleteParseError, ParseError
from parsimonious.nodes import Node

from tempo_lite.traceql.ast import (
    INT64_MAX,
    INT64_MIN,
    Aggregate,
    AggregateOp,
    Attribute,
    BinaryOp,
    BottomK,
    Coalesce,
    GroupBy,
    Intrinsic,
    Kind,
    MetricsAggregate,
    MetricsFilter,
    MetricsOp,
    Op,
    Pipeline,
    Query,
    ScalarExpr,
    ScalarFilter,
    ScalarOperation,
    ScalarPipeline,
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
)
from tempo_lite.traceql.grammar import GRAMMAR

MAX_QUERY_BYTES = 128 * 1024

TRUE = Static(StaticType.BOOL, True)

_INTRINSICS: dict[str, Intrinsic] = {
    "duration": Intrinsic.DURATION,
    "name": Intrinsic.NAME,
    "status": Intrinsic.STATUS,
    "statusMessage": Intrinsic.STATUS_MESSAGE,
    "kind": Intrinsic.KIND,
    "childCount": Intrinsic.CHILD_COUNT,
    "rootName": Intrinsic.TRACE_ROOT_NAME,
    "rootServiceName": Intrinsic.TRACE_ROOT_SERVICE,
    "traceDuration": Intrinsic.TRACE_DURATION,
    "nestedSetLeft": Intrinsic.NESTED_SET_LEFT,
    "nestedSetRight": Intrinsic.NESTED_SET_RIGHT,
    "nestedSetParent": Intrinsic.NESTED_SET_PARENT,
    "parent": Intrinsic.PARENT,
    "span:duration": Intrinsic.DURATION,
    "span:name": Intrinsic.NAME,
    "span:kind": Intrinsic.KIND,
    "span:status": Intrinsic.STATUS,
    "span:statusMessage": Intrinsic.STATUS_MESSAGE,
    "span:id": Intrinsic.SPAN_ID,
    "span:parentID": Intrinsic.SPAN_PARENT_ID,
    "span:childCount": Intrinsic.CHILD_COUNT,
    "trace:duration": Intrinsic.TRACE_DURATION,
    "trace:rootName": Intrinsic.TRACE_ROOT_NAME,
    "trace:rootService": Intrinsic.TRACE_ROOT_SERVICE,
    "trace:id": Intrinsic.TRACE_ID,
    "event:name": Intrinsic.EVENT_NAME,
    "event:timeSinceStart": Intrinsic.EVENT_TIME_SINCE_START,
    "link:traceID": Intrinsic.LINK_TRACE_ID,
    "link:spanID": Intrinsic.LINK_SPAN_ID,
    "instrumentation:name": Intrinsic.INSTRUMENTATION_NAME,
    "instrumentation:version": Intrinsic.INSTRUMENTATION_VERSION,
}

_SCOPES: dict[str, tuple[Scope, bool]] = {
    ".": (Scope.NONE, False),
    "span.": (Scope.SPAN, False),
    "resource.": (Scope.RESOURCE, False),
    "event.": (Scope.EVENT, False),
    "link.": (Scope.LINK, False),
    "instrumentation.": (Scope.INSTRUMENTATION, False),
    "parent.": (Scope.NONE, True),
    "parent.span.": (Scope.SPAN, True),
    "parent.resource.": (Scope.RESOURCE, True),
}

_KEYWORD_STATICS: dict[str, Static] = {
    "true": TRUE,
    "false": Static(StaticType.BOOL, False),
    "nil": Static(StaticType.NIL, None),
    "ok": Static(StaticType.STATUS, Status.OK),
    "error": Static(StaticType.STATUS, Status.ERROR),
    "unset": Static(StaticType.STATUS, Status.UNSET),
    "unspecified": Static(StaticType.KIND, Kind.UNSPECIFIED),
    "internal": Static(StaticType.KIND, Kind.INTERNAL),
    "server": Static(StaticType.KIND, Kind.SERVER),
    "client": Static(StaticType.KIND, Kind.CLIENT),
    "producer": Static(StaticType.KIND, Kind.PRODUCER),
    "consumer": Static(StaticType.KIND, Kind.CONSUMER),
    "minInt": Static(StaticType.INT, INT64_MIN),
    "maxInt": Static(StaticType.INT, INT64_MAX),
}

_METRICS_OPS = {op.value: op for op in MetricsOp}
_AGGREGATE_OPS = {op.value: op for op in AggregateOp}
_OPS = {op.value: op for op in Op}
_SPANSET_OPS = {op.value: op for op in SpansetOp}

# Binding strength of binary operators inside flat operand lists (higher binds tighter).
_ARITH_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2, "%": 2, "^": 3}


# --------------------------------------------------------------------------------------------------
# Durations (Prometheus model.ParseDuration, then Go time.ParseDuration)

_PROM_DURATION = re.compile(
    r"(?:([0-9]+)y)?(?:([0-9]+)w)?(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?(?:([0-9]+)ms)?"
)
_PROM_UNITS_NS = (
    365 * 24 * 3600 * 10**9,
    7 * 24 * 3600 * 10**9,
    24 * 3600 * 10**9,
    3600 * 10**9,
    60 * 10**9,
    10**9,
    10**6,
)
_GO_UNITS_NS = {
    "ns": 1,
    "us": 10**3,
    "\u00b5s": 10**3,
    "\u03bcs": 10**3,
    "ms": 10**6,
    "s": 10**9,
    "m": 60 * 10**9,
    "h": 3600 * 10**9,
}
_GO_DURATION_PART = re.compile(r"([0-9]*)(?:\.([0-9]*))?([^0-9.]+)")


def parse_duration(text: str) -> int | None:
    """Nanoseconds of a TraceQL duration literal, or None if it is not one (`1.5d`, `1x`)."""
    if text == "0":
        return 0
    m = _PROM_DURATION.fullmatch(text)
    if m and text:
        parts = [(_int64_or_none(v), unit) for v, unit in zip(m.groups(), _PROM_UNITS_NS, strict=True) if v]
        if any(v is None for v, _ in parts):
            return None
        total = sum(v * unit for v, unit in parts if v is not None)
        return total if total <= INT64_MAX else None
    return _parse_go_duration(text)


_INT64_DIGITS = len(str(INT64_MAX))
# Digits of a fraction past this many cannot change a duration's nanoseconds (the largest unit is 3.6e12 ns).
_FRACTION_DIGITS = 30


def _int64_or_none(digits: str) -> int | None:
    """The value of a run of decimal digits, or None past int64.

    The length is checked before `int()` parses it: Python refuses more than 4,300 digits with a
    ValueError, and a 5,000-digit literal must be a query error (400), not a server error.
    """
    significant = digits.lstrip("0")
    if len(significant) > _INT64_DIGITS:
        return None
    value = int(significant or "0")
    return value if value <= INT64_MAX else None


def _abbreviated(text: str) -> str:
    return text if len(text) <= 40 else f"{text[:20]}... ({len(text)} characters)"


def _parse_go_duration(text: str) -> int | None:
    pos = 0
    total = Fraction(0)
    while pos < len(text):
        m = _GO_DURATION_PART.match(text, pos)
        if not m:
            return None
        whole, frac, unit = m.groups()
        if not whole and not frac:
            return None
        scale = _GO_UNITS_NS.get(unit)
        if scale is None:
            return None
        whole_value = _int64_or_none(whole or "0")
        if whole_value is None:
            return None
        value = Fraction(whole_value)
        frac = (frac or "")[:_FRACTION_DIGITS]
        if frac:
            value += Fraction(int(frac), 10 ** len(frac))
        total += value * scale
        pos = m.end()
    result = int(total)  # Go truncates fractional nanoseconds
    return result if result <= INT64_MAX else None


# --------------------------------------------------------------------------------------------------
# Strings

_GO_SIMPLE_ESCAPES = {
    "a": 0x07,
    "b": 0x08,
    "f": 0x0C,
    "n": 0x0A,
    "r": 0x0D,
    "t": 0x09,
    "v": 0x0B,
    "\\": 0x5C,
    '"': 0x22,
}


def unquote_go_string(literal: str) -> str:
    """Decode a Go double-quoted (`strconv.Unquote`) or backtick raw string literal.

    Raises ValueError naming the bad escape. Byte escapes (`\\xNN`, octal) that do not form UTF-8
    are kept as surrogate escapes, so they never equal a valid attribute value.
    """
    if literal.startswith("`"):
        return literal[1:-1].replace("\r", "")
    body = literal[1:-1]
    out = bytearray()
    i = 0
    n = len(body)
    while i < n:
        ch = body[i]
        if ch != "\\":
            out += ch.encode("utf-8", "surrogateescape")
            i += 1
            continue
        if i + 1 >= n:
            raise ValueError("invalid escape at end of string")
        esc = body[i + 1]
        if esc in _GO_SIMPLE_ESCAPES:
            out.append(_GO_SIMPLE_ESCAPES[esc])
            i += 2
        elif esc == "x":
            digits = body[i + 2 : i + 4]
            if not re.fullmatch(r"[0-9a-fA-F]{2}", digits):
                raise ValueError(f"invalid escape \\x{digits}")
            out.append(int(digits, 16))
            i += 4
        elif esc in "uU":
            width = 4 if esc == "u" else 8
            digits = body[i + 2 : i + 2 + width]
            if not re.fullmatch(rf"[0-9a-fA-F]{{{width}}}", digits):
                raise ValueError(f"invalid escape \\{esc}{digits}")
            code = int(digits, 16)
            if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                raise ValueError(f"invalid Unicode code point \\{esc}{digits}")
            out += chr(code).encode("utf-8")
            i += 2 + width
        elif esc in "01234567":
            digits = body[i + 1 : i + 4]
            if not re.fullmatch(r"[0-7]{3}", digits) or int(digits, 8) > 255:
                raise ValueError(f"invalid octal escape \\{digits}")
            out.append(int(digits, 8))
            i += 4
        else:
            raise ValueError(f"invalid escape \\{esc}")
    return out.decode("utf-8", "surrogateescape")


def _decode_attribute_name(raw: str) -> str:
    """Join unquoted and double-quoted segments of an attribute name; quotes allow `\\"` and `\\\\`."""
    out: list[str] = []
    i = 0
    while i < len(raw):
        if raw[i] != '"':
            j = raw.find('"', i)
            j = len(raw) if j < 0 else j
            out.append(raw[i:j])
            i = j
            continue
        i += 1
        while raw[i] != '"':
            if raw[i] == "\\":
                if raw[i + 1] not in '"\\':
                    raise ValueError(f"invalid escape \\{raw[i + 1]} in quoted attribute name")
                out.append(raw[i + 1])
                i += 2
            else:
                out.append(raw[i])
                i += 1
        i += 1
    return "".join(out)


# --------------------------------------------------------------------------------------------------
# Parse tree -> AST


_SKIPPED = frozenset({"_", "lbrace", "rbrace", "lparen", "rparen", "pipe", "comma", "assign", "eof"})


def _parts(node: Node) -> Iterator[Node]:
    """Named sub-nodes of `node`, looking through anonymous groups, skipping whitespace and literals."""
    for child in node.children:
        name = child.expr_name
        if name in _SKIPPED:
            continue
        if name:
            yield child
        elif child.children:
            yield from _parts(child)


def _position(text: str, pos: int) -> tuple[int, int]:
    line = text.count("\n", 0, pos) + 1
    col = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return line, col


class _Builder:
    """Turns one parse tree into AST nodes; raises TraceQLError(parse) for bad literals."""

    def __init__(self, text: str) -> None:
        self.text = text

    def error(self, node: Node, detail: str) -> TraceQLError:
        line, col = _position(self.text, node.start)
        return TraceQLError("parse", detail, line, col)

    def build(self, node: Node) -> object:
        method: Callable[[Node], object] | None = getattr(self, "b_" + node.expr_name, None)
        if method is not None:
            return method(node)
        parts = list(_parts(node))
        if len(parts) != 1:
            raise AssertionError(f"no builder for rule {node.expr_name!r}")
        return self.build(parts[0])

    # ---- roots

    def b_query(self, node: Node) -> Query:
        (root,) = _parts(node)
        return self.build(root)  # type: ignore[return-value]

    def _hints(self, parts: list[Node]) -> dict[str, Static]:
        hints: dict[str, Static] = {}
        for p in parts:
            if p.expr_name == "hints":
                for hint in _walk(p, "hint"):
                    name_node, value_node = _parts(hint)
                    hints[name_node.text] = self.build(value_node)  # type: ignore[assignment]
        return hints

    def b_pipeline_root(self, node: Node) -> Query:
        parts = list(_parts(node))
        return Query(pipeline=self.b_spanset_pipeline(parts[0]), hints=self._hints(parts))

    def b_scalar_pipeline_root(self, node: Node) -> Query:
        parts = list(_parts(node))
        scalar_filter = self.build(parts[0])
        return Query(pipeline=Pipeline((scalar_filter,)), hints=self._hints(parts))  # type: ignore[arg-type]

    def b_metrics_root(self, node: Node) -> Query:
        parts = list(_parts(node))
        pipeline = self.b_spanset_pipeline(parts[0])
        metrics = self.build(parts[1])
        second = tuple(self.build(p) for p in parts if p.expr_name == "second_stage")
        return Query(
            pipeline=pipeline,
            metrics=metrics,  # type: ignore[arg-type]
            second_stage=second,  # type: ignore[arg-type]
            hints=self._hints(parts),
        )

    # ---- pipelines and spansets

    def b_spanset_pipeline(self, node: Node) -> Pipeline:
        return Pipeline(tuple(self.build(p) for p in _parts(node)))  # type: ignore[misc]

    def b_paren_pipeline(self, node: Node) -> object:
        (inner,) = _parts(node)
        pipeline = self.b_spanset_pipeline(inner)
        only = pipeline.stages[0]
        if len(pipeline.stages) == 1 and isinstance(only, (SpansetFilter, SpansetOperation, Pipeline)):
            return only
        return pipeline

    def b_spanset_filter(self, node: Node) -> SpansetFilter:
        parts = list(_parts(node))
        return SpansetFilter(self.build(parts[0]) if parts else TRUE)  # type: ignore[arg-type]

    def b_spanset_expression(self, node: Node) -> object:
        parts = list(_parts(node))
        operands = [self.build(parts[0])]
        ops: list[str] = []
        for tail in parts[1:]:
            op_node, operand = _parts(tail)
            ops.append(op_node.text)
            operands.append(self.build(operand))

        # Structural operators bind tighter than && and ||; both levels are left-associative.
        def fold(items: list[object], symbols: list[str]) -> object:
            acc = items[0]
            for sym, item in zip(symbols, items[1:], strict=True):
                acc = SpansetOperation(_SPANSET_OPS[sym], acc, item)  # type: ignore[arg-type]
            return acc

        groups: list[object] = []
        group_items = [operands[0]]
        group_ops: list[str] = []
        low_ops: list[str] = []
        for sym, operand in zip(ops, operands[1:], strict=True):
            if sym in ("&&", "||"):
                groups.append(fold(group_items, group_ops))
                low_ops.append(sym)
                group_items, group_ops = [operand], []
            else:
                group_items.append(operand)
                group_ops.append(sym)
        groups.append(fold(group_items, group_ops))
        return fold(groups, low_ops)

    def b_group_op(self, node: Node) -> GroupBy:
        _, expr = _parts(node)
        return GroupBy(self.build(expr))  # type: ignore[arg-type]

    def b_coalesce_op(self, node: Node) -> Coalesce:
        return Coalesce()

    def b_select_op(self, node: Node) -> Select:
        return Select(tuple(self.build(a) for a in _walk(node, "attribute_ref")))  # type: ignore[misc]

    # ---- scalar expressions

    def b_scalar_filter(self, node: Node) -> ScalarFilter:
        lhs, op, rhs = _parts(node)
        return ScalarFilter(_OPS[op.text], self.build(lhs), self.build(rhs))  # type: ignore[arg-type]

    b_scalar_pipeline_filter = b_scalar_filter

    def _arith_list(self, node: Node) -> object:
        parts = list(_parts(node))
        operands = [self.build(parts[0])]
        ops: list[str] = []
        for tail in parts[1:]:
            op_node, operand = _parts(tail)
            ops.append(op_node.text)
            operands.append(self.build(operand))
        return _fold_arith(
            operands, ops, lambda sym, a, b: ScalarOperation(_OPS[sym], cast(ScalarExpr, a), cast(ScalarExpr, b))
        )

    b_scalar_expression = _arith_list
    b_scalar_pipeline_expression = _arith_list

    def b_paren_scalar(self, node: Node) -> object:
        (inner,) = _parts(node)
        return self.build(inner)

    b_paren_scalar_pipeline = b_paren_scalar
    b_paren_field = b_paren_scalar

    def b_scalar_pipeline(self, node: Node) -> ScalarPipeline:
        pipeline, aggregate = _parts(node)
        return ScalarPipeline(self.b_spanset_pipeline(pipeline), self.build(aggregate))  # type: ignore[arg-type]

    def b_count_aggregate(self, node: Node) -> Aggregate:
        return Aggregate(AggregateOp.COUNT)

    def b_value_aggregate(self, node: Node) -> Aggregate:
        name, expr = _parts(node)
        return Aggregate(_AGGREGATE_OPS[name.text], self.build(expr))  # type: ignore[arg-type]

    # ---- field expressions

    def b_field_expression(self, node: Node) -> object:
        tokens: list[tuple[str, object]] = []
        for part in _parts(node):
            if part.expr_name == "fe_tail":
                op_node, operand = _parts(part)
                tokens.append(("op", op_node.text))
                part = operand
            for piece in _parts(part):
                if piece.expr_name == "fe_prefix":
                    tokens.append(("prefix", next(_parts(piece)).text))
                else:
                    tokens.append(("value", self.build(piece)))
        return _fold_field_expression(tokens)

    # ---- names

    def b_attribute(self, node: Node) -> Attribute:
        prefix, name = _parts(node)
        scope, parent = _SCOPES[prefix.text]
        try:
            decoded = _decode_attribute_name(name.text)
        except ValueError as exc:
            raise self.error(name, str(exc)) from None
        if not decoded:
            raise self.error(name, "empty attribute name")
        return Attribute(decoded, scope, parent)

    def b_intrinsic(self, node: Node) -> Intrinsic:
        return _INTRINSICS[node.text]

    # ---- literals

    def b_duration(self, node: Node) -> Static:
        ns = parse_duration(node.text)
        if ns is None:
            raise self.error(node, f"invalid duration {_abbreviated(node.text)!r}")
        return Static(StaticType.DURATION, ns)

    def b_float(self, node: Node) -> Static:
        return Static(StaticType.FLOAT, float(node.text))

    def b_integer(self, node: Node) -> Static:
        value = _int64_or_none(node.text)
        if value is None:
            raise self.error(node, f"integer {_abbreviated(node.text)} out of range")
        return Static(StaticType.INT, value)

    def b_string(self, node: Node) -> Static:
        try:
            return Static(StaticType.STRING, unquote_go_string(node.text))
        except ValueError as exc:
            raise self.error(node, f"invalid string literal: {exc}") from None

    def b_static_keyword(self, node: Node) -> Static:
        return _KEYWORD_STATICS[node.text]

    def b_signed_number(self, node: Node) -> Static:
        parts = list(_parts(node))
        value: Static = self.build(parts[-1])  # type: ignore[assignment]
        if len(parts) == 2:
            negated = _negate_static(value)
            if negated is None:
                raise self.error(node, f"number {_abbreviated(node.text)} out of range")
            return negated
        return value

    # ---- metrics

    def _metrics_by(self, node: Node) -> tuple[object, ...]:
        return tuple(self.build(a) for b in _walk(node, "metrics_by") for a in _walk(b, "attribute_ref"))

    def b_rate_fn(self, node: Node) -> MetricsAggregate:
        return MetricsAggregate(MetricsOp.RATE, by=self._metrics_by(node))  # type: ignore[arg-type]

    def b_count_over_time_fn(self, node: Node) -> MetricsAggregate:
        return MetricsAggregate(MetricsOp.COUNT_OVER_TIME, by=self._metrics_by(node))  # type: ignore[arg-type]

    def b_over_time_fn(self, node: Node) -> MetricsAggregate:
        parts = list(_parts(node))
        return MetricsAggregate(
            _METRICS_OPS[parts[0].text.strip()],
            attribute=self.build(parts[1]),  # type: ignore[arg-type]
            by=self._metrics_by(node),  # type: ignore[arg-type]
        )

    def b_quantile_fn(self, node: Node) -> MetricsAggregate:
        parts = list(_parts(node))
        quantiles = tuple(
            self.build(q).as_float()  # type: ignore[attr-defined]
            for arg in parts
            if arg.expr_name == "quantile_arg"
            for q in _parts(arg)
        )
        return MetricsAggregate(
            MetricsOp.QUANTILE_OVER_TIME,
            attribute=self.build(parts[1]),  # type: ignore[arg-type]
            by=self._metrics_by(node),  # type: ignore[arg-type]
            quantiles=quantiles,
        )

    def b_compare_fn(self, node: Node) -> MetricsAggregate:
        parts = list(_parts(node))
        ints = [int(self.build(i).value) for i in _walk(node, "integer")]  # type: ignore[attr-defined]
        return MetricsAggregate(
            MetricsOp.COMPARE,
            compare_filter=self.build(parts[1]),  # type: ignore[arg-type]
            top_n=ints[0] if ints else 10,
            start_ns=ints[1] if len(ints) > 1 else 0,
            end_ns=ints[2] if len(ints) > 2 else 0,
        )

    def b_topk_stage(self, node: Node) -> TopK | BottomK:
        name, k = _parts(node)
        value = int(self.build(k).value)  # type: ignore[attr-defined]
        return TopK(value) if name.text == "topk" else BottomK(value)

    def b_metrics_filter(self, node: Node) -> MetricsFilter:
        op, value = _parts(node)
        return MetricsFilter(_OPS[op.text], self.build(value))  # type: ignore[arg-type]


def _walk(node: Node, name: str) -> Iterator[Node]:
    """Descendants named `name`, not looking inside a match (e.g. every `attribute_ref` of a list)."""
    for child in node.children:
        if child.expr_name == name:
            yield child
        else:
            yield from _walk(child, name)


def _negate_static(value: object) -> Static | None:
    """`-literal` folded into a literal; None if `value` is not a numeric literal (or overflows)."""
    if not isinstance(value, Static) or not value.type.is_numeric:
        return None
    negated = -value.value  # type: ignore[operator]
    if value.type is not StaticType.FLOAT and not INT64_MIN <= negated <= INT64_MAX:
        return None
    return Static(value.type, negated)


# Field expression precedence (traceql.md §5.1): && || < comparisons < + - < ! < * / % < ^ < unary -.
_FIELD_PRECEDENCE = {
    "&&": 1,
    "||": 1,
    "=": 2,
    "!=": 2,
    "<": 2,
    "<=": 2,
    ">": 2,
    ">=": 2,
    "=~": 2,
    "!~": 2,
    "+": 3,
    "-": 3,
    "*": 5,
    "/": 5,
    "%": 5,
    "^": 6,
}
_NOT_OPERAND_PRECEDENCE = 5  # `!a * b` is `!(a * b)`, `!a + b` is `(!a) + b`
_NEG_OPERAND_PRECEDENCE = 7  # `-a ^ 2` is `(-a) ^ 2`


def _fold_field_expression(tokens: list[tuple[str, object]]) -> object:
    """Pratt parsing of prefix/value/op tokens; left-deep chains are built iteratively."""
    idx = 0

    def expr(min_prec: int) -> object:
        nonlocal idx
        kind, value = tokens[idx]
        idx += 1
        lhs: object
        if kind == "prefix" and value == "!":
            lhs = UnaryOp(Op.NOT, expr(_NOT_OPERAND_PRECEDENCE))  # type: ignore[arg-type]
        elif kind == "prefix":
            operand = expr(_NEG_OPERAND_PRECEDENCE)
            folded = _negate_static(operand)
            lhs = folded if folded is not None else UnaryOp(Op.SUB, operand)  # type: ignore[arg-type]
        else:
            lhs = value
        while idx < len(tokens):
            sym = str(tokens[idx][1])
            prec = _FIELD_PRECEDENCE[sym]
            if prec < min_prec:
                break
            idx += 1
            rhs = expr(prec if sym == "^" else prec + 1)
            lhs = BinaryOp(_OPS[sym], lhs, rhs)  # type: ignore[arg-type]
        return lhs

    return expr(1)


def _fold_arith(operands: list[object], ops: list[str], make: Callable[[str, object, object], object]) -> object:
    """Precedence climbing over `a op b op c ...` (`+ -` < `* / %` < `^`, `^` right-associative)."""
    idx = 0

    def climb(min_prec: int) -> object:
        nonlocal idx
        lhs = operands[idx]
        while idx < len(ops) and _ARITH_PRECEDENCE[ops[idx]] >= min_prec:
            sym = ops[idx]
            prec = _ARITH_PRECEDENCE[sym]
            idx += 1
            rhs = climb(prec if sym == "^" else prec + 1)
            lhs = make(sym, lhs, rhs)
        return lhs

    return climb(1)


_FRIENDLY_EXPECTED = {
    "lbrace": "'{'",
    "rbrace": "'}'",
    "lparen": "'('",
    "rparen": "')'",
    "pipe": "'|'",
    "comma": "','",
    "assign": "'='",
    "spanset_filter": "a spanset filter { ... }",
    "field_expression": "an expression",
    "attribute_name": "an attribute name",
    "scalar_cmp_op": "a comparison operator",
    "field_cmp_op": "an operator",
    "eof": "end of query",
}


def _syntax_error(text: str, exc: ParseError) -> TraceQLError:
    pos = exc.pos
    line, col = _position(text, pos)
    if pos >= len(text):
        found = "end of query"
    elif text[pos].isspace():
        found = "whitespace"
    else:
        token = re.match(r"[A-Za-z0-9_.:]+|\S{1,3}", text[pos:])
        found = repr(token.group(0) if token else text[pos])
    detail = f"syntax error: unexpected {found}"
    expected = _FRIENDLY_EXPECTED.get(getattr(exc.expr, "name", ""))
    if expected:
        detail += f", expected {expected}"
    return TraceQLError("parse", detail, line, col)


def check_size(query: str) -> None:
    size = len(query.encode("utf-8", "surrogatepass"))
    if size > MAX_QUERY_BYTES:
        raise TraceQLError("parse", f"query is {size} bytes, larger than the limit of {MAX_QUERY_BYTES} bytes")


def parse_tree(text: str, rule: str | None = None) -> object:
    """Parse `text` (with the whole grammar, or one rule) into AST nodes without validating."""
    check_size(text)
    expr = GRAMMAR.default_rule if rule is None else GRAMMAR[rule]
    try:
        node = expr.parse(text)
    except IncompleteParseError as exc:
        raise _syntax_error(text, exc) from None
    except ParseError as exc:
        raise _syntax_error(text, exc) from None
    return _Builder(text).build(node)


def parse_query(text: str) -> Query:
    """Parse a full query into a `Query` (no validation)."""
    result = parse_tree(text)
    assert isinstance(result, Query)
    return result


__all__ = ["parse_duration", "parse_query", "parse_tree", "unquote_go_string", "MAX_QUERY_BYTES"]

"""TraceQL text -> AST: runs the parsimonious grammar (`grammar.py`) and turns its parse tree into `ast` nodes,
with syntax errors located by line and column. Literals are decoded by `literals.py` (durations, integers,
Go strings) and operator chains folded by `precedence.py`. Pure functions, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import cast

from parsimonious.exceptions import IncompleteParseError, ParseError
from parsimonious.nodes import Node

from tempo_lite.traceql.ast import (
    INT64_MAX,
    INT64_MIN,
    Aggregate,
    AggregateOp,
    Attribute,
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
)
from tempo_lite.traceql.grammar import GRAMMAR
from tempo_lite.traceql.literals import decode_attribute_name, int64_or_none, parse_duration, unquote_go_string
from tempo_lite.traceql.precedence import fold_arith, fold_field_expression, negate_static

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



def _abbreviated(text: str) -> str:
    return text if len(text) <= 40 else f"{text[:20]}... ({len(text)} characters)"


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

    def _operand_list(self, node: Node) -> tuple[list[object], list[str]]:
        """`a op b op c ...` as its operands (built) and its operator symbols, for precedence folding."""
        parts = list(_parts(node))
        operands = [self.build(parts[0])]
        ops: list[str] = []
        for tail in parts[1:]:
            op_node, operand = _parts(tail)
            ops.append(op_node.text)
            operands.append(self.build(operand))
        return operands, ops

    def b_spanset_expression(self, node: Node) -> object:
        operands, ops = self._operand_list(node)

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
        operands, ops = self._operand_list(node)
        return fold_arith(
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
        return fold_field_expression(tokens)

    # ---- names

    def b_attribute(self, node: Node) -> Attribute:
        prefix, name = _parts(node)
        scope, parent = _SCOPES[prefix.text]
        try:
            decoded = decode_attribute_name(name.text)
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
        value = int64_or_none(node.text)
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
            negated = negate_static(value)
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


__all__ = ["parse_query", "parse_tree", "MAX_QUERY_BYTES"]

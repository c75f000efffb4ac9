"""Arithmetic between TraceQL metrics queries (Tempo main / 3.1-dev): `(q1) / (q2)`, `100 * (q)`. Pure.

`parse_metrics_expression(text)` recognises a top level of parenthesised operands and number literals
joined by `+ - * /` (precedence `* /` over `+ -`, left to right); each parenthesised operand is either
another such expression or one metrics query (parsed and validated by `traceql.parse`). Text that is not
of this form gives None and is left to the ordinary parser, so `({ a } && { b }) | rate()` stays a query.

`combine(node, results)` evaluates the tree over the series of each query (traceql.md §9, [main]):
* series are matched by identical label sets (without `__name__`); a side that is one unlabelled series
  (an ungrouped query) is applied to every series of the other side; unmatched series are dropped;
* a scalar applies to every series; integer-only scalar sub-expressions use integer math (`1/2 = 0`,
  truncated toward zero as Go does);
* division by zero and intervals missing on either side are NaN, i.e. omitted; series left without
  samples are dropped; results carry no `__name__` and no exemplars.
Second stages (`| topk(...)`) after an expression are not supported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from tempo_lite.traceql.ast import Query, TraceQLError
from tempo_lite.traceql.metrics import Labels, Series, label_sort_key

_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_OPS = "+-*/"


@dataclass(frozen=True)
class Scalar:
    value: int | float


@dataclass(frozen=True)
class Leaf:
    text: str
    query: Query


@dataclass(frozen=True)
class BinOp:
    op: str
    lhs: Node
    rhs: Node


Node = Scalar | Leaf | BinOp


def _tokens(text: str) -> list[tuple[str, str]] | None:
    """Top-level tokens ("group", inner text) / ("num", text) / ("op", op), or None if some top-level
    character is anything else (the text is then a plain query)."""
    out: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c in _OPS:
            out.append(("op", c))
            i += 1
        elif c == "(":
            end = _closing(text, i)
            if end is None:
                return None
            out.append(("group", text[i + 1:end]))
            i = end + 1
        elif (m := _NUMBER.match(text, i)) is not None:
            out.append(("num", m.group()))
            i = m.end()
        else:
            return None
    return out


def _closing(text: str, start: int) -> int | None:
    """Index of the `)` closing the `(` at `start`, skipping strings and braces."""
    depth = 0
    quote: str | None = None
    i = start
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\" and quote == '"':
                i += 2
                continue
            if c == quote:
                quote = None
        elif c in "\"`":
            quote = c
        elif c in "({":
            depth += 1
        elif c in ")}":
            depth -= 1
            if depth == 0:
                return i if c == ")" else None
        i += 1
    return None


def parse_metrics_expression(text: str) -> Node | None:
    """The expression tree, or None when `text` is not arithmetic between metrics queries."""
    root = _expression(text)
    if root is not None and not leaves(root):
        raise TraceQLError("parse", "metrics arithmetic needs at least one metrics query")
    return root


def _expression(text: str) -> Node | None:
    from tempo_lite.traceql import parse

    tokens = _tokens(text)
    if not tokens or not any(kind == "op" for kind, _ in tokens):
        return None
    if len(tokens) % 2 == 0 or any((kind == "op") != (i % 2 == 1) for i, (kind, _) in enumerate(tokens)):
        raise TraceQLError("parse", "metrics arithmetic: expected `(query) op (query)`, numbers and + - * /")

    def operand(kind: str, value: str) -> Node:
        if kind == "group" and _NUMBER.fullmatch(value.strip()):
            kind, value = "num", value.strip()
        if kind == "num":
            return Scalar(float(value) if "." in value else int(value))
        nested = _expression(value)
        if nested is not None:
            return nested
        query = parse(value)
        if query.metrics is None:
            raise TraceQLError("validate", f"metrics arithmetic: ({value.strip()}) is not a metrics query")
        return Leaf(value, query)

    nodes = [operand(kind, value) for kind, value in tokens[0::2]]
    ops = [value for _, value in tokens[1::2]]
    # `*` and `/` first, then `+` and `-`, each left to right.
    for group in ("*/", "+-"):
        i = 0
        while i < len(ops):
            if ops[i] in group:
                nodes[i:i + 2] = [BinOp(ops[i], nodes[i], nodes[i + 1])]
                del ops[i]
            else:
                i += 1
    (root,) = nodes
    return root


def leaves(node: Node) -> list[Leaf]:
    if isinstance(node, Leaf):
        return [node]
    if isinstance(node, BinOp):
        return leaves(node.lhs) + leaves(node.rhs)
    return []


# ------------------------------------------------------------------------------------------- evaluation

Value = int | float | dict[Labels, np.ndarray]


def _scalar_op(op: str, a: int | float, b: int | float) -> int | float:
    if op == "/" and b == 0:
        return float("nan")
    if isinstance(a, int) and isinstance(b, int):
        if op == "/":
            q = abs(a) // abs(b)
            return q if (a >= 0) == (b >= 0) else -q
        return {"+": a + b, "-": a - b, "*": a * b}[op]
    return {"+": a + b, "-": a - b, "*": a * b, "/": a / b}[op]


def _array_op(op: str, a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        if op == "/":
            return np.where(np.asarray(b) == 0, np.nan, np.divide(a, b))
        return {"+": np.add, "-": np.subtract, "*": np.multiply}[op](a, b)


def _value(node: Node, results: dict[int, list[Series]]) -> Value:
    if isinstance(node, Scalar):
        return node.value
    if isinstance(node, Leaf):
        out: dict[Labels, np.ndarray] = {}
        for s in results[id(node)]:
            out[tuple(lab for lab in s.labels if lab[0] != "__name__")] = s.values.astype(np.float64)
        return out
    lhs, rhs = _value(node.lhs, results), _value(node.rhs, results)
    if not isinstance(lhs, dict) and not isinstance(rhs, dict):
        return _scalar_op(node.op, lhs, rhs)
    if not isinstance(rhs, dict):
        assert isinstance(lhs, dict)  # not both scalars (above)
        return {k: _array_op(node.op, v, float(rhs)) for k, v in lhs.items()}
    if not isinstance(lhs, dict):
        return {k: _array_op(node.op, float(lhs), v) for k, v in rhs.items()}
    if list(rhs) == [()]:
        return {k: _array_op(node.op, v, rhs[()]) for k, v in lhs.items()}
    if list(lhs) == [()]:
        return {k: _array_op(node.op, lhs[()], v) for k, v in rhs.items()}
    return {k: _array_op(node.op, v, rhs[k]) for k, v in lhs.items() if k in rhs}


def combine(node: Node, results: dict[int, list[Series]]) -> list[Series]:
    """The expression's series; `results` maps `id(leaf)` to that query's series (same intervals)."""
    value = _value(node, results)
    assert isinstance(value, dict)  # parse_metrics_expression refuses scalar-only expressions
    out = [Series(labels, np.asarray(values, dtype=np.float64)) for labels, values in value.items()]
    out = [s for s in out if not np.isnan(s.values).all()]
    out.sort(key=lambda s: label_sort_key(s.labels))
    return out

"""Operator precedence of TraceQL expressions: the parser collects flat operand/operator lists and these
fold them into left-deep (or, for `^`, right-deep) `BinaryOp` trees, without recursion per operand.
"""

from __future__ import annotations

from collections.abc import Callable

from tempo_lite.traceql.nodes import INT64_MAX, INT64_MIN, BinaryOp, Op, Static, StaticType, UnaryOp

# Binding strength of binary operators inside flat operand lists (higher binds tighter).
_ARITH_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2, "%": 2, "^": 3}


def negate_static(value: object) -> Static | None:
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


def fold_field_expression(tokens: list[tuple[str, object]]) -> object:
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
            folded = negate_static(operand)
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
            lhs = BinaryOp(Op(sym), lhs, rhs)  # type: ignore[arg-type]
        return lhs

    return expr(1)


def fold_arith(operands: list[object], ops: list[str], make: Callable[[str, object, object], object]) -> object:
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

"""Static (parse-time) type rules of TraceQL expressions, shared by the validator and the engine: the type
an expression implies, which operators accept which operand types (traceql.md §5.2), and the helpers that
walk expressions without recursion.
"""

from __future__ import annotations

from collections.abc import Collection

from tempo_lite.traceql.nodes import (
    Aggregate,
    AggregateOp,
    Attribute,
    BinaryOp,
    FieldExpr,
    Intrinsic,
    Op,
    ScalarExpr,
    ScalarOperation,
    ScalarPipeline,
    Static,
    StaticType,
    UnaryOp,
)


def implied_type(expr: FieldExpr | ScalarExpr) -> StaticType:
    """The static type of a field or scalar expression (ATTRIBUTE when only known at run time)."""
    if isinstance(expr, Static):
        return expr.type
    if isinstance(expr, Attribute):
        return StaticType.ATTRIBUTE
    if isinstance(expr, Intrinsic):
        return expr.static_type
    if isinstance(expr, (BinaryOp, ScalarOperation)):
        if expr.op.is_boolean:
            return StaticType.BOOL
        lhs = implied_type(expr.lhs)
        return lhs if lhs is not StaticType.ATTRIBUTE else implied_type(expr.rhs)
    if isinstance(expr, UnaryOp):
        return StaticType.BOOL if expr.op is Op.NOT else implied_type(expr.operand)
    if isinstance(expr, Aggregate):
        if expr.op is AggregateOp.COUNT or expr.expr is None:
            return StaticType.INT
        if expr.op is AggregateOp.AVG:
            return StaticType.FLOAT
        inner = implied_type(expr.expr)
        return inner if inner.is_numeric else StaticType.FLOAT
    if isinstance(expr, ScalarPipeline):
        return implied_type(expr.aggregate)
    raise TypeError(f"not an expression: {expr!r}")


def references_span(expr: FieldExpr) -> bool:
    """True if the expression reads any span field (attribute or intrinsic)."""
    stack: list[FieldExpr] = [expr]
    while stack:
        e = stack.pop()
        if isinstance(e, (Attribute, Intrinsic)):
            return True
        if isinstance(e, BinaryOp):
            stack += (e.lhs, e.rhs)
        elif isinstance(e, UnaryOp):
            stack.append(e.operand)
    return False


def left_spine(expr: BinaryOp, ops: Collection[Op] | None = None) -> tuple[FieldExpr, list[BinaryOp]]:
    """Unwind a left-deep chain `x op1 y op2 z ...` without recursion.

    Returns the innermost left operand and the BinaryOp nodes from the innermost outwards, so the
    chain can be evaluated iteratively: `acc = eval(first); for node in ops: acc = node.op(acc, node.rhs)`.
    Long `&&`/`||` chains (thousands of terms fit in 128 KiB) are left-deep trees this deep. With
    `ops`, only nodes with those operators are unwound (e.g. `{Op.AND, Op.OR}`), else any BinaryOp.
    """
    chain: list[BinaryOp] = []
    e: FieldExpr = expr
    while isinstance(e, BinaryOp) and (ops is None or e.op in ops):
        chain.append(e)
        e = e.lhs
    chain.reverse()
    return e, chain


def is_matching_operand(lhs: StaticType, rhs: StaticType) -> bool:
    """Tempo's "matching operands": same type, both numeric, either nil, or either unknown."""
    if StaticType.ATTRIBUTE in (lhs, rhs) or StaticType.NIL in (lhs, rhs):
        return True
    return lhs is rhs or (lhs.is_numeric and rhs.is_numeric)


_NUMERIC_OPS = frozenset(op for op in Op if op.is_arithmetic) | {Op.EQ, Op.NEQ, Op.LT, Op.LTE, Op.GT, Op.GTE}
_STRING_OPS = frozenset({Op.EQ, Op.NEQ, Op.LT, Op.LTE, Op.GT, Op.GTE, Op.REGEX, Op.NOT_REGEX})
_BOOL_OPS = frozenset({Op.AND, Op.OR, Op.EQ, Op.NEQ})
_EQUALITY_OPS = frozenset({Op.EQ, Op.NEQ})


def binary_type_valid(op: Op, t: StaticType) -> bool:
    """Whether an operand of static type `t` may appear on either side of `op` (§5.2)."""
    if t is StaticType.ATTRIBUTE:
        return True
    if t.is_numeric:
        return op in _NUMERIC_OPS
    if t is StaticType.STRING:
        return op in _STRING_OPS
    if t is StaticType.BOOL:
        return op in _BOOL_OPS
    return op in _EQUALITY_OPS  # nil, status, kind


def unary_type_valid(op: Op, t: StaticType) -> bool:
    if t is StaticType.ATTRIBUTE:
        return True
    if op is Op.SUB:
        return t.is_numeric
    return op is Op.NOT and t is StaticType.BOOL


"""What a TraceQL query reads and how its pipeline is shaped: the AST walks the engine and the querier's
push-down share (they read the query only, never a span table).

    stage_filters(node, out)      every `{ ... }` filter of a pipeline or spanset operation
    starts_unfiltered(node)       whether some pipeline starts with a stage that takes every span
    field_refs(expr, out)         the attributes and intrinsics one field expression reads
    referenced_fields(query)      every attribute and intrinsic the query reads
    needs_nested_sets(node)       whether evaluation needs the nested-set columns
    shown_conditions(query, attr) the conditions an attribute's shown value must pass in results
"""

from __future__ import annotations

from tempo_lite.traceql.ast import (
    Aggregate,
    Attribute,
    AttributeRef,
    BinaryOp,
    Coalesce,
    FieldExpr,
    GroupBy,
    Intrinsic,
    Op,
    Pipeline,
    Query,
    ScalarFilter,
    Select,
    SpansetFilter,
    SpansetOperation,
    Static,
    StaticType,
    UnaryOp,
)

# Intrinsics whose value depends on other spans of the trace (unknown when only part of a trace is seen).
TRACE_DEPENDENT = frozenset(
    {
        Intrinsic.TRACE_DURATION,
        Intrinsic.TRACE_ROOT_NAME,
        Intrinsic.TRACE_ROOT_SERVICE,
        Intrinsic.NESTED_SET_LEFT,
        Intrinsic.NESTED_SET_RIGHT,
        Intrinsic.NESTED_SET_PARENT,
        Intrinsic.CHILD_COUNT,
    }
)
# Trace-level intrinsics a block's trace table knows for every trace (`TraceLevel`).
TRACE_TABLE_INTRINSICS = frozenset({Intrinsic.TRACE_DURATION, Intrinsic.TRACE_ROOT_NAME, Intrinsic.TRACE_ROOT_SERVICE})
NESTED_SET_INTRINSICS = frozenset(
    {
        Intrinsic.NESTED_SET_LEFT,
        Intrinsic.NESTED_SET_RIGHT,
        Intrinsic.NESTED_SET_PARENT,
        Intrinsic.CHILD_COUNT,
    }
)
COMPARISONS = frozenset({Op.EQ, Op.NEQ, Op.LT, Op.LTE, Op.GT, Op.GTE, Op.REGEX, Op.NOT_REGEX})


def stage_filters(node: object, out: list[SpansetFilter]) -> None:
    """Append every `{ ... }` filter of `node` (a stage, pipeline or spanset operation) to `out`."""
    if isinstance(node, SpansetFilter):
        out.append(node)
    elif isinstance(node, SpansetOperation):
        stage_filters(node.lhs, out)
        stage_filters(node.rhs, out)
    elif isinstance(node, Pipeline):
        for st in node.stages:
            stage_filters(st, out)


def starts_unfiltered(node: object) -> bool:
    """True if some pipeline starts with a stage that passes spans without a filter."""
    if isinstance(node, Pipeline):
        first = node.stages[0]
        if isinstance(first, (ScalarFilter, GroupBy, Select, Coalesce)):
            return True
        return any(starts_unfiltered(st) for st in node.stages)
    if isinstance(node, SpansetOperation):
        return starts_unfiltered(node.lhs) or starts_unfiltered(node.rhs)
    return False


def filters_only(pipeline: object) -> bool:
    """A top-level pipeline of `{ }` filters and select() stages (one spanset per matching trace)."""
    return isinstance(pipeline, Pipeline) and all(isinstance(st, (SpansetFilter, Select)) for st in pipeline.stages)


def field_refs(expr: object, out: list[AttributeRef]) -> None:
    """Append the attributes and intrinsics the field expression `expr` reads to `out`."""
    if isinstance(expr, (Attribute, Intrinsic)):
        out.append(expr)
    elif isinstance(expr, BinaryOp):
        field_refs(expr.lhs, out)
        field_refs(expr.rhs, out)
    elif isinstance(expr, UnaryOp):
        field_refs(expr.operand, out)


def referenced_fields(node: object, out: list[AttributeRef] | None = None) -> list[AttributeRef]:
    """Every attribute and intrinsic the query reads (conditions, select(), by(), aggregates)."""
    out = [] if out is None else out
    if isinstance(node, Query):
        referenced_fields(node.pipeline, out)
    elif isinstance(node, Pipeline):
        for st in node.stages:
            referenced_fields(st, out)
    elif isinstance(node, SpansetFilter):
        field_refs(node.expr, out)
    elif isinstance(node, SpansetOperation):
        referenced_fields(node.lhs, out)
        referenced_fields(node.rhs, out)
    elif isinstance(node, ScalarFilter):
        referenced_fields(node.lhs, out)
        referenced_fields(node.rhs, out)
    elif isinstance(node, Aggregate):
        if node.expr is not None:
            field_refs(node.expr, out)
    elif isinstance(node, GroupBy):
        field_refs(node.expr, out)
    elif isinstance(node, Select):
        out.extend(node.attributes)
    return out


def uses_nested_sets(expr: FieldExpr) -> bool:
    """Whether a field expression reads a nested-set intrinsic."""
    if isinstance(expr, Intrinsic):
        return expr in NESTED_SET_INTRINSICS
    if isinstance(expr, BinaryOp):
        return uses_nested_sets(expr.lhs) or uses_nested_sets(expr.rhs)
    if isinstance(expr, UnaryOp):
        return uses_nested_sets(expr.operand)
    return False


def needs_nested_sets(node: object) -> bool:
    """Whether evaluating `node` needs the nested-set columns (structural operators, nested-set intrinsics)."""
    if isinstance(node, SpansetOperation):
        return node.op.is_structural or needs_nested_sets(node.lhs) or needs_nested_sets(node.rhs)
    if isinstance(node, Pipeline):
        return any(needs_nested_sets(st) for st in node.stages)
    if isinstance(node, SpansetFilter):
        return uses_nested_sets(node.expr)
    if isinstance(node, GroupBy):
        return uses_nested_sets(node.expr)
    if isinstance(node, ScalarFilter):
        return (
            isinstance(node.lhs, Aggregate) and node.lhs.expr is not None and uses_nested_sets(node.lhs.expr)
        )
    if isinstance(node, Select):
        return any(uses_nested_sets(a) for a in node.attributes)
    return False


def trace_dependent(expr: FieldExpr, unknown: frozenset[Intrinsic] = TRACE_DEPENDENT) -> bool:
    """Whether a field expression reads one of the intrinsics `unknown` (by default: every trace-dependent one)."""
    if isinstance(expr, Intrinsic):
        return expr in unknown
    if isinstance(expr, BinaryOp):
        return trace_dependent(expr.lhs, unknown) or trace_dependent(expr.rhs, unknown)
    if isinstance(expr, UnaryOp):
        return trace_dependent(expr.operand, unknown)
    return False


def rescope(expr: FieldExpr, old: Attribute, new: Attribute) -> FieldExpr:
    """A condition on `old` (one side of a comparison) as the same condition on `new`."""
    assert isinstance(expr, BinaryOp)
    lhs = new if expr.lhs == old else expr.lhs
    rhs = new if expr.rhs == old else expr.rhs
    return BinaryOp(expr.op, lhs, rhs)


def shown_conditions(query: Query, attr: Attribute) -> list[FieldExpr]:
    """The conditions an event/link attribute's shown value must pass: Tempo's storage keeps only the
    values that pass a comparison of the attribute with a literal pushed down from the query, or every
    value when some reference has no such comparison (select(), by(), aggregates, other expressions)."""
    every: list[FieldExpr] = [BinaryOp(Op.NEQ, attr, Static(StaticType.NIL, None))]
    filters: list[SpansetFilter] = []
    stage_filters(query.pipeline, filters)
    conds: list[FieldExpr] = []
    in_filters: list[AttributeRef] = []
    for f in filters:
        if not _attr_conditions(f.expr, attr, conds):
            return every
        field_refs(f.expr, in_filters)
    if referenced_fields(query).count(attr) > in_filters.count(attr) or not conds:
        return every
    return conds


def _attr_conditions(expr: object, attr: Attribute, out: list[FieldExpr]) -> bool:
    """Collect `attr op literal` comparisons; False if `attr` is used any other way."""
    if expr == attr:
        return False
    if isinstance(expr, BinaryOp):
        sides = (expr.lhs, expr.rhs)
        if expr.op in COMPARISONS and attr in sides and any(isinstance(x, Static) for x in sides):
            out.append(expr)
            return True
        return _attr_conditions(expr.lhs, attr, out) and _attr_conditions(expr.rhs, attr, out)
    if isinstance(expr, UnaryOp):
        return _attr_conditions(expr.operand, attr, out)
    return True

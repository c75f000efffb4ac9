"""Translate a TraceQL query into what a block search must read: the few columns its span filters need
(to find candidate traces before reading anything else), and the row groups whose Parquet statistics
prove that no span in them can pass any filter of the query.

Pure functions over the query AST, the block's dedicated-column mapping and Parquet footer metadata;
the reading itself is done by `querier.search`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pyarrow.parquet as pq

from tempo_lite.block.reader import Footer
from tempo_lite.traceql.ast import (
    Aggregate,
    Attribute,
    AttributeRef,
    BinaryOp,
    FieldExpr,
    Intrinsic,
    Op,
    Pipeline,
    Query,
    ScalarFilter,
    Scope,
    SpansetFilter,
    Static,
    StaticType,
)
from tempo_lite.traceql.engine_query import TRACE_DEPENDENT, referenced_fields
from tempo_lite.traceql.engine_query import field_refs as _field_refs
from tempo_lite.traceql.engine_query import stage_filters as _stages_filters
from tempo_lite.traceql.engine_query import starts_unfiltered as _starts_unfiltered

# Span columns of intrinsics that a span filter reads directly.
_INTRINSIC_COLUMNS = {
    Intrinsic.NAME: "name",
    Intrinsic.STATUS: "status_code",
    Intrinsic.STATUS_MESSAGE: "status_message",
    Intrinsic.KIND: "kind",
    Intrinsic.DURATION: "duration_nano",
    Intrinsic.SPAN_ID: "span_id",
    Intrinsic.SPAN_PARENT_ID: "parent_span_id",
    Intrinsic.INSTRUMENTATION_NAME: "resource_index",
    Intrinsic.INSTRUMENTATION_VERSION: "resource_index",
    Intrinsic.EVENT_NAME: "events",
    Intrinsic.EVENT_TIME_SINCE_START: "events",
    Intrinsic.LINK_TRACE_ID: "links",
    Intrinsic.LINK_SPAN_ID: "links",
}
_EVENT_TIME = {Intrinsic.EVENT_TIME_SINCE_START}
# Intrinsic -> (statistics column, literal types it can be compared with).
_STAT_COLUMNS = {
    Intrinsic.DURATION: ("duration_nano", {StaticType.DURATION, StaticType.INT, StaticType.FLOAT}),
    Intrinsic.STATUS: ("status_code", {StaticType.STATUS}),
    Intrinsic.KIND: ("kind", {StaticType.KIND}),
    Intrinsic.NAME: ("name", {StaticType.STRING}),
}


@dataclass(frozen=True)
class FilterPlan:
    """Stage one of a block search: `columns` are enough to compute the query's candidate traces.

    `needs_generic` lists span attribute keys that are dedicated in the block but may also occur in the
    generic `attrs` column with another type (arrays, numbers): if the block has any of them there,
    `attrs` must be read as well.
    """

    columns: list[str]
    needs_generic: frozenset[str]


def span_filters(query: Query) -> list[SpansetFilter] | None:
    """The `{ ... }` filters whose union selects the candidate traces; None if every trace is one
    (a pipeline starting with a scalar filter, `by()`, `select()` or `coalesce()`)."""
    if _starts_unfiltered(query.pipeline):
        return None
    filters: list[SpansetFilter] = []
    _stages_filters(query.pipeline, filters)
    return list(dict.fromkeys(filters))


def filter_plan(query: Query, dedicated: dict[str, str]) -> FilterPlan | None:
    """Columns the query's filters read in a block with this dedicated mapping; None: use all columns."""
    filters = span_filters(query)
    if filters is None:
        return None
    cols = {"trace_id"}
    needs_generic: set[str] = set()
    exprs = [f.expr for f in filters]
    if isinstance(query.pipeline, Pipeline):
        # Aggregates of scalar filters, so that column-wise pipelines can be decided in stage one.
        exprs += [
            st.lhs.expr for st in query.pipeline.stages
            if isinstance(st, ScalarFilter) and isinstance(st.lhs, Aggregate) and st.lhs.expr is not None
        ]
    for expr in exprs:
        refs: list = []
        _field_refs(expr, refs)
        for ref in refs:
            if isinstance(ref, Intrinsic):
                if ref in TRACE_DEPENDENT:
                    continue  # unknown (true) when looking for candidates
                col = _INTRINSIC_COLUMNS.get(ref)
                if col is None:
                    return None
                cols.add(col)
                if ref in _EVENT_TIME:
                    cols.add("start_unix_nano")
            elif isinstance(ref, Attribute):
                if ref.parent:
                    return None
                if ref.scope in (Scope.RESOURCE, Scope.INSTRUMENTATION, Scope.NONE):
                    cols.add("resource_index")  # resource and scope values, and unscoped alternatives
                if ref.scope is Scope.EVENT:
                    cols.add("events")
                elif ref.scope is Scope.LINK:
                    cols.add("links")
                elif ref.scope in (Scope.SPAN, Scope.NONE):
                    if ref.name in dedicated:
                        cols.add(dedicated[ref.name])
                        needs_generic.add(ref.name)
                    else:
                        cols.add("attrs")
    return FilterPlan(sorted(cols), frozenset(needs_generic))


# --------------------------------------------------------------------------------------------------
# The block's key catalogue (meta.json `attribute_keys`)

_CATALOGUE_SCOPES = {
    Scope.SPAN: ("span",),
    Scope.RESOURCE: ("resource",),
    Scope.INSTRUMENTATION: ("scope",),
    Scope.EVENT: ("event",),
    Scope.LINK: ("link",),
    Scope.NONE: ("span", "resource"),
}
# Attribute types (spantable.STRING, INT, DOUBLE, BOOL, ARRAY) whose values can compare true with a literal.
_STRING, _INT, _DOUBLE, _BOOL, _ARRAY = 1, 2, 3, 4, 6
_COMPATIBLE = {
    StaticType.STRING: {_STRING, _ARRAY},
    StaticType.INT: {_INT, _DOUBLE, _ARRAY},
    StaticType.FLOAT: {_INT, _DOUBLE, _ARRAY},
    StaticType.DURATION: {_INT, _DOUBLE, _ARRAY},
    StaticType.BOOL: {_BOOL, _ARRAY},
}
_COMPARISONS = {Op.EQ, Op.NEQ, Op.LT, Op.LTE, Op.GT, Op.GTE, Op.REGEX, Op.NOT_REGEX}


def _key_types(ref: Attribute, catalogue: dict[str, dict[str, list[int]]]) -> set[int] | None:
    """Types the block holds for the attribute (empty: the key is absent); None if unknown."""
    out: set[int] = set()
    for scope in _CATALOGUE_SCOPES.get(ref.scope, ()):
        keys = catalogue.get(scope)
        if keys is None:
            return None
        out.update(keys.get(ref.name, ()))
    return out


def _may_hold(expr: FieldExpr, catalogue: dict[str, dict[str, list[int]]]) -> bool:
    """False only if no span of a block with this catalogue can satisfy `expr` (conservative)."""
    if not isinstance(expr, BinaryOp):
        return True
    if expr.op is Op.AND:
        return _may_hold(expr.lhs, catalogue) and _may_hold(expr.rhs, catalogue)
    if expr.op is Op.OR:
        return _may_hold(expr.lhs, catalogue) or _may_hold(expr.rhs, catalogue)
    if expr.op not in _COMPARISONS:
        return True
    found = _literal(expr)
    if found is None:
        return True
    ref, op, lit = found
    if not isinstance(ref, Attribute) or ref.parent or lit.type is StaticType.NIL:
        return True
    types = _key_types(ref, catalogue)
    if types is None:
        return True
    # A missing value compares false with any non-nil literal (`!=` and `!~` included).
    if op in (Op.REGEX, Op.NOT_REGEX):
        return bool(types & {_STRING, _ARRAY})
    return bool(types & _COMPATIBLE.get(lit.type, {_ARRAY}))


def block_may_match(query: Query, catalogue: dict[str, dict[str, list[int]]]) -> bool:
    """False if the block's key catalogue proves that no span passes any `{ }` filter of the query, so
    no trace of the block can match (every match needs a span passing some filter)."""
    if not catalogue:
        return True
    filters = span_filters(query)
    if filters is None:
        return True
    return any(_may_hold(f.expr, catalogue) for f in filters)


# Columns search results and trace summaries read (root span, service stats, span fields).
RESULT_COLUMNS = [
    "trace_id", "span_id", "parent_span_id", "name", "status_code", "start_unix_nano", "duration_nano",
    "resource_index", "service_name",
]
NESTED_SET_COLUMNS = ["nested_set_left", "nested_set_right", "parent_index"]


def evaluation_columns(
    query: Query, dedicated: dict[str, str], generic_keys: frozenset[str], *, nested_sets: bool
) -> list[str] | None:
    """Every column exact evaluation and result building read in a block; None: all columns.

    A dedicated key is read from its column alone when the block's generic `attrs` never holds it.
    """
    fields = field_columns(referenced_fields(query), dedicated, generic_keys)
    if fields is None:
        return None
    cols = set(RESULT_COLUMNS) | set(fields)
    if nested_sets:
        cols.update(NESTED_SET_COLUMNS)
    return sorted(cols)


def field_columns(
    refs: Iterable[AttributeRef], dedicated: dict[str, str], generic_keys: frozenset[str]
) -> list[str] | None:
    """The span columns that give the values of these fields in a block (with `resource_index`, which
    every evaluation reads); trace-level intrinsics add the columns trace summaries read; None: all."""
    cols = {"resource_index"}
    for ref in refs:
        if isinstance(ref, Intrinsic):
            if ref in TRACE_DEPENDENT:
                cols.update(NESTED_SET_COLUMNS)
                cols.update(RESULT_COLUMNS)
                continue
            if ref is Intrinsic.TRACE_ID:
                cols.add("trace_id")
                continue
            col = _INTRINSIC_COLUMNS.get(ref)
            if col is None:
                return None
            cols.add(col)
            if ref in _EVENT_TIME:
                cols.add("start_unix_nano")
        elif isinstance(ref, Attribute):
            if ref.parent:
                return None
            if ref.scope is Scope.EVENT:
                cols.add("events")
            elif ref.scope is Scope.LINK:
                cols.add("links")
            elif ref.scope in (Scope.SPAN, Scope.NONE):
                if ref.name in dedicated:
                    cols.add(dedicated[ref.name])
                if ref.name not in dedicated or ref.name in generic_keys:
                    cols.add("attrs")
    return sorted(cols)


# --------------------------------------------------------------------------------------------------
# Row-group statistics


def _literal(e: BinaryOp) -> tuple[Intrinsic | Attribute, Op, Static] | None:
    """`field op literal` (either order) -> (field, op as seen from the field, literal)."""
    flip = {Op.LT: Op.GT, Op.LTE: Op.GTE, Op.GT: Op.LT, Op.GTE: Op.LTE, Op.EQ: Op.EQ, Op.NEQ: Op.NEQ}
    if isinstance(e.lhs, (Intrinsic, Attribute)) and isinstance(e.rhs, Static):
        return e.lhs, e.op, e.rhs
    if isinstance(e.rhs, (Intrinsic, Attribute)) and isinstance(e.lhs, Static) and e.op in flip:
        return e.rhs, flip[e.op], e.lhs
    return None


def _literal_value(lit: Static) -> object:
    if lit.type is StaticType.STATUS:
        return lit.value.otlp_code  # type: ignore[union-attr]
    if lit.type is StaticType.KIND:
        return lit.value.value  # type: ignore[union-attr]
    return lit.value


def may_match(expr: FieldExpr, stats: Footer) -> np.ndarray:
    """Per row group: False only if its min/max prove that no span satisfies `expr` (conservative)."""
    every = np.ones(len(stats.group_first) - 1, dtype=bool)
    if not isinstance(expr, BinaryOp):
        return every
    if expr.op is Op.AND:
        return may_match(expr.lhs, stats) & may_match(expr.rhs, stats)
    if expr.op is Op.OR:
        return may_match(expr.lhs, stats) | may_match(expr.rhs, stats)
    found = _literal(expr)
    if found is None:
        return every
    field, op, lit = found
    if isinstance(field, Intrinsic) and field in _STAT_COLUMNS:
        column, types = _STAT_COLUMNS[field]
        if lit.type not in types:
            # A literal of another type never compares true with this intrinsic (nil aside).
            return every if lit.type is StaticType.NIL or op is Op.NEQ else ~every
    elif (
        isinstance(field, Attribute) and field.scope is Scope.RESOURCE and field.name == "service.name"
        and not field.parent and lit.type is StaticType.STRING
    ):
        column = "service_name"  # the resource's service.name, copied onto each span row
    else:
        return every
    bounds = stats.statistics(column)
    if bounds is None:
        return every
    lo, hi, known = bounds
    v = _literal_value(lit)
    try:
        with np.errstate(all="ignore"):
            if op is Op.EQ:
                hit = (lo <= v) & (v <= hi)
            elif op is Op.NEQ:
                hit = ~((lo == v) & (hi == v))
            elif op is Op.GT:
                hit = hi > v
            elif op is Op.GTE:
                hit = hi >= v
            elif op is Op.LT:
                hit = lo < v
            elif op is Op.LTE:
                hit = lo <= v
            else:
                return every
    except (TypeError, ValueError, np.exceptions.DTypePromotionError):
        return every
    hit = np.asarray(hit)
    if hit.dtype != bool or hit.shape != every.shape:
        return every  # a comparison numpy could not make element-wise
    return hit | ~known


def row_groups(query: Query, footer: pq.FileMetaData | Footer) -> list[int]:
    """Row groups where some span may pass some filter of the query (all of them if unknown)."""
    stats = footer if isinstance(footer, Footer) else Footer.of(footer)
    n = len(stats.group_first) - 1
    filters = span_filters(query)
    if filters is None:
        return list(range(n))
    keep = np.zeros(n, dtype=bool)
    for f in filters:
        keep |= may_match(f.expr, stats)
    return np.flatnonzero(keep).tolist()

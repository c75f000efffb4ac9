"""Column-wise evaluation of TraceQL field expressions over a span table.

`SpanContext` evaluates a field expression into a typed `Col` and a `{ ... }` filter into a boolean mask
over span rows, over the values `engine_span_values.SpanValues` looks up. Conditions on resource and
scope attributes are computed on the small resources table and broadcast with `take`. A filter that
reads event or link fields is evaluated on an exploded row set (one row per span x event, spans without
events keep one row), so `&&` inside one `{}` needs the *same* event.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from tempo_lite.spantable import SpanTable
from tempo_lite.traceql.ast import (
    Attribute,
    BinaryOp,
    FieldExpr,
    Intrinsic,
    Kind,
    Op,
    Scope,
    Static,
    StaticType,
    Status,
    TraceQLError,
    UnaryOp,
)
from tempo_lite.traceql.engine_query import COMPARISONS, TRACE_DEPENDENT, TRACE_TABLE_INTRINSICS, trace_dependent
from tempo_lite.traceql.engine_span_values import NestedList, SpanValues, TraceLevel
from tempo_lite.traceql.engine_values import (
    Col,
    arithmetic,
    compare,
    logical_and,
    logical_not,
    logical_or,
    negate,
    regex_match,
    truth,
)

_STATIC_SLOTS = {
    StaticType.INT: "int",
    StaticType.FLOAT: "float",
    StaticType.DURATION: "dur",
    StaticType.STRING: "str",
    StaticType.BOOL: "bool",
    StaticType.STATUS: "status",
    StaticType.KIND: "kind",
}


@dataclass
class Domain:
    """Rows a filter is evaluated on: spans, or spans exploded by events and/or links."""

    m: int
    span_idx: np.ndarray | None = None  # None: identity (one row per span)
    event_idx: np.ndarray | None = None  # flat event index per row, -1 for none
    link_idx: np.ndarray | None = None

    def spans(self, n: int) -> np.ndarray:
        return np.arange(n) if self.span_idx is None else self.span_idx

    def sub_rows(self, which: str) -> np.ndarray:
        """Each row's flat event (`which` "event") or link ("link") index, -1 for none."""
        idx = self.event_idx if which == "event" else self.link_idx
        if idx is None:  # domain_for explodes by every level an expression reads
            raise ValueError(f"{which} values need a domain exploded by {which}s")
        return idx


class SpanContext(SpanValues):
    """Values of one span table for TraceQL evaluation, with caches, and expressions evaluated over them.

    `candidate=True` evaluates conditions on trace-dependent intrinsics as *unknown* (true in the
    final mask), to find traces that might match once combined with spans stored elsewhere.
    """

    def __init__(self, table: SpanTable, *, candidate: bool = False, trace_level: TraceLevel | None = None) -> None:
        super().__init__(table, trace_level=trace_level)
        # Values unknown from this table alone (evaluated as unknown in candidate mode).
        self.unknown = TRACE_DEPENDENT - TRACE_TABLE_INTRINSICS if trace_level is not None else TRACE_DEPENDENT
        self.candidate = candidate

    # -- domains

    def domain_for(self, expr: FieldExpr) -> Domain:
        levels: set[str] = set()
        _levels(expr, levels)
        dom = Domain(self.n)
        if "event" in levels:
            dom = self._explode(dom, self.events(), "event")
        if "link" in levels:
            dom = self._explode(dom, self.links(), "link")
        return dom

    def _explode(self, dom: Domain, info: NestedList, which: str) -> Domain:
        span_of = dom.spans(self.n)
        lens = info["lens"][span_of]
        rep = np.maximum(lens, 1)
        total = int(rep.sum())
        rows = np.repeat(np.arange(dom.m), rep)
        within = np.arange(total) - np.repeat(np.cumsum(rep) - rep, rep)
        flat = np.repeat(info["offsets"][span_of], rep) + within
        flat[np.repeat(lens == 0, rep)] = -1
        out = Domain(
            total,
            span_of[rows],
            None if dom.event_idx is None else dom.event_idx[rows],
            None if dom.link_idx is None else dom.link_idx[rows],
        )
        if which == "event":
            out.event_idx = flat
        else:
            out.link_idx = flat
        return out

    def _at(self, col: Col, dom: Domain) -> Col:
        return col if dom.span_idx is None else col.take(dom.span_idx)

    def _resource_comparison(self, e: BinaryOp, dom: Domain) -> Col | None:
        """`resource.x op literal` (or instrumentation scope) compared once per resources row and
        broadcast to spans as a boolean, instead of broadcasting every typed slot of the value."""
        if dom.span_idx is not None or e.op not in COMPARISONS:
            return None
        attr, lit = (e.lhs, e.rhs) if isinstance(e.lhs, Attribute) else (e.rhs, e.lhs)
        if (
            not isinstance(attr, Attribute) or not isinstance(lit, Static) or attr.parent
            or attr.scope not in (Scope.RESOURCE, Scope.INSTRUMENTATION) or lit.type is StaticType.NIL
            or (e.op in (Op.REGEX, Op.NOT_REGEX) and attr is not e.lhs)
        ):
            return None
        per_res = self.per_resource("resource" if attr.scope is Scope.RESOURCE else "scope", attr.name)
        m = per_res.n
        if e.op in (Op.REGEX, Op.NOT_REGEX):
            hit = regex_match(per_res, str(lit.value), e.op is Op.NOT_REGEX)
        else:
            literal = self.value(lit, Domain(m))
            lhs, rhs = (per_res, literal) if attr is e.lhs else (literal, per_res)
            hit = compare(e.op.value, lhs, rhs)
        return Col.boolean(pa.array(hit[self.resource_index] if m else np.zeros(self.n, dtype=bool)))

    # -- expressions

    def value(self, expr: FieldExpr, dom: Domain) -> Col:
        if isinstance(expr, Static):
            if expr.type is StaticType.NIL:
                return Col.nil(dom.m)
            slot = _STATIC_SLOTS[expr.type]
            v = expr.value
            if isinstance(v, Status):
                v = v.otlp_code
            elif isinstance(v, Kind):
                v = v.value
            return Col.literal(dom.m, slot, v)
        if isinstance(expr, Attribute):
            if expr.parent:
                raise TraceQLError("unsupported", "parent scope not yet supported")
            if expr.scope is Scope.SPAN:
                return self._at(self.span_attr(expr.name), dom)
            if expr.scope is Scope.RESOURCE:
                return self._at(self.resource_level("resource", expr.name), dom)
            if expr.scope is Scope.INSTRUMENTATION:
                return self._at(self.resource_level("scope", expr.name), dom)
            if expr.scope is Scope.EVENT:
                return self.sub_attr("event", expr.name).take(dom.sub_rows("event"))
            if expr.scope is Scope.LINK:
                return self.sub_attr("link", expr.name).take(dom.sub_rows("link"))
            return self._at(self.unscoped(expr.name), dom)
        if isinstance(expr, Intrinsic):
            if expr.level in ("event", "link"):
                return self.sub_intrinsic(expr).take(dom.sub_rows(expr.level))
            return self._at(self.intrinsic(expr), dom)
        if isinstance(expr, UnaryOp):
            inner = self.value(expr.operand, dom)
            return logical_not(inner) if expr.op is Op.NOT else negate(inner)
        if isinstance(expr, BinaryOp):
            return self._binary(expr, dom)
        raise TypeError(f"not a field expression: {expr!r}")

    def _binary(self, e: BinaryOp, dom: Domain) -> Col:
        op = e.op
        if op is Op.AND:
            return logical_and(self.value(e.lhs, dom), self.value(e.rhs, dom))
        if op is Op.OR:
            return logical_or(self.value(e.lhs, dom), self.value(e.rhs, dom))
        if op.is_arithmetic:
            return arithmetic(op.value, self.value(e.lhs, dom), self.value(e.rhs, dom))
        if self.candidate and (trace_dependent(e.lhs, self.unknown) or trace_dependent(e.rhs, self.unknown)):
            return Col.boolean(pa.nulls(dom.m, pa.bool_()))
        lhs_nil = isinstance(e.lhs, Static) and e.lhs.type is StaticType.NIL
        rhs_nil = isinstance(e.rhs, Static) and e.rhs.type is StaticType.NIL
        if (lhs_nil or rhs_nil) and op in (Op.EQ, Op.NEQ):
            if lhs_nil and rhs_nil:
                return Col.boolean(pa.array(np.zeros(dom.m, dtype=bool)))
            exists = self.value(e.rhs if lhs_nil else e.lhs, dom).exists()
            return Col.boolean(pa.array(exists if op is Op.NEQ else ~exists))
        by_resource = self._resource_comparison(e, dom)
        if by_resource is not None:
            return by_resource
        if op in (Op.REGEX, Op.NOT_REGEX):
            assert isinstance(e.rhs, Static)
            hit = regex_match(self.value(e.lhs, dom), str(e.rhs.value), op is Op.NOT_REGEX)
            return Col.boolean(pa.array(hit))
        lhs, rhs = self.value(e.lhs, dom), self.value(e.rhs, dom)
        lhs, rhs = _trim_trace_ids(e, lhs, rhs)
        return Col.boolean(pa.array(compare(op.value, lhs, rhs)))

    def filter_mask(self, expr: FieldExpr) -> np.ndarray:
        """Span rows for which `{ expr }` holds (unknowns count as true in candidate mode)."""
        dom = self.domain_for(expr)
        rows = truth(self.value(expr, dom), unknown_is_true=self.candidate)
        if dom.span_idx is None:
            return rows
        out = np.zeros(self.n, dtype=bool)
        out[dom.span_idx[rows]] = True
        return out

    def shown_sub_attr(self, attr: Attribute, conditions: list[FieldExpr]) -> Col:
        """Per span, the event (link) attribute value a search result shows, the way Tempo's storage
        collects it: the value of the span's *last* event (link) holding the key whose value passes one
        of `conditions` (the query's comparisons of that attribute with a literal, or `!= nil`)."""
        which = "event" if attr.scope is Scope.EVENT else "link"
        info = self.events() if which == "event" else self.links()
        vals = self.sub_attr(which, attr.name)
        m = vals.n
        owner = np.repeat(np.arange(self.n), info["lens"])
        sub = np.arange(m)
        dom = Domain(m, owner, sub if which == "event" else None, sub if which == "link" else None)
        ok = np.zeros(m, dtype=bool)
        for cond in conditions:
            ok |= truth(self.value(cond, dom))
        rows = np.flatnonzero(ok)
        last = np.full(self.n, -1, dtype=np.int64)
        np.maximum.at(last, owner[rows], rows)
        return vals.take(last)

    def span_value(self, expr: FieldExpr) -> Col:
        """Value of a span-level expression per span row (cached): by(), aggregates, result fields."""
        if expr not in self._cache:
            dom = Domain(self.n)
            if isinstance(expr, Attribute) and expr.scope in (Scope.EVENT, Scope.LINK):
                self._cache[expr] = Col(self.n)
            elif isinstance(expr, Intrinsic) and expr.level in ("event", "link"):
                self._cache[expr] = Col(self.n)
            else:
                self._cache[expr] = self.value(expr, dom)
        return self._cache[expr]


def _levels(expr: FieldExpr, out: set[str]) -> None:
    if isinstance(expr, Attribute):
        if expr.scope is Scope.EVENT:
            out.add("event")
        elif expr.scope is Scope.LINK:
            out.add("link")
    elif isinstance(expr, Intrinsic):
        if expr.level in ("event", "link"):
            out.add(expr.level)
    elif isinstance(expr, BinaryOp):
        _levels(expr.lhs, out)
        _levels(expr.rhs, out)
    elif isinstance(expr, UnaryOp):
        _levels(expr.operand, out)


def _trim_trace_ids(e: BinaryOp, lhs: Col, rhs: Col) -> tuple[Col, Col]:
    """`trace:id` / `link:traceID` compare without leading zeros: trim the string literal too."""
    ids = (Intrinsic.TRACE_ID, Intrinsic.LINK_TRACE_ID)
    if e.lhs in ids and isinstance(e.rhs, Static) and e.rhs.type is StaticType.STRING:
        rhs = Col.literal(rhs.n, "str", str(e.rhs.value).lower().lstrip("0"))
    elif e.rhs in ids and isinstance(e.lhs, Static) and e.lhs.type is StaticType.STRING:
        lhs = Col.literal(lhs.n, "str", str(e.lhs.value).lower().lstrip("0"))
    return lhs, rhs

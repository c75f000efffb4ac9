"""Column-wise evaluation of TraceQL field expressions over a span table.

`SpanContext` turns attribute references and intrinsics into typed `Col`s (cached per table) and
evaluates a `{ ... }` filter into a boolean mask over span rows. Conditions on resource and scope
attributes are computed on the small resources table and broadcast with `take`; generic attributes
are looked up through `list_flatten` + `list_parent_indices`; dedicated columns are used directly.
A filter that reads event or link fields is evaluated on an exploded row set (one row per
span x event, spans without events keep one row), so `&&` inside one `{}` needs the *same* event.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tempo_lite.spantable import BOOL, DOUBLE, INT, STRING, SpanTable, dedicated_type
from tempo_lite.traceql.ast import (
    Attribute,
    BinaryOp,
    FieldExpr,
    Intrinsic,
    Op,
    Scope,
    Static,
    StaticType,
    TraceQLError,
    UnaryOp,
)
from tempo_lite.traceql.engine_summary import TraceSummaries, trace_summaries
from tempo_lite.traceql.engine_values import (
    Col,
    arithmetic,
    col_from_attr_structs,
    compare,
    logical_and,
    logical_not,
    logical_or,
    negate,
    regex_match,
    truth,
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
NESTED_SET_INTRINSICS = frozenset(
    {
        Intrinsic.NESTED_SET_LEFT,
        Intrinsic.NESTED_SET_RIGHT,
        Intrinsic.NESTED_SET_PARENT,
        Intrinsic.CHILD_COUNT,
    }
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
_DEDICATED_SLOTS = {STRING: "str", INT: "int", DOUBLE: "float", BOOL: "bool"}
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def hex_ids(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Lowercase hex strings of binary IDs (vectorized for fixed-size binary)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_fixed_size_binary(arr.type) and arr.null_count == 0:
        w = arr.type.byte_width
        n = len(arr)
        if n == 0:
            return pa.array([], pa.string())
        raw = np.frombuffer(arr.buffers()[1], dtype=np.uint8)
        data = raw[arr.offset * w : (arr.offset + n) * w].reshape(n, w)
        out = np.empty((n, 2 * w), dtype=np.uint8)
        out[:, 0::2] = _HEX[data >> 4]
        out[:, 1::2] = _HEX[data & 15]
        return pa.array(out.view(f"S{2 * w}").ravel(), pa.binary()).cast(pa.string())
    return pa.array([None if b is None else b.hex() for b in arr.to_pylist()], pa.string())


def _np(a: pa.Array | pa.ChunkedArray, dtype: type = np.int64) -> np.ndarray:
    if isinstance(a, pa.ChunkedArray):
        a = a.combine_chunks()
    fill = False if pa.types.is_boolean(a.type) else 0
    return a.fill_null(fill).to_numpy(zero_copy_only=False).astype(dtype, copy=False)


def _take_or_null(values: pa.Array, idx: np.ndarray) -> pa.Array:
    missing = idx < 0
    return values.take(pa.array(np.where(missing, 0, idx), mask=missing if missing.any() else None))


class _AttrIndex:
    """Flattened `list<ATTR>` column for fast per-key lookups."""

    def __init__(self, lists: pa.Array | pa.ChunkedArray, n: int) -> None:
        if isinstance(lists, pa.ChunkedArray):
            lists = lists.combine_chunks()
        self.n = n
        self.flat = pc.list_flatten(lists)
        self.parents = _np(pc.list_parent_indices(lists)) if len(self.flat) else np.zeros(0, np.int64)
        self.keys = pc.struct_field(self.flat, "key") if len(self.flat) else pa.array([], pa.string())

    def lookup(self, key: str) -> Col:
        if len(self.flat) == 0:
            return Col(self.n)
        sel = np.flatnonzero(_np(pc.equal(self.keys, key), bool))
        pos = np.full(self.n, -1, dtype=np.int64)
        # Duplicate keys on one row: the first one wins.
        pos[self.parents[sel][::-1]] = sel[::-1]
        return col_from_attr_structs(_take_or_null(self.flat, pos))


_RESOURCE_COMPARISONS = frozenset({Op.EQ, Op.NEQ, Op.LT, Op.LTE, Op.GT, Op.GTE, Op.REGEX, Op.NOT_REGEX})
# Trace-level intrinsics a block's trace table knows for every trace (TraceLevel).
TRACE_TABLE_INTRINSICS = frozenset({Intrinsic.TRACE_DURATION, Intrinsic.TRACE_ROOT_NAME, Intrinsic.TRACE_ROOT_SERVICE})


@dataclass(frozen=True)
class TraceLevel:
    """Trace-level values known from outside the table (a block's trace table), so that a table holding
    only some spans of its traces can still evaluate `traceDuration`, `rootName` and `rootServiceName`:
    `span_trace[row]` is the row's trace, the other arrays are per trace (root fields null: no root)."""

    span_trace: np.ndarray
    duration: np.ndarray
    root_service: pa.Array
    root_name: pa.Array


@dataclass
class Domain:
    """Rows a filter is evaluated on: spans, or spans exploded by events and/or links."""

    m: int
    span_idx: np.ndarray | None = None  # None: identity (one row per span)
    event_idx: np.ndarray | None = None  # flat event index per row, -1 for none
    link_idx: np.ndarray | None = None

    def spans(self, n: int) -> np.ndarray:
        return np.arange(n) if self.span_idx is None else self.span_idx


class SpanContext:
    """Values of one span table for TraceQL evaluation, with caches.

    `candidate=True` evaluates conditions on trace-dependent intrinsics as *unknown* (true in the
    final mask), to find traces that might match once combined with spans stored elsewhere.
    """

    def __init__(self, table: SpanTable, *, candidate: bool = False, trace_level: TraceLevel | None = None) -> None:
        self.table = table
        self.trace_level = trace_level
        # Values unknown from this table alone (evaluated as unknown in candidate mode).
        self.unknown = TRACE_DEPENDENT - TRACE_TABLE_INTRINSICS if trace_level is not None else TRACE_DEPENDENT
        self.spans = table.spans
        self.n = table.num_spans
        self.candidate = candidate
        self._span_attrs: _AttrIndex | None = None
        self._cache: dict[object, Col] = {}
        self._summaries: TraceSummaries | None = None
        self._resource_index: np.ndarray | None = None
        self._events: dict[str, object] | None = None
        self._links: dict[str, object] | None = None

    # -- shared structures

    @property
    def resource_index(self) -> np.ndarray:
        """Each span's row in the resources table (read on first use: most filters never need it)."""
        if self._resource_index is None:
            self._resource_index = _np(self.spans.column("resource_index"))
        return self._resource_index

    @property
    def summaries(self) -> TraceSummaries:
        if self._summaries is None:
            self._summaries = trace_summaries(self.table)
        return self._summaries

    def nested(self, name: str) -> np.ndarray:
        if name not in self.spans.column_names:
            raise ValueError("nested-set columns required")
        return _np(self.spans.column(name))

    def _nested_list(self, column: str) -> dict[str, object]:
        lists = self.spans.column(column).combine_chunks()
        lens = _np(pc.list_value_length(lists))
        flat = pc.list_flatten(lists)
        return {"lens": lens, "offsets": np.cumsum(lens) - lens, "flat": flat, "attrs": None}

    def events(self) -> dict[str, object]:
        if self._events is None:
            self._events = self._nested_list("events")
        return self._events

    def links(self) -> dict[str, object]:
        if self._links is None:
            self._links = self._nested_list("links")
        return self._links

    # -- span-level values (length n, cached)

    def span_attr(self, key: str) -> Col:
        ck = ("span", key)
        if ck not in self._cache:
            if self._span_attrs is None:
                self._span_attrs = _AttrIndex(self.spans.column("attrs"), self.n)
            col = self._span_attrs.lookup(key)
            dedicated = self.table.dedicated.get(key)
            if dedicated is not None and dedicated in self.spans.column_names:
                d = self.spans.column(dedicated).combine_chunks()
                slot = _DEDICATED_SLOTS[dedicated_type(d.type)]
                generic = col.slots.get(slot)
                unused = generic is None or generic.null_count == len(generic)
                col.slots[slot] = d if unused else pc.coalesce(d, generic)
            self._cache[ck] = col
        return self._cache[ck]

    def per_resource(self, kind: str, key: str) -> Col:
        """Resource (kind "resource") or scope ("scope") attribute, one value per resources row."""
        ck = (kind, key, "per-resource")
        if ck not in self._cache:
            res = self.table.resources
            column = "attrs" if kind == "resource" else "scope_attrs"
            self._cache[ck] = _AttrIndex(res.column(column), res.num_rows).lookup(key)
        return self._cache[ck]

    def resource_level(self, kind: str, key: str) -> Col:
        """Resource (kind "resource") or scope ("scope") attribute, broadcast to spans."""
        ck = (kind, key)
        if ck not in self._cache:
            self._cache[ck] = self.per_resource(kind, key).take(self.resource_index)
        return self._cache[ck]

    def _resource_comparison(self, e: BinaryOp, dom: Domain) -> Col | None:
        """`resource.x op literal` (or instrumentation scope) compared once per resources row and
        broadcast to spans as a boolean, instead of broadcasting every typed slot of the value."""
        if dom.span_idx is not None or e.op not in _RESOURCE_COMPARISONS:
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

    def unscoped(self, key: str) -> Col:
        span = self.span_attr(key)
        return Col(span.n, span.slots, span.arr, [self.resource_level("resource", key)])

    def intrinsic(self, it: Intrinsic) -> Col:
        if it in self._cache:
            return self._cache[it]
        s = self.spans
        n = self.n
        if it is Intrinsic.NAME:
            col = Col(n, {"str": s.column("name").combine_chunks()})
        elif it is Intrinsic.STATUS:
            col = Col(n, {"status": s.column("status_code").combine_chunks()})
        elif it is Intrinsic.STATUS_MESSAGE:
            col = Col(n, {"str": s.column("status_message").combine_chunks()})
        elif it is Intrinsic.KIND:
            col = Col(n, {"kind": s.column("kind").combine_chunks()})
        elif it is Intrinsic.DURATION:
            col = Col(n, {"dur": s.column("duration_nano").combine_chunks()})
        elif it is Intrinsic.SPAN_ID:
            col = Col(n, {"str": hex_ids(s.column("span_id"))})
        elif it is Intrinsic.SPAN_PARENT_ID:
            col = Col(n, {"str": hex_ids(s.column("parent_span_id"))})
        elif it in TRACE_TABLE_INTRINSICS and self.trace_level is not None:
            tl = self.trace_level
            idx = pa.array(tl.span_trace, pa.int64())
            if it is Intrinsic.TRACE_DURATION:
                col = Col(n, {"dur": pa.array(tl.duration[tl.span_trace], pa.int64())})
            elif it is Intrinsic.TRACE_ROOT_NAME:
                col = Col(n, {"str": pc.fill_null(tl.root_name, "").take(idx)})
            else:
                col = Col(n, {"str": tl.root_service.take(idx)})
        elif it in (Intrinsic.TRACE_DURATION, Intrinsic.TRACE_ROOT_NAME, Intrinsic.TRACE_ROOT_SERVICE):
            sm = self.summaries
            idx = pa.array(sm.span_trace, pa.int64())
            if it is Intrinsic.TRACE_DURATION:
                d = pc.subtract(sm.traces.column("end_unix_nano"), sm.traces.column("start_unix_nano"))
                col = Col(n, {"dur": d.combine_chunks().take(idx)})
            elif it is Intrinsic.TRACE_ROOT_NAME:
                names = pc.fill_null(sm.traces.column("root_span_name"), "").combine_chunks()
                col = Col(n, {"str": names.take(idx)})
            else:
                col = Col(n, {"str": sm.traces.column("root_service_name").combine_chunks().take(idx)})
        elif it is Intrinsic.TRACE_ID:
            sm = self.summaries
            ids = pc.utf8_ltrim(hex_ids(sm.traces.column("trace_id")), "0")
            col = Col(n, {"str": ids.take(pa.array(sm.span_trace, pa.int64()))})
        elif it in (Intrinsic.INSTRUMENTATION_NAME, Intrinsic.INSTRUMENTATION_VERSION):
            name = "scope_name" if it is Intrinsic.INSTRUMENTATION_NAME else "scope_version"
            values = self.table.resources.column(name).combine_chunks()
            col = Col(n, {"str": values.take(pa.array(self.resource_index))})
        elif it in (Intrinsic.NESTED_SET_LEFT, Intrinsic.NESTED_SET_RIGHT, Intrinsic.NESTED_SET_PARENT):
            name = {
                Intrinsic.NESTED_SET_LEFT: "nested_set_left",
                Intrinsic.NESTED_SET_RIGHT: "nested_set_right",
                Intrinsic.NESTED_SET_PARENT: "parent_index",
            }[it]
            col = Col(n, {"int": pa.array(self.nested(name), pa.int64())})
        elif it is Intrinsic.CHILD_COUNT:
            col = Col(n, {"int": pa.array(self._child_counts(), pa.int64())})
        else:
            raise TraceQLError("unsupported", f"intrinsic {it.value} not yet supported")
        self._cache[it] = col
        return col

    def _child_counts(self) -> np.ndarray:
        trace = self.summaries.span_trace
        left = self.nested("nested_set_left")
        parent = self.nested("parent_index")
        keys = trace * (1 << 32) + parent
        ukeys, counts = np.unique(keys[parent > 0], return_counts=True)
        mine = trace * (1 << 32) + left
        pos = np.searchsorted(ukeys, mine)
        pos_c = np.minimum(pos, max(len(ukeys) - 1, 0))
        hit = (len(ukeys) > 0) & (left > 0)
        out = np.zeros(self.n, dtype=np.int64)
        if len(ukeys):
            found = hit & (ukeys[pos_c] == mine)
            out[found] = counts[pos_c[found]]
        return out

    # -- event / link values (length = number of events / links)

    def sub_attr(self, which: str, key: str) -> Col:
        ck = (which, key)
        if ck not in self._cache:
            info = self.events() if which == "event" else self.links()
            flat = info["flat"]
            if info["attrs"] is None:
                info["attrs"] = _AttrIndex(
                    pc.struct_field(flat, "attrs") if len(flat) else pa.array([], pa.list_(pa.null())),
                    len(flat),
                )
            self._cache[ck] = info["attrs"].lookup(key)  # type: ignore[union-attr]
        return self._cache[ck]

    def sub_intrinsic(self, it: Intrinsic) -> Col:
        if it in self._cache:
            return self._cache[it]
        if it in (Intrinsic.EVENT_NAME, Intrinsic.EVENT_TIME_SINCE_START):
            info = self.events()
            flat = info["flat"]
            m = len(flat)
            if it is Intrinsic.EVENT_NAME:
                col = Col(m, {"str": pc.struct_field(flat, "name") if m else pa.array([], pa.string())})
            else:
                owner = np.repeat(np.arange(self.n), info["lens"])  # type: ignore[arg-type]
                start = _np(self.spans.column("start_unix_nano"))[owner]
                t = _np(pc.struct_field(flat, "time_unix_nano")) if m else np.zeros(0, np.int64)
                col = Col(m, {"dur": pa.array(t - start, pa.int64())})
        else:
            info = self.links()
            flat = info["flat"]
            m = len(flat)
            field = "trace_id" if it is Intrinsic.LINK_TRACE_ID else "span_id"
            ids = hex_ids(pc.struct_field(flat, field)) if m else pa.array([], pa.string())
            if it is Intrinsic.LINK_TRACE_ID:
                ids = pc.utf8_ltrim(ids, "0")
            col = Col(m, {"str": ids})
        self._cache[it] = col
        return col

    # -- domains

    def domain_for(self, expr: FieldExpr) -> Domain:
        levels = set()
        _levels(expr, levels)
        dom = Domain(self.n)
        if "event" in levels:
            dom = self._explode(dom, self.events(), "event")
        if "link" in levels:
            dom = self._explode(dom, self.links(), "link")
        return dom

    def _explode(self, dom: Domain, info: dict[str, object], which: str) -> Domain:
        span_of = dom.spans(self.n)
        lens = info["lens"][span_of]  # type: ignore[index]
        rep = np.maximum(lens, 1)
        total = int(rep.sum())
        rows = np.repeat(np.arange(dom.m), rep)
        within = np.arange(total) - np.repeat(np.cumsum(rep) - rep, rep)
        flat = np.repeat(info["offsets"][span_of], rep) + within  # type: ignore[index]
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

    # -- expressions

    def value(self, expr: FieldExpr, dom: Domain) -> Col:
        if isinstance(expr, Static):
            if expr.type is StaticType.NIL:
                return Col.nil(dom.m)
            slot = _STATIC_SLOTS[expr.type]
            v = expr.value
            if expr.type is StaticType.STATUS:
                v = v.otlp_code  # type: ignore[union-attr]
            elif expr.type is StaticType.KIND:
                v = v.value  # type: ignore[union-attr]
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
                return self.sub_attr("event", expr.name).take(dom.event_idx)  # type: ignore[arg-type]
            if expr.scope is Scope.LINK:
                return self.sub_attr("link", expr.name).take(dom.link_idx)  # type: ignore[arg-type]
            return self._at(self.unscoped(expr.name), dom)
        if isinstance(expr, Intrinsic):
            if expr.level == "event":
                return self.sub_intrinsic(expr).take(dom.event_idx)  # type: ignore[arg-type]
            if expr.level == "link":
                return self.sub_intrinsic(expr).take(dom.link_idx)  # type: ignore[arg-type]
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
        if self.candidate and (_trace_dependent(e.lhs, self.unknown) or _trace_dependent(e.rhs, self.unknown)):
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
        owner = np.repeat(np.arange(self.n), info["lens"])  # type: ignore[arg-type]
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


def _trace_dependent(expr: FieldExpr, unknown: frozenset[Intrinsic] = TRACE_DEPENDENT) -> bool:
    if isinstance(expr, Intrinsic):
        return expr in unknown
    if isinstance(expr, BinaryOp):
        return _trace_dependent(expr.lhs, unknown) or _trace_dependent(expr.rhs, unknown)
    if isinstance(expr, UnaryOp):
        return _trace_dependent(expr.operand, unknown)
    return False


def _trim_trace_ids(e: BinaryOp, lhs: Col, rhs: Col) -> tuple[Col, Col]:
    """`trace:id` / `link:traceID` compare without leading zeros: trim the string literal too."""
    ids = (Intrinsic.TRACE_ID, Intrinsic.LINK_TRACE_ID)
    if e.lhs in ids and isinstance(e.rhs, Static) and e.rhs.type is StaticType.STRING:
        rhs = Col.literal(rhs.n, "str", str(e.rhs.value).lower().lstrip("0"))
    elif e.rhs in ids and isinstance(e.lhs, Static) and e.lhs.type is StaticType.STRING:
        lhs = Col.literal(lhs.n, "str", str(e.lhs.value).lower().lstrip("0"))
    return lhs, rhs


def uses_nested_sets(expr: FieldExpr) -> bool:
    if isinstance(expr, Intrinsic):
        return expr in NESTED_SET_INTRINSICS
    if isinstance(expr, BinaryOp):
        return uses_nested_sets(expr.lhs) or uses_nested_sets(expr.rhs)
    if isinstance(expr, UnaryOp):
        return uses_nested_sets(expr.operand)
    return False

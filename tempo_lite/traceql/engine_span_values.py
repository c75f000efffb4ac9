"""The values of one span table that TraceQL reads, looked up column-wise and cached per table:
attributes (span, resource, instrumentation scope, dedicated columns), intrinsics (span, trace-level,
nested-set) as typed `Col`s of one value per span row, and event and link values (one per event or link).

`SpanValues` is the lookup half of `engine_context.SpanContext`, which evaluates expressions over them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tempo_lite.spantable import BOOL, DOUBLE, INT, STRING, SpanTable, dedicated_type
from tempo_lite.traceql.ast import Intrinsic, TraceQLError
from tempo_lite.traceql.engine_attrs import AttrIndex, hex_ids, np_int
from tempo_lite.traceql.engine_query import TRACE_TABLE_INTRINSICS
from tempo_lite.traceql.engine_summary import TraceSummaries, trace_summaries
from tempo_lite.traceql.engine_values import Col

_DEDICATED_SLOTS = {STRING: "str", INT: "int", DOUBLE: "float", BOOL: "bool"}


@dataclass(frozen=True)
class TraceLevel:
    """Trace-level values known from outside the table (a block's trace table), so that a table holding
    only some spans of its traces can still evaluate `traceDuration`, `rootName` and `rootServiceName`:
    `span_trace[row]` is the row's trace, the other arrays are per trace (root fields null: no root)."""

    span_trace: np.ndarray
    duration: np.ndarray
    root_service: pa.Array
    root_name: pa.Array


class NestedList(TypedDict):
    """The events (or links) of every span flattened: span i owns `flat[offsets[i] : offsets[i] + lens[i]]`;
    `attrs` indexes their attributes (built on first use)."""

    lens: np.ndarray
    offsets: np.ndarray
    flat: pa.Array
    attrs: AttrIndex | None


class SpanValues:
    """Values of one span table for TraceQL evaluation, cached per table."""

    def __init__(self, table: SpanTable, *, trace_level: TraceLevel | None = None) -> None:
        self.table = table
        self.trace_level = trace_level
        self.spans = table.spans
        self.n = table.num_spans
        self._span_attrs: AttrIndex | None = None
        self._cache: dict[object, Col] = {}
        self._summaries: TraceSummaries | None = None
        self._resource_index: np.ndarray | None = None
        self._events: NestedList | None = None
        self._links: NestedList | None = None

    # -- shared structures

    @property
    def resource_index(self) -> np.ndarray:
        """Each span's row in the resources table (read on first use: most filters never need it)."""
        if self._resource_index is None:
            self._resource_index = np_int(self.spans.column("resource_index"))
        return self._resource_index

    @property
    def summaries(self) -> TraceSummaries:
        if self._summaries is None:
            self._summaries = trace_summaries(self.table)
        return self._summaries

    def nested(self, name: str) -> np.ndarray:
        """A nested-set column (`nested_set_left`, `nested_set_right`, `parent_index`) as numpy."""
        if name not in self.spans.column_names:
            raise ValueError("nested-set columns required")
        return np_int(self.spans.column(name))

    def _nested_list(self, column: str) -> NestedList:
        lists = self.spans.column(column).combine_chunks()
        lens = np_int(pc.list_value_length(lists))
        flat = pc.list_flatten(lists)
        return {"lens": lens, "offsets": np.cumsum(lens) - lens, "flat": flat, "attrs": None}

    def events(self) -> NestedList:
        if self._events is None:
            self._events = self._nested_list("events")
        return self._events

    def links(self) -> NestedList:
        if self._links is None:
            self._links = self._nested_list("links")
        return self._links

    # -- span-level values (length n, cached)

    def span_attr(self, key: str) -> Col:
        ck = ("span", key)
        if ck not in self._cache:
            if self._span_attrs is None:
                self._span_attrs = AttrIndex(self.spans.column("attrs"), self.n)
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
            self._cache[ck] = AttrIndex(res.column(column), res.num_rows).lookup(key)
        return self._cache[ck]

    def resource_level(self, kind: str, key: str) -> Col:
        """Resource (kind "resource") or scope ("scope") attribute, broadcast to spans."""
        ck = (kind, key)
        if ck not in self._cache:
            self._cache[ck] = self.per_resource(kind, key).take(self.resource_index)
        return self._cache[ck]

    def unscoped(self, key: str) -> Col:
        """`.key`: the span value, with the resource value as the alternative."""
        span = self.span_attr(key)
        return Col(span.n, span.slots, span.arr, [self.resource_level("resource", key)])

    def intrinsic(self, it: Intrinsic) -> Col:
        """A span-level or trace-level intrinsic per span row."""
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
        """Event (`which` "event") or link ("link") attribute `key`, one value per event or link."""
        ck = (which, key)
        if ck not in self._cache:
            info = self.events() if which == "event" else self.links()
            attrs = info["attrs"]
            if attrs is None:
                flat = info["flat"]
                attrs = info["attrs"] = AttrIndex(
                    pc.struct_field(flat, "attrs") if len(flat) else pa.array([], pa.list_(pa.null())),
                    len(flat),
                )
            self._cache[ck] = attrs.lookup(key)
        return self._cache[ck]

    def sub_intrinsic(self, it: Intrinsic) -> Col:
        """An event or link intrinsic, one value per event or link."""
        if it in self._cache:
            return self._cache[it]
        if it in (Intrinsic.EVENT_NAME, Intrinsic.EVENT_TIME_SINCE_START):
            info = self.events()
            flat = info["flat"]
            m = len(flat)
            if it is Intrinsic.EVENT_NAME:
                col = Col(m, {"str": pc.struct_field(flat, "name") if m else pa.array([], pa.string())})
            else:
                owner = np.repeat(np.arange(self.n), info["lens"])
                start = np_int(self.spans.column("start_unix_nano"))[owner]
                t = np_int(pc.struct_field(flat, "time_unix_nano")) if m else np.zeros(0, np.int64)
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

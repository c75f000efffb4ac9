"""The span table: one row per span, in Arrow, shared by the live-store, WAL replay and blocks.

`flatten()` turns OTLP `TracesData` into a `SpanTable`; `to_traces_data()` turns rows back into
OTLP for trace by ID. Layout (see docs/block-format.md for the decisions and their figures):

* `spans`: IDs as fixed-size binary, intrinsics as typed columns, `service_name` copied from the
  resource, generic attributes as a list of typed structs (`ATTRS`: TraceQL compares by type, so
  `.a = 1` is not `.a = "1"`), events and links nested per span, and optional *dedicated* string
  columns (`span.<key>`) for hot attribute keys, recorded in `SpanTable.dedicated`.
* `resources`: one row per distinct (resource, instrumentation scope) pair, i.e. per OTLP
  `ScopeSpans`; spans point at it with `resource_index`. Conditions on resource or scope attributes
  are evaluated on this small table and broadcast to spans with `take`.

This module is pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status, TracesData

# Attribute value types, stored in the `type` field of each attribute struct.
STRING, INT, DOUBLE, BOOL, BYTES, ARRAY, KVLIST = 1, 2, 3, 4, 5, 6, 7

ATTR = pa.struct(
    [
        ("key", pa.string()),
        ("type", pa.int8()),
        ("str", pa.string()),
        ("int", pa.int64()),
        ("dbl", pa.float64()),
        ("bool", pa.bool_()),
        # BYTES, ARRAY and KVLIST keep their serialized OTLP AnyValue, so nothing is lost.
        ("raw", pa.binary()),
    ]
)
ATTRS = pa.list_(ATTR)
EVENT = pa.struct(
    [
        ("time_unix_nano", pa.int64()),
        ("name", pa.string()),
        ("attrs", ATTRS),
        ("dropped_attributes_count", pa.uint32()),
    ]
)
LINK = pa.struct(
    [
        ("trace_id", pa.binary()),
        ("span_id", pa.binary()),
        ("trace_state", pa.string()),
        ("flags", pa.uint32()),
        ("attrs", ATTRS),
        ("dropped_attributes_count", pa.uint32()),
    ]
)

SPAN_FIELDS = [
    pa.field("trace_id", pa.binary(16), nullable=False),
    pa.field("span_id", pa.binary(8), nullable=False),
    pa.field("parent_span_id", pa.binary()),
    pa.field("name", pa.string()),
    pa.field("kind", pa.int8()),
    pa.field("status_code", pa.int8()),
    pa.field("status_message", pa.string()),
    pa.field("start_unix_nano", pa.int64()),
    pa.field("duration_nano", pa.int64()),
    pa.field("trace_state", pa.string()),
    pa.field("flags", pa.uint32()),
    pa.field("dropped_attributes_count", pa.uint32()),
    pa.field("dropped_events_count", pa.uint32()),
    pa.field("dropped_links_count", pa.uint32()),
    pa.field("resource_index", pa.int32()),
    pa.field("service_name", pa.string()),
    pa.field("attrs", ATTRS),
    pa.field("events", pa.list_(EVENT)),
    pa.field("links", pa.list_(LINK)),
]
SPAN_SCHEMA = pa.schema(SPAN_FIELDS)
# Computed when a trace is assembled (block-builder), see `nested_sets()`.
NESTED_SET_FIELDS = [
    pa.field("nested_set_left", pa.int32()),
    pa.field("nested_set_right", pa.int32()),
    pa.field("parent_index", pa.int32()),
]

RESOURCE_SCHEMA = pa.schema(
    [
        pa.field("attrs", ATTRS),
        pa.field("dropped_attributes_count", pa.uint32()),
        pa.field("schema_url", pa.string()),
        pa.field("scope_name", pa.string()),
        pa.field("scope_version", pa.string()),
        pa.field("scope_attrs", ATTRS),
        pa.field("scope_dropped_attributes_count", pa.uint32()),
        pa.field("scope_schema_url", pa.string()),
    ]
)

DEDICATED_PREFIX = "span."
SPAN_KIND_SERVER, SPAN_KIND_CLIENT = 2, 3


@dataclass
class SpanTable:
    """Spans plus the resources they point at; `dedicated` maps attribute key -> column name."""

    spans: pa.Table
    resources: pa.Table
    dedicated: dict[str, str] = field(default_factory=dict)

    @property
    def num_spans(self) -> int:
        return self.spans.num_rows

    @property
    def nbytes(self) -> int:
        return self.spans.nbytes + self.resources.nbytes

    def take(self, indices: pa.Array | Sequence[int]) -> SpanTable:
        """The given span rows (resources shared, not compacted)."""
        return SpanTable(self.spans.take(indices), self.resources, dict(self.dedicated))


def empty_span_table() -> SpanTable:
    return SpanTable(SPAN_SCHEMA.empty_table(), RESOURCE_SCHEMA.empty_table())


# ---------------------------------------------------------------------------------------------
# OTLP -> Arrow


class _AttrListBuilder:
    """Builds a `list<ATTR>` column from plain Python lists (the fastest measured way)."""

    __slots__ = ("offsets", "keys", "types", "strs", "ints", "dbls", "bools", "raws")

    def __init__(self) -> None:
        self.offsets: list[int] = [0]
        self.keys: list[str] = []
        self.types: list[int] = []
        self.strs: list[str | None] = []
        self.ints: list[int | None] = []
        self.dbls: list[float | None] = []
        self.bools: list[bool | None] = []
        self.raws: list[bytes | None] = []

    def add(self, key: str, value: AnyValue) -> None:
        kind = value.WhichOneof("value")
        self.keys.append(key)
        s = i = d = b = raw = None
        if kind == "string_value":
            t, s = STRING, value.string_value
        elif kind == "int_value":
            t, i = INT, value.int_value
        elif kind == "double_value":
            t, d = DOUBLE, value.double_value
        elif kind == "bool_value":
            t, b = BOOL, value.bool_value
        elif kind == "bytes_value":
            t, raw = BYTES, value.SerializeToString()
        elif kind == "array_value":
            t, raw = ARRAY, value.SerializeToString()
        elif kind == "kvlist_value":
            t, raw = KVLIST, value.SerializeToString()
        else:  # an empty AnyValue: keep the key, as OTLP allows it
            t = 0
        self.types.append(t)
        self.strs.append(s)
        self.ints.append(i)
        self.dbls.append(d)
        self.bools.append(b)
        self.raws.append(raw)

    def add_all(self, attributes: Iterable[KeyValue]) -> None:
        for kv in attributes:
            self.add(kv.key, kv.value)

    def end_row(self) -> None:
        self.offsets.append(len(self.keys))

    def values(self) -> pa.StructArray:
        return pa.StructArray.from_arrays(
            [
                pa.array(self.keys, pa.string()),
                pa.array(self.types, pa.int8()),
                pa.array(self.strs, pa.string()),
                pa.array(self.ints, pa.int64()),
                pa.array(self.dbls, pa.float64()),
                pa.array(self.bools, pa.bool_()),
                pa.array(self.raws, pa.binary()),
            ],
            fields=list(ATTR),
        )

    def finish(self) -> pa.ListArray:
        return pa.ListArray.from_arrays(pa.array(self.offsets, pa.int32()), self.values(), type=ATTRS)


class _SpanColumns:
    def __init__(self) -> None:
        self.trace_id: list[bytes] = []
        self.span_id: list[bytes] = []
        self.parent_span_id: list[bytes] = []
        self.name: list[str] = []
        self.kind: list[int] = []
        self.status_code: list[int] = []
        self.status_message: list[str] = []
        self.start: list[int] = []
        self.duration: list[int] = []
        self.trace_state: list[str] = []
        self.flags: list[int] = []
        self.dropped_attrs: list[int] = []
        self.dropped_events: list[int] = []
        self.dropped_links: list[int] = []
        self.resource_index: list[int] = []
        self.service_name: list[str | None] = []
        self.attrs = _AttrListBuilder()
        # events
        self.event_offsets: list[int] = [0]
        self.event_time: list[int] = []
        self.event_name: list[str] = []
        self.event_dropped: list[int] = []
        self.event_attrs = _AttrListBuilder()
        # links
        self.link_offsets: list[int] = [0]
        self.link_trace_id: list[bytes] = []
        self.link_span_id: list[bytes] = []
        self.link_trace_state: list[str] = []
        self.link_flags: list[int] = []
        self.link_dropped: list[int] = []
        self.link_attrs = _AttrListBuilder()

    def add(self, span: Span, resource_index: int, service_name: str | None) -> None:
        self.trace_id.append(span.trace_id)
        self.span_id.append(span.span_id)
        self.parent_span_id.append(span.parent_span_id)
        self.name.append(span.name)
        self.kind.append(span.kind)
        self.status_code.append(span.status.code)
        self.status_message.append(span.status.message)
        start = span.start_time_unix_nano
        self.start.append(start)
        self.duration.append(span.end_time_unix_nano - start)
        self.trace_state.append(span.trace_state)
        self.flags.append(span.flags)
        self.dropped_attrs.append(span.dropped_attributes_count)
        self.dropped_events.append(span.dropped_events_count)
        self.dropped_links.append(span.dropped_links_count)
        self.resource_index.append(resource_index)
        self.service_name.append(service_name)
        self.attrs.add_all(span.attributes)
        self.attrs.end_row()
        for ev in span.events:
            self.event_time.append(ev.time_unix_nano)
            self.event_name.append(ev.name)
            self.event_dropped.append(ev.dropped_attributes_count)
            self.event_attrs.add_all(ev.attributes)
            self.event_attrs.end_row()
        self.event_offsets.append(len(self.event_time))
        for ln in span.links:
            self.link_trace_id.append(ln.trace_id)
            self.link_span_id.append(ln.span_id)
            self.link_trace_state.append(ln.trace_state)
            self.link_flags.append(ln.flags)
            self.link_dropped.append(ln.dropped_attributes_count)
            self.link_attrs.add_all(ln.attributes)
            self.link_attrs.end_row()
        self.link_offsets.append(len(self.link_trace_id))

    def table(self) -> pa.Table:
        events = pa.StructArray.from_arrays(
            [
                pa.array(self.event_time, pa.int64()),
                pa.array(self.event_name, pa.string()),
                self.event_attrs.finish(),
                pa.array(self.event_dropped, pa.uint32()),
            ],
            fields=list(EVENT),
        )
        links = pa.StructArray.from_arrays(
            [
                pa.array(self.link_trace_id, pa.binary()),
                pa.array(self.link_span_id, pa.binary()),
                pa.array(self.link_trace_state, pa.string()),
                pa.array(self.link_flags, pa.uint32()),
                self.link_attrs.finish(),
                pa.array(self.link_dropped, pa.uint32()),
            ],
            fields=list(LINK),
        )
        columns = [
            pa.array(self.trace_id, pa.binary(16)),
            pa.array(self.span_id, pa.binary(8)),
            pa.array(self.parent_span_id, pa.binary()),
            pa.array(self.name, pa.string()),
            pa.array(self.kind, pa.int8()),
            pa.array(self.status_code, pa.int8()),
            pa.array(self.status_message, pa.string()),
            pa.array(self.start, pa.int64()),
            pa.array(self.duration, pa.int64()),
            pa.array(self.trace_state, pa.string()),
            pa.array(self.flags, pa.uint32()),
            pa.array(self.dropped_attrs, pa.uint32()),
            pa.array(self.dropped_events, pa.uint32()),
            pa.array(self.dropped_links, pa.uint32()),
            pa.array(self.resource_index, pa.int32()),
            pa.array(self.service_name, pa.string()),
            self.attrs.finish(),
            pa.ListArray.from_arrays(pa.array(self.event_offsets, pa.int32()), events),
            pa.ListArray.from_arrays(pa.array(self.link_offsets, pa.int32()), links),
        ]
        return pa.Table.from_arrays(columns, schema=SPAN_SCHEMA)


def _service_name(resource: Resource) -> str | None:
    for kv in resource.attributes:
        if kv.key == "service.name" and kv.value.WhichOneof("value") == "string_value":
            return kv.value.string_value
    return None


def flatten(resource_spans: Iterable[ResourceSpans]) -> SpanTable:
    """OTLP resource spans -> span table (rows in input order)."""
    cols = _SpanColumns()
    res_attrs = _AttrListBuilder()
    scope_attrs = _AttrListBuilder()
    res_dropped: list[int] = []
    res_schema: list[str] = []
    scope_name: list[str] = []
    scope_version: list[str] = []
    scope_dropped: list[int] = []
    scope_schema: list[str] = []
    for rs in resource_spans:
        service = _service_name(rs.resource)
        for ss in rs.scope_spans:
            index = len(res_dropped)
            res_attrs.add_all(rs.resource.attributes)
            res_attrs.end_row()
            res_dropped.append(rs.resource.dropped_attributes_count)
            res_schema.append(rs.schema_url)
            scope_name.append(ss.scope.name)
            scope_version.append(ss.scope.version)
            scope_attrs.add_all(ss.scope.attributes)
            scope_attrs.end_row()
            scope_dropped.append(ss.scope.dropped_attributes_count)
            scope_schema.append(ss.schema_url)
            for span in ss.spans:
                cols.add(span, index, service)
    resources = pa.Table.from_arrays(
        [
            res_attrs.finish(),
            pa.array(res_dropped, pa.uint32()),
            pa.array(res_schema, pa.string()),
            pa.array(scope_name, pa.string()),
            pa.array(scope_version, pa.string()),
            scope_attrs.finish(),
            pa.array(scope_dropped, pa.uint32()),
            pa.array(scope_schema, pa.string()),
        ],
        schema=RESOURCE_SCHEMA,
    )
    return SpanTable(cols.table(), resources)


def flatten_bytes(traces_data: bytes) -> SpanTable:
    """A serialized OTLP `TracesData` (the WAL payload) -> span table."""
    data = TracesData()
    data.ParseFromString(traces_data)
    return flatten(data.resource_spans)


def concat(tables: Sequence[SpanTable]) -> SpanTable:
    """Concatenate span tables, re-pointing `resource_index` and folding dedicated columns back."""
    tables = [t if not t.dedicated else undedicate(t) for t in tables]
    if not tables:
        return empty_span_table()
    if len(tables) == 1:
        return tables[0]
    spans = []
    offset = 0
    for t in tables:
        s = t.spans
        if offset:
            idx = s.schema.get_field_index("resource_index")
            s = s.set_column(idx, "resource_index", pc.add(s.column(idx), pa.scalar(offset, pa.int32())))
        spans.append(s)
        offset += t.resources.num_rows
    return SpanTable(
        pa.concat_tables(spans, promote_options="default"),
        pa.concat_tables([t.resources for t in tables]),
    )


# ---------------------------------------------------------------------------------------------
# Dedicated attribute columns

# Tempo's well-known span attributes, always dedicated when present as strings.
DEFAULT_DEDICATED_KEYS = ("http.method", "http.url", "http.route", "http.request.method", "url.full", "db.system")


def choose_dedicated_keys(table: SpanTable, max_columns: int = 10) -> list[str]:
    """The default keys plus the most frequent string attribute keys of this table, at most `max_columns`."""
    flat = pc.list_flatten(table.spans.column("attrs"))
    if len(flat) == 0:
        return []
    strings = flat.filter(pc.equal(pc.struct_field(flat, "type"), STRING))
    counts = pc.value_counts(pc.struct_field(strings, "key"))
    ranked = sorted(
        ((c["counts"].as_py(), c["values"].as_py()) for c in counts),
        key=lambda kc: (-(kc[1] in DEFAULT_DEDICATED_KEYS), -kc[0], kc[1]),
    )
    # A key seen on fewer than 1% of spans is not worth a column.
    floor = max(1, table.num_spans // 100)
    return [k for c, k in ranked if c >= floor][:max_columns]


def dedicate(table: SpanTable, keys: Sequence[str]) -> SpanTable:
    """Move string attributes with the given keys out of `attrs` into `span.<key>` columns."""
    if not keys:
        return table
    spans = table.spans
    attrs = spans.column("attrs").combine_chunks()
    flat = attrs.flatten()
    parents = pc.list_parent_indices(attrs)
    key_col = pc.struct_field(flat, "key")
    is_str = pc.equal(pc.struct_field(flat, "type"), STRING)
    moved = pc.and_(pc.is_in(key_col, pa.array(list(keys), pa.string())), is_str)
    n = spans.num_rows
    dedicated = dict(table.dedicated)
    str_col = pc.struct_field(flat, "str")
    for key in keys:
        sel = pc.and_(moved, pc.equal(key_col, key))
        rows = pc.filter(parents, sel)
        vals = pc.filter(str_col, sel)
        column = [None] * n
        # Duplicate keys on one span: the first one wins (OTLP keys are unique per span anyway).
        for r, v in zip(reversed(rows.to_pylist()), reversed(vals.to_pylist()), strict=True):
            column[r] = v
        name = DEDICATED_PREFIX + key
        spans = spans.append_column(pa.field(name, pa.string()), pa.array(column, pa.string()))
        dedicated[key] = name
    keep = pc.invert(moved)
    kept_flat = flat.filter(keep)
    kept_parents = pc.filter(parents, keep)
    counts = pc.value_counts(kept_parents)
    per_row = [0] * n
    for c in counts:
        per_row[c["values"].as_py()] = c["counts"].as_py()
    offsets = [0]
    for c in per_row:
        offsets.append(offsets[-1] + c)
    new_attrs = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), kept_flat, type=ATTRS)
    spans = spans.set_column(spans.schema.get_field_index("attrs"), pa.field("attrs", ATTRS), new_attrs)
    return SpanTable(spans, table.resources, dedicated)


def undedicate(table: SpanTable) -> SpanTable:
    """Fold dedicated columns back into `attrs` (for concatenating tables with different mappings)."""
    if not table.dedicated:
        return table
    spans = table.spans
    rows = spans.select(["attrs", *table.dedicated.values()]).to_pylist()
    builder = _AttrListBuilder()
    for row in rows:
        for a in row["attrs"]:
            _append_struct(builder, a)
        for key, col in table.dedicated.items():
            v = row[col]
            if v is not None:
                _append_struct(builder, {"key": key, "type": STRING, "str": v})
        builder.end_row()
    spans = spans.drop_columns(list(table.dedicated.values()))
    spans = spans.set_column(spans.schema.get_field_index("attrs"), pa.field("attrs", ATTRS), builder.finish())
    return SpanTable(spans, table.resources, {})


def _append_struct(builder: _AttrListBuilder, a: dict) -> None:
    builder.keys.append(a["key"])
    builder.types.append(a["type"])
    builder.strs.append(a.get("str"))
    builder.ints.append(a.get("int"))
    builder.dbls.append(a.get("dbl"))
    builder.bools.append(a.get("bool"))
    builder.raws.append(a.get("raw"))


# ---------------------------------------------------------------------------------------------
# Trace structure


def is_root(parent_span_id: bytes) -> bool:
    return not parent_span_id or parent_span_id == b"\x00" * len(parent_span_id)


def nested_sets(
    span_ids: Sequence[bytes], parent_ids: Sequence[bytes], kinds: Sequence[int]
) -> tuple[list[int], list[int], list[int]]:
    """Nested-set numbering of one trace's spans (Tempo's vParquet model).

    Roots (empty parent) are numbered depth-first from left=1 with parent=-1; a child's parent value is
    its parent's `left`. A server span sharing its ID with a client span (Zipkin) is that client span's
    child. Spans not reachable from a root get 0/0/0. Returns (left, right, parent) lists.
    """
    n = len(span_ids)
    by_id: dict[bytes, list[int]] = {}
    for i, sid in enumerate(span_ids):
        by_id.setdefault(sid, []).append(i)
    children: list[list[int]] = [[] for _ in range(n)]
    roots: list[int] = []
    for i in range(n):
        sid, pid = span_ids[i], parent_ids[i]
        shared = by_id.get(sid, ())
        if kinds[i] == SPAN_KIND_SERVER and len(shared) > 1:
            client = next((j for j in shared if j != i and kinds[j] == SPAN_KIND_CLIENT), None)
            if client is not None:
                children[client].append(i)
                continue
        if is_root(pid):
            roots.append(i)
            continue
        candidates = [j for j in by_id.get(pid, ()) if j != i]
        if candidates:
            # Prefer the server span of a shared client/server pair: it is the one doing the work.
            parent = next((j for j in candidates if kinds[j] == SPAN_KIND_SERVER), candidates[0])
            children[parent].append(i)
    left = [0] * n
    right = [0] * n
    parent_of = [0] * n
    counter = 0
    visited = [False] * n
    for root in roots:
        parent_of[root] = -1
        stack: list[tuple[int, int]] = [(root, 0)]
        while stack:
            node, child_pos = stack.pop()
            if child_pos == 0:
                if visited[node]:
                    continue
                visited[node] = True
                counter += 1
                left[node] = counter
            kids = children[node]
            while child_pos < len(kids) and visited[kids[child_pos]]:
                child_pos += 1
            if child_pos < len(kids):
                stack.append((node, child_pos + 1))
                kid = kids[child_pos]
                parent_of[kid] = left[node]
                stack.append((kid, 0))
            else:
                counter += 1
                right[node] = counter
    return left, right, parent_of


def sort_by_trace(table: SpanTable) -> SpanTable:
    """Rows sorted by trace ID, then start time (the block order)."""
    order = pc.sort_indices(table.spans, sort_keys=[("trace_id", "ascending"), ("start_unix_nano", "ascending")])
    return table.take(order)


def with_nested_sets(table: SpanTable) -> SpanTable:
    """Add nested-set columns; the table must be sorted by trace ID."""
    spans = table.spans
    trace_ids = spans.column("trace_id").to_pylist()
    span_ids = spans.column("span_id").to_pylist()
    parent_ids = spans.column("parent_span_id").to_pylist()
    kinds = spans.column("kind").to_pylist()
    left: list[int] = []
    right: list[int] = []
    parent: list[int] = []
    start = 0
    n = len(trace_ids)
    while start < n:
        end = start + 1
        while end < n and trace_ids[end] == trace_ids[start]:
            end += 1
        lft, rgt, par = nested_sets(span_ids[start:end], parent_ids[start:end], kinds[start:end])
        left.extend(lft)
        right.extend(rgt)
        parent.extend(par)
        start = end
    for f, values in zip(NESTED_SET_FIELDS, (left, right, parent), strict=True):
        if f.name in spans.column_names:
            spans = spans.drop_columns([f.name])
        spans = spans.append_column(f, pa.array(values, pa.int32()))
    return SpanTable(spans, table.resources, dict(table.dedicated))


# ---------------------------------------------------------------------------------------------
# Arrow -> OTLP


def _any_value(a: dict) -> AnyValue:
    t = a["type"]
    if t == STRING:
        return AnyValue(string_value=a["str"])
    if t == INT:
        return AnyValue(int_value=a["int"])
    if t == DOUBLE:
        return AnyValue(double_value=a["dbl"])
    if t == BOOL:
        return AnyValue(bool_value=a["bool"])
    value = AnyValue()
    if a.get("raw"):
        value.ParseFromString(a["raw"])
    return value


def _key_values(attrs: list[dict] | None) -> list[KeyValue]:
    return [KeyValue(key=a["key"], value=_any_value(a)) for a in attrs or ()]


def to_traces_data(table: SpanTable) -> TracesData:
    """Rebuild OTLP from span rows, one ResourceSpans per distinct resource/scope, in row order."""
    rows = table.spans.to_pylist()
    resources = table.resources.to_pylist()
    dedicated = table.dedicated
    data = TracesData()
    groups: dict[int, ScopeSpans] = {}
    for row in rows:
        ri = row["resource_index"]
        ss = groups.get(ri)
        if ss is None:
            r = resources[ri]
            rs = data.resource_spans.add(
                resource=Resource(
                    attributes=_key_values(r["attrs"]),
                    dropped_attributes_count=r["dropped_attributes_count"] or 0,
                ),
                schema_url=r["schema_url"] or "",
            )
            ss = rs.scope_spans.add(
                scope=InstrumentationScope(
                    name=r["scope_name"] or "",
                    version=r["scope_version"] or "",
                    attributes=_key_values(r["scope_attrs"]),
                    dropped_attributes_count=r["scope_dropped_attributes_count"] or 0,
                ),
                schema_url=r["scope_schema_url"] or "",
            )
            groups[ri] = ss
        span = ss.spans.add(
            trace_id=row["trace_id"],
            span_id=row["span_id"],
            parent_span_id=row["parent_span_id"] or b"",
            name=row["name"] or "",
            kind=row["kind"] or 0,
            start_time_unix_nano=row["start_unix_nano"],
            end_time_unix_nano=row["start_unix_nano"] + row["duration_nano"],
            trace_state=row["trace_state"] or "",
            flags=row["flags"] or 0,
            dropped_attributes_count=row["dropped_attributes_count"] or 0,
            dropped_events_count=row["dropped_events_count"] or 0,
            dropped_links_count=row["dropped_links_count"] or 0,
            status=Status(code=row["status_code"] or 0, message=row["status_message"] or ""),
        )
        span.attributes.extend(_key_values(row["attrs"]))
        for key, col in dedicated.items():
            v = row.get(col)
            if v is not None:
                span.attributes.add(key=key, value=AnyValue(string_value=v))
        for ev in row["events"] or ():
            span.events.add(
                time_unix_nano=ev["time_unix_nano"],
                name=ev["name"] or "",
                attributes=_key_values(ev["attrs"]),
                dropped_attributes_count=ev["dropped_attributes_count"] or 0,
            )
        for ln in row["links"] or ():
            span.links.add(
                trace_id=ln["trace_id"],
                span_id=ln["span_id"],
                trace_state=ln["trace_state"] or "",
                flags=ln["flags"] or 0,
                attributes=_key_values(ln["attrs"]),
                dropped_attributes_count=ln["dropped_attributes_count"] or 0,
            )
    return data


def dedupe_spans(table: SpanTable) -> SpanTable:
    """Drop duplicate spans by (trace ID, span ID, kind), keeping the first occurrence."""
    spans = table.spans
    if spans.num_rows < 2:
        return table
    keys = pa.table(
        {
            "t": spans.column("trace_id"),
            "s": spans.column("span_id"),
            "k": spans.column("kind"),
            "i": pa.array(range(spans.num_rows), pa.int64()),
        }
    )
    first = keys.group_by(["t", "s", "k"], use_threads=False).aggregate([("i", "min")])
    if first.num_rows == spans.num_rows:
        return table
    ordered = pc.sort_indices(first.column("i_min"))
    return table.take(pc.take(first.column("i_min"), ordered))

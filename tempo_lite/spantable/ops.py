"""Operations on span tables (pure): concatenation, dedicated attribute columns, trace structure (nested
sets, block order), de-duplication and the Arrow IPC transport between processes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tempo_lite.spantable.schema import (
    ATTR,
    ATTRS,
    BOOL,
    DEDICATED_PREFIX,
    DEDICATED_TYPES,
    DOUBLE,
    INT,
    NESTED_SET_FIELDS,
    SPAN_KIND_CLIENT,
    SPAN_KIND_SERVER,
    SPAN_SCHEMA,
    STRING,
    SpanTable,
    dedicated_type,
    empty_span_table,
)


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


def choose_typed_dedicated(table: SpanTable, exclude: Sequence[str] = (), max_per_type: int = 5) -> dict[str, int]:
    """The most frequent int, double and bool attribute keys (at most `max_per_type` of each), each with the
    type most of its values have; keys whose values are mostly strings, or in `exclude`, are left out.
    Like Tempo's vParquet5 int columns: a filter on one is a compare of one typed column."""
    flat = pc.list_flatten(table.spans.column("attrs"))
    if len(flat) == 0:
        return {}
    pairs = pa.table({"k": pc.struct_field(flat, "key"), "t": pc.struct_field(flat, "type")})
    counted = pairs.group_by(["k", "t"], use_threads=False).aggregate([([], "count_all")]).to_pylist()
    best: dict[str, tuple[int, int]] = {}
    for row in counted:
        k, t, c = row["k"], row["t"], row["count_all"]
        if k not in best or (c, -t) > (best[k][1], -best[k][0]):
            best[k] = (t, c)
    floor = max(1, table.num_spans // 100)
    skip = set(exclude)
    out: dict[str, int] = {}
    for typ in (INT, DOUBLE, BOOL):
        ranked = sorted((-c, k) for k, (t, c) in best.items() if t == typ and c >= floor and k not in skip)
        out.update({k: typ for _, k in ranked[:max_per_type]})
    return out


def dedicate(table: SpanTable, keys: Sequence[str] | Mapping[str, int]) -> SpanTable:
    """Move attributes with the given keys out of `attrs` into `span.<key>` columns.

    `keys` is a list of keys (string values move) or a mapping key -> attribute type (STRING, INT,
    DOUBLE or BOOL: values of that type move into a column of that type). Values of other types stay
    in `attrs`, so nothing changes type."""
    if not keys:
        return table
    types = dict(keys) if isinstance(keys, Mapping) else {k: STRING for k in keys}
    spans = table.spans
    attrs = spans.column("attrs").combine_chunks()
    flat = attrs.flatten()
    parents = pc.list_parent_indices(attrs).to_numpy().astype(np.int64)
    key_col = pc.struct_field(flat, "key")
    type_col = pc.struct_field(flat, "type")
    n = spans.num_rows
    moved = np.zeros(len(flat), dtype=bool)
    dedicated = dict(table.dedicated)
    for key, typ in types.items():
        field_name, arrow_type = DEDICATED_TYPES[typ]
        sel = np.asarray(
            pc.and_(pc.equal(key_col, key), pc.equal(type_col, typ)).fill_null(False).to_numpy(zero_copy_only=False),
            dtype=bool,
        )
        moved |= sel
        where = np.flatnonzero(sel)
        pos = np.full(n, -1, dtype=np.int64)
        # Duplicate keys on one span: the first one wins (OTLP keys are unique per span anyway).
        pos[parents[where][::-1]] = where[::-1]
        missing = pos < 0
        values = pc.struct_field(flat, field_name).take(pa.array(np.where(missing, 0, pos), mask=missing))
        name = DEDICATED_PREFIX + key
        spans = spans.append_column(pa.field(name, arrow_type), values.cast(arrow_type))
        dedicated[key] = name
    keep = ~moved
    kept_flat = flat.filter(pa.array(keep))
    counts = np.bincount(parents[keep], minlength=n)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    new_attrs = pa.ListArray.from_arrays(pa.array(offsets), kept_flat, type=ATTRS)
    spans = spans.set_column(spans.schema.get_field_index("attrs"), pa.field("attrs", ATTRS), new_attrs)
    return SpanTable(spans, table.resources, dedicated)


def undedicate(table: SpanTable) -> SpanTable:
    """Fold dedicated columns back into `attrs` (for concatenating tables with different mappings).

    Vectorised: generic and dedicated values are stacked with their row index and stably sorted by it,
    so each span keeps its generic attributes first, then its dedicated ones in mapping order."""
    if not table.dedicated:
        return table
    spans = table.spans
    # A column projection (e.g. a TraceQL metrics query reading no span attribute) may have left out
    # `attrs` or some dedicated columns: fold only what is there.
    folded = {k: c for k, c in table.dedicated.items() if c in spans.column_names}
    if "attrs" not in spans.column_names:
        return SpanTable(spans.drop_columns(list(folded.values())), table.resources, {})
    if not folded:
        return SpanTable(spans, table.resources, {})
    attrs = spans.column("attrs").combine_chunks()
    values = [attrs.flatten()]
    rows = [pc.list_parent_indices(attrs).cast(pa.int64())]
    for key, col in folded.items():
        column = spans.column(col).combine_chunks()
        present = pc.is_valid(column)
        present_values = pc.filter(column, present)
        n = len(present_values)
        typ = dedicated_type(column.type)
        children = {"str": pa.nulls(n, pa.string()), "int": pa.nulls(n, pa.int64()),
                    "dbl": pa.nulls(n, pa.float64()), "bool": pa.nulls(n, pa.bool_())}
        field_name, arrow_type = DEDICATED_TYPES[typ]
        children[field_name] = present_values.cast(arrow_type)
        values.append(pa.StructArray.from_arrays(
            [pa.array([key] * n, pa.string()), pa.array(np.full(n, typ, np.int8)), children["str"],
             children["int"], children["dbl"], children["bool"], pa.nulls(n, pa.binary())],
            fields=list(ATTR),
        ))
        rows.append(pc.filter(pa.array(np.arange(len(column), dtype=np.int64)), present))
    all_rows = pa.concat_arrays(rows)
    order = pc.sort_indices(all_rows)  # Arrow's sort is stable
    merged = pa.concat_arrays(values).take(order)
    counts = np.bincount(all_rows.to_numpy(), minlength=spans.num_rows)
    offsets = np.zeros(spans.num_rows + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    new_attrs = pa.ListArray.from_arrays(pa.array(offsets), merged, type=ATTRS)
    spans = spans.drop_columns(list(folded.values()))
    spans = spans.set_column(spans.schema.get_field_index("attrs"), pa.field("attrs", ATTRS), new_attrs)
    return SpanTable(spans, table.resources, {})


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



def dedupe_spans(table: SpanTable) -> SpanTable:
    """Drop copies of a span, keeping the first: same trace ID, span ID, kind, start and duration.

    Copies come from sources overlapping (live-store and a new block, blocks being compacted), a WAL
    record replayed after a crash, or a client retrying a push that had succeeded. Spans that only share
    an ID (and kind) are distinct spans and all kept, as Tempo keeps every span of a push: its combiner
    drops a later source's span whose (span ID, kind) an earlier source had, but never dedupes within
    one push. (Deduping on (span ID, kind) alone made three spans sharing one ID come back as two.)
    """
    spans = table.spans
    if spans.num_rows < 2:
        return table
    keys = pa.table(
        {
            "t": spans.column("trace_id"),
            "s": spans.column("span_id"),
            "k": spans.column("kind"),
            "b": spans.column("start_unix_nano"),
            "d": spans.column("duration_nano"),
            "i": pa.array(range(spans.num_rows), pa.int64()),
        }
    )
    first = keys.group_by(["t", "s", "k", "b", "d"], use_threads=False).aggregate([("i", "min")])
    if first.num_rows == spans.num_rows:
        return table
    ordered = pc.sort_indices(first.column("i_min"))
    return table.take(pc.take(first.column("i_min"), ordered))


# ---------------------------------------------------------------------------------------------
# Transport between processes (a live-store's recent spans, sent to a querier)

_IPC_LENGTH = 8  # bytes of the spans stream's length, big-endian, before the two Arrow IPC streams


def with_empty_lists(table: SpanTable) -> SpanTable:
    """A projected table without `attrs`/`events`/`links` gets empty lists there (no generic values)."""
    spans = table.spans
    missing = [name for name in ("attrs", "events", "links") if name not in spans.column_names]
    if not missing:
        return table
    offsets = pa.array(np.zeros(spans.num_rows + 1, np.int32))
    for name in missing:
        typ = SPAN_SCHEMA.field(name).type
        empty = pa.ListArray.from_arrays(offsets, pa.array([], typ.value_type))
        spans = spans.append_column(pa.field(name, typ), empty)
    return SpanTable(spans, table.resources, dict(table.dedicated))


def trace_ids_in_several(id_lists: Iterable[pa.Array]) -> pa.Array:
    """Trace IDs present in more than one of the lists (each list holds distinct IDs): traces split
    across sources, to be assembled before a whole-trace evaluation."""
    lists = [a.cast(pa.binary(16)) for a in id_lists if len(a)]
    if len(lists) < 2:
        return pa.array([], pa.binary(16))
    counts = pc.value_counts(pa.concat_arrays(lists))
    return counts.field("values").filter(pc.greater(counts.field("counts"), 1))


def without_traces(table: SpanTable, trace_ids: pa.Array) -> SpanTable:
    """The table without the spans of `trace_ids`."""
    if not len(trace_ids) or not table.num_spans:
        return table
    keep = pc.invert(pc.is_in(table.spans.column("trace_id"), trace_ids))
    return SpanTable(table.spans.filter(keep), table.resources, dict(table.dedicated))


def to_ipc(table: SpanTable) -> bytes:
    """One span table as bytes: the spans' Arrow IPC stream (length-prefixed), then the resources'."""
    table = undedicate(table) if table.dedicated else table
    spans, resources = _ipc_stream(table.spans), _ipc_stream(table.resources)
    return len(spans).to_bytes(_IPC_LENGTH, "big") + spans + resources


def from_ipc(data: bytes) -> SpanTable:
    """The inverse of `to_ipc`; ValueError when `data` is not one."""
    if len(data) < _IPC_LENGTH:
        raise ValueError(f"span table transport: {len(data)} bytes is shorter than its header")
    length = int.from_bytes(data[:_IPC_LENGTH], "big")
    if length > len(data) - _IPC_LENGTH:
        raise ValueError(f"span table transport: spans stream of {length} bytes overruns the {len(data)} received")
    view = memoryview(data)
    try:
        spans = pa.ipc.open_stream(view[_IPC_LENGTH:_IPC_LENGTH + length]).read_all()
        resources = pa.ipc.open_stream(view[_IPC_LENGTH + length:]).read_all()
    except pa.ArrowInvalid as exc:
        raise ValueError(f"span table transport: {exc}") from exc
    return SpanTable(spans, resources)


def _ipc_stream(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()

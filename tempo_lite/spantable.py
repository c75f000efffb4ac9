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

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from operator import attrgetter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError
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
    """Builds a `list<ATTR>` column from plain lists (the per-attribute fallback of the KeyValue decoder)."""

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

    def end_row(self) -> None:
        self.offsets.append(len(self.keys))

    def finish(self) -> pa.ListArray:
        values = pa.StructArray.from_arrays(
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
        return pa.ListArray.from_arrays(pa.array(self.offsets, pa.int32()), values, type=ATTRS)


# ---- The ingest hot path -------------------------------------------------------------------------
#
# With the upb protobuf runtime every submessage touched from Python costs a wrapper object
# (~0.4 us per KeyValue, as much again for its AnyValue): that, not Arrow, bounded the old per-field
# loop at ~40-50k spans/s. So payloads are parsed with a *flat* mirror of the OTLP trace schema whose
# `attributes` fields are declared `repeated bytes` (same field numbers, same wire format): upb hands
# every serialized KeyValue over as a plain `bytes`, and all KeyValues of a batch are decoded at once
# with numpy over one Arrow binary buffer. Anything that is not the canonical encoding (fields out of
# order, unknown fields, lengths beyond 4 varint bytes) falls back to protobuf per attribute.
# Figures in docs/benchmarks.md (bench/flatten.py).


def _flat_otlp_classes() -> type:
    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(name="tempo_lite/flat_otlp.proto", package="tempo_lite.flat",
                                             syntax="proto3")
    B, S, M, U32, I32, X64, X32 = (F.TYPE_BYTES, F.TYPE_STRING, F.TYPE_MESSAGE, F.TYPE_UINT32, F.TYPE_INT32,
                                   F.TYPE_FIXED64, F.TYPE_FIXED32)
    messages: dict[str, list[tuple[str, int, int, str]]] = {
        # name -> (field, number, type, "repeated"/"" or message type)
        "TracesData": [("resource_spans", 1, M, "*ResourceSpans")],
        "ResourceSpans": [("resource", 1, M, "Resource"), ("scope_spans", 2, M, "*ScopeSpans"),
                          ("schema_url", 3, S, "")],
        "Resource": [("attributes", 1, B, "*"), ("dropped_attributes_count", 2, U32, "")],
        "ScopeSpans": [("scope", 1, M, "Scope"), ("spans", 2, M, "*Span"), ("schema_url", 3, S, "")],
        "Scope": [("name", 1, S, ""), ("version", 2, S, ""), ("attributes", 3, B, "*"),
                  ("dropped_attributes_count", 4, U32, "")],
        "Span": [("trace_id", 1, B, ""), ("span_id", 2, B, ""), ("trace_state", 3, S, ""),
                 ("parent_span_id", 4, B, ""), ("flags", 16, X32, ""), ("name", 5, S, ""), ("kind", 6, I32, ""),
                 ("start_time_unix_nano", 7, X64, ""), ("end_time_unix_nano", 8, X64, ""),
                 ("attributes", 9, B, "*"), ("dropped_attributes_count", 10, U32, ""),
                 ("events", 11, M, "*Event"), ("dropped_events_count", 12, U32, ""), ("links", 13, M, "*Link"),
                 ("dropped_links_count", 14, U32, ""), ("status", 15, M, "Status")],
        "Event": [("time_unix_nano", 1, X64, ""), ("name", 2, S, ""), ("attributes", 3, B, "*"),
                  ("dropped_attributes_count", 4, U32, "")],
        "Link": [("trace_id", 1, B, ""), ("span_id", 2, B, ""), ("trace_state", 3, S, ""),
                 ("attributes", 4, B, "*"), ("dropped_attributes_count", 5, U32, ""), ("flags", 6, X32, "")],
        "Status": [("message", 2, S, ""), ("code", 3, I32, "")],
    }
    for name, fields in messages.items():
        m = fdp.message_type.add(name=name)
        for fname, number, typ, spec in fields:
            f = m.field.add(name=fname, number=number, type=typ,
                            label=F.LABEL_REPEATED if spec.startswith("*") else F.LABEL_OPTIONAL)
            if typ == M:
                f.type_name = ".tempo_lite.flat." + spec.lstrip("*")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tempo_lite.flat.TracesData"))


_FlatTracesData = _flat_otlp_classes()
_NO_ATTRS = pa.array([], ATTR)
_NO_EVENTS = pa.array([], EVENT)
_NO_LINKS = pa.array([], LINK)
_g = attrgetter
_ATTRIBUTES = _g("attributes")
_TAG_TYPE = np.zeros(256, dtype=np.int8)
_TAG_TYPE[[0x0A, 0x10, 0x18, 0x21, 0x2A, 0x32, 0x3A]] = [STRING, BOOL, INT, DOUBLE, ARRAY, KVLIST, BYTES]


def _offsets(counts: list[int]) -> pa.Array:
    out = np.zeros(len(counts) + 1, dtype=np.int32)
    if counts:
        np.cumsum(counts, out=out[1:])
    return pa.array(out)


def _varint(data: np.ndarray, pos: np.ndarray, max_bytes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode one varint at each position: (value as uint64, byte count, fits in max_bytes)."""
    value = np.zeros(len(pos), dtype=np.uint64)
    size = np.zeros(len(pos), dtype=np.int64)
    active = np.ones(len(pos), dtype=bool)
    for i in range(max_bytes):
        b = data[pos + i].astype(np.uint64)
        value |= np.where(active, (b & np.uint64(0x7F)) << np.uint64(7 * i), np.uint64(0))
        size += active
        active &= b >= 0x80
        if not active.any():
            break
    return value, size, ~active


def _gather(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> tuple[pa.Buffer, pa.Buffer]:
    """Concatenate data[starts[i]:starts[i]+lengths[i]] -> (int32 offsets buffer, bytes buffer)."""
    offsets = np.zeros(len(starts) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    total = int(offsets[-1])
    index = np.arange(total, dtype=np.int64) + np.repeat(starts - offsets[:-1], lengths)
    return pa.py_buffer(offsets), pa.py_buffer(data[index].tobytes())


def _strings(n: int, data: np.ndarray, starts: np.ndarray, lengths: np.ndarray, valid: np.ndarray | None) -> pa.Array:
    offsets, values = _gather(data, starts, lengths)
    validity = None if valid is None else pa.py_buffer(np.packbits(valid, bitorder="little"))
    arr = pa.StringArray.from_buffers(n, offsets, values, validity)
    try:
        arr.validate(full=True)  # UTF-8, as protobuf itself checks string fields
    except pa.ArrowInvalid as exc:
        raise DecodeError(f"attribute key or string value is not valid UTF-8: {exc}") from exc
    return arr


def _decode_key_values(kvs: list[bytes]) -> pa.StructArray | None:
    """Serialized KeyValues -> the ATTR struct array, or None if one is not canonically encoded."""
    n = len(kvs)
    binary = pa.array(kvs, pa.binary())
    bounds = np.frombuffer(binary.buffers()[1], dtype=np.int32, count=n + 1).astype(np.int64)
    raw_data = binary.buffers()[2]
    data = np.zeros((raw_data.size if raw_data else 0) + 24, dtype=np.uint8)  # padding: reads may overrun
    if raw_data:
        data[: raw_data.size] = np.frombuffer(raw_data, dtype=np.uint8)
    start, end = bounds[:-1], bounds[1:]
    ok = data[start] == 0x0A
    klen, ksize, fits = _varint(data, start + 1, 4)
    kstart = start + 1 + ksize
    vtag_pos = kstart + klen.astype(np.int64)
    ok &= fits & (vtag_pos < end)
    vtag_pos = np.where(ok, vtag_pos, start)
    ok &= data[vtag_pos] == 0x12
    vlen, vsize, fits = _varint(data, vtag_pos + 1, 4)
    vstart = vtag_pos + 1 + vsize
    ok &= fits & (vstart + vlen.astype(np.int64) == end)
    if not ok.all():
        return None
    empty = vstart == end
    tag = np.where(empty, 0, data[np.minimum(vstart, len(data) - 1)])
    types = _TAG_TYPE[tag]
    if not (empty | (types != 0)).all():
        return None
    # Each scalar value must fill its AnyValue exactly.
    slen, ssize, sfits = _varint(data, vstart + 1, 4)
    is_str, is_int, is_dbl, is_bool = types == STRING, types == INT, types == DOUBLE, types == BOOL
    ival = np.zeros(n, dtype=np.uint64)
    varints = np.flatnonzero(is_int | is_bool)
    if len(varints):
        vals, isize, ifits = _varint(data, vstart[varints] + 1, 10)
        if not np.all(ifits & (vstart[varints] + 1 + isize == end[varints])):
            return None
        ival[varints] = vals
    if not (
        np.all(~is_str | (sfits & (vstart + 1 + ssize + slen.astype(np.int64) == end)))
        and np.all(~is_dbl | (vstart + 9 == end))
    ):
        return None
    keys = _strings(n, data, kstart, klen.astype(np.int64), None)
    strs = _strings(n, data, vstart + 1 + ssize, np.where(is_str, slen, 0).astype(np.int64), is_str)
    dbl_bytes = data[(np.where(is_dbl, vstart + 1, 0))[:, None] + np.arange(8)]
    dbls = pa.array(dbl_bytes.copy().view("<f8").reshape(-1), pa.float64(), mask=~is_dbl)
    ints = pa.array(ival.view(np.int64), pa.int64(), mask=~is_int)
    bools = pa.array(ival != 0, pa.bool_(), mask=~is_bool)
    is_raw = types >= BYTES  # BYTES, ARRAY, KVLIST keep the serialized AnyValue
    if is_raw.any():
        raw_list: list[bytes | None] = [None] * n
        for i in np.flatnonzero(is_raw).tolist():
            raw_list[i] = kvs[i][int(vstart[i] - start[i]):]
        raws = pa.array(raw_list, pa.binary())
    else:
        raws = pa.nulls(n, pa.binary())
    return pa.StructArray.from_arrays(
        [keys, pa.array(types, pa.int8()), strs, ints, dbls, bools, raws], fields=list(ATTR)
    )


def _decode_key_values_slowly(kvs: list[bytes]) -> pa.StructArray:
    builder = _AttrListBuilder()
    for raw in kvs:
        kv = KeyValue.FromString(raw)
        value = kv.value
        kind = value.WhichOneof("value")
        s = i = d = b = r = None
        t = 0
        if kind == "string_value":
            t, s = STRING, value.string_value
        elif kind == "int_value":
            t, i = INT, value.int_value
        elif kind == "double_value":
            t, d = DOUBLE, value.double_value
        elif kind == "bool_value":
            t, b = BOOL, value.bool_value
        elif kind is not None:
            t, r = {"bytes_value": BYTES, "array_value": ARRAY, "kvlist_value": KVLIST}[kind], value.SerializeToString()
        builder.keys.append(kv.key)
        builder.types.append(t)
        builder.strs.append(s)
        builder.ints.append(i)
        builder.dbls.append(d)
        builder.bools.append(b)
        builder.raws.append(r)
    builder.end_row()
    return builder.finish().values


def _attr_lists(owners: list) -> pa.ListArray:
    """The serialized `attributes` of each owner (span, event, link, resource, scope) -> list<ATTR>."""
    containers = list(map(_ATTRIBUTES, owners))
    kvs = list(chain.from_iterable(containers))
    if not kvs:
        return pa.ListArray.from_arrays(pa.array(np.zeros(len(owners) + 1, np.int32)), _NO_ATTRS, type=ATTRS)
    # Below ~64 attributes (resources, scopes) numpy's per-call overhead exceeds protobuf's per-item cost.
    values = _decode_key_values(kvs) if len(kvs) >= 64 else None
    if values is None:
        values = _decode_key_values_slowly(kvs)
    return pa.ListArray.from_arrays(_offsets(list(map(len, containers))), values, type=ATTRS)


def _column(items: list, getter: Callable, typ: pa.DataType) -> pa.Array:
    return pa.array(list(map(getter, items)), typ)


def _events(spans: list[Span]) -> pa.ListArray:
    containers = list(map(_g("events"), spans))
    events = list(chain.from_iterable(containers))
    if not events:
        return pa.ListArray.from_arrays(pa.array(np.zeros(len(spans) + 1, np.int32)), _NO_EVENTS)
    values = pa.StructArray.from_arrays(
        [
            _column(events, _g("time_unix_nano"), pa.int64()),
            _column(events, _g("name"), pa.string()),
            _attr_lists(events),
            _column(events, _g("dropped_attributes_count"), pa.uint32()),
        ],
        fields=list(EVENT),
    )
    return pa.ListArray.from_arrays(_offsets(list(map(len, containers))), values)


def _links(spans: list[Span]) -> pa.ListArray:
    containers = list(map(_g("links"), spans))
    links = list(chain.from_iterable(containers))
    if not links:
        return pa.ListArray.from_arrays(pa.array(np.zeros(len(spans) + 1, np.int32)), _NO_LINKS)
    values = pa.StructArray.from_arrays(
        [
            _column(links, _g("trace_id"), pa.binary()),
            _column(links, _g("span_id"), pa.binary()),
            _column(links, _g("trace_state"), pa.string()),
            _column(links, _g("flags"), pa.uint32()),
            _attr_lists(links),
            _column(links, _g("dropped_attributes_count"), pa.uint32()),
        ],
        fields=list(LINK),
    )
    return pa.ListArray.from_arrays(_offsets(list(map(len, containers))), values)


def _span_table(spans: list, resource_index: pa.Array, service: pa.Array) -> pa.Table:
    start = np.fromiter(map(_g("start_time_unix_nano"), spans), np.uint64, len(spans))
    end = np.fromiter(map(_g("end_time_unix_nano"), spans), np.uint64, len(spans))
    statuses = list(map(_g("status"), spans))
    columns = [
        _column(spans, _g("trace_id"), pa.binary(16)),
        _column(spans, _g("span_id"), pa.binary(8)),
        _column(spans, _g("parent_span_id"), pa.binary()),
        _column(spans, _g("name"), pa.string()),
        _column(spans, _g("kind"), pa.int8()),
        _column(statuses, _g("code"), pa.int8()),
        _column(statuses, _g("message"), pa.string()),
        pa.array(start.view(np.int64)),
        # uint64 wrap-around then view as int64: the same value the old `end - start` gave.
        pa.array((end - start).view(np.int64)),
        _column(spans, _g("trace_state"), pa.string()),
        _column(spans, _g("flags"), pa.uint32()),
        _column(spans, _g("dropped_attributes_count"), pa.uint32()),
        _column(spans, _g("dropped_events_count"), pa.uint32()),
        _column(spans, _g("dropped_links_count"), pa.uint32()),
        resource_index,
        service,
        _attr_lists(spans),
        _events(spans),
        _links(spans),
    ]
    return pa.Table.from_arrays(columns, schema=SPAN_SCHEMA)


def _service_names(resource_attrs: pa.ListArray) -> pa.Array:
    """Per resource row: the string value of `service.name`, else null (first one wins)."""
    if len(resource_attrs) <= 64:
        names = []
        for attrs in resource_attrs.to_pylist():
            names.append(next((a["str"] for a in attrs or () if a["key"] == "service.name" and a["type"] == STRING),
                              None))
        return pa.array(names, pa.string())
    flat = resource_attrs.flatten()
    parents = pc.list_parent_indices(resource_attrs)
    hit = pc.and_(pc.equal(pc.struct_field(flat, "key"), "service.name"),
                  pc.equal(pc.struct_field(flat, "type"), STRING))
    rows = pc.filter(parents, hit).to_numpy(zero_copy_only=False)
    vals = pc.filter(pc.struct_field(flat, "str"), hit)
    first = np.full(len(resource_attrs), -1, dtype=np.int64)
    for i, r in reversed(list(enumerate(rows.tolist()))):
        first[r] = i
    return vals.take(pa.array(first, mask=first < 0))


def _varint_bytes(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def flatten(resource_spans: Iterable[ResourceSpans]) -> SpanTable:
    """OTLP resource spans -> span table (rows in input order)."""
    parts = []
    for rs in resource_spans:
        body = rs.SerializeToString()
        parts += (b"\x0a", _varint_bytes(len(body)), body)  # TracesData.resource_spans = 1
    return flatten_bytes(b"".join(parts))


def flatten_bytes(traces_data: bytes) -> SpanTable:
    """A serialized OTLP `TracesData` or `ExportTraceServiceRequest` (the WAL payload) -> span table."""
    data = _FlatTracesData.FromString(traces_data)
    resources = []
    rs_schema: list[str] = []
    scopes = []
    span_lists = []
    counts: list[int] = []
    for rs in data.resource_spans:
        for ss in rs.scope_spans:
            resources.append(rs.resource)
            rs_schema.append(rs.schema_url)
            scopes.append(ss)
            span_lists.append(ss.spans)
            counts.append(len(ss.spans))
    spans = list(chain.from_iterable(span_lists))
    resource_index = pa.array(np.repeat(np.arange(len(counts), dtype=np.int32), counts))
    scope_msgs = list(map(_g("scope"), scopes))
    resource_attrs = _attr_lists(resources)
    resource_table = pa.Table.from_arrays(
        [
            resource_attrs,
            _column(resources, _g("dropped_attributes_count"), pa.uint32()),
            pa.array(rs_schema, pa.string()),
            _column(scope_msgs, _g("name"), pa.string()),
            _column(scope_msgs, _g("version"), pa.string()),
            _attr_lists(scope_msgs),
            _column(scope_msgs, _g("dropped_attributes_count"), pa.uint32()),
            _column(scopes, _g("schema_url"), pa.string()),
        ],
        schema=RESOURCE_SCHEMA,
    )
    service = _service_names(resource_attrs).take(resource_index)
    return SpanTable(_span_table(spans, resource_index, service), resource_table)


def flatten_payloads(payloads: Sequence[bytes]) -> SpanTable:
    """Several serialized `TracesData` at once: concatenated protobuf messages merge their repeated
    fields, so one decode pays the per-call cost once (~2 ms) instead of once per WAL record."""
    return flatten_bytes(b"".join(payloads))


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


# Typed dedicated columns: attribute type -> (struct field, Arrow type of the column).
DEDICATED_TYPES: dict[int, tuple[str, pa.DataType]] = {
    STRING: ("str", pa.string()),
    INT: ("int", pa.int64()),
    DOUBLE: ("dbl", pa.float64()),
    BOOL: ("bool", pa.bool_()),
}


def dedicated_type(column_type: pa.DataType) -> int:
    """The attribute type a dedicated column holds, from its Arrow type (old blocks: strings only)."""
    if pa.types.is_integer(column_type):
        return INT
    if pa.types.is_floating(column_type):
        return DOUBLE
    if pa.types.is_boolean(column_type):
        return BOOL
    return STRING


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
    # Only the resources these spans point at (a block's resource table can hold thousands).
    used = pc.unique(table.spans.column("resource_index")).drop_null()
    resources = dict(zip(used.to_pylist(), table.resources.take(used).to_pylist(), strict=True))
    slots = {STRING: "string_value", INT: "int_value", DOUBLE: "double_value", BOOL: "bool_value"}
    dedicated_slots = [
        (key, col, slots[dedicated_type(table.spans.schema.field(col).type)])
        for key, col in table.dedicated.items() if col in table.spans.column_names
    ]
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
        for key, col, slot in dedicated_slots:
            v = row.get(col)
            if v is not None:
                span.attributes.add(key=key, value=AnyValue(**{slot: v}))
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

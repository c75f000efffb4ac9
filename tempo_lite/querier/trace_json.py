"""A trace's span rows as the JSON document Tempo's trace-by-ID answers carry (pure).

The document is exactly `json_format.MessageToDict` of the OTLP message the protobuf answer carries
(`spantable.encode_traces_data`): proto3 JSON names, fields in field-number order, 64-bit integers as
strings, `bytes` (IDs) as base64, enums by name (numbers when newer than our generated code), default
values left out. The generic converter reflects over every field of every span and took about a second
for a 10,000-span trace; walking the parsed message by hand (the version before this one) took a
quarter of that; this reads the table's columns and builds the dicts directly (a third less again; tests:
examples and a hypothesis property against `MessageToDict`).
"""

from __future__ import annotations

import binascii
import math
from collections.abc import Callable, Iterable
from itertools import compress, pairwise
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from google.protobuf import json_format
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status, TracesData

from tempo_lite.spantable import BOOL, DOUBLE, INT, STRING, SpanTable, dedicated_type, encode_traces_data
from tempo_lite.spantable.encode import resource_groups
from tempo_lite.spantable.otlp_json import any_value_json


def _enum(enum_type, value: int):  # noqa: ANN001, ANN202 - a protobuf enum wrapper; name or number
    try:
        return enum_type.Name(value)
    except ValueError:  # a value newer than our generated code: json_format prints the number
        return value


_KIND = {k: _enum(Span.SpanKind, k) for k in Span.SpanKind.values()}
_CODE = {c: _enum(Status.StatusCode, c) for c in Status.StatusCode.values()}


def trace_json(table: SpanTable) -> dict:
    """`json_format.MessageToDict` of the message `spantable.encode_traces_data` writes for the span rows
    (the same dict, keys in the same order), read from the table's columns: no protobuf object per span
    or attribute. Only each group's resource and scope (a handful) go through a message."""
    if table.num_spans == 0:
        return {}
    _, order, counts = resource_groups(table)
    spans = table.spans if order is None else table.spans.take(pa.array(order))
    firsts = np.zeros(len(counts), np.int64)
    np.cumsum(counts[:-1], out=firsts[1:])
    skeleton = TracesData.FromString(encode_traces_data(SpanTable(spans.take(pa.array(firsts)), table.resources)))
    docs = _span_dicts(spans, table.dedicated)
    batches = []
    for rs, first, count in zip(skeleton.resource_spans, firsts.tolist(), counts.tolist(), strict=True):
        ss = rs.scope_spans[0]
        sd: dict = {"scope": json_format.MessageToDict(ss.scope), "spans": docs[first:first + count]}
        if ss.schema_url:
            sd["schemaUrl"] = ss.schema_url
        b: dict = {"resource": json_format.MessageToDict(rs.resource), "scopeSpans": [sd]}
        if rs.schema_url:
            b["schemaUrl"] = rs.schema_url
        batches.append(b)
    return {"resourceSpans": batches}


def _base64(value: bytes | None) -> str:
    return binascii.b2a_base64(value, newline=False).decode() if value else ""


def _double(d: float) -> float | str:
    return d if math.isfinite(d) else ("NaN" if d != d else ("Infinity" if d > 0 else "-Infinity"))


def _column(table: pa.Table | pa.StructArray, name: str) -> list:
    if isinstance(table, pa.Table):
        return table.column(name).to_pylist()
    return pc.struct_field(table, name).to_pylist()


def _lists(column: pa.ChunkedArray | pa.Array) -> tuple[pa.Array, list[int]]:
    """A list column's values and the offset of each row's first value (plus the end)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    counts = pc.list_value_length(column).fill_null(0).to_numpy(zero_copy_only=False)
    offsets = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    return pc.list_flatten(column), offsets.tolist()


def _key_values(attrs: pa.StructArray) -> list[dict]:
    """The JSON of each KeyValue an ATTR struct stands for (what the encoder writes for it)."""
    out = []
    columns = [_column(attrs, f) for f in ("key", "type", "str", "int", "dbl", "bool", "raw")]
    for key, typ, s, i, d, b, raw in zip(*columns, strict=True):
        if typ == STRING:
            value = {"stringValue": s} if s is not None else {}
        elif typ == INT:
            value = {"intValue": str(i)} if i is not None else {}
        elif typ == DOUBLE:
            value = {"doubleValue": _double(d)} if d is not None else {}
        elif typ == BOOL:
            value = {"boolValue": b} if b is not None else {}
        else:  # BYTES, ARRAY, KVLIST: the serialized AnyValue
            value = any_value_json(AnyValue.FromString(raw)) if raw else {}
        out.append({"key": key, "value": value} if key else {"value": value})
    return out


def _attribute_lists(column: pa.ChunkedArray | pa.Array) -> list[list[dict]]:
    values, offsets = _lists(column)
    items = _key_values(values)
    return [items[a:b] for a, b in pairwise(offsets)]


_DEDICATED_JSON = {STRING: lambda v: {"stringValue": v}, INT: lambda v: {"intValue": str(v)},
                   DOUBLE: lambda v: {"doubleValue": _double(v)}, BOOL: lambda v: {"boolValue": v}}


def _messages(count: int, fields: Iterable[tuple[str, list]]) -> list[dict]:
    """`count` messages as JSON, built a field at a time (`_set_fields`)."""
    return _set_fields([{} for _ in range(count)], fields)


def _set_fields(docs: list[dict], fields: Iterable[tuple[str, list]]) -> list[dict]:
    """Add fields to messages as JSON: `fields` gives each field's name and its value in every message, in
    field order. The proto3 JSON rule: a field at its default value (0, "", empty) is left out. (Column by
    column keeps the inner loop short, in C: this runs for every span, event and link.)"""
    for name, values in fields:
        for doc, value in compress(zip(docs, values, strict=True), values):
            doc[name] = value
    return docs


def _converted(convert: Callable[[Any], object], values: list) -> list:
    """`convert` applied to the values that are set; a default value stays as it is (and is left out)."""
    return [convert(v) if v else v for v in values]


def _events(column: pa.ChunkedArray) -> list[list[dict]]:
    events, offsets = _lists(column)
    out = _messages(len(events), [
        ("timeUnixNano", _converted(lambda t: str(t % 2**64), _column(events, "time_unix_nano"))),
        ("name", _column(events, "name")),
        ("attributes", _attribute_lists(pc.struct_field(events, "attrs"))),
        ("droppedAttributesCount", _column(events, "dropped_attributes_count")),
    ])
    return [out[a:b] for a, b in pairwise(offsets)]


def _links(column: pa.ChunkedArray) -> list[list[dict]]:
    links, offsets = _lists(column)
    out = _messages(len(links), [
        ("traceId", _converted(_base64, _column(links, "trace_id"))),
        ("spanId", _converted(_base64, _column(links, "span_id"))),
        ("traceState", _column(links, "trace_state")),
        ("attributes", _attribute_lists(pc.struct_field(links, "attrs"))),
        ("droppedAttributesCount", _column(links, "dropped_attributes_count")),
        ("flags", _column(links, "flags")),
    ])
    return [out[a:b] for a, b in pairwise(offsets)]


def _span_dicts(spans: pa.Table, dedicated: dict[str, str]) -> list[dict]:
    start = spans.column("start_unix_nano").fill_null(0).to_numpy().astype(np.int64).view(np.uint64)
    end = start + spans.column("duration_nano").fill_null(0).to_numpy().astype(np.int64).view(np.uint64)
    attrs = _attribute_lists(spans.column("attrs"))
    for key, name in dedicated.items():
        if name not in spans.column_names:
            continue
        as_json = _DEDICATED_JSON[dedicated_type(spans.schema.field(name).type)]
        for row, v in enumerate(spans.column(name).to_pylist()):
            if v is not None:
                attrs[row] = [*attrs[row], {"key": key, "value": as_json(v)} if key else {"value": as_json(v)}]
    trace_ids: dict[bytes, str] = {}  # a trace's spans share one ID: encoded once
    statuses = _messages(spans.num_rows, [
        ("message", _column(spans, "status_message")),
        ("code", _converted(lambda code: _CODE.get(code, code), _column(spans, "status_code"))),
    ])
    docs = _messages(spans.num_rows, [
        ("traceId", _converted(lambda tid: trace_ids.get(tid) or trace_ids.setdefault(tid, _base64(tid)),
                               _column(spans, "trace_id"))),
        ("spanId", _converted(_base64, _column(spans, "span_id"))),
        ("traceState", _column(spans, "trace_state")),
        ("parentSpanId", _converted(_base64, _column(spans, "parent_span_id"))),
        ("name", _column(spans, "name")),
        ("kind", _converted(lambda kind: _KIND.get(kind, kind), _column(spans, "kind"))),
        ("startTimeUnixNano", _converted(str, start.tolist())),
        ("endTimeUnixNano", _converted(str, end.tolist())),
        ("attributes", attrs),
        ("droppedAttributesCount", _column(spans, "dropped_attributes_count")),
        ("events", _events(spans.column("events"))),
        ("droppedEventsCount", _column(spans, "dropped_events_count")),
        ("links", _links(spans.column("links"))),
        ("droppedLinksCount", _column(spans, "dropped_links_count")),
    ])
    for doc, status in zip(docs, statuses, strict=True):
        doc["status"] = status  # written on every span, an empty one too
    return _set_fields(docs, [("flags", _column(spans, "flags"))])

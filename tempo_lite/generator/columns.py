"""Column-wise look-ups on a span table for the generator: attribute values as label strings, kinds,
and an estimate of each span's encoded size. Pure functions over Arrow arrays; no per-span Python.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tempo_lite.spantable import SpanTable

SPAN_KINDS = ("SPAN_KIND_UNSPECIFIED", "SPAN_KIND_INTERNAL", "SPAN_KIND_SERVER", "SPAN_KIND_CLIENT",
              "SPAN_KIND_PRODUCER", "SPAN_KIND_CONSUMER")
STATUS_CODES = ("STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR")
KIND_SERVER, KIND_CLIENT, KIND_PRODUCER, KIND_CONSUMER = 2, 3, 4, 5
STATUS_ERROR = 2


def _array(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col


def _first_value(attrs: pa.ListArray, key: str) -> pa.Array:
    """Per list row: the first attribute named `key`, as a string (ints, doubles, bools formatted the
    way Tempo stringifies them), or null."""
    flat = attrs.flatten()
    hit = pc.equal(pc.struct_field(flat, "key"), key)
    rows = pc.filter(pc.list_parent_indices(attrs), hit).to_numpy(zero_copy_only=False)
    values = pc.filter(flat, hit)
    as_text = pc.coalesce(
        pc.struct_field(values, "str"),
        pc.cast(pc.struct_field(values, "int"), pa.string()),
        pc.cast(pc.struct_field(values, "dbl"), pa.string()),
        pc.cast(pc.struct_field(values, "bool"), pa.string()),
    )
    first = np.full(len(attrs), -1, dtype=np.int64)
    # Assigning in reverse order leaves the first occurrence per row in place.
    first[rows[::-1]] = np.arange(len(rows) - 1, -1, -1, dtype=np.int64)
    return as_text.take(pa.array(first, mask=first < 0))


def attribute_strings(table: SpanTable, key: str) -> pa.Array:
    """Per span: the value of attribute `key` from its resource, else from the span itself, else null
    (Tempo's lookup order for dimensions)."""
    spans = table.spans
    if key in table.dedicated:
        own = pc.cast(_array(spans.column(table.dedicated[key])), pa.string())
    else:
        own = _first_value(_array(spans.column("attrs")), key)
    resource = _first_value(_array(table.resources.column("attrs")), key)
    from_resource = resource.take(_array(spans.column("resource_index")))
    return pc.coalesce(from_resource, own)


def label_values(table: SpanTable, key: str) -> pa.Array:
    """`attribute_strings` with absent values as "" (an empty label, which Prometheus treats as unset)."""
    return pc.fill_null(attribute_strings(table, key), "")


def estimated_sizes(table: SpanTable) -> np.ndarray:
    """Per span: an estimate of its OTLP protobuf size in bytes (IDs, times, kind and status, name,
    attribute keys and values, event names). The table no longer holds the encoded bytes; this counts
    what dominates them with ~2 bytes of framing per field."""
    spans = table.spans
    n = spans.num_rows
    name = pc.fill_null(pc.binary_length(_array(spans.column("name"))), 0).to_numpy(zero_copy_only=False)
    parent = pc.fill_null(pc.binary_length(_array(spans.column("parent_span_id"))), 0)
    sizes = 18 + 10 + 18 + 2 + 4 + name + 2 + parent.to_numpy(zero_copy_only=False)
    attrs = _array(spans.column("attrs"))
    if len(attrs.flatten()):
        flat = attrs.flatten()
        key_len = pc.binary_length(pc.struct_field(flat, "key")).to_numpy(zero_copy_only=False)
        str_len = pc.fill_null(pc.binary_length(pc.struct_field(flat, "str")), 0).to_numpy(zero_copy_only=False)
        raw_len = pc.fill_null(pc.binary_length(pc.struct_field(flat, "raw")), 0).to_numpy(zero_copy_only=False)
        typ = pc.struct_field(flat, "type").to_numpy(zero_copy_only=False)
        scalar = np.where(np.isin(typ, (2, 3)), 9, np.where(typ == 4, 2, 0))
        per_attr = 6 + key_len + str_len + raw_len + scalar
        parents = pc.list_parent_indices(attrs).to_numpy(zero_copy_only=False)
        sizes = sizes + np.bincount(parents, weights=per_attr, minlength=n)
    events = _array(spans.column("events"))
    if len(events.flatten()):
        flat_events = events.flatten()
        ev_name = pc.fill_null(pc.binary_length(pc.struct_field(flat_events, "name")), 0)
        ev_sizes = 13 + ev_name.to_numpy(zero_copy_only=False)
        ev_parents = pc.list_parent_indices(events).to_numpy(zero_copy_only=False)
        sizes = sizes + np.bincount(ev_parents, weights=ev_sizes, minlength=n)
    return np.asarray(sizes, dtype=np.float64)

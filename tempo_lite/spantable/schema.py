"""The span table's Arrow schema and the `SpanTable` container (see docs/block-format.md).

* `spans`: IDs as fixed-size binary, intrinsics as typed columns, `service_name` copied from the
  resource, generic attributes as a list of typed structs (`ATTRS`: TraceQL compares by type, so
  `.a = 1` is not `.a = "1"`), events and links nested per span, and optional *dedicated* columns
  (`span.<key>`) for hot attribute keys, recorded in `SpanTable.dedicated`.
* `resources`: one row per distinct (resource, instrumentation scope) pair, i.e. per OTLP
  `ScopeSpans`; spans point at it with `resource_index`. Conditions on resource or scope attributes
  are evaluated on this small table and broadcast to spans with `take`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pyarrow as pa

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

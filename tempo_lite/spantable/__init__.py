"""The span table: one row per span, in Arrow, shared by the live-store, WAL replay, blocks and queries.

Modules, along the seams of what is done with it (all pure, no I/O):

* `schema`: the Arrow schema (`SPAN_SCHEMA`, `RESOURCE_SCHEMA`, attribute structs and types) and the
  `SpanTable` container; the layout's decisions and figures are in docs/block-format.md.
* `decode`: OTLP -> span table (`flatten`, `flatten_bytes`, `flatten_payloads`), the ingest hot path.
* `ops`: table operations: `concat`, dedicated attribute columns, nested sets and block order,
  `dedupe_spans`, and the Arrow IPC transport between processes (`to_ipc`, `from_ipc`).
* `encode`: span table -> serialized OTLP `TracesData` (`encode_traces_data`), what trace by ID answers;
  a caller that needs message objects parses those bytes (`TracesData.FromString`).
* `otlp_json`: OTLP attribute values as proto3 JSON, shared by the search and trace-by-ID JSON encoders.
* `protowire`: protobuf wire helpers, among them the one mirror-schema builder (`mirror_classes`).

This namespace re-exports the names many modules use; the rest is imported from its module.
"""

from tempo_lite.spantable.decode import flatten, flatten_bytes, flatten_payloads
from tempo_lite.spantable.encode import encode_traces_data
from tempo_lite.spantable.ops import (
    choose_dedicated_keys,
    choose_typed_dedicated,
    concat,
    dedicate,
    dedupe_spans,
    from_ipc,
    sort_by_trace,
    to_ipc,
    trace_ids_in_several,
    undedicate,
    with_empty_lists,
    with_nested_sets,
    without_traces,
)
from tempo_lite.spantable.schema import (
    ARRAY,
    ATTR,
    ATTRS,
    BOOL,
    BYTES,
    DOUBLE,
    EVENT,
    INT,
    KVLIST,
    LINK,
    NESTED_SET_FIELDS,
    RESOURCE_SCHEMA,
    SPAN_SCHEMA,
    STRING,
    SpanTable,
    dedicated_type,
    empty_span_table,
)

__all__ = [
    "ARRAY", "ATTR", "ATTRS", "BOOL", "BYTES", "DOUBLE", "EVENT", "INT", "KVLIST", "LINK", "NESTED_SET_FIELDS",
    "RESOURCE_SCHEMA", "SPAN_SCHEMA", "STRING", "SpanTable", "choose_dedicated_keys", "choose_typed_dedicated",
    "concat", "dedicate", "dedicated_type", "dedupe_spans", "empty_span_table", "encode_traces_data", "flatten",
    "flatten_bytes", "flatten_payloads", "from_ipc", "sort_by_trace", "to_ipc", "trace_ids_in_several", "undedicate",
    "with_empty_lists", "with_nested_sets", "without_traces",
]

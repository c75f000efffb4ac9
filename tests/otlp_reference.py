"""The span table -> OTLP message encoder that `spantable.encode_traces_data` replaced (it built a protobuf
object per span, attribute, event and link), kept as the tests' oracle: decoding the bytes encoder's
output must give exactly the message this builds."""

from __future__ import annotations

import pyarrow.compute as pc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ScopeSpans, Status, TracesData

from tempo_lite.spantable import BOOL, DOUBLE, INT, STRING, SpanTable, dedicated_type


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
            # The table holds uint64 times' bits as int64 (the old encoder raised on times >= 2^63 here).
            start_time_unix_nano=row["start_unix_nano"] % 2**64,
            end_time_unix_nano=(row["start_unix_nano"] + row["duration_nano"]) % 2**64,
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
                time_unix_nano=ev["time_unix_nano"] % 2**64,
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

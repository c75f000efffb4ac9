"""A trace that sets every OTLP field the trace-by-ID answers carry: every AnyValue type (nested, empty,
NaN/infinities, 64-bit extremes), events, links, status, flags, trace state, dropped counts, resource and
scope attributes, schema URLs, and all-default messages. For checking encoders against json_format."""

from __future__ import annotations

import math

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status, TracesData

U64 = 2**64 - 1


def kv(key: str, **value: object) -> KeyValue:
    out = KeyValue(key=key)
    if value:
        out.value.CopyFrom(AnyValue(**value))  # type: ignore[arg-type]
    return out


def every_value_type() -> list[KeyValue]:
    nested = AnyValue()
    nested.kvlist_value.values.append(kv("inner", int_value=-1))
    nested.kvlist_value.values.append(kv("empty"))
    arr = AnyValue()
    arr.array_value.values.extend([AnyValue(string_value="a"), AnyValue(bool_value=False), AnyValue()])
    empty_arr = AnyValue()
    empty_arr.array_value.SetInParent()
    return [
        kv("s", string_value="<img src=x onerror=alert(1)> \u00e9\u2603\n\"q\""),
        kv("empty-string", string_value=""),
        kv("b", bool_value=True),
        kv("b0", bool_value=False),
        kv("i", int_value=-(2**63)),
        kv("imax", int_value=2**63 - 1),
        kv("i0", int_value=0),
        kv("d", double_value=1.5e-300),
        kv("d0", double_value=0.0),
        kv("dneg0", double_value=-0.0),
        kv("nan", double_value=math.nan),
        kv("inf", double_value=math.inf),
        kv("ninf", double_value=-math.inf),
        kv("bytes", bytes_value=b"\x00\xff\x10"),
        kv("bytes0", bytes_value=b""),
        KeyValue(key="arr", value=arr),
        KeyValue(key="empty-arr", value=empty_arr),
        KeyValue(key="kvlist", value=nested),
        kv("no-value"),
        KeyValue(value=AnyValue(string_value="no key")),
    ]


def rich_trace(trace_id: bytes = bytes(range(16))) -> TracesData:
    t = TracesData()
    rs = t.resource_spans.add(schema_url="https://opentelemetry.io/schemas/1.21.0")
    rs.resource.attributes.extend([kv("service.name", string_value="shop"), *every_value_type()])
    rs.resource.dropped_attributes_count = 3
    ss = rs.scope_spans.add(schema_url="scope-schema")
    ss.scope.name, ss.scope.version = "lib", "1.2"
    ss.scope.attributes.extend(every_value_type())
    ss.scope.dropped_attributes_count = 1
    full = ss.spans.add(
        trace_id=trace_id, span_id=b"\xff" * 8, parent_span_id=b"\x00" * 7 + b"\x01", trace_state="k=v",
        flags=0x301, name="full", kind=Span.SPAN_KIND_CLIENT, start_time_unix_nano=U64 - 1,
        end_time_unix_nano=U64, dropped_attributes_count=2, dropped_events_count=4, dropped_links_count=5,
        status=Status(code=Status.STATUS_CODE_ERROR, message="boom"),
    )
    full.attributes.extend(every_value_type())
    exc = full.events.add(time_unix_nano=1, name="exception", dropped_attributes_count=7)
    exc.attributes.extend(every_value_type())
    full.events.add()  # every field default
    link = full.links.add(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, trace_state="a=b", dropped_attributes_count=1,
                          flags=1)
    link.attributes.extend(every_value_type())
    full.links.add()
    ss.spans.add()  # an all-default span
    ss.spans.add(name="unset-status", status=Status())  # status present but empty
    ss.spans.add(name="ok", kind=Span.SPAN_KIND_SERVER, status=Status(code=Status.STATUS_CODE_OK))
    ss.spans.add(name="future kind", kind=9, status=Status(code=7))  # enum values newer than the code
    rs.scope_spans.add()  # no scope, no spans
    t.resource_spans.add()  # no resource
    bare = t.resource_spans.add().scope_spans.add()
    bare.scope.SetInParent()  # present, empty scope
    bare.spans.add(name="only")
    return t

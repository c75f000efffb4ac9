"""OTLP test data for the span-table encoders: `varied()` (several resources and scopes, every field and
attribute type) and the hypothesis strategy `traces()` (any OTLP the span table can hold)."""

from __future__ import annotations

from hypothesis import strategies as st
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status, TracesData
from rich_trace import every_value_type


def kv(key: str, **value: object) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(**value))  # type: ignore[arg-type]


def varied() -> TracesData:
    """Three resources, a scope each (one empty), every attribute type, events, links, kinds, status codes,
    trace state, flags, dropped counts, spans with every field empty but the IDs."""
    data = TracesData()
    for r in range(3):
        rs = data.resource_spans.add(schema_url=f"https://schema/{r}" if r != 1 else "")
        rs.resource.attributes.extend([kv("service.name", string_value=f"svc-{r}"), *every_value_type()])
        rs.resource.dropped_attributes_count = r
        ss = rs.scope_spans.add(schema_url="scope-schema" if r == 0 else "")
        ss.scope.SetInParent()  # and a scope
        if r != 2:
            ss.scope.name, ss.scope.version = f"lib-{r}", "1.0"
            ss.scope.attributes.extend([kv("scope.flag", bool_value=True), *every_value_type()])
            ss.scope.dropped_attributes_count = 9
        for i in range(4):
            n = r * 10 + i
            span = ss.spans.add(trace_id=bytes([7] * 16), span_id=bytes([n + 1] * 8), name=f"op {n}" * (i != 3),
                                kind=i % 6, start_time_unix_nano=1_000 + n, end_time_unix_nano=2_000 + 3 * n)
            span.status.SetInParent()  # the table always gives a span a status
            if i == 3:
                continue  # the IDs and times only
            span.parent_span_id = bytes([1] * 8)
            span.trace_state = "k=v" if i == 0 else ""
            span.flags = 0x301 if i == 1 else 0
            span.dropped_attributes_count, span.dropped_events_count, span.dropped_links_count = i, 2 * i, 3 * i
            span.status.CopyFrom(Status(code=i % 3, message="boom" if i == 2 else ""))
            plain = [kv("i", int_value=n), kv("s", string_value="x")]
            span.attributes.extend(every_value_type() if i == 0 else plain)
            span.attributes.extend([kv("arr", array_value=ArrayValue(values=[AnyValue(int_value=1)])),
                                    kv("map", kvlist_value=KeyValueList(values=[kv("n", double_value=2.0)])),
                                    kv("raw", bytes_value=b"\x00\xff"), KeyValue(key="no.value")])
            if i != 1:
                span.events.add(time_unix_nano=1_500, name="ev", attributes=[kv("ev.a", int_value=7)],
                                dropped_attributes_count=1)
                span.events.add()
                span.links.add(trace_id=bytes([2] * 16), span_id=bytes([3] * 8), trace_state="l=1", flags=1,
                               attributes=[kv("link.a", string_value="x")], dropped_attributes_count=5)
                span.links.add()
    return data


_text = st.text(max_size=12)
_u32 = st.integers(0, 2**32 - 1)
_u64 = st.integers(0, 2**64 - 1)
_scalar = st.one_of(
    st.builds(lambda v: AnyValue(string_value=v), _text),
    st.builds(lambda v: AnyValue(int_value=v), st.integers(-(2**63), 2**63 - 1)),
    st.builds(lambda v: AnyValue(double_value=v), st.floats(allow_nan=True, allow_infinity=True)),
    st.builds(lambda v: AnyValue(bool_value=v), st.booleans()),
    st.builds(lambda v: AnyValue(bytes_value=v), st.binary(max_size=8)),
    st.just(AnyValue()),
)
_value = st.one_of(
    _scalar,
    st.builds(lambda vs: AnyValue(array_value=ArrayValue(values=vs)), st.lists(_scalar, max_size=3)),
    st.builds(lambda kvs: AnyValue(kvlist_value=KeyValueList(values=kvs)),
              st.lists(st.builds(lambda k, v: KeyValue(key=k, value=v), _text, _scalar), max_size=3)),
)
_key_value = st.one_of(st.builds(lambda k, v: KeyValue(key=k, value=v), _text, _value),
                       st.builds(lambda k: KeyValue(key=k), _text))
_attrs = st.lists(_key_value, max_size=4)
_event = st.builds(lambda t, n, a, d: Span.Event(time_unix_nano=t, name=n, attributes=a, dropped_attributes_count=d),
                   st.integers(0, 2**63 - 1), _text, _attrs, _u32)  # ingest refuses event times >= 2^63
_link = st.builds(
    lambda t, s, ts, f, a, d: Span.Link(trace_id=t, span_id=s, trace_state=ts, flags=f, attributes=a,
                                        dropped_attributes_count=d),
    st.binary(max_size=16), st.binary(max_size=8), _text, _u32, _attrs, _u32)


@st.composite
def _span(draw: st.DrawFn) -> Span:
    start = draw(_u64)
    return Span(
        trace_id=draw(st.binary(min_size=16, max_size=16)), span_id=draw(st.binary(min_size=8, max_size=8)),
        parent_span_id=draw(st.sampled_from([b"", b"\x00" * 8, b"\x01" * 8])), name=draw(_text),
        kind=draw(st.integers(-128, 127)), start_time_unix_nano=start,
        end_time_unix_nano=draw(st.one_of(_u64, st.integers(start, min(start + 10**9, 2**64 - 1)))),
        trace_state=draw(_text), flags=draw(_u32), attributes=draw(_attrs), dropped_attributes_count=draw(_u32),
        events=draw(st.lists(_event, max_size=2)), dropped_events_count=draw(_u32),
        links=draw(st.lists(_link, max_size=2)), dropped_links_count=draw(_u32),
        status=Status(code=draw(st.integers(-128, 127)), message=draw(_text)),
    )


@st.composite
def traces(draw: st.DrawFn) -> TracesData:
    data = TracesData()
    for _ in range(draw(st.integers(1, 3))):
        rs = data.resource_spans.add(schema_url=draw(_text))
        rs.resource.attributes.extend(draw(_attrs))
        rs.resource.dropped_attributes_count = draw(_u32)
        for _ in range(draw(st.integers(0, 2))):
            ss = rs.scope_spans.add(schema_url=draw(_text))
            ss.scope.name, ss.scope.version = draw(_text), draw(_text)
            ss.scope.attributes.extend(draw(_attrs))
            ss.scope.dropped_attributes_count = draw(_u32)
            ss.spans.extend(draw(st.lists(_span(), max_size=4)))
    return data

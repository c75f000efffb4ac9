"""Span table -> OTLP bytes (`spantable.encode_traces_data`): the bytes decode, with the protobuf library,
to exactly the message the object-building encoder it replaced (tests/otlp_reference.py) builds, and are
byte-identical to that message's `SerializeToString()`."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status, TracesData
from otlp_helpers import encoded, sdk_spans
from otlp_reference import to_traces_data
from rich_trace import every_value_type

from tempo_lite import spantable


def _check(table: spantable.SpanTable) -> bytes:
    """The encoder's bytes equal the reference message's, and decode to it."""
    data = spantable.encode_traces_data(table)
    expected = to_traces_data(table)
    assert data == expected.SerializeToString()
    decoded = TracesData.FromString(data)
    assert decoded.SerializeToString() == expected.SerializeToString()
    return data


def _kv(key: str, **value: object) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(**value))  # type: ignore[arg-type]


def _varied() -> TracesData:
    """Three resources, a scope each (one empty), every attribute type, events, links, kinds, status codes,
    trace state, flags, dropped counts, spans with every field empty but the IDs."""
    data = TracesData()
    for r in range(3):
        rs = data.resource_spans.add(schema_url=f"https://schema/{r}" if r != 1 else "")
        rs.resource.attributes.extend([_kv("service.name", string_value=f"svc-{r}"), *every_value_type()])
        rs.resource.dropped_attributes_count = r
        ss = rs.scope_spans.add(schema_url="scope-schema" if r == 0 else "")
        ss.scope.SetInParent()  # and a scope
        if r != 2:
            ss.scope.name, ss.scope.version = f"lib-{r}", "1.0"
            ss.scope.attributes.extend([_kv("scope.flag", bool_value=True), *every_value_type()])
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
            plain = [_kv("i", int_value=n), _kv("s", string_value="x")]
            span.attributes.extend(every_value_type() if i == 0 else plain)
            span.attributes.extend([_kv("arr", array_value=ArrayValue(values=[AnyValue(int_value=1)])),
                                    _kv("map", kvlist_value=KeyValueList(values=[_kv("n", double_value=2.0)])),
                                    _kv("raw", bytes_value=b"\x00\xff"), KeyValue(key="no.value")])
            if i != 1:
                span.events.add(time_unix_nano=1_500, name="ev", attributes=[_kv("ev.a", int_value=7)],
                                dropped_attributes_count=1)
                span.events.add()
                span.links.add(trace_id=bytes([2] * 16), span_id=bytes([3] * 8), trace_state="l=1", flags=1,
                               attributes=[_kv("link.a", string_value="x")], dropped_attributes_count=5)
                span.links.add()
    return data


def _table(data: TracesData) -> spantable.SpanTable:
    return spantable.flatten_bytes(data.SerializeToString())


def test_varied_spans_of_several_resources_and_scopes() -> None:
    table = _table(_varied())
    decoded = TracesData.FromString(_check(table))
    assert [[s.name for s in rs.scope_spans[0].spans] for rs in decoded.resource_spans] == [
        [s.name for s in rs.scope_spans[0].spans] for rs in _varied().resource_spans]


def test_real_sdk_spans() -> None:
    _check(_table(TracesData(resource_spans=encoded(sdk_spans(traces=3)).resource_spans)))


def test_rows_out_of_resource_order_group_by_first_appearance() -> None:
    table = _table(_varied())
    order = [5, 0, 9, 1, 11, 6, 2, 10, 3, 4, 8, 7]
    shuffled = table.take(pa.array(order))
    decoded = TracesData.FromString(_check(shuffled))
    names = [[s.name for s in rs.scope_spans[0].spans] for rs in decoded.resource_spans]
    assert names == [["op 11", "op 12", "op 10", ""], ["op 0", "op 1", "op 2", ""], ["op 21", "", "op 22", "op 20"]]


def test_dedicated_columns_of_every_type_follow_the_generic_attributes() -> None:
    table = _table(_varied())
    moved = spantable.dedicate(table, {"s": spantable.STRING, "i": spantable.INT, "d": spantable.DOUBLE,
                                       "b": spantable.BOOL, "absent": spantable.STRING})
    assert {"span.s", "span.i", "span.d", "span.b"} <= set(moved.spans.column_names)
    _check(moved)
    projected = spantable.SpanTable(moved.spans.drop_columns(["span.d"]), moved.resources, moved.dedicated)
    _check(projected)  # a dedicated column the projection left out is skipped


def test_null_cells_are_empty_fields() -> None:
    table = _table(_varied())
    spans = table.spans
    n = spans.num_rows
    mask = pa.array(np.arange(n) % 2 == 0)
    for name in ("parent_span_id", "name", "kind", "status_code", "status_message", "trace_state", "flags",
                 "dropped_attributes_count", "dropped_events_count", "dropped_links_count", "attrs", "events",
                 "links"):
        column = spans.column(name)
        nulled = pc.if_else(mask, pa.nulls(n, column.type), column)
        spans = spans.set_column(spans.schema.get_field_index(name), spans.schema.field(name), nulled)
    resources = table.resources
    for name in ("attrs", "schema_url", "scope_name", "scope_attrs", "dropped_attributes_count"):
        column = resources.column(name)
        resources = resources.set_column(resources.schema.get_field_index(name), resources.schema.field(name),
                                         pa.nulls(resources.num_rows, column.type))
    _check(spantable.SpanTable(spans, resources))


def test_chunked_columns_and_a_sliced_table() -> None:
    table = _table(_varied())
    both = spantable.concat([table, table.take(pa.array([2, 0, 1]))])
    assert both.spans.column("attrs").num_chunks == 2
    _check(both)
    _check(spantable.SpanTable(table.spans.slice(3, 5), table.resources))


def test_times_beyond_int64_keep_their_uint64_value() -> None:
    data = TracesData()
    data.resource_spans.add().scope_spans.add().spans.add(
        trace_id=b"\x01" * 16, span_id=b"\x02" * 8, start_time_unix_nano=2**64 - 10, end_time_unix_nano=2**64 - 1,
        events=[Span.Event(time_unix_nano=2**63 - 5)])  # ingest refuses event times >= 2^63
    span = TracesData.FromString(_check(_table(data))).resource_spans[0].scope_spans[0].spans[0]
    assert (span.start_time_unix_nano, span.end_time_unix_nano) == (2**64 - 10, 2**64 - 1)
    assert span.events[0].time_unix_nano == 2**63 - 5


def test_an_empty_table_is_an_empty_message() -> None:
    assert spantable.encode_traces_data(spantable.empty_span_table()) == b""


# ---- Property: any OTLP the span table can hold --------------------------------------------------------

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
def _traces(draw: st.DrawFn) -> TracesData:
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


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_traces(), dedicate=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_any_table_encodes_as_the_reference_message(data: TracesData, dedicate: bool, seed: int) -> None:
    table = _table(data)
    if dedicate and table.num_spans:
        keys = spantable.choose_dedicated_keys(table, 3)
        table = spantable.dedicate(spantable.dedicate(table, keys), spantable.choose_typed_dedicated(table, keys))
    if table.num_spans:
        table = table.take(pa.array(np.random.default_rng(seed).permutation(table.num_spans)))
    _check(table)


def test_nan_doubles_keep_their_bits() -> None:
    data = TracesData()
    rs = data.resource_spans.add()
    rs.resource.SetInParent()
    ss = rs.scope_spans.add()
    ss.scope.SetInParent()
    span = ss.spans.add(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, status=Status())
    span.attributes.extend([_kv("nan", double_value=math.nan), _kv("inf", double_value=-math.inf)])
    assert _check(_table(data)) == data.SerializeToString()

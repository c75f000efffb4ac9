"""Span table -> OTLP bytes (`spantable.encode_traces_data`): the bytes decode, with the protobuf library,
to exactly the message the object-building encoder it replaced (tests/otlp_reference.py) builds, and are
byte-identical to that message's `SerializeToString()`."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from fuzzing import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status, TracesData
from otlp_helpers import encoded, sdk_spans
from otlp_reference import to_traces_data
from otlp_strategies import kv, traces, varied

from tempo_lite import spantable


def _check(table: spantable.SpanTable) -> bytes:
    """The encoder's bytes equal the reference message's, and decode to it."""
    data = spantable.encode_traces_data(table)
    expected = to_traces_data(table)
    assert data == expected.SerializeToString()
    decoded = TracesData.FromString(data)
    assert decoded.SerializeToString() == expected.SerializeToString()
    return data


def _table(data: TracesData) -> spantable.SpanTable:
    return spantable.flatten_bytes(data.SerializeToString())


def test_varied_spans_of_several_resources_and_scopes() -> None:
    table = _table(varied())
    decoded = TracesData.FromString(_check(table))
    assert [[s.name for s in rs.scope_spans[0].spans] for rs in decoded.resource_spans] == [
        [s.name for s in rs.scope_spans[0].spans] for rs in varied().resource_spans]


def test_real_sdk_spans() -> None:
    _check(_table(TracesData(resource_spans=encoded(sdk_spans(traces=3)).resource_spans)))


def test_rows_out_of_resource_order_group_by_first_appearance() -> None:
    table = _table(varied())
    order = [5, 0, 9, 1, 11, 6, 2, 10, 3, 4, 8, 7]
    shuffled = table.take(pa.array(order))
    decoded = TracesData.FromString(_check(shuffled))
    names = [[s.name for s in rs.scope_spans[0].spans] for rs in decoded.resource_spans]
    assert names == [["op 11", "op 12", "op 10", ""], ["op 0", "op 1", "op 2", ""], ["op 21", "", "op 22", "op 20"]]


def test_dedicated_columns_of_every_type_follow_the_generic_attributes() -> None:
    table = _table(varied())
    moved = spantable.dedicate(table, {"s": spantable.STRING, "i": spantable.INT, "d": spantable.DOUBLE,
                                       "b": spantable.BOOL, "absent": spantable.STRING})
    assert {"span.s", "span.i", "span.d", "span.b"} <= set(moved.spans.column_names)
    _check(moved)
    projected = spantable.SpanTable(moved.spans.drop_columns(["span.d"]), moved.resources, moved.dedicated)
    _check(projected)  # a dedicated column the projection left out is skipped


def test_null_cells_are_empty_fields() -> None:
    table = _table(varied())
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
    table = _table(varied())
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


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=traces(), dedicate=st.booleans(), seed=st.integers(0, 2**32 - 1))
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
    span.attributes.extend([kv("nan", double_value=math.nan), kv("inf", double_value=-math.inf)])
    assert _check(_table(data)) == data.SerializeToString()

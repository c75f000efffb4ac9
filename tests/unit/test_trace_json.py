"""The trace-by-ID encoders: JSON exactly as `json_format.MessageToDict` writes the OTLP message the protobuf
answer carries, and that message."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
from fuzzing import examples
from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData
from otlp_reference import to_traces_data
from otlp_strategies import traces, varied
from rich_trace import rich_trace

from tempo_lite import spantable
from tempo_lite._gen import tempopb_pb2
from tempo_lite.api import encoding
from tempo_lite.querier.trace_json import trace_json


def _rich_table() -> spantable.SpanTable:
    """`rich_trace` as the span table holds it (every span with a trace and span ID, as ingest requires)."""
    t = rich_trace()
    for i, span in enumerate(s for rs in t.resource_spans for ss in rs.scope_spans for s in ss.spans):
        span.trace_id, span.span_id = span.trace_id or bytes(range(16)), span.span_id or bytes([i + 1] * 8)
    return spantable.flatten_bytes(t.SerializeToString())


def test_trace_by_id_bodies_are_byte_identical_to_json_format() -> None:
    table = _rich_table()
    doc = json_format.MessageToDict(to_traces_data(table))
    assert trace_json(table) == doc
    v1 = json.dumps({"batches": doc["resourceSpans"]}, separators=(",", ":")).encode()
    assert encoding.trace_v1(table, encoding.JSON) == v1
    v2 = json.dumps({"trace": doc, "metrics": {"inspectedBytes": "12"}, "status": "PARTIAL", "message": "m"},
                    separators=(",", ":")).encode()
    assert encoding.trace_v2(table, 12, encoding.JSON, partial_message="m") == v2


def test_trace_by_id_protobuf_bodies_carry_the_traces_data_bytes() -> None:
    table = _rich_table()
    expected = to_traces_data(table)
    assert TracesData.FromString(encoding.trace_v1(table, encoding.PROTOBUF)) == expected
    answer = tempopb_pb2.TraceByIDResponse.FromString(
        encoding.trace_v2(table, 12, encoding.PROTOBUF, partial_message="m"))
    assert TracesData.FromString(answer.trace) == expected
    assert (answer.metrics.inspectedBytes, answer.status, answer.message) == (12, tempopb_pb2.PARTIAL, "m")


def _as_message_json(table: spantable.SpanTable) -> str:
    return json.dumps(json_format.MessageToDict(TracesData.FromString(spantable.encode_traces_data(table))))


def test_trace_json_of_varied_tables_is_the_decoded_message_as_json_format_writes_it() -> None:
    table = spantable.flatten_bytes(varied().SerializeToString())
    moved = spantable.dedicate(table, {"s": spantable.STRING, "i": spantable.INT, "d": spantable.DOUBLE,
                                       "b": spantable.BOOL})
    for t in (table, moved, table.take(pa.array([5, 0, 9, 1, 11, 6, 2, 10, 3, 4, 8, 7])), _rich_table(),
              spantable.concat([table, table])):
        assert json.dumps(trace_json(t)) == _as_message_json(t)
    assert trace_json(spantable.empty_span_table()) == {}
    empty_key = TracesData()
    empty_key.resource_spans.add().scope_spans.add().spans.add(
        trace_id=b"\x01" * 16, span_id=b"\x02" * 8, attributes=[KeyValue(value=AnyValue(string_value=""))])
    t = spantable.flatten_bytes(empty_key.SerializeToString())
    t = spantable.dedicate(t, [""])  # a dedicated column for the empty key
    assert t.dedicated == {"": "span."} and json.dumps(trace_json(t)) == _as_message_json(t)


@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=traces(), dedicate=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_trace_json_of_any_table_is_the_decoded_message_as_json_format_writes_it(
        data: TracesData, dedicate: bool, seed: int) -> None:
    table = spantable.flatten_bytes(data.SerializeToString())
    if dedicate and table.num_spans:
        keys = spantable.choose_dedicated_keys(table, 3)
        table = spantable.dedicate(spantable.dedicate(table, keys), spantable.choose_typed_dedicated(table, keys))
    if table.num_spans:
        table = table.take(pa.array(np.random.default_rng(seed).permutation(table.num_spans)))
    assert json.dumps(trace_json(table)) == _as_message_json(table)

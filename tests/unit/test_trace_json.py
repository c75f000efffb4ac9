"""The trace-by-ID encoders: JSON exactly as `json_format.MessageToDict` writes it, protobuf as the OTLP message."""

from __future__ import annotations

import json

from google.protobuf import json_format
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData
from otlp_reference import to_traces_data
from rich_trace import rich_trace

from tempo_lite import spantable
from tempo_lite._gen import tempopb_pb2
from tempo_lite.api import encoding
from tempo_lite.querier.trace_json import table_json, trace_json


def test_trace_json_is_the_document_message_to_dict_writes() -> None:
    t = rich_trace()
    assert trace_json(t) == json_format.MessageToDict(t)
    assert json.dumps(trace_json(t)) == json.dumps(json_format.MessageToDict(t))  # key order too


def test_empty_trace_is_an_empty_document() -> None:
    assert trace_json(TracesData()) == json_format.MessageToDict(TracesData()) == {}


def _rich_table() -> spantable.SpanTable:
    """`rich_trace` as the span table holds it (every span with a trace and span ID, as ingest requires)."""
    t = rich_trace()
    for i, span in enumerate(s for rs in t.resource_spans for ss in rs.scope_spans for s in ss.spans):
        span.trace_id, span.span_id = span.trace_id or bytes(range(16)), span.span_id or bytes([i + 1] * 8)
    return spantable.flatten_bytes(t.SerializeToString())


def test_trace_by_id_bodies_are_byte_identical_to_json_format() -> None:
    table = _rich_table()
    doc = json_format.MessageToDict(to_traces_data(table))
    assert table_json(table) == doc
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

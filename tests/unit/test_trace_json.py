"""The trace-by-ID JSON encoder writes exactly the document `json_format.MessageToDict` writes."""

from __future__ import annotations

import json

from google.protobuf import json_format
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData
from rich_trace import rich_trace

from tempo_lite.api import encoding
from tempo_lite.querier.trace_json import trace_json


def test_trace_json_is_the_document_message_to_dict_writes() -> None:
    t = rich_trace()
    assert trace_json(t) == json_format.MessageToDict(t)
    assert json.dumps(trace_json(t)) == json.dumps(json_format.MessageToDict(t))  # key order too


def test_empty_trace_is_an_empty_document() -> None:
    assert trace_json(TracesData()) == json_format.MessageToDict(TracesData()) == {}


def test_trace_by_id_bodies_are_byte_identical_to_json_format() -> None:
    t = rich_trace()
    doc = json_format.MessageToDict(t)
    v1 = json.dumps({"batches": doc["resourceSpans"]}, separators=(",", ":")).encode()
    assert encoding.trace_v1(t, encoding.JSON) == v1
    v2 = json.dumps({"trace": doc, "metrics": {"inspectedBytes": "12"}, "status": "PARTIAL", "message": "m"},
                    separators=(",", ":")).encode()
    assert encoding.trace_v2(t, 12, encoding.JSON, partial_message="m") == v2

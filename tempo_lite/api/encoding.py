"""Response encoding for the Tempo HTTP API (pure): IDs, trace-by-ID bodies, content negotiation.

JSON bodies are protobuf messages rendered the way Tempo's gogo jsonpb does it: lowerCamelCase field
names, int64 as strings, enums by name, zero values omitted, `bytes` (IDs inside traces) as base64.
"""

from __future__ import annotations

import binascii
import json

from google.protobuf import json_format

from tempo_lite._gen import tempopb_pb2
from tempo_lite.errors import InvalidRequest
from tempo_lite.querier.trace_json import trace_json
from tempo_lite.spantable import SpanTable, encode_traces_data

PROTOBUF = "application/protobuf"
JSON = "application/json"


def negotiate(accept: str | None) -> str:
    """Tempo's rule: a substring check, protobuf first; anything else is JSON."""
    return PROTOBUF if accept and PROTOBUF in accept else JSON


def parse_trace_id(text: str) -> bytes:
    """Hex, case-insensitive, up to 32 digits, left-padded to 16 bytes (Tempo's HexStringToTraceID)."""
    t = text.strip()
    if not t or len(t) > 32:
        raise InvalidRequest(f"invalid trace id {text!r}: expected 1 to 32 hex digits")
    try:
        raw = binascii.unhexlify(t.rjust(32, "0"))
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequest(f"invalid trace id {text!r}: not hex") from exc
    # An all-zero ID (`0`) is a valid lookup that finds nothing: Tempo answers 404, and Grafana then
    # falls back to the v1 path and shows "not found" rather than an error.
    return raw


def trace_id_to_hex(trace_id: bytes) -> str:
    """Search results print trace IDs without leading zeros (Tempo's TraceIDToHexString)."""
    return trace_id.hex().lstrip("0") or "0"


def span_id_to_hex(span_id: bytes) -> str:
    return span_id.hex().rjust(16, "0")


def message_json(message) -> bytes:  # noqa: ANN001 - any protobuf message
    return json.dumps(json_format.MessageToDict(message), separators=(",", ":")).encode()


def trace_v1(trace: SpanTable, content_type: str) -> bytes:
    """`/api/traces/<id>`: protobuf `tempopb.Trace` (wire-identical to TracesData) or JSON with `batches`."""
    if content_type == PROTOBUF:
        return encode_traces_data(trace)
    doc = trace_json(trace)
    return json.dumps({"batches": doc.get("resourceSpans", [])}, separators=(",", ":")).encode()


def trace_v2(trace: SpanTable | None, inspected_bytes: int, content_type: str, *, partial_message: str = "") -> bytes:
    """`/api/v2/traces/<id>`: `TraceByIDResponse`."""
    if content_type == PROTOBUF:
        msg = tempopb_pb2.TraceByIDResponse(
            trace=encode_traces_data(trace) if trace is not None else b"",
            metrics=tempopb_pb2.TraceByIDMetrics(inspectedBytes=inspected_bytes),
        )
        if partial_message:
            msg.status = tempopb_pb2.PARTIAL
            msg.message = partial_message
        return msg.SerializeToString()
    doc: dict = {}
    if trace is not None:
        doc["trace"] = trace_json(trace)
    if inspected_bytes:
        doc["metrics"] = {"inspectedBytes": str(inspected_bytes)}
    if partial_message:
        doc["status"] = "PARTIAL"
        doc["message"] = partial_message
    return json.dumps(doc, separators=(",", ":")).encode()

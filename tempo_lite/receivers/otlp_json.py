"""OTLP/JSON <-> protobuf, with the hex IDs the OTLP/JSON spec mandates (pure; no I/O).

protobuf's json_format reads and writes `bytes` fields as base64 and would silently produce wrong IDs, so
trace and span IDs (spans and links) are converted from hex first when decoding, and to hex when encoding
(`encode_otlp_json`: what `tempo-lite export`, `trace --json` and `capture --export` write).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from tempo_lite.errors import InvalidRequest
from tempo_lite.receivers.hostile import load_json, refuse_bad_input

_ID_FIELDS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")


def _hex_to_b64(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise InvalidRequest(f"{where}: expected a hex string, got {type(value).__name__}")
    try:
        return base64.b64encode(binascii.unhexlify(value)).decode()
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequest(f"{where}: invalid hex id {value!r}") from exc


def _fix_ids(obj: dict[str, Any], where: str) -> None:
    for key in _ID_FIELDS:
        if key in obj and obj[key] is not None:
            obj[key] = _hex_to_b64(obj[key], f"{where}.{key}")


@refuse_bad_input("invalid OTLP/JSON")
def decode_otlp_json(body: bytes) -> ExportTraceServiceRequest:
    doc = load_json(body, "invalid OTLP/JSON")
    if not isinstance(doc, dict):
        raise InvalidRequest("invalid OTLP/JSON: expected an object with resourceSpans")
    try:
        for r, rs in enumerate(doc.get("resourceSpans") or doc.get("resource_spans") or []):
            for s, ss in enumerate(rs.get("scopeSpans") or rs.get("scope_spans") or []):
                for i, span in enumerate(ss.get("spans") or []):
                    where = f"resourceSpans[{r}].scopeSpans[{s}].spans[{i}]"
                    _fix_ids(span, where)
                    for j, link in enumerate(span.get("links") or []):
                        _fix_ids(link, f"{where}.links[{j}]")
    except (AttributeError, TypeError) as exc:
        raise InvalidRequest(f"invalid OTLP/JSON structure: {exc}") from exc
    request = ExportTraceServiceRequest()
    try:
        json_format.ParseDict(doc, request, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise InvalidRequest(f"invalid OTLP/JSON: {exc}") from exc
    return request


def encode_otlp_json(traces: TracesData) -> dict[str, Any]:
    """TracesData as the OTLP/JSON spec writes it: lowerCamelCase, hex IDs, enums as integers."""
    doc = json_format.MessageToDict(traces, use_integers_for_enums=True)
    for rs in doc.get("resourceSpans", []):
        for ss in rs.get("scopeSpans", []):
            for span in ss.get("spans", []):
                _ids_to_hex(span)
                for link in span.get("links", []):
                    _ids_to_hex(link)
    return doc


def _ids_to_hex(obj: dict[str, Any]) -> None:
    for key in ("traceId", "spanId", "parentSpanId"):
        if key in obj:
            obj[key] = base64.b64decode(obj[key]).hex()

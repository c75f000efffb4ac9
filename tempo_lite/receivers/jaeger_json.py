"""Jaeger JSON (the Jaeger UI's "download" and the Jaeger query API's `/api/traces` answer) to OTLP (pure).

The document (`{"data": [{"traceID", "spans": [...], "processes": {"p1": {...}}}]}`, or one such trace
object) is read into the Jaeger Thrift model (`jaeger_thrift` from `jaeger.py`) and translated by the
same `batch_to_otlp` as the Thrift receivers, so both routes give the same spans: one Batch per process.
IDs are hex strings (up to 32 digits for traces, 16 for spans), times microseconds, tag types `string`,
`bool`, `int64`, `float64`, `binary` (base64).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tempo_lite.errors import InvalidRequest
from tempo_lite.receivers.jaeger import batch_to_otlp, jaeger_thrift

_TAG_TYPES = {"string": 0, "float64": 1, "bool": 2, "int64": 3, "binary": 4}
_REF_TYPES = {"CHILD_OF": 0, "FOLLOWS_FROM": 1}


def is_jaeger_json(doc: Any) -> bool:
    def trace_like(t: Any) -> bool:
        return isinstance(t, dict) and isinstance(t.get("spans"), list) and "processes" in t

    if isinstance(doc, dict) and isinstance(doc.get("data"), list):
        return all(trace_like(t) for t in doc["data"])
    return trace_like(doc)


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _hex_id(value: Any, digits: int, where: str) -> tuple[int, int]:
    """A hex ID -> (high, low) signed 64-bit halves as Thrift carries them."""
    if not isinstance(value, str) or not value or len(value) > digits:
        raise InvalidRequest(f"{where}: expected up to {digits} hex digits, got {value!r}")
    try:
        n = int(value, 16)
    except ValueError as exc:
        raise InvalidRequest(f"{where}: invalid hex id {value!r}") from exc
    return _signed(n >> 64), _signed(n & ((1 << 64) - 1))


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidRequest(f"{where}: expected a number, got {value!r}")
    try:
        return int(value)
    except ValueError as exc:
        raise InvalidRequest(f"{where}: expected a number, got {value!r}") from exc


def _tag(item: Any, where: str) -> Any:
    if not isinstance(item, dict) or not isinstance(item.get("key"), str):
        raise InvalidRequest(f"{where}: expected {{key, type, value}}")
    kind = str(item.get("type", "string")).lower()
    if kind not in _TAG_TYPES:
        raise InvalidRequest(f"{where}: unknown tag type {item.get('type')!r}")
    value: Any = item.get("value")  # checked by the conversions below (TypeError/ValueError)
    tag = jaeger_thrift.Tag(key=item["key"], vType=_TAG_TYPES[kind])
    try:
        if kind == "string":
            tag.vStr = value if isinstance(value, str) else json.dumps(value)
        elif kind == "bool":
            tag.vBool = value if isinstance(value, bool) else str(value).lower() == "true"
        elif kind == "int64":
            tag.vLong = int(value)
        elif kind == "float64":
            tag.vDouble = float(value)
        else:
            tag.vBinary = base64.b64decode(value, validate=True)
    except (TypeError, ValueError, binascii.Error) as exc:
        raise InvalidRequest(f"{where}: value {value!r} is not a valid {kind}") from exc
    return tag


def _tags(items: Any, where: str) -> list[Any]:
    if items is None:
        return []
    if not isinstance(items, list):
        raise InvalidRequest(f"{where}: expected a list of tags")
    return [_tag(t, f"{where}[{i}]") for i, t in enumerate(items)]


def _span(item: Any, where: str) -> tuple[str, Any]:
    if not isinstance(item, dict):
        raise InvalidRequest(f"{where}: expected a span object")
    high, low = _hex_id(item.get("traceID"), 32, f"{where}.traceID")
    _, span_id = _hex_id(item.get("spanID"), 16, f"{where}.spanID")
    refs = []
    for j, ref in enumerate(item.get("references") or []):
        rw = f"{where}.references[{j}]"
        if not isinstance(ref, dict) or ref.get("refType") not in _REF_TYPES:
            raise InvalidRequest(f"{rw}: expected {{refType: CHILD_OF|FOLLOWS_FROM, traceID, spanID}}")
        rh, rl = _hex_id(ref.get("traceID"), 32, f"{rw}.traceID")
        refs.append(jaeger_thrift.SpanRef(refType=_REF_TYPES[ref["refType"]], traceIdLow=rl, traceIdHigh=rh,
                                          spanId=_hex_id(ref.get("spanID"), 16, f"{rw}.spanID")[1]))
    logs = []
    for j, log in enumerate(item.get("logs") or []):
        lw = f"{where}.logs[{j}]"
        if not isinstance(log, dict):
            raise InvalidRequest(f"{lw}: expected {{timestamp, fields}}")
        logs.append(jaeger_thrift.Log(timestamp=_int(log.get("timestamp"), f"{lw}.timestamp"),
                                      fields=_tags(log.get("fields"), f"{lw}.fields")))
    parent = 0
    if item.get("parentSpanID"):
        parent = _hex_id(item["parentSpanID"], 16, f"{where}.parentSpanID")[1]
    span = jaeger_thrift.Span(
        traceIdLow=low, traceIdHigh=high, spanId=span_id, parentSpanId=parent,
        operationName=str(item.get("operationName", "")), references=refs,
        flags=_int(item.get("flags", 0), f"{where}.flags"),
        startTime=_int(item.get("startTime"), f"{where}.startTime"),
        duration=_int(item.get("duration", 0), f"{where}.duration"),
        tags=_tags(item.get("tags"), f"{where}.tags"), logs=logs,
    )
    return str(item.get("processID", "")), span


def decode_jaeger_json_doc(doc: Any) -> ExportTraceServiceRequest:
    """An already-parsed Jaeger JSON document -> one OTLP request (a ResourceSpans per trace and process)."""
    if not is_jaeger_json(doc):
        raise InvalidRequest('jaeger json: expected {"data": [{"traceID", "spans", "processes"}]}')
    traces = doc["data"] if "data" in doc else [doc]
    request = ExportTraceServiceRequest()
    for t, trace in enumerate(traces):
        processes = trace.get("processes") or {}
        if not isinstance(processes, dict):
            raise InvalidRequest(f"data[{t}].processes: expected an object")
        grouped: dict[str, list[Any]] = {}
        for i, item in enumerate(trace["spans"]):
            pid, span = _span(item, f"data[{t}].spans[{i}]")
            if pid not in processes:
                raise InvalidRequest(f"data[{t}].spans[{i}].processID: {pid!r} is not in processes")
            grouped.setdefault(pid, []).append(span)
        for pid, spans in grouped.items():
            proc = processes[pid]
            if not isinstance(proc, dict):
                raise InvalidRequest(f"data[{t}].processes.{pid}: expected {{serviceName, tags}}")
            process = jaeger_thrift.Process(serviceName=str(proc.get("serviceName", "")),
                                            tags=_tags(proc.get("tags"), f"data[{t}].processes.{pid}.tags"))
            request.resource_spans.extend(batch_to_otlp(jaeger_thrift.Batch(process=process, spans=spans))
                                          .resource_spans)
    return request


def decode_jaeger_json(body: bytes) -> ExportTraceServiceRequest:
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidRequest(f"invalid Jaeger JSON: {exc}") from exc
    return decode_jaeger_json_doc(doc)

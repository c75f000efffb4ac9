"""Zipkin protobuf v2 (`POST /api/v2/spans`, `application/x-protobuf`) to OTLP. Pure.

The body is a `zipkin.proto3.ListOfSpans` (classes generated from proto/zipkin.proto). The
OpenTelemetry Collector decodes it into the same span model as Zipkin JSON v2 and translates both
alike, so each span is rewritten in its JSON v2 form (hex IDs, kind names, dotted IP addresses, absent
fields left out: proto3 zero values mean "absent" in Zipkin's encoding) and handed to
`zipkin.decode_zipkin_v2_json`, the one v2 translator.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tempo_lite._gen import zipkin_pb2
from tempo_lite.errors import InvalidRequest
from tempo_lite.receivers.zipkin import decode_zipkin_v2_json

_KINDS = {zipkin_pb2.Span.CLIENT: "CLIENT", zipkin_pb2.Span.SERVER: "SERVER",
          zipkin_pb2.Span.PRODUCER: "PRODUCER", zipkin_pb2.Span.CONSUMER: "CONSUMER"}


def decode_zipkin_v2_proto(body: bytes) -> ExportTraceServiceRequest:
    try:
        spans = zipkin_pb2.ListOfSpans.FromString(body).spans
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise InvalidRequest(f"zipkin v2 protobuf: cannot decode ListOfSpans: {exc}") from None
    return decode_zipkin_v2_json(json.dumps([_as_json(s, i) for i, s in enumerate(spans)]).encode())


def _as_json(span: zipkin_pb2.Span, index: int) -> dict[str, Any]:
    if len(span.trace_id) not in (8, 16):
        raise InvalidRequest(f"span {index}: trace_id must be 8 or 16 bytes, got {len(span.trace_id)}")
    if len(span.id) != 8:
        raise InvalidRequest(f"span {index}: id must be 8 bytes, got {len(span.id)}")
    if span.parent_id and len(span.parent_id) != 8:
        raise InvalidRequest(f"span {index}: parent_id must be 8 bytes, got {len(span.parent_id)}")
    out: dict[str, Any] = {"traceId": span.trace_id.hex(), "id": span.id.hex()}
    if span.parent_id:
        out["parentId"] = span.parent_id.hex()
    if span.kind in _KINDS:
        out["kind"] = _KINDS[span.kind]
    if span.name:
        out["name"] = span.name
    if span.timestamp:
        out["timestamp"] = span.timestamp
    if span.duration:
        out["duration"] = span.duration
    for field, key in (("local_endpoint", "localEndpoint"), ("remote_endpoint", "remoteEndpoint")):
        if span.HasField(field):
            out[key] = _endpoint(getattr(span, field), key, index)
    if span.annotations:
        out["annotations"] = [{"timestamp": a.timestamp, "value": a.value} for a in span.annotations]
    if span.tags:
        out["tags"] = dict(sorted(span.tags.items()))  # a map: no order on the wire, so one by key
    if span.debug:
        out["debug"] = True
    if span.shared:
        out["shared"] = True
    return out


def _endpoint(ep: zipkin_pb2.Endpoint, field: str, index: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if ep.service_name:
        out["serviceName"] = ep.service_name
    try:
        if ep.ipv4:
            out["ipv4"] = str(ipaddress.IPv4Address(ep.ipv4))
        if ep.ipv6:
            out["ipv6"] = str(ipaddress.IPv6Address(ep.ipv6))
    except ipaddress.AddressValueError as exc:
        raise InvalidRequest(f"span {index}: {field}: {exc}") from None
    if ep.port:
        out["port"] = ep.port
    return out

"""Zipkin v1 JSON (`POST /api/v1/spans`) to OTLP, as the collector's `zipkinv1` translator: core annotations
(`cs`/`cr` CLIENT, `sr`/`ss` SERVER, `ms` PRODUCER, `mr` CONSUMER) give the kind and the endpoint
(resource: `service.name`, plus `ipv4`/`ipv6`/`port` strings), other annotations become events; start and
end come from `timestamp`/`duration` or else from the earliest/latest annotation; binary annotations
become string attributes (`lc` -> `component`, which also names the service when no endpoint does);
`census.status_code`, `otel.status_code`, `error` and `http.status_code` give the status.

Pure functions: request body bytes in, `ExportTraceServiceRequest` out, `InvalidRequest` on bad input. The
parts shared with v2 (IDs, times, endpoints, tag keys) are in `zipkin_fields.py`.
"""

from __future__ import annotations

import time
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from tempo_lite.errors import InvalidRequest
from tempo_lite.receivers.hostile import refuse_bad_input
from tempo_lite.receivers.zipkin_fields import (
    ATTR_START_TIME_ABSENT,
    TAG_ERROR,
    TAG_STATUS_CODE,
    TAG_STATUS_DESCRIPTION,
    end_nanos,
    load_json_array,
    parse_endpoint,
    parse_micros,
    parse_span_id,
    parse_trace_id,
    put_str,
)

_CORE_KINDS = {
    "cs": Span.SPAN_KIND_CLIENT,
    "cr": Span.SPAN_KIND_CLIENT,
    "ms": Span.SPAN_KIND_PRODUCER,
    "mr": Span.SPAN_KIND_CONSUMER,
    "ss": Span.SPAN_KIND_SERVER,
    "sr": Span.SPAN_KIND_SERVER,
}
_UNKNOWN_SERVICE = "unknown-service"


@refuse_bad_input("zipkin v1")
def decode_zipkin_v1_json(body: bytes, *, now_ns: int | None = None) -> ExportTraceServiceRequest:
    """Translate a Zipkin v1 JSON span list into one OTLP export request.

    `now_ns` stands in for spans that carry no time at all (the collector stamps them with the current
    time and marks them `otel.zipkin.absentField.startTime`); it defaults to the wall clock.
    """
    raw = load_json_array(body, "zipkin v1")
    request = ExportTraceServiceRequest()
    by_endpoint: dict[tuple[str, str, str, int], Any] = {}
    for index, item in enumerate(raw):
        span, endpoint = _v1_span(item, index, now_ns)
        key = (
            endpoint.get("serviceName") or _UNKNOWN_SERVICE,
            endpoint.get("ipv4") or "",
            endpoint.get("ipv6") or "",
            endpoint.get("port") or 0,
        )
        spans = by_endpoint.get(key)
        if spans is None:
            resource_spans = request.resource_spans.add()
            attrs = resource_spans.resource.attributes
            put_str(attrs, "service.name", key[0])
            if key[1]:
                put_str(attrs, "ipv4", key[1])
            if key[2]:
                put_str(attrs, "ipv6", key[2])
            if key[3]:
                put_str(attrs, "port", str(key[3]))
            spans = by_endpoint[key] = resource_spans.scope_spans.add().spans
        spans.append(span)
    return request


def _v1_span(item: Any, index: int, now_ns: int | None) -> tuple[Span, dict[str, Any]]:
    if not isinstance(item, dict):
        raise InvalidRequest(f"span {index}: must be a JSON object")
    span = Span()
    trace_hex = item.get("traceId")
    if not isinstance(trace_hex, str) or len(trace_hex) not in (16, 32):
        raise InvalidRequest(f"span {index}: traceId must be 16 or 32 hex digits, got {trace_hex!r}")
    span.trace_id = parse_trace_id(trace_hex, "traceId", index)
    span.span_id = _v1_span_id(item.get("id"), "id", index)
    if item.get("parentId") not in (None, ""):
        span.parent_span_id = _v1_span_id(item["parentId"], "parentId", index)
    name = item.get("name") or ""
    if not isinstance(name, str):
        raise InvalidRequest(f"span {index}: name must be a string")
    span.name = name

    endpoint = _v1_annotations(item.get("annotations") or [], span, index)
    fallback_service = _v1_binary_annotations(item.get("binaryAnnotations") or [], span, index)
    if (endpoint.get("serviceName") or _UNKNOWN_SERVICE) == _UNKNOWN_SERVICE and fallback_service:
        endpoint = {**endpoint, "serviceName": fallback_service}

    timestamp = parse_micros(item.get("timestamp"), "timestamp", index)
    if timestamp:
        duration = parse_micros(item.get("duration"), "duration", index)
        span.start_time_unix_nano = timestamp * 1000
        span.end_time_unix_nano = end_nanos(timestamp, duration, index)
    if span.start_time_unix_nano == 0:
        now = time.time_ns() if now_ns is None else now_ns
        span.start_time_unix_nano = now
        span.end_time_unix_nano = now
        span.attributes.add(key=ATTR_START_TIME_ABSENT).value.bool_value = True
    return span, endpoint


def _v1_span_id(value: Any, field: str, index: int) -> bytes:
    if not isinstance(value, str) or len(value) != 16:
        raise InvalidRequest(f"span {index}: {field} must be 16 hex digits, got {value!r}")
    return parse_span_id(value, field, index)


def _v1_annotations(annotations: Any, span: Span, index: int) -> dict[str, Any]:
    if not isinstance(annotations, list):
        raise InvalidRequest(f"span {index}: annotations must be an array")
    endpoint: dict[str, Any] | None = None
    kind_set = False
    earliest: int | None = None
    latest: int | None = None
    for annotation in annotations:
        if not isinstance(annotation, dict):
            raise InvalidRequest(f"span {index}: each annotation must be an object")
        value = annotation.get("value")
        if not value:
            continue
        if not isinstance(value, str):
            raise InvalidRequest(f"span {index}: annotation value must be a string")
        ann_endpoint = parse_endpoint(annotation.get("endpoint"), "annotation endpoint", index)
        is_core = value in _CORE_KINDS
        if endpoint is None and is_core and ann_endpoint and ann_endpoint.get("serviceName"):
            endpoint = ann_endpoint
        if is_core and not kind_set:
            span.kind = _CORE_KINDS[value]
            kind_set = True
        micros = parse_micros(annotation.get("timestamp"), "annotation timestamp", index)
        if earliest is None or micros < earliest:
            earliest = micros
            span.start_time_unix_nano = micros * 1000
        if latest is None or micros > latest:
            latest = micros
            span.end_time_unix_nano = micros * 1000
        if not is_core:
            event = span.events.add()
            event.time_unix_nano = micros * 1000
            event.name = value
    return endpoint or {"serviceName": _UNKNOWN_SERVICE}


def _v1_binary_annotations(binary_annotations: Any, span: Span, index: int) -> str:
    """Binary annotations -> string attributes and status; returns the fallback service name."""
    if not isinstance(binary_annotations, list):
        raise InvalidRequest(f"span {index}: binaryAnnotations must be an array")
    fallback_service = ""
    local_component = ""
    status = _V1Status()
    for annotation in binary_annotations:
        if not isinstance(annotation, dict) or not isinstance(annotation.get("key"), str):
            raise InvalidRequest(f"span {index}: each binary annotation needs a string key")
        ann_endpoint = parse_endpoint(annotation.get("endpoint"), "binary annotation endpoint", index)
        if ann_endpoint and ann_endpoint.get("serviceName"):
            fallback_service = ann_endpoint["serviceName"]
        key = annotation["key"]
        value = _v1_value(annotation.get("value"), index)
        if key == "lc":
            key = "component"
            local_component = value
        if status.consume(key, value):
            continue
        put_str(span.attributes, key, value)
    status.apply(span.status)
    return fallback_service or local_component


def _v1_value(value: Any, index: int) -> str:
    # Zipkin v1 JSON types binary annotation values (BOOL, I64, DOUBLE, STRING); attributes stay strings.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise InvalidRequest(f"span {index}: binary annotation value must be a string, number or boolean")


class _V1Status:
    """Picks the status from census.status_code, then otel.status_code, then error, then http.status_code."""

    def __init__(self) -> None:
        self.census: int | None = None
        self.census_message = ""
        self.otel: int | None = None
        self.otel_message = ""
        self.error = False
        self.http: int | None = None
        self.http_message = ""

    def consume(self, key: str, value: str) -> bool:
        """Record a status-bearing tag; True when the tag is not kept as an attribute."""
        if key == "census.status_code":
            code = _int32(value)
            if code is not None:
                self.census = Status.STATUS_CODE_OK if code == 0 else Status.STATUS_CODE_ERROR
            return True
        if key in ("census.status_description", "opencensus.status_description"):
            self.census_message = value
            return True
        if key == TAG_STATUS_CODE:
            self.otel = _int32(value)
            return True
        if key == TAG_STATUS_DESCRIPTION:
            self.otel_message = value
            return True
        if key == TAG_ERROR:
            self.error = True
            return True
        if key == "http.status_code":
            code = _int32(value)
            if code is not None:
                self.http = Status.STATUS_CODE_UNSET if 100 <= code < 400 else Status.STATUS_CODE_ERROR
        elif key == "http.status_message":
            self.http_message = value
        return False

    def apply(self, status: Status) -> None:
        if self.census is not None:
            code, message = self.census, self.census_message
        elif self.otel is not None:
            code, message = self.otel, self.otel_message
        elif self.error:
            code, message = Status.STATUS_CODE_ERROR, self.census_message or self.otel_message
        elif self.http is not None:
            code, message = self.http, self.http_message
        else:
            return
        status.code = code  # type: ignore[assignment]
        status.message = message


def _int32(value: str) -> int | None:
    try:
        number = int(value, 10)
    except ValueError:
        return None
    return number if -(2**31) <= number < 2**31 else None

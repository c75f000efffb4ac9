"""Zipkin v2 JSON to OTLP, translated the way the OpenTelemetry Collector's Zipkin receiver does.

Pure functions: request body bytes in, `ExportTraceServiceRequest` out, `InvalidRequest` on bad input.

Zipkin v2 (`POST /api/v2/spans`, JSON array of spans), as the collector's `zipkinv2` translator:
- spans are grouped (stable sort) by `localEndpoint.serviceName`, one ResourceSpans per service, then
  by `otel.library.name` tag, one ScopeSpans per library. Resource: `service.name` (or the key named by
  the `otlp.service.name.source` tag) plus, from the first span of the group, every tag whose key is a
  resource semantic convention (`host.name`, `telemetry.sdk.*`, `service.version`, ...). Spans without a
  local service name get a resource without `service.name`. Scope: `otel.library.name`/`version`
  (`otel.scope.name`/`version` are read too: the OpenTelemetry SDK exporters send both).
- IDs: hex; trace IDs of up to 32 digits are left-padded to 16 bytes (64-bit IDs become
  `0000000000000000<id>`), span IDs up to 16 digits; zero, missing or non-hex IDs are refused. A
  `parentId` equal to `id` is dropped.
- `kind` CLIENT/SERVER/PRODUCER/CONSUMER map to the OTLP kinds; without `kind`, a `span.kind=internal`
  tag gives INTERNAL, else UNSPECIFIED.
- `timestamp`/`duration` are microseconds (x1000 -> ns). A span without `timestamp` starts at 0 and
  carries `otel.zipkin.absentField.startTime=true`.
- Tags become string attributes, except: `otel.status_code` (+ `otel.status_description`) -> status,
  any `error` tag -> status ERROR (the tag is kept as an attribute unless its value is "true"),
  `w3c.tracestate` -> trace_state, `span.kind`, `otlp.link.N` -> links, resource and scope keys.
- Endpoints: local ipv4/ipv6 -> `net.host.ip`, port -> `net.host.port`; remote serviceName ->
  `peer.service`, ipv4/ipv6 -> `net.peer.ip`, port -> `net.peer.port` (the collector's default semconv).
- Annotations -> events at their timestamp; a value `name|{json attrs}|dropped` (how the collector's
  exporter encodes events) is split into name, attributes and dropped count, else the part before the
  first `|` is the name.
- `shared` and `debug` are checked to be booleans and then dropped, as the collector does: OTLP has no
  field for them. A shared SERVER span keeps the client's span ID; both halves are stored (readers only
  drop copies of a span: same ID, kind, start and duration).

Zipkin protobuf v2 (`application/x-protobuf`) is decoded in `zipkin_proto` into the v2 JSON form and
translated here. Zipkin v1 JSON: `zipkin_v1.py`; what both share (IDs, times, endpoints, tag keys):
`zipkin_fields.py`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from tempo_lite.errors import InvalidRequest
from tempo_lite.receivers.hostile import load_json, refuse_bad_input
from tempo_lite.receivers.zipkin_fields import (
    ATTR_START_TIME_ABSENT,
    RESOURCE_TAG_KEYS,
    TAG_ERROR,
    TAG_LIBRARY_NAME,
    TAG_LIBRARY_VERSION,
    TAG_SCOPE_NAME,
    TAG_SCOPE_VERSION,
    TAG_SERVICE_NAME_SOURCE,
    TAG_SPAN_KIND,
    TAG_STATUS_CODE,
    TAG_STATUS_DESCRIPTION,
    TAG_TRACE_STATE,
    end_nanos,
    load_json_array,
    parse_endpoint,
    parse_hex,
    parse_micros,
    parse_span_id,
    parse_trace_id,
    put_json_value,
    put_str,
)

_SCOPE_TAG_KEYS = frozenset({TAG_LIBRARY_NAME, TAG_LIBRARY_VERSION, TAG_SCOPE_NAME, TAG_SCOPE_VERSION})
_NON_SPAN_TAG_KEYS = RESOURCE_TAG_KEYS | _SCOPE_TAG_KEYS | {TAG_SERVICE_NAME_SOURCE}

_NO_SERVICE_NAME = "OTLPResourceNoServiceName"  # the collector's sort key for spans without a service

_KINDS = {
    "CLIENT": Span.SPAN_KIND_CLIENT,
    "SERVER": Span.SPAN_KIND_SERVER,
    "PRODUCER": Span.SPAN_KIND_PRODUCER,
    "CONSUMER": Span.SPAN_KIND_CONSUMER,
}
# The collector's names plus the spellings the OpenTelemetry exporters actually send ("OK"/"ERROR" per
# the OTel-to-Zipkin spec, "Ok"/"Error" from older collectors).
_STATUS_CODES = {
    "STATUS_CODE_UNSET": Status.STATUS_CODE_UNSET,
    "STATUS_CODE_OK": Status.STATUS_CODE_OK,
    "STATUS_CODE_ERROR": Status.STATUS_CODE_ERROR,
    "Unset": Status.STATUS_CODE_UNSET,
    "Ok": Status.STATUS_CODE_OK,
    "Error": Status.STATUS_CODE_ERROR,
    "UNSET": Status.STATUS_CODE_UNSET,
    "OK": Status.STATUS_CODE_OK,
    "ERROR": Status.STATUS_CODE_ERROR,
}
_MAX_LINKS = 128





@refuse_bad_input("zipkin v2")
def decode_zipkin_v2_json(body: bytes) -> ExportTraceServiceRequest:
    """Translate a Zipkin v2 JSON span list into one OTLP export request."""
    raw = load_json_array(body, "zipkin v2")
    spans = [_parse_v2_span(item, index) for index, item in enumerate(raw)]
    # Stable sort, so spans keep their request order within a (service, library) group.
    spans.sort(key=lambda s: (s["service"], s["tags"].get(TAG_LIBRARY_NAME, "")))

    request = ExportTraceServiceRequest()
    resource_spans: ResourceSpans | None = None
    scope_spans: ScopeSpans | None = None
    prev_service: str | None = None
    prev_library: str | None = None
    for span in spans:
        tags: dict[str, str] = dict(span["tags"])
        if span["service"] != prev_service:
            prev_service = span["service"]
            resource_spans = request.resource_spans.add()
            _populate_v2_resource(resource_spans, span, tags)
            prev_library = None
        library = span["tags"].get(TAG_LIBRARY_NAME, "")
        if library != prev_library or scope_spans is None:
            prev_library = library
            assert resource_spans is not None
            scope_spans = resource_spans.scope_spans.add()
            if library:
                scope_spans.scope.name = tags.get(TAG_SCOPE_NAME, library)
                version = tags.get(TAG_SCOPE_VERSION, tags.get(TAG_LIBRARY_VERSION))
                if version:
                    scope_spans.scope.version = version
        _v2_span_to_otlp(span, tags, scope_spans.spans.add())
    return request


def _parse_v2_span(item: Any, index: int) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise InvalidRequest(f"span {index}: must be a JSON object")
    trace_id = parse_trace_id(item.get("traceId"), "traceId", index)
    span_id = parse_span_id(item.get("id"), "id", index)
    parent = item.get("parentId")
    parent_id = b""
    if parent not in (None, ""):
        parent_bytes = parse_hex(parent, "parentId", 16, index).to_bytes(8, "big")
        if parent_bytes != span_id and any(parent_bytes):
            parent_id = parent_bytes
    kind = item.get("kind")
    if kind is not None and not isinstance(kind, str):
        raise InvalidRequest(f"span {index}: kind must be a string")
    name = item.get("name") or ""
    if not isinstance(name, str):
        raise InvalidRequest(f"span {index}: name must be a string")
    tags = item.get("tags") or {}
    if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
        raise InvalidRequest(f"span {index}: tags must be an object of string values")
    annotations = item.get("annotations") or []
    if not isinstance(annotations, list):
        raise InvalidRequest(f"span {index}: annotations must be an array")
    for annotation in annotations:
        if not isinstance(annotation, dict) or not isinstance(annotation.get("value", ""), str):
            raise InvalidRequest(f"span {index}: each annotation needs a string value")
    for flag in ("debug", "shared"):
        if item.get(flag) is not None and not isinstance(item[flag], bool):
            raise InvalidRequest(f"span {index}: {flag} must be a boolean")
    local = parse_endpoint(item.get("localEndpoint"), "localEndpoint", index)
    remote = parse_endpoint(item.get("remoteEndpoint"), "remoteEndpoint", index)
    service = (local or {}).get("serviceName") or _NO_SERVICE_NAME
    return {
        "index": index,
        "trace_id": trace_id,
        "span_id": span_id,
        "parent_id": parent_id,
        "name": name,
        "kind": kind,
        "timestamp": parse_micros(item.get("timestamp"), "timestamp", index),
        "duration": parse_micros(item.get("duration"), "duration", index),
        "tags": tags,
        "annotations": annotations,
        "local": local,
        "remote": remote,
        "service": service,
    }


def _populate_v2_resource(resource_spans: ResourceSpans, span: dict[str, Any], tags: dict[str, str]) -> None:
    if span["service"] == _NO_SERVICE_NAME:
        return
    attrs = resource_spans.resource.attributes
    service_key = tags.pop(TAG_SERVICE_NAME_SOURCE, "") or "service.name"
    put_str(attrs, service_key, span["service"])
    for key in list(tags):
        if key in RESOURCE_TAG_KEYS and key != service_key:
            put_str(attrs, key, tags.pop(key))


def _v2_span_to_otlp(span: dict[str, Any], tags: dict[str, str], out: Span) -> None:
    index = span["index"]
    out.trace_id = span["trace_id"]
    out.span_id = span["span_id"]
    out.parent_span_id = span["parent_id"]
    out.name = span["name"]
    if TAG_TRACE_STATE in tags:
        out.trace_state = tags.pop(TAG_TRACE_STATE)
    out.kind = cast("Span.SpanKind.ValueType", _v2_kind(span["kind"], tags))
    _v2_status(tags, out.status)
    _v2_links(tags, out, index)

    for key, value in tags.items():
        if key not in _NON_SPAN_TAG_KEYS:
            put_str(out.attributes, key, value)
    _put_v2_endpoints(span["local"], span["remote"], out)

    if span["timestamp"] == 0:
        out.start_time_unix_nano = 0
        out.end_time_unix_nano = span["duration"] * 1000
        out.attributes.add(key=ATTR_START_TIME_ABSENT).value.bool_value = True
    else:
        out.start_time_unix_nano = span["timestamp"] * 1000
        out.end_time_unix_nano = end_nanos(span["timestamp"], span["duration"], index)

    for annotation in span["annotations"]:
        _v2_event(annotation, out, index)


def _v2_kind(kind: str | None, tags: dict[str, str]) -> int:
    if kind in _KINDS:
        return _KINDS[kind]
    value = tags.pop(TAG_SPAN_KIND, None)
    return Span.SPAN_KIND_INTERNAL if value == "internal" else Span.SPAN_KIND_UNSPECIFIED


def _v2_status(tags: dict[str, str], status: Status) -> None:
    if TAG_STATUS_CODE in tags:
        status.code = _STATUS_CODES.get(tags.pop(TAG_STATUS_CODE), Status.STATUS_CODE_UNSET)
        if TAG_STATUS_DESCRIPTION in tags:
            status.message = tags.pop(TAG_STATUS_DESCRIPTION)
    if TAG_ERROR in tags:
        status.code = Status.STATUS_CODE_ERROR
        if tags[TAG_ERROR] == "true":
            del tags[TAG_ERROR]


def _v2_links(tags: dict[str, str], out: Span, index: int) -> None:
    """`otlp.link.N` = `traceid|spanid|tracestate|{json attrs}|dropped`, N counting up from 0."""
    for n in range(_MAX_LINKS):
        value = tags.pop(f"otlp.link.{n}", None)
        if value is None:
            return
        parts = value.split("|")
        if len(parts) < 5:
            continue
        link = out.links.add()
        link.trace_id = _fixed_hex(parts[0], 16, f"otlp.link.{n} trace id", index)
        link.span_id = _fixed_hex(parts[1], 8, f"otlp.link.{n} span id", index)
        link.trace_state = parts[2]
        for key, attr in _json_attrs("|".join(parts[3:-1]), f"otlp.link.{n}", index).items():
            put_json_value(link.attributes, key, attr)
        link.dropped_attributes_count = _dropped(parts[-1], f"otlp.link.{n}", index)


def _v2_event(annotation: dict[str, Any], out: Span, index: int) -> None:
    event = out.events.add()
    event.time_unix_nano = parse_micros(annotation.get("timestamp"), "annotation timestamp", index) * 1000
    parts = str(annotation.get("value", "")).split("|")
    event.name = parts[0]
    if len(parts) < 3:
        return
    for key, attr in _json_attrs("|".join(parts[1:-1]), "annotation", index).items():
        put_json_value(event.attributes, key, attr)
    event.dropped_attributes_count = _dropped(parts[-1], "annotation", index)


def _fixed_hex(value: str, size: int, what: str, index: int) -> bytes:
    value = value.strip('"')
    if not value:
        return b"\x00" * size
    try:
        raw = bytes.fromhex(value)
    except ValueError as exc:
        raise InvalidRequest(f"span {index}: {what} {value!r} is not hex") from exc
    if len(raw) != size:
        raise InvalidRequest(f"span {index}: {what} {value!r} must be {size * 2} hex digits")
    return raw


def _json_attrs(text: str, what: str, index: int) -> dict[str, Any]:
    attrs = load_json(text, f"span {index}: {what} attributes")
    if not isinstance(attrs, dict):
        raise InvalidRequest(f"span {index}: {what} attributes must be a JSON object")
    return attrs


def _dropped(text: str, what: str, index: int) -> int:
    if not (text.isascii() and text.isdigit() and len(text) <= 10) or int(text) >= 2**32:
        raise InvalidRequest(f"span {index}: {what} dropped count {text!r} is not a 32-bit unsigned integer")
    return int(text)


def _put_v2_endpoints(local: dict[str, Any] | None, remote: dict[str, Any] | None, out: Span) -> None:
    attrs = out.attributes
    if local:
        for family in ("ipv4", "ipv6"):
            if local.get(family):
                _set_str(attrs, "net.host.ip", local[family])
        if (local.get("port") or 0) > 0:
            _set_int(attrs, "net.host.port", local["port"])
    if remote:
        if remote.get("serviceName"):
            _set_str(attrs, "peer.service", remote["serviceName"])
        for family in ("ipv4", "ipv6"):
            if remote.get(family):
                _set_str(attrs, "net.peer.ip", remote[family])
        if (remote.get("port") or 0) > 0:
            _set_int(attrs, "net.peer.port", remote["port"])


def _existing(attrs: Iterable[KeyValue], key: str) -> KeyValue | None:
    for kv in attrs:
        if kv.key == key:
            return kv
    return None


def _set_str(attrs: Any, key: str, value: str) -> None:
    """Put semantics of pcommon.Map: replace an existing key instead of adding a duplicate."""
    kv = _existing(attrs, key) or attrs.add(key=key)
    kv.value.Clear()
    kv.value.string_value = value


def _set_int(attrs: Any, key: str, value: int) -> None:
    kv = _existing(attrs, key) or attrs.add(key=key)
    kv.value.Clear()
    kv.value.int_value = value

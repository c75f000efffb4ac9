"""Zipkin JSON (v1 and v2) to OTLP, translated the way the OpenTelemetry Collector's Zipkin receiver does.

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

Zipkin v1 (`POST /api/v1/spans`), as the collector's `zipkinv1` translator: core annotations
(`cs`/`cr` CLIENT, `sr`/`ss` SERVER, `ms` PRODUCER, `mr` CONSUMER) give the kind and the endpoint
(resource: `service.name`, plus `ipv4`/`ipv6`/`port` strings), other annotations become events; start and
end come from `timestamp`/`duration` or else from the earliest/latest annotation; binary annotations
become string attributes (`lc` -> `component`, which also names the service when no endpoint does);
`census.status_code`, `otel.status_code`, `error` and `http.status_code` give the status.

Zipkin protobuf v2 (`application/x-protobuf`) is decoded in `zipkin_proto` into the v2 JSON form and
translated here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import Any, cast

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from tempo_lite.errors import InvalidRequest
from tempo_lite.receivers.hostile import load_json, refuse_bad_input

# Tag keys with a meaning in the translation (collector's tracetranslator / occonventions / semconv).
TAG_ERROR = "error"
TAG_SPAN_KIND = "span.kind"
TAG_TRACE_STATE = "w3c.tracestate"
TAG_STATUS_CODE = "otel.status_code"
TAG_STATUS_DESCRIPTION = "otel.status_description"
TAG_LIBRARY_NAME = "otel.library.name"
TAG_LIBRARY_VERSION = "otel.library.version"
TAG_SCOPE_NAME = "otel.scope.name"
TAG_SCOPE_VERSION = "otel.scope.version"
TAG_SERVICE_NAME_SOURCE = "otlp.service.name.source"
ATTR_START_TIME_ABSENT = "otel.zipkin.absentField.startTime"

# Resource semantic-convention keys (semconv 1.6-1.9, the set the collector's translator moves from span
# tags to the resource), plus the OpenCensus leftovers it also treats as resource attributes.
# fmt: off
RESOURCE_TAG_KEYS: frozenset[str] = frozenset(
    {
        "cloud.provider", "cloud.account.id", "cloud.region", "cloud.availability_zone", "cloud.platform",
        "aws.ecs.container.arn", "aws.ecs.cluster.arn", "aws.ecs.launchtype", "aws.ecs.task.arn",
        "aws.ecs.task.family", "aws.ecs.task.revision", "aws.eks.cluster.arn", "aws.log.group.names",
        "aws.log.group.arns", "aws.log.stream.names", "aws.log.stream.arns",
        "container.name", "container.id", "container.runtime", "container.image.name",
        "container.image.tag", "deployment.environment",
        "device.id", "device.model.identifier", "device.model.name", "device.manufacturer",
        "faas.name", "faas.id", "faas.version", "faas.instance", "faas.max_memory",
        "host.id", "host.name", "host.type", "host.arch", "host.image.name", "host.image.id",
        "host.image.version",
        "k8s.cluster.name", "k8s.node.name", "k8s.node.uid", "k8s.namespace.name", "k8s.pod.uid",
        "k8s.pod.name", "k8s.container.name", "k8s.container.restart_count", "k8s.replicaset.uid",
        "k8s.replicaset.name", "k8s.deployment.uid", "k8s.deployment.name", "k8s.statefulset.uid",
        "k8s.statefulset.name", "k8s.daemonset.uid", "k8s.daemonset.name", "k8s.job.uid", "k8s.job.name",
        "k8s.cronjob.uid", "k8s.cronjob.name",
        "os.type", "os.description", "os.name", "os.version",
        "process.pid", "process.executable.name", "process.executable.path", "process.command",
        "process.command_line", "process.command_args", "process.owner", "process.runtime.name",
        "process.runtime.version", "process.runtime.description",
        "service.name", "service.namespace", "service.instance.id", "service.version",
        "telemetry.sdk.name", "telemetry.sdk.language", "telemetry.sdk.version", "telemetry.auto.version",
        "webengine.name", "webengine.version", "webengine.description",
        "opencensus.starttime", "opencensus.exporterversion", "opencensus.resourcetype",
    }
)
# fmt: on
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

_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_MAX_MICROS = ((1 << 64) - 1) // 1000  # the largest time in microseconds that fits OTLP's uint64 nanoseconds
_INT64 = range(-(1 << 63), 1 << 63)
_INT32 = range(-(1 << 31), 1 << 31)


# ---------------------------------------------------------------------------------------------------
# Shared helpers


def _load_json_array(body: bytes, what: str) -> list[Any]:
    data = load_json(body, what)
    if not isinstance(data, list):
        raise InvalidRequest(f"{what}: body must be a JSON array of spans, got {type(data).__name__}")
    return data


def _parse_hex(value: Any, field: str, max_digits: int, index: int) -> int:
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"span {index}: {field} must be a non-empty hex string, got {value!r}")
    if len(value) > max_digits or not _HEX_DIGITS.issuperset(value):
        raise InvalidRequest(f"span {index}: {field} {value!r} is not a hex ID of at most {max_digits} digits")
    return int(value, 16)


def _trace_id(value: Any, field: str, index: int) -> bytes:
    number = _parse_hex(value, field, 32, index)
    if number == 0:
        raise InvalidRequest(f"span {index}: {field} is zero")
    return number.to_bytes(16, "big")


def _span_id(value: Any, field: str, index: int) -> bytes:
    number = _parse_hex(value, field, 16, index)
    if number == 0:
        raise InvalidRequest(f"span {index}: {field} is zero")
    return number.to_bytes(8, "big")


def _micros(value: Any, field: str, index: int) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= _MAX_MICROS:
        raise InvalidRequest(
            f"span {index}: {field} must be a number of microseconds from 0 to {_MAX_MICROS}, got {value!r}"
        )
    return int(value)


def _end_nanos(timestamp: int, duration: int, index: int) -> int:
    if timestamp + duration > _MAX_MICROS:
        raise InvalidRequest(f"span {index}: timestamp + duration ({timestamp} + {duration}) is out of range")
    return (timestamp + duration) * 1000


def _put_str(attrs: Any, key: str, value: str) -> None:
    kv = attrs.add()
    kv.key = key
    kv.value.string_value = value


def _put_int(attrs: Any, key: str, value: int) -> None:
    kv = attrs.add()
    kv.key = key
    kv.value.int_value = value


def _put_json_value(attrs: Any, key: str, value: Any) -> None:
    """The collector's jsonMapToAttributeMap: strings, whole numbers as ints, other numbers, bools."""
    if isinstance(value, bool):
        attrs.add(key=key).value.bool_value = value
    elif isinstance(value, str):
        _put_str(attrs, key, value)
    elif isinstance(value, int):
        if value in _INT64:
            _put_int(attrs, key, value)
        else:  # Go's float64 holds it, inexactly
            attrs.add(key=key).value.double_value = float(value)
    elif isinstance(value, float) and math.isfinite(value):
        if value.is_integer() and -(2.0**63) <= value < 2.0**63:
            _put_int(attrs, key, int(value))
        else:
            attrs.add(key=key).value.double_value = value


def _endpoint(value: Any, field: str, index: int) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidRequest(f"span {index}: {field} must be an object")
    port = value.get("port")
    if port is not None and (isinstance(port, bool) or not isinstance(port, int) or port not in _INT32):
        raise InvalidRequest(f"span {index}: {field}.port must be a 32-bit integer")
    for key in ("serviceName", "ipv4", "ipv6"):
        if value.get(key) is not None and not isinstance(value[key], str):
            raise InvalidRequest(f"span {index}: {field}.{key} must be a string")
    return value


# ---------------------------------------------------------------------------------------------------
# Zipkin v2


@refuse_bad_input("zipkin v2")
def decode_zipkin_v2_json(body: bytes) -> ExportTraceServiceRequest:
    """Translate a Zipkin v2 JSON span list into one OTLP export request."""
    raw = _load_json_array(body, "zipkin v2")
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
    trace_id = _trace_id(item.get("traceId"), "traceId", index)
    span_id = _span_id(item.get("id"), "id", index)
    parent = item.get("parentId")
    parent_id = b""
    if parent not in (None, ""):
        parent_bytes = _parse_hex(parent, "parentId", 16, index).to_bytes(8, "big")
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
    local = _endpoint(item.get("localEndpoint"), "localEndpoint", index)
    remote = _endpoint(item.get("remoteEndpoint"), "remoteEndpoint", index)
    service = (local or {}).get("serviceName") or _NO_SERVICE_NAME
    return {
        "index": index,
        "trace_id": trace_id,
        "span_id": span_id,
        "parent_id": parent_id,
        "name": name,
        "kind": kind,
        "timestamp": _micros(item.get("timestamp"), "timestamp", index),
        "duration": _micros(item.get("duration"), "duration", index),
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
    _put_str(attrs, service_key, span["service"])
    for key in list(tags):
        if key in RESOURCE_TAG_KEYS and key != service_key:
            _put_str(attrs, key, tags.pop(key))


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
            _put_str(out.attributes, key, value)
    _put_v2_endpoints(span["local"], span["remote"], out)

    if span["timestamp"] == 0:
        out.start_time_unix_nano = 0
        out.end_time_unix_nano = span["duration"] * 1000
        out.attributes.add(key=ATTR_START_TIME_ABSENT).value.bool_value = True
    else:
        out.start_time_unix_nano = span["timestamp"] * 1000
        out.end_time_unix_nano = _end_nanos(span["timestamp"], span["duration"], index)

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
            _put_json_value(link.attributes, key, attr)
        link.dropped_attributes_count = _dropped(parts[-1], f"otlp.link.{n}", index)


def _v2_event(annotation: dict[str, Any], out: Span, index: int) -> None:
    event = out.events.add()
    event.time_unix_nano = _micros(annotation.get("timestamp"), "annotation timestamp", index) * 1000
    parts = str(annotation.get("value", "")).split("|")
    event.name = parts[0]
    if len(parts) < 3:
        return
    for key, attr in _json_attrs("|".join(parts[1:-1]), "annotation", index).items():
        _put_json_value(event.attributes, key, attr)
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


# ---------------------------------------------------------------------------------------------------
# Zipkin v1

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
    raw = _load_json_array(body, "zipkin v1")
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
            _put_str(attrs, "service.name", key[0])
            if key[1]:
                _put_str(attrs, "ipv4", key[1])
            if key[2]:
                _put_str(attrs, "ipv6", key[2])
            if key[3]:
                _put_str(attrs, "port", str(key[3]))
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
    span.trace_id = _trace_id(trace_hex, "traceId", index)
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

    timestamp = _micros(item.get("timestamp"), "timestamp", index)
    if timestamp:
        duration = _micros(item.get("duration"), "duration", index)
        span.start_time_unix_nano = timestamp * 1000
        span.end_time_unix_nano = _end_nanos(timestamp, duration, index)
    if span.start_time_unix_nano == 0:
        now = time.time_ns() if now_ns is None else now_ns
        span.start_time_unix_nano = now
        span.end_time_unix_nano = now
        span.attributes.add(key=ATTR_START_TIME_ABSENT).value.bool_value = True
    return span, endpoint


def _v1_span_id(value: Any, field: str, index: int) -> bytes:
    if not isinstance(value, str) or len(value) != 16:
        raise InvalidRequest(f"span {index}: {field} must be 16 hex digits, got {value!r}")
    return _span_id(value, field, index)


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
        ann_endpoint = _endpoint(annotation.get("endpoint"), "annotation endpoint", index)
        is_core = value in _CORE_KINDS
        if endpoint is None and is_core and ann_endpoint and ann_endpoint.get("serviceName"):
            endpoint = ann_endpoint
        if is_core and not kind_set:
            span.kind = _CORE_KINDS[value]
            kind_set = True
        micros = _micros(annotation.get("timestamp"), "annotation timestamp", index)
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
        ann_endpoint = _endpoint(annotation.get("endpoint"), "binary annotation endpoint", index)
        if ann_endpoint and ann_endpoint.get("serviceName"):
            fallback_service = ann_endpoint["serviceName"]
        key = annotation["key"]
        value = _v1_value(annotation.get("value"), index)
        if key == "lc":
            key = "component"
            local_component = value
        if status.consume(key, value):
            continue
        _put_str(span.attributes, key, value)
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

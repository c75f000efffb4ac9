"""What the Zipkin v1 and v2 JSON translations share: the tag keys with a meaning in the translation, and the
parsing of IDs (hex), times (microseconds) and endpoints, each refusing bad input with `InvalidRequest`
naming the span and field. Pure: no I/O.
"""

from __future__ import annotations

import math
from typing import Any

from tempo_lite.errors import InvalidRequest
from tempo_lite.receivers.hostile import load_json

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
HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
MAX_MICROS = ((1 << 64) - 1) // 1000  # the largest time in microseconds that fits OTLP's uint64 nanoseconds
INT64 = range(-(1 << 63), 1 << 63)
INT32 = range(-(1 << 31), 1 << 31)






def load_json_array(body: bytes, what: str) -> list[Any]:
    data = load_json(body, what)
    if not isinstance(data, list):
        raise InvalidRequest(f"{what}: body must be a JSON array of spans, got {type(data).__name__}")
    return data


def parse_hex(value: Any, field: str, max_digits: int, index: int) -> int:
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"span {index}: {field} must be a non-empty hex string, got {value!r}")
    if len(value) > max_digits or not HEX_DIGITS.issuperset(value):
        raise InvalidRequest(f"span {index}: {field} {value!r} is not a hex ID of at most {max_digits} digits")
    return int(value, 16)


def parse_trace_id(value: Any, field: str, index: int) -> bytes:
    number = parse_hex(value, field, 32, index)
    if number == 0:
        raise InvalidRequest(f"span {index}: {field} is zero")
    return number.to_bytes(16, "big")


def parse_span_id(value: Any, field: str, index: int) -> bytes:
    number = parse_hex(value, field, 16, index)
    if number == 0:
        raise InvalidRequest(f"span {index}: {field} is zero")
    return number.to_bytes(8, "big")


def parse_micros(value: Any, field: str, index: int) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_MICROS:
        raise InvalidRequest(
            f"span {index}: {field} must be a number of microseconds from 0 to {MAX_MICROS}, got {value!r}"
        )
    return int(value)


def end_nanos(timestamp: int, duration: int, index: int) -> int:
    if timestamp + duration > MAX_MICROS:
        raise InvalidRequest(f"span {index}: timestamp + duration ({timestamp} + {duration}) is out of range")
    return (timestamp + duration) * 1000


def put_str(attrs: Any, key: str, value: str) -> None:
    kv = attrs.add()
    kv.key = key
    kv.value.string_value = value


def put_int(attrs: Any, key: str, value: int) -> None:
    kv = attrs.add()
    kv.key = key
    kv.value.int_value = value


def put_json_value(attrs: Any, key: str, value: Any) -> None:
    """The collector's jsonMapToAttributeMap: strings, whole numbers as ints, other numbers, bools."""
    if isinstance(value, bool):
        attrs.add(key=key).value.bool_value = value
    elif isinstance(value, str):
        put_str(attrs, key, value)
    elif isinstance(value, int):
        if value in INT64:
            put_int(attrs, key, value)
        else:  # Go's float64 holds it, inexactly
            attrs.add(key=key).value.double_value = float(value)
    elif isinstance(value, float) and math.isfinite(value):
        if value.is_integer() and -(2.0**63) <= value < 2.0**63:
            put_int(attrs, key, int(value))
        else:
            attrs.add(key=key).value.double_value = value


def parse_endpoint(value: Any, field: str, index: int) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidRequest(f"span {index}: {field} must be an object")
    port = value.get("port")
    if port is not None and (isinstance(port, bool) or not isinstance(port, int) or port not in INT32):
        raise InvalidRequest(f"span {index}: {field}.port must be a 32-bit integer")
    for key in ("serviceName", "ipv4", "ipv6"):
        if value.get(key) is not None and not isinstance(value[key], str):
            raise InvalidRequest(f"span {index}: {field}.{key} must be a string")
    return value

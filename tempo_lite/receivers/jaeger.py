"""Jaeger Thrift to OTLP, translated the way the OpenTelemetry Collector's Jaeger receiver does.

Pure functions over bytes. The wire schema is the Thrift IDL in `idl/` (jaeger.thrift, agent.thrift),
parsed at import time by thriftpy2 into struct classes; the bytes are read by `thrift_reader`, which
checks every length and element count against the body before it loops or allocates (thriftpy2's own
protocol readers trust them).

- `decode_jaeger_thrift_http`: a `Batch` struct in TBinaryProtocol, the body of `POST /api/traces`
  (`application/x-thrift`, collector port 14268).
- `decode_jaeger_agent_datagram`: one agent UDP datagram, an `Agent.emitBatch` one-way message in
  TCompactProtocol (port 6831) or TBinaryProtocol (port 6832).

Mapping (the collector's `jaeger` translator):
- one ResourceSpans per batch: `process.serviceName` -> `service.name`, process tags -> resource
  attributes (`hostname` -> `host.name` unless present, `jaeger.version` v ->
  `opencensus.exporterversion` = "Jaeger-v").
- spans are grouped into ScopeSpans by their `otel.library.name` / `otel.library.version` tags (removed
  from the attributes); spans without them share one ScopeSpans with an empty scope.
- IDs: traceIdHigh/traceIdLow (signed i64 on the wire) -> 16 big-endian bytes, spanId -> 8 bytes.
  Parent: `parentSpanId`, else the first CHILD_OF reference of the same trace, else the first
  FOLLOWS_FROM one. Every other reference becomes a link with `opentracing.ref_type` = `child_of` /
  `follows_from`.
- times: startTime/duration microseconds -> ns; a negative startTime or duration, or an end past what
  a uint64 of nanoseconds holds, is refused (the collector would wrap it around).
- flags bit 1 (sampled) -> OTLP span flags 0x01.
- tags keep their type: STRING -> string, BOOL -> bool, LONG -> int, DOUBLE -> double, BINARY -> bytes.
  `span.kind` (client/server/producer/consumer/internal) -> kind; `w3c.tracestate` -> trace_state.
- status: `error=true` (bool) -> ERROR with `otel.status_description` (or `http.status_message`) as
  message; otherwise `otel.status_code` OK/ERROR (+ description); otherwise `http.status_code` (5xx, and
  4xx on CLIENT spans -> ERROR). The tags that produced the status are removed.
- logs -> events at their timestamp; the `event` field is the name, the other fields attributes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import thriftpy2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from thriftpy2.thrift import TMessageType

from tempo_lite.errors import InvalidRequest
from tempo_lite.receivers.thrift_reader import ThriftDecodeError, read_message, read_struct

_IDL_DIR = Path(__file__).with_name("idl")
agent_thrift: Any = thriftpy2.load(
    str(_IDL_DIR / "agent.thrift"), module_name="tempo_lite_agent_thrift", include_dirs=[str(_IDL_DIR)]
)
jaeger_thrift: Any = agent_thrift.jaeger


_TAG_STRING, _TAG_DOUBLE, _TAG_BOOL, _TAG_LONG, _TAG_BINARY = range(5)
_REF_CHILD_OF, _REF_FOLLOWS_FROM = 0, 1
_SAMPLED_FLAG = 1
_OTLP_FLAG_SAMPLED = 0x01

_KINDS = {
    "client": Span.SPAN_KIND_CLIENT,
    "server": Span.SPAN_KIND_SERVER,
    "producer": Span.SPAN_KIND_PRODUCER,
    "consumer": Span.SPAN_KIND_CONSUMER,
    "internal": Span.SPAN_KIND_INTERNAL,
}
_U64 = (1 << 64) - 1


def decode_jaeger_thrift_http(body: bytes) -> ExportTraceServiceRequest:
    """Decode a TBinaryProtocol `Batch` (Jaeger collector HTTP body) into an OTLP export request."""
    try:
        batch = read_struct(body, jaeger_thrift.Batch, compact=False)
    except ThriftDecodeError as exc:
        raise InvalidRequest(f"jaeger thrift: cannot decode Batch: {exc}") from exc
    return batch_to_otlp(batch)


def decode_jaeger_agent_datagram(datagram: bytes, compact: bool) -> ExportTraceServiceRequest:
    """Decode one agent datagram (`Agent.emitBatch`, compact or binary protocol) into an OTLP request."""
    encoding = "compact" if compact else "binary"
    try:
        args = read_message(
            datagram, "emitBatch", (TMessageType.ONEWAY, TMessageType.CALL), agent_thrift.Agent.emitBatch_args,
            compact=compact,
        )
    except ThriftDecodeError as exc:
        raise InvalidRequest(f"jaeger agent ({encoding}): cannot decode emitBatch: {exc}") from exc
    if args.batch is None:
        raise InvalidRequest(f"jaeger agent ({encoding}): emitBatch carries no batch")
    return batch_to_otlp(args.batch)


def batch_to_otlp(batch: Any) -> ExportTraceServiceRequest:
    """Translate a decoded thriftpy2 `Batch` into an OTLP export request (one ResourceSpans)."""
    request = ExportTraceServiceRequest()
    process = batch.process
    spans = batch.spans or []
    if process is None and not spans:
        return request
    resource_spans = request.resource_spans.add()
    if process is not None:
        _process_to_resource(process, resource_spans.resource.attributes)
    scopes: dict[tuple[str, str], Any] = {}
    for index, jspan in enumerate(spans):
        if jspan is None:
            continue
        tags = list(jspan.tags or [])
        scope_key = _take_scope(tags)
        scope_spans = scopes.get(scope_key)
        if scope_spans is None:
            scope_spans = scopes[scope_key] = resource_spans.scope_spans.add()
            if scope_key[0]:
                scope_spans.scope.name = scope_key[0]
            if scope_key[1]:
                scope_spans.scope.version = scope_key[1]
        _span_to_otlp(jspan, tags, index, scope_spans.spans.add())
    return request


def _process_to_resource(process: Any, attrs: Any) -> None:
    service_name = _text(process.serviceName)
    if service_name:
        _put(attrs, "service.name", "string_value", service_name)
    _tags_to_attributes(process.tags or [], attrs)
    keys = {kv.key: i for i, kv in enumerate(attrs)}
    if "hostname" in keys and "host.name" not in keys:
        attrs[keys["hostname"]].key = "host.name"
    if "jaeger.version" in keys and "opencensus.exporterversion" not in keys:
        version = attrs[keys["jaeger.version"]].value
        _put(attrs, "opencensus.exporterversion", "string_value", "Jaeger-" + _as_text(version))
        del attrs[keys["jaeger.version"]]


def _take_scope(tags: list[Any]) -> tuple[str, str]:
    name = _pop_tag_text(tags, "otel.library.name")
    if name is None:
        return ("", "")
    return (name, _pop_tag_text(tags, "otel.library.version") or "")


def _pop_tag_text(tags: list[Any], key: str) -> str | None:
    for i, tag in enumerate(tags):
        if tag is not None and _text(tag.key) == key:
            del tags[i]
            return _text(tag.vStr) if tag.vStr is not None else ""
    return None


def _span_to_otlp(jspan: Any, tags: list[Any], index: int, out: Span) -> None:
    for field in ("traceIdLow", "spanId", "startTime", "duration"):
        if getattr(jspan, field) is None:
            raise InvalidRequest(f"jaeger thrift: span {index} lacks required field {field}")
    trace_high = jspan.traceIdHigh or 0
    out.trace_id = _trace_id(trace_high, jspan.traceIdLow)
    out.span_id = _span_id(jspan.spanId)
    out.name = _text(jspan.operationName)
    out.start_time_unix_nano = _nanos(jspan.startTime, f"span {index} startTime")
    out.end_time_unix_nano = _nanos(jspan.startTime + _micros(jspan.duration, f"span {index} duration"),
                                    f"span {index} startTime + duration")
    if (jspan.flags or 0) & _SAMPLED_FLAG:
        out.flags = _OTLP_FLAG_SAMPLED

    references = [ref for ref in (jspan.references or []) if ref is not None]
    parent = _parent_span_id(jspan, trace_high, references)
    if parent:
        out.parent_span_id = _span_id(parent)

    _tags_to_attributes(tags, out.attributes)
    kind = _pop_attr(out.attributes, "span.kind")
    if kind is not None:
        out.kind = _KINDS.get(_as_text(kind), Span.SPAN_KIND_UNSPECIFIED)
    _set_status(out)
    trace_state = _pop_attr(out.attributes, "w3c.tracestate")
    if trace_state is not None:
        out.trace_state = _as_text(trace_state)

    for log in jspan.logs or []:
        if log is None:
            continue
        event = out.events.add()
        event.time_unix_nano = _nanos(log.timestamp or 0, f"span {index} log timestamp")
        _tags_to_attributes(log.fields or [], event.attributes)
        name = _pop_attr(event.attributes, "event")
        if name is not None:
            event.name = _as_text(name)

    for ref in references:
        if ref.spanId == parent and ref.refType == _REF_CHILD_OF:
            continue
        link = out.links.add()
        link.trace_id = _trace_id(ref.traceIdHigh or 0, ref.traceIdLow or 0)
        link.span_id = _span_id(ref.spanId or 0)
        ref_type = "child_of" if ref.refType == _REF_CHILD_OF else "follows_from"
        _put(link.attributes, "opentracing.ref_type", "string_value", ref_type)


def _parent_span_id(jspan: Any, trace_high: int, references: list[Any]) -> int:
    if jspan.parentSpanId:
        return int(jspan.parentSpanId)
    follows_from = None
    for ref in references:
        if (ref.traceIdHigh or 0) != trace_high or ref.traceIdLow != jspan.traceIdLow:
            continue
        if ref.refType == _REF_CHILD_OF:
            return int(ref.spanId or 0)
        if follows_from is None and ref.refType == _REF_FOLLOWS_FROM:
            follows_from = ref
    return int(follows_from.spanId or 0) if follows_from is not None else 0


def _set_status(out: Span) -> None:
    attrs = out.attributes
    code: int | None = None
    message = ""
    error = _get_attr(attrs, "error")
    if error is not None and error.WhichOneof("value") == "bool_value" and error.bool_value:
        code = Status.STATUS_CODE_ERROR
        _pop_attr(attrs, "error")
        description = _pop_attr(attrs, "otel.status_description")
        if description is not None:
            message = _as_text(description)
        else:
            http_message = _get_attr(attrs, "http.status_message")
            message = _as_text(http_message) if http_message is not None else ""
    status_code = _get_attr(attrs, "otel.status_code")
    if status_code is not None:
        if code is None:
            name = _as_text(status_code).upper()
            code = {"OK": Status.STATUS_CODE_OK, "ERROR": Status.STATUS_CODE_ERROR}.get(name, Status.STATUS_CODE_UNSET)
            description = _pop_attr(attrs, "otel.status_description")
            if description is not None:
                message = _as_text(description)
        _pop_attr(attrs, "otel.status_code")
    elif code is None:
        http_code = _get_attr(attrs, "http.status_code")
        number = _http_code(http_code) if http_code is not None else None
        if number is not None:
            derived = _status_from_http(number, out.kind)
            if derived != Status.STATUS_CODE_UNSET:
                code = derived
            http_message = _get_attr(attrs, "http.status_message")
            if http_message is not None:
                message = _as_text(http_message)
    if code is not None:
        out.status.code = code  # type: ignore[assignment]
        out.status.message = message


def _http_code(value: Any) -> int | None:
    kind = value.WhichOneof("value")
    if kind == "int_value":
        return int(value.int_value)
    if kind == "string_value":
        try:
            return int(value.string_value, 10)
        except ValueError:
            return None
    return None


def _status_from_http(code: int, kind: int) -> int:
    if 400 <= code < 500:
        if kind == Span.SPAN_KIND_CLIENT:
            return Status.STATUS_CODE_ERROR
        if kind == Span.SPAN_KIND_SERVER:
            return Status.STATUS_CODE_UNSET
    if 100 <= code < 399:
        return Status.STATUS_CODE_UNSET
    return Status.STATUS_CODE_ERROR


# ---------------------------------------------------------------------------------------------------
# Values


def _micros(value: int, what: str) -> int:
    if value < 0:
        raise InvalidRequest(f"jaeger thrift: {what} {value} is negative")
    return value


def _nanos(micros: int, what: str) -> int:
    """Microseconds -> nanoseconds, refused unless the result fits the uint64 OTLP field."""
    nanos = _micros(micros, what) * 1000
    if nanos > _U64:
        raise InvalidRequest(f"jaeger thrift: {what} {micros} microseconds is past the largest timestamp")
    return nanos


def _trace_id(high: int, low: int) -> bytes:
    return (high & _U64).to_bytes(8, "big") + (low & _U64).to_bytes(8, "big")


def _span_id(span_id: int) -> bytes:
    return (span_id & _U64).to_bytes(8, "big")


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):  # thriftpy2 hands back bytes when a string is not valid UTF-8
        return value.decode("utf-8", "replace")
    return str(value)


def _tags_to_attributes(tags: list[Any], attrs: Any) -> None:
    """Append typed attributes; a repeated key replaces the earlier value (pcommon.Map.Put semantics)."""
    index = {kv.key: i for i, kv in enumerate(attrs)}
    for tag in tags:
        if tag is None:
            continue
        key = _text(tag.key)
        if key in index:
            kv = attrs[index[key]]
            kv.value.Clear()
        else:
            index[key] = len(attrs)
            kv = attrs.add(key=key)
        vtype = tag.vType
        if vtype == _TAG_STRING:
            kv.value.string_value = _text(tag.vStr)
        elif vtype == _TAG_BOOL:
            kv.value.bool_value = bool(tag.vBool)
        elif vtype == _TAG_LONG:
            kv.value.int_value = int(tag.vLong or 0)
        elif vtype == _TAG_DOUBLE:
            kv.value.double_value = float(tag.vDouble or 0.0)
        elif vtype == _TAG_BINARY:
            raw = tag.vBinary
            kv.value.bytes_value = raw if isinstance(raw, bytes) else _text(raw).encode()
        else:
            kv.value.string_value = f'<Unknown Jaeger TagType "{vtype}">'


def _put(attrs: Any, key: str, field: str, value: Any) -> None:
    kv = attrs.add(key=key)
    setattr(kv.value, field, value)


def _get_attr(attrs: Any, key: str) -> Any:
    for kv in attrs:
        if kv.key == key:
            return kv.value
    return None


def _pop_attr(attrs: Any, key: str) -> Any:
    """Remove the attribute named `key` and return (a copy of) its value, or None."""
    for i, kv in enumerate(attrs):
        if kv.key == key:
            value = type(kv.value)()
            value.CopyFrom(kv.value)
            del attrs[i]
            return value
    return None


def _as_text(value: Any) -> str:
    """An attribute value as the collector's `.Str()` would see it (non-strings give "")."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return str(value.string_value)
    return ""


__all__ = [
    "agent_thrift",
    "batch_to_otlp",
    "decode_jaeger_agent_datagram",
    "decode_jaeger_thrift_http",
    "jaeger_thrift",
]

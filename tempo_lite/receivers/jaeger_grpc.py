"""Jaeger gRPC (`jaeger.api_v2.CollectorService/PostSpans`, Jaeger's default port 14250) to OTLP.

The request is a `jaeger.api_v2.PostSpansRequest` (classes generated from proto/jaeger_api_v2.proto).
The Jaeger model is the same in protobuf and in Thrift, and the OpenTelemetry Collector translates both
alike, so each span is rewritten as its Thrift struct and translated by `jaeger.batch_to_otlp`, the one
Jaeger translator. Two things differ from Thrift and are handled here:

* a span may carry its own `process`, which wins over the batch's: spans are grouped by the process
  that applies to them, one ResourceSpans per group;
* times are `Timestamp`/`Duration` with nanoseconds (Thrift has microseconds): start, end and log
  times are set from them after translation, so nothing is rounded.

`decode_post_spans` is pure; `jaeger_grpc_app` is the ASGI app (on the shared gRPC adapter).
"""

from __future__ import annotations

from typing import Any

import trio
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tempo_lite._gen import jaeger_api_v2_pb2 as jpb
from tempo_lite.errors import InvalidRequest
from tempo_lite.grpc_server import GrpcCall, UnaryMethod, grpc_app
from tempo_lite.receivers import PushFn
from tempo_lite.receivers.http_ingest import INLINE_PROTOBUF_BYTES, INLINE_PYTHON_DECODE_BYTES, decode_limiter
from tempo_lite.receivers.jaeger import batch_to_otlp, jaeger_thrift
from tempo_lite.server import ASGIApp

POST_SPANS_METHOD = "/jaeger.api_v2.CollectorService/PostSpans"
TENANT_METADATA = "x-scope-orgid"
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024

# protobuf ValueType -> Thrift TagType (STRING=0, DOUBLE=1, BOOL=2, LONG=3, BINARY=4)
_TAG_TYPES = {jpb.STRING: 0, jpb.FLOAT64: 1, jpb.BOOL: 2, jpb.INT64: 3, jpb.BINARY: 4}


def decode_post_spans(request: jpb.PostSpansRequest) -> ExportTraceServiceRequest:
    """Translate a PostSpans request into one OTLP export request."""
    batch = request.batch
    groups: dict[bytes, tuple[jpb.Process | None, list[tuple[int, jpb.Span]]]] = {}
    for index, span in enumerate(batch.spans):
        process = span.process if span.HasField("process") else (batch.process if batch.HasField("process") else None)
        key = process.SerializeToString(deterministic=True) if process is not None else b"\xff"
        groups.setdefault(key, (process, []))[1].append((index, span))
    out = ExportTraceServiceRequest()
    for process, spans in groups.values():
        thrift_batch = jaeger_thrift.Batch(
            process=_process(process) if process is not None else None,
            spans=[_span(span, index) for index, span in spans],
        )
        part = batch_to_otlp(thrift_batch)
        _restore_nanoseconds(part, [span for _, span in spans])
        out.resource_spans.extend(part.resource_spans)
    return out


def _process(process: jpb.Process) -> Any:
    return jaeger_thrift.Process(serviceName=process.service_name, tags=[_tag(t) for t in process.tags])


def _tag(kv: jpb.KeyValue) -> Any:
    tag = jaeger_thrift.Tag(key=kv.key, vType=_TAG_TYPES.get(kv.v_type, kv.v_type))
    if kv.v_type == jpb.STRING:
        tag.vStr = kv.v_str
    elif kv.v_type == jpb.BOOL:
        tag.vBool = kv.v_bool
    elif kv.v_type == jpb.INT64:
        tag.vLong = kv.v_int64
    elif kv.v_type == jpb.FLOAT64:
        tag.vDouble = kv.v_float64
    elif kv.v_type == jpb.BINARY:
        tag.vBinary = kv.v_binary
    return tag


def _signed(raw: bytes) -> int:
    return int.from_bytes(raw, "big", signed=True)


def _ids(trace_id: bytes, span_id: bytes, what: str) -> tuple[int, int, int]:
    if len(trace_id) != 16:
        raise InvalidRequest(f"jaeger grpc: {what}: trace_id must be 16 bytes, got {len(trace_id)}")
    if len(span_id) != 8:
        raise InvalidRequest(f"jaeger grpc: {what}: span_id must be 8 bytes, got {len(span_id)}")
    return _signed(trace_id[:8]), _signed(trace_id[8:]), _signed(span_id)


def _micros(seconds: int, nanos: int) -> int:
    return seconds * 1_000_000 + nanos // 1000


def _span(span: jpb.Span, index: int) -> Any:
    high, low, span_id = _ids(span.trace_id, span.span_id, f"span {index}")
    refs = []
    for ref in span.references:
        r_high, r_low, r_span = _ids(ref.trace_id, ref.span_id, f"span {index} reference")
        refs.append(jaeger_thrift.SpanRef(refType=int(ref.ref_type), traceIdLow=r_low, traceIdHigh=r_high,
                                          spanId=r_span))
    return jaeger_thrift.Span(
        traceIdLow=low, traceIdHigh=high, spanId=span_id, parentSpanId=0, operationName=span.operation_name,
        references=refs, flags=span.flags,
        startTime=_micros(span.start_time.seconds, span.start_time.nanos),
        duration=_micros(span.duration.seconds, span.duration.nanos),
        tags=[_tag(t) for t in span.tags],
        logs=[jaeger_thrift.Log(timestamp=_micros(log.timestamp.seconds, log.timestamp.nanos),
                                fields=[_tag(f) for f in log.fields]) for log in span.logs],
    )


def _restore_nanoseconds(part: ExportTraceServiceRequest, spans: list[jpb.Span]) -> None:
    """Set exact start/end/log times on the translated spans, matched by (trace ID, span ID) in order."""
    exact: dict[tuple[bytes, bytes], list[jpb.Span]] = {}
    for span in spans:
        exact.setdefault((span.trace_id, span.span_id), []).append(span)
    for rs in part.resource_spans:
        for ss in rs.scope_spans:
            for out in ss.spans:
                span = exact[(out.trace_id, out.span_id)].pop(0)
                start = span.start_time.seconds * 1_000_000_000 + span.start_time.nanos
                out.start_time_unix_nano = start
                out.end_time_unix_nano = start + span.duration.seconds * 1_000_000_000 + span.duration.nanos
                for event, log in zip(out.events, span.logs, strict=True):
                    event.time_unix_nano = log.timestamp.seconds * 1_000_000_000 + log.timestamp.nanos


def jaeger_grpc_app(
    push: PushFn, *, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, limiter: trio.CapacityLimiter | None = None,
) -> ASGIApp:
    """ASGI app for `PostSpans`.

    As in the other ingest receivers, large work leaves the event loop under `limiter` (the decoding
    threads every ingest listener shares; its own when None): messages over 64 KiB, or compressed, are
    parsed in a worker thread by the gRPC adapter, and messages over 4 KiB are translated to OTLP (pure
    Python, about a millisecond per 4 KiB) in a worker thread.
    """
    threads = limiter or decode_limiter()

    async def post_spans(request: jpb.PostSpansRequest, call: GrpcCall) -> jpb.PostSpansResponse:
        if call.message_bytes <= INLINE_PYTHON_DECODE_BYTES:
            otlp = decode_post_spans(request)
        else:
            otlp = await trio.to_thread.run_sync(decode_post_spans, request, limiter=threads)
        await push(call.metadata.get(TENANT_METADATA) or None, otlp, call.message_bytes)
        return jpb.PostSpansResponse()

    return grpc_app({POST_SPANS_METHOD: UnaryMethod(jpb.PostSpansRequest, post_spans)},
                    max_message_bytes=max_message_bytes, limiter=threads, inline_bytes=INLINE_PROTOBUF_BYTES)

"""Jaeger gRPC receiver (`jaeger.api_v2.CollectorService/PostSpans`): real jaeger-client spans, converted
to Jaeger's protobuf model the way the Jaeger agent forwards them, sent with the client stub generated
from Jaeger's proto (tempo_lite/_gen/jaeger_api_v2_pb2_grpc.py), translate exactly as the Thrift path
does, keep nanoseconds, honour per-span processes, and refuse bad IDs with INVALID_ARGUMENT."""

from __future__ import annotations

import grpc
import httpx
import pytest
import trio
from conftest import start_tempo, tempo_config_text
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from jaeger_client.thrift_gen.jaeger import ttypes
from test_receiver_jaeger import check_workload, in_memory_batch, serialize
from test_receivers_e2e import fetch, span_list
from thrift.protocol import TBinaryProtocol

from tempo_lite._gen import jaeger_api_v2_pb2 as jpb
from tempo_lite._gen.jaeger_api_v2_pb2_grpc import CollectorServiceStub
from tempo_lite.errors import InvalidRequest
from tempo_lite.receivers.jaeger import decode_jaeger_thrift_http
from tempo_lite.receivers.jaeger_grpc import decode_post_spans

_VALUE_TYPES = {ttypes.TagType.STRING: jpb.STRING, ttypes.TagType.BOOL: jpb.BOOL, ttypes.TagType.LONG: jpb.INT64,
                ttypes.TagType.DOUBLE: jpb.FLOAT64, ttypes.TagType.BINARY: jpb.BINARY}


def _kv(tag: ttypes.Tag) -> jpb.KeyValue:
    kv = jpb.KeyValue(key=tag.key, v_type=_VALUE_TYPES[tag.vType])
    if tag.vType == ttypes.TagType.STRING:
        kv.v_str = tag.vStr
    elif tag.vType == ttypes.TagType.BOOL:
        kv.v_bool = tag.vBool
    elif tag.vType == ttypes.TagType.LONG:
        kv.v_int64 = tag.vLong
    elif tag.vType == ttypes.TagType.DOUBLE:
        kv.v_float64 = tag.vDouble
    else:
        kv.v_binary = tag.vBinary.encode() if isinstance(tag.vBinary, str) else tag.vBinary
    return kv


def _id(value: int, size: int) -> bytes:
    return (value & ((1 << (8 * size)) - 1)).to_bytes(size, "big")


def _time(micros: int) -> Timestamp:
    return Timestamp(seconds=micros // 1_000_000, nanos=micros % 1_000_000 * 1000)


def as_proto(batch: ttypes.Batch) -> jpb.PostSpansRequest:
    """What the Jaeger agent sends the collector for a Thrift batch (its thrift -> proto model conversion)."""
    out = jpb.PostSpansRequest()
    out.batch.process.service_name = batch.process.serviceName
    out.batch.process.tags.extend(_kv(t) for t in batch.process.tags)
    for s in batch.spans:
        span = out.batch.spans.add(
            trace_id=_id(s.traceIdHigh, 8) + _id(s.traceIdLow, 8), span_id=_id(s.spanId, 8),
            operation_name=s.operationName, flags=s.flags, start_time=_time(s.startTime),
            duration=Duration(seconds=s.duration // 1_000_000, nanos=s.duration % 1_000_000 * 1000),
            tags=[_kv(t) for t in s.tags or []],
            logs=[jpb.Log(timestamp=_time(log.timestamp), fields=[_kv(f) for f in log.fields]) for log in s.logs or []],
        )
        refs = list(s.references or [])
        if s.parentSpanId and not any(r.spanId == s.parentSpanId for r in refs):
            refs.insert(0, ttypes.SpanRef(ttypes.SpanRefType.CHILD_OF, s.traceIdLow, s.traceIdHigh, s.parentSpanId))
        for r in refs:
            span.references.add(trace_id=_id(r.traceIdHigh, 8) + _id(r.traceIdLow, 8), span_id=_id(r.spanId, 8),
                                ref_type=jpb.CHILD_OF if r.refType == ttypes.SpanRefType.CHILD_OF else jpb.FOLLOWS_FROM)
    return out


def test_protobuf_batch_translates_like_the_thrift_batch() -> None:
    batch, spans = in_memory_batch()
    request = decode_post_spans(as_proto(batch))
    check_workload(request, spans, "orders")
    assert request == decode_jaeger_thrift_http(serialize(batch, TBinaryProtocol.TBinaryProtocolFactory()))


def test_nanoseconds_and_per_span_process_are_kept() -> None:
    trace_id, sid = bytes(range(1, 17)), bytes(range(1, 9))
    req = jpb.PostSpansRequest()
    req.batch.process.service_name = "batch-svc"
    req.batch.spans.add(trace_id=trace_id, span_id=sid, operation_name="a", start_time=Timestamp(seconds=5, nanos=7),
                        duration=Duration(nanos=1_500), logs=[jpb.Log(timestamp=Timestamp(seconds=5, nanos=9))])
    own = req.batch.spans.add(trace_id=trace_id, span_id=bytes(range(2, 10)), operation_name="b",
                              start_time=Timestamp(seconds=6))
    own.process.service_name = "span-svc"
    own.process.tags.add(key="pod", v_type=jpb.INT64, v_int64=3)
    out = decode_post_spans(req)
    by_service = {rs.resource.attributes[0].value.string_value: rs for rs in out.resource_spans}
    assert set(by_service) == {"batch-svc", "span-svc"}
    (a,) = by_service["batch-svc"].scope_spans[0].spans
    assert (a.start_time_unix_nano, a.end_time_unix_nano) == (5_000_000_007, 5_000_001_507)
    assert a.events[0].time_unix_nano == 5_000_000_009
    pod = [kv for kv in by_service["span-svc"].resource.attributes if kv.key == "pod"]
    assert pod[0].value.int_value == 3


@pytest.mark.parametrize(("trace_id", "span_id"), [(b"\x01" * 8, b"\x01" * 8), (b"\x01" * 16, b"\x01" * 4)])
def test_ids_of_the_wrong_length_are_refused(trace_id: bytes, span_id: bytes) -> None:
    req = jpb.PostSpansRequest()
    req.batch.spans.add(trace_id=trace_id, span_id=span_id)
    with pytest.raises(InvalidRequest, match="must be"):
        decode_post_spans(req)


@pytest.mark.slow
async def test_generated_jaeger_client_posts_spans_over_grpc(nursery: trio.Nursery, tmp_path,  # noqa: ANN001
                                                             http: httpx.AsyncClient) -> None:
    config = tempo_config_text(tmp_path, """
        multitenancy_enabled: true
        distributor:
          receivers:
            jaeger:
              protocols:
                grpc: {endpoint: "127.0.0.1:0"}
    """)
    tempo = await start_tempo(nursery, config)
    host, port = tempo.tl.listeners.addresses["jaeger_grpc"]
    batch, spans = in_memory_batch("jaeger-grpc")
    request = as_proto(batch)

    def post(req: jpb.PostSpansRequest, tenant: str | None) -> grpc.StatusCode:
        with grpc.insecure_channel(f"{host}:{port}") as channel:
            try:
                CollectorServiceStub(channel).PostSpans(req, timeout=20,
                                                        metadata=(("x-scope-orgid", tenant),) if tenant else ())
            except grpc.RpcError as exc:
                return exc.code()
        return grpc.StatusCode.OK

    assert await trio.to_thread.run_sync(post, request, "t1") == grpc.StatusCode.OK
    trace_hex = format(spans["root"].trace_id, "032x")
    got = span_list(await fetch(http, tempo, trace_hex, 3, headers={"X-Scope-OrgID": "t1"}))
    assert {s.name for s in got} == {"GET /orders", "SELECT orders", "consume"}  # "enqueue" is its own trace
    assert await trio.to_thread.run_sync(post, request, None) == grpc.StatusCode.UNAUTHENTICATED
    bad = jpb.PostSpansRequest()
    bad.batch.spans.add(trace_id=b"\x01" * 3, span_id=b"\x01" * 8)
    assert await trio.to_thread.run_sync(post, bad, "t1") == grpc.StatusCode.INVALID_ARGUMENT
    await tempo.stop()


def test_jaeger_grpc_is_off_by_default() -> None:
    from tempo_lite.config import load_config_text

    assert load_config_text("distributor:\n  receivers:\n    jaeger: {}\n", "x").distributor.receivers.jaeger \
        .protocols.grpc is None

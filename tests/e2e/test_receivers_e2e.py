"""Every receiver feeds the same distributor: real clients' spans round-trip through trace by ID, and bad
input for each protocol gets its documented answer."""

from __future__ import annotations

import grpc
import httpx
import pytest
import trio
from conftest import Running, start_tempo, tempo_config_text
from jaeger_client import Config
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.zipkin.json import ZipkinExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData
from opentelemetry.sdk.trace.export import SpanExportResult
from otlp_helpers import by_trace, encoded, normalize, sdk_spans
from test_receiver_jaeger import in_memory_batch, serialize
from thrift.protocol import TBinaryProtocol


async def fetch(http: httpx.AsyncClient, tempo: Running, trace_hex: str, spans: int,
                headers: dict | None = None) -> TracesData:
    """Trace by ID (protobuf), waiting until `spans` spans are there."""
    with trio.fail_after(15):
        while True:
            r = await http.get(f"{tempo.url()}/api/traces/{trace_hex}",
                               headers={"Accept": "application/protobuf", **(headers or {})})
            if r.status_code == 200:
                data = TracesData.FromString(r.content)
                if sum(len(ss.spans) for rs in data.resource_spans for ss in rs.scope_spans) >= spans:
                    return data
            await trio.sleep(0.02)


def span_list(data: TracesData) -> list:
    return [s for rs in data.resource_spans for ss in rs.scope_spans for s in ss.spans]


@pytest.mark.parametrize("gzip", [False, True])
async def test_otlp_grpc_exporter_round_trip(tempo: Running, http: httpx.AsyncClient, gzip: bool) -> None:
    host, port = tempo.tl.listeners.addresses["otlp_grpc"]
    spans = sdk_spans("grpc-svc")
    exporter = GrpcExporter(endpoint=f"{host}:{port}", insecure=True,
                            compression=grpc.Compression.Gzip if gzip else grpc.Compression.NoCompression)
    try:
        assert await trio.to_thread.run_sync(exporter.export, spans) == SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
    ((trace_id, want),) = by_trace(encoded(spans)).items()
    got = await fetch(http, tempo, trace_id.hex(), len(spans))
    assert normalize(got) == want


async def test_otlp_grpc_invalid_ids_and_tenancy(nursery: trio.Nursery, tmp_path) -> None:  # noqa: ANN001
    running = await start_tempo(nursery, tempo_config_text(tmp_path, "multitenancy_enabled: true\n"))
    host, port = running.tl.listeners.addresses["otlp_grpc"]

    def call(request: ExportTraceServiceRequest, metadata: tuple = ()) -> grpc.StatusCode:
        with grpc.insecure_channel(f"{host}:{port}") as channel:
            export = channel.unary_unary(
                "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                request_serializer=ExportTraceServiceRequest.SerializeToString,
                response_deserializer=ExportTraceServiceResponse.FromString,
            )
            try:
                export(request, metadata=metadata, timeout=10)
            except grpc.RpcError as exc:
                return exc.code()
            return grpc.StatusCode.OK

    good = ExportTraceServiceRequest()
    sp = good.resource_spans.add().scope_spans.add().spans.add(trace_id=b"\x01" * 16, span_id=b"\x02" * 8)
    bad = ExportTraceServiceRequest()
    bad.CopyFrom(good)
    bad.resource_spans[0].scope_spans[0].spans[0].trace_id = b"\x01" * 8
    try:
        assert await trio.to_thread.run_sync(call, good) == grpc.StatusCode.UNAUTHENTICATED
        assert await trio.to_thread.run_sync(call, bad, (("x-scope-orgid", "t1"),)) == grpc.StatusCode.INVALID_ARGUMENT
        assert await trio.to_thread.run_sync(call, good, (("x-scope-orgid", "t1"),)) == grpc.StatusCode.OK
    finally:
        await running.stop()
    del sp


@pytest.mark.parametrize("version", ["v2", "v1"])
async def test_zipkin_exporter_round_trip(tempo: Running, http: httpx.AsyncClient, version: str) -> None:
    from opentelemetry.exporter.zipkin.encoder import Protocol

    spans = sdk_spans("zipkin-svc")
    exporter = ZipkinExporter(
        version=Protocol.V2 if version == "v2" else Protocol.V1,
        endpoint=f"{tempo.url('zipkin')}/api/{version}/spans", max_tag_value_length=256,
    )
    assert await trio.to_thread.run_sync(exporter.export, spans) == SpanExportResult.SUCCESS
    trace_hex = format(spans[0].context.trace_id, "032x")
    got = span_list(await fetch(http, tempo, trace_hex, len(spans)))
    by_name = {s.name: s for s in got}
    assert set(by_name) == {s.name for s in spans}
    for s in spans:
        g = by_name[s.name]
        assert g.span_id == s.context.span_id.to_bytes(8, "big")
        assert abs(g.start_time_unix_nano - s.start_time) < 1000  # Zipkin carries microseconds
    svc = {kv.key: kv.value.string_value for rs in (await fetch(http, tempo, trace_hex, 1)).resource_spans
           for kv in rs.resource.attributes}
    assert svc["service.name"] == "zipkin-svc"


async def test_zipkin_bad_input(tempo: Running, http: httpx.AsyncClient) -> None:
    url = tempo.url("zipkin") + "/api/v2/spans"
    r = await http.post(url, content=b"[{", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.text
    r = await http.post(url, json=[{"traceId": "zz", "id": "1"}])
    assert r.status_code == 400
    r = await http.post(url, content=b"\x00", headers={"Content-Type": "application/x-protobuf"})
    assert r.status_code == 400 and "cannot decode ListOfSpans" in r.text  # protobuf v2 is decoded
    r = await http.post(url, content=b"[]", headers={"Content-Type": "application/xml"})
    assert r.status_code == 415
    r = await http.post(url, json=[])
    assert r.status_code == 202


async def test_jaeger_thrift_http_round_trip(tempo: Running, http: httpx.AsyncClient) -> None:
    batch, spans = in_memory_batch("jaeger-http")
    body = serialize(batch, TBinaryProtocol.TBinaryProtocolFactory())
    r = await http.post(tempo.url("jaeger_thrift_http") + "/api/traces", content=body,
                        headers={"Content-Type": "application/x-thrift"})
    assert r.status_code == 202, r.text
    root = spans["root"]
    trace_hex = format(root.trace_id, "032x")
    in_trace = [s for s in batch.spans if s.traceIdLow == root.trace_id & ((1 << 64) - 1)
                or s.traceIdLow == (root.trace_id & ((1 << 64) - 1)) - (1 << 64)]
    got = span_list(await fetch(http, tempo, trace_hex, len(in_trace)))
    assert {s.name for s in got} == {s.operationName for s in in_trace}
    r = await http.post(tempo.url("jaeger_thrift_http") + "/api/traces", content=b"\x0c\x00\x01garbage",
                        headers={"Content-Type": "application/x-thrift"})
    assert r.status_code == 400
    r = await http.post(tempo.url("jaeger_thrift_http") + "/api/traces", content=body,
                        headers={"Content-Type": "application/json"})
    assert r.status_code == 415


async def test_jaeger_client_udp_round_trip(tempo: Running, http: httpx.AsyncClient) -> None:
    host, port = tempo.tl.listeners.addresses["jaeger_thrift_compact"]
    config = Config(config={"sampler": {"type": "const", "param": 1},
                            "local_agent": {"reporting_host": host, "reporting_port": port},
                            "generate_128bit_trace_id": True, "reporter_flush_interval": 0.05, "logging": False},
                    service_name="jaeger-udp", validate=True)
    tracer = config.new_tracer()
    with tracer.start_active_span("parent") as parent, tracer.start_active_span("child"):
        trace_id = parent.span.trace_id
    closing = tracer.close()
    with trio.fail_after(10):
        while not closing.done():
            await trio.sleep(0.01)
    got = span_list(await fetch(http, tempo, format(trace_id, "032x"), 2))
    assert sorted(s.name for s in got) == ["child", "parent"]

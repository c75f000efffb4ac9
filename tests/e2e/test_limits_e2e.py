"""Per-tenant limits from `overrides`, the same for every receiver: rate limit (429 / RESOURCE_EXHAUSTED),
max bytes per trace (spans beyond refused, the rest kept), max attribute bytes (values truncated)."""

from __future__ import annotations

from pathlib import Path

import grpc
import httpx
import trio
from conftest import Running, start_tempo, tempo_config_text
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

PB = {"Content-Type": "application/x-protobuf"}


def request(trace_id: bytes, spans: int, value: str = "v", first: int = 1) -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    ss = req.resource_spans.add().scope_spans.add()
    for i in range(first, first + spans):
        sp = ss.spans.add(trace_id=trace_id, span_id=i.to_bytes(8, "big"), name=f"s{i}")
        sp.attributes.add(key="payload").value.string_value = value
    return req


async def limited(nursery: trio.Nursery, tmp_path: Path, overrides: str) -> Running:
    return await start_tempo(nursery, tempo_config_text(tmp_path, overrides))


async def test_rate_limit_answers_429_with_retry_after_and_counts_discarded(
    nursery: trio.Nursery, tmp_path: Path, http: httpx.AsyncClient
) -> None:
    running = await limited(nursery, tmp_path, """
        overrides:
          defaults:
            ingestion: {rate_limit_bytes: 100, burst_size_bytes: 2000}
          tenants:
            generous: {ingestion: {rate_limit_bytes: 100000000, burst_size_bytes: 100000000}}
        multitenancy_enabled: true
        """)
    try:
        body = request(b"\x01" * 16, 10, "x" * 100).SerializeToString()
        assert 1000 < len(body) < 2000
        url = running.url("otlp_http") + "/v1/traces"
        assert (await http.post(url, content=body, headers={**PB, "X-Scope-OrgID": "t"})).status_code == 200
        r = await http.post(url, content=body, headers={**PB, "X-Scope-OrgID": "t"})
        assert r.status_code == 429
        assert int(r.headers["Retry-After"]) >= 1
        # Another tenant has its own bucket and its own overrides.
        for _ in range(3):
            assert (await http.post(url, content=body, headers={**PB, "X-Scope-OrgID": "generous"})).status_code == 200
        metrics = (await http.get(running.url() + "/metrics")).text
        assert 'tempo_discarded_spans_total{reason="rate_limited",tenant="t"} 10.0' in metrics
        assert 'tempo_distributor_requests_refused_total{reason="RateLimited"} 1.0' in metrics

        host, port = running.tl.listeners.addresses["otlp_grpc"]

        def grpc_call() -> grpc.StatusCode:
            with grpc.insecure_channel(f"{host}:{port}") as channel:
                export = channel.unary_unary(
                    "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                    request_serializer=ExportTraceServiceRequest.SerializeToString,
                    response_deserializer=ExportTraceServiceResponse.FromString,
                )
                try:
                    export(request(b"\x02" * 16, 10, "x" * 100), metadata=(("x-scope-orgid", "t"),), timeout=10)
                except grpc.RpcError as exc:
                    return exc.code()
                return grpc.StatusCode.OK

        assert await trio.to_thread.run_sync(grpc_call) == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        await running.stop()


async def test_trace_size_and_attribute_limits(nursery: trio.Nursery, tmp_path: Path, http: httpx.AsyncClient) -> None:
    running = await limited(nursery, tmp_path, """
        overrides:
          defaults:
            global: {max_bytes_per_trace: 700}
            max_attribute_bytes: 16
        """)
    try:
        url = running.url("otlp_http") + "/v1/traces"
        tid = b"\x03" * 16
        r = await http.post(url, content=request(tid, 5, "y" * 40).SerializeToString(), headers=PB)
        assert r.status_code == 200
        r = await http.post(url, content=request(tid, 20, "z", first=6).SerializeToString(), headers=PB)
        assert r.status_code == 200
        end = await running.tl.wal.end_offset(0)
        with trio.fail_after(10):
            while running.tl.livestore.consumed[0] < end:
                await trio.sleep(0.01)
            while (resp := await http.get(f"{running.url()}/api/traces/{tid.hex()}",
                                          headers={"Accept": "application/protobuf"})).status_code != 200:
                await trio.sleep(0.02)
        spans = [s for rs in TracesData.FromString(resp.content).resource_spans for ss in rs.scope_spans
                 for s in ss.spans]
        names = sorted(int(s.name[1:]) for s in spans)
        # The first spans are kept in order; those past 700 bytes of this trace are refused.
        assert names == list(range(1, len(names) + 1)) and 5 < len(names) < 25
        for s in spans:
            value = s.attributes[0].value.string_value
            assert value in ("y" * 16, "z")
        metrics = (await http.get(running.url() + "/metrics")).text
        assert f'tempo_discarded_spans_total{{reason="trace_too_large",tenant="single-tenant"}} {25.0 - len(names)}' \
            in metrics
        assert 'tempo_distributor_attributes_truncated_total{tenant="single-tenant"} 5.0' in metrics
    finally:
        await running.stop()

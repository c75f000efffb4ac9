"""Spans that share a span ID are distinct spans: all come back, from memory and from blocks; only
copies of one span (a retried push, a replay) are dropped."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import trio
from conftest import start_tempo, tempo_config_text
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, TracesData

PB = {"Content-Type": "application/x-protobuf"}
START = 1_700_000_000_000_000_000


def three_spans_sharing_one_id(trace_id: bytes) -> bytes:
    req = ExportTraceServiceRequest()
    spans = req.resource_spans.add().scope_spans.add().spans
    span_id = os.urandom(8)
    for i, kind in enumerate((Span.SPAN_KIND_SERVER, Span.SPAN_KIND_CLIENT, Span.SPAN_KIND_SERVER)):
        spans.add(trace_id=trace_id, span_id=span_id, name=f"s{i}", kind=kind,
                  start_time_unix_nano=START + i * 1000, end_time_unix_nano=START + i * 1000 + 500)
    return req.SerializeToString()


async def names(http: httpx.AsyncClient, url: str, trace_id: bytes) -> list[str]:
    r = await http.get(f"{url}/api/traces/{trace_id.hex()}", headers={"Accept": "application/protobuf"})
    assert r.status_code == 200
    data = TracesData.FromString(r.content)
    return sorted(s.name for rs in data.resource_spans for ss in rs.scope_spans for s in ss.spans)


async def test_three_spans_sharing_one_span_id_all_come_back_and_a_retry_adds_no_copies(
    nursery: trio.Nursery, tmp_path: Path, http: httpx.AsyncClient
) -> None:
    config = tempo_config_text(tmp_path)
    trace_id = os.urandom(16)
    body = three_spans_sharing_one_id(trace_id)
    tempo = await start_tempo(nursery, config)
    for _ in range(2):  # the second push is a client retry of the first: exact copies
        assert (await http.post(tempo.url("otlp_http") + "/v1/traces", content=body, headers=PB)).status_code == 200
    assert await names(http, tempo.url(), trace_id) == ["s0", "s1", "s2"]
    await tempo.stop()  # flushes every span into a block

    tempo = await start_tempo(nursery, config)
    assert tempo.tl.livestore.nbytes == 0 and list((tmp_path / "blocks").rglob("meta.json"))
    assert await names(http, tempo.url(), trace_id) == ["s0", "s1", "s2"]
    await tempo.stop()

"""Spans exported by the OpenTelemetry SDK over OTLP/HTTP come back from trace by ID exactly as sent,
from the live-store and again from a block, in JSON and in protobuf, v1 and v2."""

from __future__ import annotations

import base64
import json

import httpx
import pytest
import trio
from conftest import Running
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData
from opentelemetry.sdk.trace.export import SpanExportResult
from otlp_helpers import by_trace, encoded, normalize, sdk_spans

from tempo_lite._gen import tempopb_pb2


async def export(tempo: Running, spans, compression=Compression.NoCompression) -> SpanExportResult:  # noqa: ANN001
    exporter = OTLPSpanExporter(endpoint=tempo.url("otlp_http") + "/v1/traces", compression=compression)
    try:
        return await trio.to_thread.run_sync(exporter.export, spans)
    finally:
        exporter.shutdown()


async def wait_for_trace(http: httpx.AsyncClient, tempo: Running, trace_hex: str) -> None:
    with trio.fail_after(10):
        while (await http.get(f"{tempo.url()}/api/traces/{trace_hex}")).status_code != 200:
            await trio.sleep(0.02)


async def fetch_all_forms(http: httpx.AsyncClient, tempo: Running, trace_hex: str) -> list[TracesData]:
    """The trace as v1 protobuf, v1 JSON, v2 protobuf and v2 JSON, each parsed into TracesData."""
    base = tempo.url()
    proto = {"Accept": "application/protobuf"}
    forms = []
    r = await http.get(f"{base}/api/traces/{trace_hex}", headers=proto)
    assert r.status_code == 200 and r.headers["content-type"] == "application/protobuf"
    forms.append(TracesData.FromString(r.content))
    r = await http.get(f"{base}/api/traces/{trace_hex}")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    doc = r.json()
    assert set(doc) == {"batches"}
    forms.append(json_format.ParseDict({"resourceSpans": doc["batches"]}, TracesData()))
    r = await http.get(f"{base}/api/v2/traces/{trace_hex}", headers=proto)
    assert r.status_code == 200
    v2 = tempopb_pb2.TraceByIDResponse.FromString(r.content)
    assert v2.status == tempopb_pb2.COMPLETE
    forms.append(TracesData.FromString(v2.trace))
    r = await http.get(f"{base}/api/v2/traces/{trace_hex}")
    doc = r.json()
    assert "trace" in doc and int(doc["metrics"]["inspectedBytes"]) > 0
    forms.append(json_format.ParseDict(doc["trace"], TracesData()))
    return forms


async def test_sdk_spans_round_trip_from_live_store_and_block(tempo: Running, http: httpx.AsyncClient) -> None:
    spans = sdk_spans(traces=2)
    assert await export(tempo, spans) == SpanExportResult.SUCCESS
    expected = by_trace(encoded(spans))
    assert len(expected) == 2
    for trace_id, want in expected.items():
        await wait_for_trace(http, tempo, trace_id.hex())
        for got in await fetch_all_forms(http, tempo, trace_id.hex()):
            assert normalize(got) == want

    # Flush to a block and drop the live copy: the same answers must now come from the block.
    assert await tempo.tl.blockbuilder.flush_all() == 1
    tempo.tl.livestore.complete_block_timeout = 0
    tempo.tl.livestore.expire()
    for trace_id, want in expected.items():
        assert tempo.tl.livestore.find_trace("single-tenant", trace_id) is None
        for got in await fetch_all_forms(http, tempo, trace_id.hex()):
            assert normalize(got) == want


async def test_json_ids_are_base64_and_int64_are_strings(tempo: Running, http: httpx.AsyncClient) -> None:
    spans = sdk_spans()
    assert await export(tempo, spans, Compression.Gzip) == SpanExportResult.SUCCESS
    trace_id = spans[0].context.trace_id.to_bytes(16, "big")
    await wait_for_trace(http, tempo, trace_id.hex().upper())
    doc = (await http.get(f"{tempo.url()}/api/traces/{trace_id.hex()}")).json()
    span = doc["batches"][0]["scopeSpans"][0]["spans"][0]
    assert base64.b64decode(span["traceId"]) == trace_id
    assert isinstance(span["startTimeUnixNano"], str)
    assert span["kind"].startswith("SPAN_KIND_")
    assert "status" in span


async def test_otlp_json_with_hex_ids_and_nested_maps(tempo: Running, http: httpx.AsyncClient) -> None:
    body = {
        "resourceSpans": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "curl"}}]},
            "scopeSpans": [{"spans": [{
                "traceId": "5B8EFFF798038103D269B633813FC60C", "spanId": "EEE19B7EC3C1B174",
                "name": "I am a span!", "kind": 2,
                "startTimeUnixNano": "1689969302000000000", "endTimeUnixNano": 1689970000000000000,
                "attributes": [
                    {"key": "map", "value": {"kvlistValue": {"values": [
                        {"key": "inner", "value": {"arrayValue": {"values": [{"intValue": "7"}]}}}]}}},
                    {"key": "bytes", "value": {"bytesValue": base64.b64encode(b"\x00\x01").decode()}},
                ],
            }]}],
        }]
    }
    r = await http.post(f"{tempo.url('otlp_http')}/v1/traces", json=body)
    assert r.status_code == 200 and r.json() == {}
    await wait_for_trace(http, tempo, "5b8efff798038103d269b633813fc60c")
    r = await http.get(f"{tempo.url()}/api/traces/5b8efff798038103d269b633813fc60c",
                       headers={"Accept": "application/protobuf"})
    span = TracesData.FromString(r.content).resource_spans[0].scope_spans[0].spans[0]
    assert span.span_id.hex() == "eee19b7ec3c1b174"
    attrs = {kv.key: kv.value for kv in span.attributes}
    assert attrs["map"].kvlist_value.values[0].value.array_value.values[0].int_value == 7
    assert attrs["bytes"].bytes_value == b"\x00\x01"


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/traces/zz", 400),
        ("/api/traces/" + "a" * 33, 400),
        ("/api/traces/00000000000000000000000000000000", 404),  # Tempo pads and looks up short/zero IDs
        ("/api/traces/abcdef", 404),
        ("/api/v2/traces/abcdef", 404),
        ("/api/traces/abcdef?start=20&end=10", 400),
    ],
)
async def test_trace_by_id_rejects_bad_ids_and_reports_unknown(
    tempo: Running, http: httpx.AsyncClient, path: str, status: int
) -> None:
    r = await http.get(tempo.url() + path)
    assert r.status_code == status
    if status == 404:
        assert r.content == b""
    else:
        assert r.text.strip()


async def test_health_and_build_info(tempo: Running, http: httpx.AsyncClient) -> None:
    base = tempo.url()
    r = await http.get(base + "/ready")
    assert (r.status_code, r.text) == (200, "ready\n")
    r = await http.get(base + "/api/echo")
    assert (r.status_code, r.text) == (200, "echo\n")
    info = (await http.get(base + "/api/status/buildinfo")).json()
    major, minor, _patch = (int(x) for x in info["version"].split("."))
    assert (major, minor) >= (2, 7)
    assert all(isinstance(v, str) for v in info.values())


async def test_metrics_count_received_spans_and_flushed_blocks(tempo: Running, http: httpx.AsyncClient) -> None:
    spans = sdk_spans()
    assert await export(tempo, spans) == SpanExportResult.SUCCESS
    await wait_for_trace(http, tempo, format(spans[0].context.trace_id, "032x"))
    await tempo.tl.blockbuilder.flush_all()
    text = (await http.get(tempo.url() + "/metrics")).text
    assert f'tempo_distributor_spans_received_total{{tenant="single-tenant"}} {float(len(spans))}' in text
    assert 'tempo_block_builder_blocks_flushed_total{tenant="single-tenant"} 1.0' in text
    assert "tempo_wal_append_duration_seconds_count 1.0" in text
    assert "tempo_live_store_bytes" in text
    json.dumps(text)  # exposition is plain text

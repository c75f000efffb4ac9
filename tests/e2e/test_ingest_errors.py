"""Bad ingest input gets its documented answer and leaves the store unchanged."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trio
from conftest import Running, start_tempo, tempo_config_text
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

MAX_BODY = 64 * 1024


def request_with(trace_id: bytes, span_id: bytes) -> bytes:
    req = ExportTraceServiceRequest()
    span = req.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id, span.span_id, span.name = trace_id, span_id, "x"
    span.start_time_unix_nano, span.end_time_unix_nano = 1, 2
    return req.SerializeToString()


VALID_TRACE, VALID_SPAN = bytes(range(1, 17)), bytes(range(1, 9))
PB = {"Content-Type": "application/x-protobuf"}
JS = {"Content-Type": "application/json"}

CASES = {
    "malformed protobuf": (b"\xff\xff\xff\xff", PB, 400),
    "bad json": (b'{"resourceSpans": [', JS, 400),
    "json with non-hex id": (
        json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz", "spanId": "01"}]}]}]}).encode(),
        JS, 400,
    ),
    "wrong content type": (request_with(VALID_TRACE, VALID_SPAN), {"Content-Type": "text/xml"}, 415),
    "short trace id": (request_with(VALID_TRACE[:8], VALID_SPAN), PB, 400),
    "zero span id": (request_with(VALID_TRACE, b"\x00" * 8), PB, 400),
    "short span id": (request_with(VALID_TRACE, b"\x01\x02"), PB, 400),
    "oversized body": (b"\x00" * (MAX_BODY + 1), PB, 413),
    "gzip bomb": (gzip.compress(b"\x00" * (50 * MAX_BODY)), {**PB, "Content-Encoding": "gzip"}, 413),
    "corrupt gzip": (b"\x1f\x8b\x08\x00garbage", {**PB, "Content-Encoding": "gzip"}, 400),
    "unknown encoding": (request_with(VALID_TRACE, VALID_SPAN), {**PB, "Content-Encoding": "br"}, 415),
}


@pytest.fixture
async def small_tempo(nursery: trio.Nursery, tmp_path: Path) -> Running:
    running = await start_tempo(nursery, tempo_config_text(tmp_path, max_request_bytes=MAX_BODY))
    yield running
    await running.stop()


@pytest.mark.parametrize("case", sorted(CASES))
async def test_bad_input_is_refused_and_nothing_is_written(
    small_tempo: Running, http: httpx.AsyncClient, case: str
) -> None:
    body, headers, status = CASES[case]
    wal = small_tempo.tl.wal
    before = await wal.end_offset(0)
    r = await http.post(small_tempo.url("otlp_http") + "/v1/traces", content=body, headers=headers)
    assert r.status_code == status, r.text
    if headers["Content-Type"] == "application/json":
        assert r.json()["message"]
    elif headers["Content-Type"] == "application/x-protobuf":
        assert status_pb2.Status.FromString(r.content).message
    assert await wal.end_offset(0) == before
    # The same body with valid IDs afterwards is accepted: the refusal left nothing half-done.
    ok = await http.post(small_tempo.url("otlp_http") + "/v1/traces", content=request_with(VALID_TRACE, VALID_SPAN),
                         headers=PB)
    assert ok.status_code == 200
    assert await wal.end_offset(0) == before + 1


async def test_wrong_method_and_path(small_tempo: Running, http: httpx.AsyncClient) -> None:
    assert (await http.get(small_tempo.url("otlp_http") + "/v1/traces")).status_code == 405
    metrics = await http.post(small_tempo.url("otlp_http") + "/v1/metrics", content=b"")
    assert metrics.status_code == 404 and "OTEL_METRICS_EXPORTER=none" in metrics.text
    logs = await http.post(small_tempo.url("otlp_http") + "/v1/logs", content=b"")
    assert logs.status_code == 404 and "OTEL_LOGS_EXPORTER=none" in logs.text
    assert (await http.post(small_tempo.url("otlp_http") + "/v2/nothing", content=b"")).text == "404 page not found\n"


async def test_multitenancy_requires_org_id_and_keeps_tenants_apart(
    nursery: trio.Nursery, tmp_path: Path, http: httpx.AsyncClient
) -> None:
    running = await start_tempo(nursery, tempo_config_text(tmp_path, "multitenancy_enabled: true\n"))
    try:
        url = running.url("otlp_http") + "/v1/traces"
        body = request_with(VALID_TRACE, VALID_SPAN)
        r = await http.post(url, content=body, headers=PB)
        assert r.status_code == 401
        assert (await http.post(url, content=body, headers={**PB, "X-Scope-OrgID": "team-a"})).status_code == 200
        trace = f"{running.url()}/api/traces/{VALID_TRACE.hex()}"
        with trio.fail_after(10):
            while (await http.get(trace, headers={"X-Scope-OrgID": "team-a"})).status_code != 200:
                await trio.sleep(0.02)
        assert (await http.get(trace)).status_code == 401
        assert (await http.get(trace, headers={"X-Scope-OrgID": "team-b"})).status_code == 404
        assert (await http.get(trace, headers={"X-Scope-OrgID": "team-b|team-a"})).status_code == 200
        for bad in ("..", "team-a|.hidden", "x" * 151, "team a"):
            refused = await http.get(trace, headers={"X-Scope-OrgID": bad})
            assert refused.status_code == 400 and "tenant ID" in refused.text, (bad, refused.text)
        await running.tl.blockbuilder.flush_all()
        assert [m.tenant for m in running.tl.blocklist.blocks("team-a")] == ["team-a"]
        assert running.tl.blocklist.blocks("team-b") == []
    finally:
        await running.stop()


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("server:\n  http_listen_prot: 3200\n", "unknown configuration key 'server.http_listen_prot'"),
        ("storage:\n  trace:\n    backend: tape\n", "'storage.trace.backend'"),
        ("block_builder:\n  consume_cycle_duration: soon\n", "'block_builder.consume_cycle_duration'"),
        ("server: [1, 2]\n", "server"),
        ("server:\n  http_listen_port: '3200'\n  bad: :\n", "invalid YAML at line 3"),
    ],
)
def test_bad_config_stops_start_up_naming_file_and_key(tmp_path: Path, yaml_text: str, message: str) -> None:
    path = tmp_path / "tempo.yaml"
    path.write_text(yaml_text)
    proc = subprocess.run(
        [sys.executable, "-m", "tempo_lite", "serve", "--config", str(path)],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    assert str(path) in proc.stderr and message in proc.stderr, proc.stderr


def test_env_expansion_in_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tempo_lite.config import load_config_text

    monkeypatch.setenv("TL_PORT", "3999")
    cfg = load_config_text("server:\n  http_listen_port: ${TL_PORT}\n  http_listen_address: ${TL_NOPE:-0.0.0.0}\n")
    assert cfg.server.http_listen_port == 3999
    assert cfg.server.http_listen_address == "0.0.0.0"


@pytest.mark.parametrize("name", ["tempo.yaml", "docker.yaml", "docker-redpanda.yaml"])
def test_shipped_configs_are_valid(name: str) -> None:
    from tempo_lite.config import load_config

    config = load_config(Path(__file__).resolve().parents[2] / "config" / name)
    assert config.server.http_listen_port == 3200

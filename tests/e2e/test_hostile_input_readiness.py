"""/ready says "not ready", with the reason, while writes are answered 503, and ready again once they succeed."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import httpx
import pytest
import trio
from conftest import start_tempo, tempo_config_text
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

PB = {"Content-Type": "application/x-protobuf"}


def one_span_request() -> bytes:
    req = ExportTraceServiceRequest()
    span = req.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id, span.span_id, span.name = os.urandom(16), os.urandom(8), "x" * 200
    span.start_time_unix_nano, span.end_time_unix_nano = 1_700_000_000_000_000_000, 1_700_000_000_100_000_000
    return req.SerializeToString()


async def test_ready_is_503_with_the_reason_while_the_disk_is_full(
    nursery: trio.Nursery, tmp_path: Path, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    tempo = await start_tempo(nursery, tempo_config_text(tmp_path))
    ingest = tempo.url("otlp_http") + "/v1/traces"
    assert (await http.get(tempo.url() + "/ready")).status_code == 200

    # A full disk cannot be provoked without root and a tiny filesystem: the WAL's write fails as it would.
    def disk_full(*_args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tempo.tl.wal, "_write_sync", disk_full)
    assert (await http.post(ingest, content=one_span_request(), headers=PB)).status_code == 503
    ready = await http.get(tempo.url() + "/ready")
    assert ready.status_code == 503
    assert "not accepting writes" in ready.text and "No space left on device" in ready.text

    monkeypatch.undo()
    assert (await http.post(ingest, content=one_span_request(), headers=PB)).status_code == 200
    assert (await http.get(tempo.url() + "/ready")).status_code == 200
    await tempo.stop()


async def test_ready_is_503_while_the_wal_is_at_its_byte_bound(
    nursery: trio.Nursery, tmp_path: Path, http: httpx.AsyncClient
) -> None:
    config = tempo_config_text(tmp_path, "storage: {trace: {wal: {max_retained_bytes: 4KiB}}}\n", cycle="1h")
    tempo = await start_tempo(nursery, config)
    ingest = tempo.url("otlp_http") + "/v1/traces"
    statuses = [(await http.post(ingest, content=one_span_request(), headers=PB)).status_code for _ in range(40)]
    assert 200 in statuses and statuses[-1] == 503
    ready = await http.get(tempo.url() + "/ready")
    assert ready.status_code == 503 and "not accepting writes" in ready.text, ready.text
    await tempo.stop()

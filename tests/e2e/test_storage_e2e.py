"""tempo-lite on every object-store backend, against real emulators: ingest, flush, trace by ID and search,
restart; and an object-store outage in the middle of ingest loses nothing that was acknowledged."""

from __future__ import annotations

import dataclasses
import os
import time
import uuid
from pathlib import Path

import httpx
import pytest
import trio
from conftest import Running, start_tempo, tempo_config_text
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from otlp_helpers import by_trace, encoded, normalize, sdk_spans
from storage_emulators import EMULATOR_FIXTURES, Emulator
from test_otlp_http_roundtrip import export, fetch_all_forms, wait_for_trace

PB = {"Content-Type": "application/x-protobuf"}


def storage_section(emulator: Emulator, prefix: str) -> dict:
    cfg = {k: v for k, v in dataclasses.asdict(emulator.config).items() if not k.startswith("_")}
    cfg["prefix"] = prefix
    return {"backend": emulator.backend, emulator.backend: cfg}


def storage_for(request: pytest.FixtureRequest, backend: str) -> tuple[dict, Emulator | None]:
    if backend == "memory":
        return {"backend": "memory"}, None
    emulator = request.getfixturevalue(EMULATOR_FIXTURES[backend])
    return storage_section(emulator, f"e2e-{uuid.uuid4().hex[:8]}"), emulator


@pytest.mark.parametrize("backend", ["s3", "gcs", "azure", "memory"])
async def test_ingest_flush_query_and_restart_on_backend(
    request: pytest.FixtureRequest, nursery: trio.Nursery, tmp_path: Path, http: httpx.AsyncClient, backend: str
) -> None:
    storage, _ = storage_for(request, backend)
    config = tempo_config_text(tmp_path, storage=storage)
    tempo = await start_tempo(nursery, config)
    spans = sdk_spans(f"svc-{backend}")
    assert (await export(tempo, spans)).name == "SUCCESS"
    ((trace_id, want),) = by_trace(encoded(spans)).items()
    await wait_for_trace(http, tempo, trace_id.hex())
    assert await tempo.tl.blockbuilder.flush_all() == 1
    tempo.tl.livestore.complete_block_timeout = 0
    tempo.tl.livestore.expire()
    for got in await fetch_all_forms(http, tempo, trace_id.hex()):
        assert normalize(got) == want
    now = int(time.time())
    r = await http.get(tempo.url() + "/api/search", params={
        "q": f'{{ resource.service.name = "svc-{backend}" && kind = client }}', "start": now - 600, "end": now + 600})
    assert [t["traceID"] for t in r.json()["traces"]] == [trace_id.hex().lstrip("0")]
    await tempo.stop()
    if backend == "memory":
        return
    # A new process finds the block on the store (the WAL is empty: everything was flushed).
    tempo = await start_tempo(nursery, config)
    try:
        assert tempo.tl.livestore.snapshot("single-tenant").num_spans == 0
        for got in await fetch_all_forms(http, tempo, trace_id.hex()):
            assert normalize(got) == want
    finally:
        await tempo.stop()


def one_trace_request(trace_id: bytes, service: str) -> bytes:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.add(key="service.name").value.string_value = service
    ss = rs.scope_spans.add()
    now = time.time_ns()
    for i in range(3):
        sp = ss.spans.add(trace_id=trace_id, span_id=trace_id[:4] + i.to_bytes(4, "big"), name=f"op{i}")
        sp.start_time_unix_nano, sp.end_time_unix_nano = now + i, now + 10**6
    return req.SerializeToString()


async def search_all(http: httpx.AsyncClient, tempo: Running, service: str) -> set[str]:
    now = int(time.time())
    r = await http.get(tempo.url() + "/api/search", params={
        "q": f'{{ resource.service.name = "{service}" }} | count() = 3', "start": now - 3600, "end": now + 3600,
        "limit": 100000, "spss": 1})
    assert r.status_code == 200, r.text
    return {t["traceID"].rjust(32, "0") for t in r.json()["traces"]}


@pytest.mark.slow
async def test_store_outage_keeps_acknowledging_and_catches_up(
    azure_emulator: Emulator, nursery: trio.Nursery, tmp_path: Path, http: httpx.AsyncClient
) -> None:
    storage = storage_section(azure_emulator, f"fault-{uuid.uuid4().hex[:8]}")
    tempo = await start_tempo(nursery, tempo_config_text(tmp_path, storage=storage, cycle="300ms"))
    tl = tempo.tl
    tl.blockbuilder.retry_base, tl.blockbuilder.retry_cap = 0.2, 0.5
    acked: list[bytes] = []
    url = tempo.url("otlp_http") + "/v1/traces"

    async def send_for(seconds: float) -> None:
        with trio.move_on_after(seconds):
            while True:
                tid = os.urandom(16)
                r = await http.post(url, content=one_trace_request(tid, "fault"), headers=PB)
                assert r.status_code == 200, r.text
                acked.append(tid)
                await trio.sleep(0.01)

    try:
        await send_for(1.0)
        await trio.to_thread.run_sync(azure_emulator.stop)
        await send_for(3.0)
        with trio.fail_after(30):  # a failing write takes the client's connect timeout to surface
            while tl.blockbuilder.last_error is None:
                await send_for(0.2)
        # Still acknowledging, still ready, and saying what fails.
        assert (await http.get(tempo.url() + "/ready")).status_code == 200
        metrics = (await http.get(tempo.url() + "/metrics")).text
        errors = [ln for ln in metrics.splitlines() if ln.startswith("tempo_block_builder_flush_errors_total")]
        assert errors and float(errors[0].split()[-1]) > 0
        assert tl.blockbuilder.last_error
        # Recent data is answered from the live-store meanwhile.
        r = await http.get(f"{tempo.url()}/api/traces/{acked[-1].hex()}")
        assert r.status_code == 200
        await trio.to_thread.run_sync(azure_emulator.start)
        await send_for(1.0)
        with trio.fail_after(60):
            while tl.blockbuilder.last_error is not None or tl.livestore.pending_bytes() > 0:
                await trio.sleep(0.1)
        tl.livestore.complete_block_timeout = 0
        tl.livestore.expire()
        assert tl.livestore.snapshot("single-tenant").num_spans == 0
        found = await search_all(http, tempo, "fault")
        assert {t.hex() for t in acked} <= found
        assert len(acked) > 50
    finally:
        if azure_emulator.proc is None or azure_emulator.proc.poll() is not None:
            await trio.to_thread.run_sync(azure_emulator.start)
        await tempo.stop()


async def test_full_wal_answers_503_while_store_is_down(
    gcs_emulator: Emulator, nursery: trio.Nursery, tmp_path: Path, http: httpx.AsyncClient
) -> None:
    storage = storage_section(gcs_emulator, f"full-{uuid.uuid4().hex[:8]}")
    tempo = await start_tempo(nursery, tempo_config_text(
        tmp_path, "storage: {trace: {wal: {max_retained_bytes: 20000}}}", storage=storage, cycle="200ms"))
    tl = tempo.tl
    tl.blockbuilder.retry_base, tl.blockbuilder.retry_cap = 0.2, 0.5
    url = tempo.url("otlp_http") + "/v1/traces"
    acked: list[bytes] = []
    try:
        await trio.to_thread.run_sync(gcs_emulator.stop)
        refused = None
        with trio.fail_after(30):
            while refused is None:
                tid = os.urandom(16)
                r = await http.post(url, content=one_trace_request(tid, "full"), headers=PB)
                if r.status_code == 200:
                    acked.append(tid)
                else:
                    refused = r
        assert refused.status_code == 503 and int(refused.headers["Retry-After"]) >= 1
        assert acked
        await trio.to_thread.run_sync(gcs_emulator.start)
        with trio.fail_after(60):
            while tl.blockbuilder.last_error is not None or tl.livestore.pending_bytes() > 0:
                await trio.sleep(0.1)
        r = await http.post(url, content=one_trace_request(os.urandom(16), "full"), headers=PB)
        assert r.status_code == 200
        assert {t.hex() for t in acked} <= await search_all(http, tempo, "full")
    finally:
        if gcs_emulator.proc is None or gcs_emulator.proc.poll() is not None:
            await trio.to_thread.run_sync(gcs_emulator.start)
        await tempo.stop()


async def test_missing_bucket_stops_start_up(s3_emulator: Emulator, tmp_path: Path) -> None:
    import subprocess
    import sys

    import yaml

    section = storage_section(s3_emulator, "x")
    section["s3"]["bucket"] = "no-such-bucket"
    path = tmp_path / "tempo.yaml"
    path.write_text(tempo_config_text(tmp_path, storage=section))
    proc = await trio.to_thread.run_sync(lambda: subprocess.run(
        [sys.executable, "-m", "tempo_lite", "serve", "--config", str(path)], capture_output=True, text=True,
        timeout=120))
    assert proc.returncode == 2, proc.stderr
    assert "no-such-bucket" in proc.stderr and "s3" in proc.stderr
    secret = yaml.safe_load(path.read_text())["storage"]["trace"]["s3"]["secret_key"]
    assert not secret or secret not in proc.stderr


async def test_trace_by_id_reads_a_fraction_of_the_block(
    s3_emulator: Emulator, nursery: trio.Nursery, tmp_path: Path, http: httpx.AsyncClient
) -> None:
    storage = storage_section(s3_emulator, f"ranges-{uuid.uuid4().hex[:8]}")
    tempo = await start_tempo(nursery, tempo_config_text(
        tmp_path, "storage: {trace: {block: {row_group_spans: 1000}}}", storage=storage))
    tl = tempo.tl
    url = tempo.url("otlp_http") + "/v1/traces"
    ids = [os.urandom(16) for _ in range(4000)]
    for chunk in range(0, len(ids), 500):
        body = b"".join(one_trace_request(t, "ranges") for t in ids[chunk:chunk + 500])
        # Concatenated ExportTraceServiceRequest messages are one message with all resource spans.
        assert (await http.post(url, content=body, headers=PB)).status_code == 200
    end = await tl.wal.end_offset(0)
    with trio.fail_after(20):
        while tl.livestore.consumed[0] < end:
            await trio.sleep(0.02)
    assert await tl.blockbuilder.flush_all() == 1
    tl.livestore.complete_block_timeout = 0
    tl.livestore.expire()
    (meta,) = tl.blocklist.blocks("single-tenant")
    data_size = await tl.store.size(f"single-tenant/{meta.block_id}/data.parquet")
    assert len(meta.row_groups) >= 10
    # The first lookup loads meta, bloom filter, footer and resources into the cache; later ones read
    # only the row group that can hold the trace.
    assert (await http.get(f"{tempo.url()}/api/traces/{ids[0].hex()}")).status_code == 200
    before = tl.store.bytes_read
    for tid in ids[1000:1010]:
        assert (await http.get(f"{tempo.url()}/api/traces/{tid.hex()}")).status_code == 200
    per_lookup = (tl.store.bytes_read - before) / 10
    assert 0 < per_lookup < data_size / 5, (per_lookup, data_size)
    metrics = (await http.get(tempo.url() + "/metrics")).text
    assert "tempo_object_store_read_bytes" in metrics
    await tempo.stop()

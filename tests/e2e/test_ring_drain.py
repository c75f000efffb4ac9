"""`tempo-lite ring drain|activate|status` (cli/commands/ring.py) against real processes on a tansu broker: a
distributor, live-store P1 (partition 1 only), live-stores R (partitions 0, 2, 3) in zones a and b, a
querier, and a block-builder started only once the drain has been checked.

`ring drain --partition 1 --no-wait` marks partition 1 INACTIVE: the distributor stops writing to it, the
querier still finds every trace (P1's only copy of its partition's spans is in memory: no blocks yet); a
waiting drain does not report the partition empty while no block-builder has its records in blocks (exit 1
naming the live-store); once the block-builder runs it reports it drained, the partition leaves the ring,
P1 is stopped and every acknowledged trace is still found with exactly its spans. `activate` of a drained
partition, an unknown partition and a config without the kafka WAL are refused with one line each.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData
from opentelemetry.sdk.trace.export import SpanExportResult
from otlp_helpers import by_trace, encoded, normalize, sdk_spans
from server_process import ServerProcess, kafka_role
from wal_brokers import tansu_broker

from tempo_lite import spantable

pytestmark = pytest.mark.slow

TENANT = "single-tenant"


@pytest.fixture(scope="module")
def broker() -> Iterator[str]:
    with tansu_broker() as brokers:
        yield brokers


def ring(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tempo_lite", "ring", *args, "--config", str(config)],
                          capture_output=True, text=True, timeout=300)


def send(distributor: ServerProcess, spans: list) -> None:  # noqa: ANN001
    exporter = OTLPSpanExporter(endpoint=distributor.otlp)
    try:
        assert exporter.export(spans) == SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()


def status(proc: ServerProcess) -> dict[str, str]:
    text = httpx.get(f"{proc.api}/api/status/services", timeout=10).text
    return dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)


def held(live_store: ServerProcess) -> set[bytes]:
    r = httpx.get(f"{live_store.api}/internal/live/snapshot", params={"tenant": TENANT, "wait": "2"}, timeout=30)
    assert r.status_code == 200, r.text
    return {bytes(t) for t in spantable.from_ipc(r.content).spans.column("trace_id").to_pylist()}


def found(querier: ServerProcess, trace_id: bytes) -> dict | None:
    r = httpx.get(f"{querier.api}/api/traces/{trace_id.hex()}", headers={"Accept": "application/protobuf"},
                  timeout=60)
    assert r.status_code in (200, 404), r.text
    return normalize(TracesData.FromString(r.content)) if r.status_code == 200 else None


def wait_until(check, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        time.sleep(0.2)


def test_ring_drain_stops_writes_keeps_reads_and_reports_the_partition_empty_once_in_blocks(
    broker: str, tmp_path: Path,
) -> None:
    topic = f"drain-{uuid.uuid4().hex[:8]}"
    keep = "live_store: {complete_block_timeout: 2s, partitions: [%s], zone: %s}\n"
    live_p1 = kafka_role(tmp_path, broker, topic, "live-p1", "live-store", keep % ("1", "a"))
    rest_a = kafka_role(tmp_path, broker, topic, "rest-a", "live-store", keep % ("0, 2, 3", "a"))
    rest_b = kafka_role(tmp_path, broker, topic, "rest-b", "live-store", keep % ("0, 2, 3", "b"))
    distributor = kafka_role(tmp_path, broker, topic, "distributor", "distributor")
    builder = kafka_role(tmp_path, broker, topic, "block-builder", "block-builder")
    querier = kafka_role(tmp_path, broker, topic, "querier", "querier", f"""
querier:
  live_stores:
    - {{url: "{live_p1.api}", partitions: [1], zone: a}}
    - {{url: "{rest_a.api}", partitions: [0, 2, 3], zone: a}}
    - {{url: "{rest_b.api}", partitions: [0, 2, 3], zone: b}}
""")
    config = live_p1.config
    procs = [live_p1, rest_a, rest_b, distributor, querier, builder]
    try:
        for proc in procs[:-1]:
            proc.spawn()
        for proc in procs[:-1]:
            proc.wait_ready(timeout=90)
        wait_until(lambda: all(status(distributor).get(f"partition-{p}", "").startswith("ACTIVE") for p in range(4)),
                   30, "the distributor sees every partition ACTIVE")
        out = ring(config, "status")
        assert out.returncode == 0, out.stderr
        assert f"partition-1: ACTIVE ({live_p1.api} zone a)" in out.stdout
        assert f"partition-0: ACTIVE ({rest_a.api} zone a, {rest_b.api} zone b)" in out.stdout

        sent: dict[bytes, dict] = {}
        first = sdk_spans("drain-one", traces=24)
        send(distributor, first)
        sent |= by_trace(encoded(first))
        in_p1 = held(live_p1) & set(sent)
        assert in_p1, "some traces land in partition 1"

        out = ring(config, "drain", "--partition", "1", "--no-wait")
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith(f"partition-1: INACTIVE ({live_p1.api}"), out.stdout
        wait_until(lambda: status(distributor)["partition-1"].startswith("INACTIVE"), 30,
                   "the distributor sees the drain")
        second = sdk_spans("drain-two", traces=24)
        send(distributor, second)
        second_ids = set(by_trace(encoded(second)))
        sent |= by_trace(encoded(second))
        assert not held(live_p1) & second_ids, "an INACTIVE partition takes no writes"
        for trace_id, want in sent.items():  # partition 1 still read (no block holds it yet)
            assert found(querier, trace_id) == want

        # No block-builder: the records are not in blocks, so the drain is not reported done.
        out = ring(config, "drain", "--partition", "1", "--timeout", "6s")
        assert out.returncode == 1, out.stdout + out.stderr
        assert "already INACTIVE" in out.stderr
        left = f"partition 1 is still INACTIVE in the ring after 6s: its live-stores ({live_p1.api} zone a)"
        assert left in out.stderr
        assert "drained" not in out.stdout

        builder.start(timeout=90)
        out = ring(config, "drain", "--partition", "1", "--timeout", "120s")
        assert out.returncode == 0, out.stdout + out.stderr
        assert "partition-1: drained (its records are in blocks" in out.stdout
        wait_until(lambda: "partition-1" not in status(querier), 30, "the querier sees partition 1 gone")
        assert status(live_p1)["live-store-ring"] == "Drained"
        live_p1.kill()
        # Without P1 nothing fails and nothing is missing: partition 1's records are read from blocks.
        wait_until(lambda: all(found(querier, t) == want for t, want in sent.items()), 60,
                   "every trace found after P1 left")
        assert not set(status(distributor)) & {"partition-1"}

        # Draining a drained partition says so (the block-builder may finish a drain before anyone asks).
        out = ring(config, "drain", "--partition", "1", "--timeout", "5s")
        assert out.returncode == 0, out.stdout + out.stderr
        assert out.stdout.startswith("partition-1: drained"), out.stdout
        out = ring(config, "activate", "--partition", "1")
        assert out.returncode == 1 and "partition 1 is not in the ring" in out.stderr, out.stderr
        out = ring(config, "drain", "--partition", "7")
        assert out.returncode == 1 and "partition 7 is not in the ring" in out.stderr, out.stderr
        embedded = tmp_path / "embedded.yaml"
        embedded.write_text("storage: {trace: {backend: memory}}\n")
        out = ring(embedded, "status")
        assert out.returncode == 2, out.stderr
        assert "storage.trace.wal.backend is embedded: the partition ring exists on the kafka WAL" in out.stderr
    finally:
        for proc in procs:
            proc.close()

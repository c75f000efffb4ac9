"""The partition ring (wal/ring.py) with each role its own process on a tansu broker and a shared block directory:
a live-store joining its partitions, a live-store added later, and one drained before removal.

A distributor, a block-builder, a querier (configured with both live-stores) and live-store A (partitions 0-1)
start; B (partitions 2-3) is not running: the ring holds only 0 and 1, so the distributor writes there and the
querier does not ask B. B is added: its partitions become ACTIVE and take writes. B is drained: its partitions
turn INACTIVE (no more writes; still read), leave the ring once their records are in blocks, and B is stopped:
every acknowledged trace is still found with exactly its spans, and no query fails for want of B.
"""

from __future__ import annotations

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


def status(proc: ServerProcess) -> dict[str, str]:
    text = httpx.get(f"{proc.api}/api/status/services", timeout=10).text
    return dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)


def ring_states(proc: ServerProcess) -> dict[int, str]:
    return {int(k.split("-")[1]): v.split(" ")[0] for k, v in status(proc).items() if k.startswith("partition-")}


def send(distributor: ServerProcess, spans: list) -> None:  # noqa: ANN001
    exporter = OTLPSpanExporter(endpoint=distributor.otlp)
    try:
        assert exporter.export(spans) == SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()


def held(live_store: ServerProcess) -> set[bytes]:
    r = httpx.get(f"{live_store.api}/internal/live/snapshot", params={"tenant": TENANT, "wait": "2"}, timeout=30)
    assert r.status_code == 200, r.text
    table = spantable.from_ipc(r.content)
    return {bytes(t) for t in table.spans.column("trace_id").to_pylist()}


def found(querier: ServerProcess, trace_id: bytes) -> dict | None:
    r = httpx.get(f"{querier.api}/api/traces/{trace_id.hex()}", headers={"Accept": "application/protobuf"},
                  timeout=30)
    assert r.status_code in (200, 404), r.text
    return normalize(TracesData.FromString(r.content)) if r.status_code == 200 else None


def wait_until(check, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        time.sleep(0.2)


def test_live_stores_join_are_added_and_drained_through_the_partition_ring(broker: str, tmp_path: Path) -> None:
    topic = f"ring-{uuid.uuid4().hex[:8]}"
    keep = "live_store: {complete_block_timeout: 2s, partitions: [%s]}"
    live_a = kafka_role(tmp_path, broker, topic, "live-a", "live-store", keep % "0, 1")
    live_b = kafka_role(tmp_path, broker, topic, "live-b", "live-store", keep % "2, 3")
    distributor = kafka_role(tmp_path, broker, topic, "distributor", "distributor")
    builder = kafka_role(tmp_path, broker, topic, "block-builder", "block-builder")
    querier = kafka_role(tmp_path, broker, topic, "querier", "querier", f"""
querier:
  live_stores:
    - {{url: "{live_a.api}", partitions: [0, 1]}}
    - {{url: "{live_b.api}", partitions: [2, 3]}}
""")
    procs = [live_a, live_b, distributor, builder, querier]
    try:
        live_a.start(timeout=90)
        assert ring_states(live_a) == {0: "ACTIVE", 1: "ACTIVE"}
        assert status(live_a)["live-store-ring"] == "Running"
        for proc in (distributor, builder, querier):
            proc.spawn()
        for proc in (distributor, builder, querier):
            proc.wait_ready(timeout=90)
        wait_until(lambda: ring_states(querier) == {0: "ACTIVE", 1: "ACTIVE"}, 30, "the querier reads the ring")
        assert ring_states(distributor) == {0: "ACTIVE", 1: "ACTIVE"}

        sent: dict[bytes, dict] = {}
        first = sdk_spans("ring-one", traces=12)
        send(distributor, first)
        sent |= by_trace(encoded(first))
        # Only A's partitions take writes, and B (not running, not in the ring) is not asked.
        for trace_id, want in sent.items():
            assert found(querier, trace_id) == want

        # B is added: it creates its partitions (PENDING, then ACTIVE once replayed) and takes writes.
        live_b.start(timeout=90)
        assert ring_states(live_b) == {0: "ACTIVE", 1: "ACTIVE", 2: "ACTIVE", 3: "ACTIVE"}
        wait_until(lambda: {ring_states(distributor).get(p) for p in (2, 3)} == {"ACTIVE"}, 30,
                   "the distributor sees B's partitions")
        log = live_b.log.read_text()
        assert "partition 2 absent -> PENDING" in log and "partition 2 PENDING -> ACTIVE" in log
        second = sdk_spans("ring-two", traces=12)
        send(distributor, second)
        second_ids = set(by_trace(encoded(second)))
        sent |= by_trace(encoded(second))
        assert held(live_b) & second_ids, "B's partitions take writes once ACTIVE"

        # B is drained: no more writes, still read until its records are in blocks, then out of the ring.
        r = httpx.post(f"{live_b.api}/internal/live/drain", timeout=30)
        assert r.status_code == 200 and "partition-2: INACTIVE" in r.text, r.text
        wait_until(lambda: {ring_states(distributor).get(p) for p in (2, 3)} == {"INACTIVE"}, 30,
                   "the distributor sees the drain")
        third = sdk_spans("ring-three", traces=12)
        send(distributor, third)
        third_ids = set(by_trace(encoded(third)))
        sent |= by_trace(encoded(third))
        assert not held(live_b) & third_ids, "an INACTIVE partition takes no writes"
        for trace_id, want in sent.items():
            assert found(querier, trace_id) == want
        wait_until(lambda: status(live_b)["live-store-ring"] == "Drained", 60, "B's partitions leave the ring")
        wait_until(lambda: set(ring_states(querier)) == {0, 1}, 30, "the querier sees B gone from the ring")
        live_b.kill()

        # Without B: nothing fails and nothing is missing (B's records are in blocks).
        wait_until(lambda: all(found(querier, t) == want for t, want in sent.items()), 30,
                   "every trace found after B left")
    finally:
        for proc in procs:
            proc.close()

"""Zones and read quorum 1 (frontend/remote_live.py, wal/ring.py) with each role its own process on a tansu broker:
two live-stores of the same WAL partitions in zones a and b both consume them; a querier in zone a and a
sharding query-frontend (over that querier) ask one live-store per partition and fall back to the twin.

No block-builder runs, so every span is only in the live-stores (recent data): kill -9 live-store A and every
acknowledged trace is still found by ID and by TraceQL search, through the querier and through the frontend,
from B; A comes back (replaying the WAL) and hangs (SIGSTOP): queries still answer, from B, once A's timeout
has passed; B is killed, and everything is found from A; with both gone the query answers 503 naming the
partition.
"""

from __future__ import annotations

import os
import signal
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

pytestmark = pytest.mark.slow

QUERY = '{ resource.service.name =~ "zones-.*" }'


@pytest.fixture(scope="module")
def broker() -> Iterator[str]:
    with tansu_broker() as brokers:
        yield brokers


def send(distributor: ServerProcess, spans: list) -> None:  # noqa: ANN001
    exporter = OTLPSpanExporter(endpoint=distributor.otlp)
    try:
        assert exporter.export(spans) == SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()


def status(proc: ServerProcess) -> dict[str, str]:
    text = httpx.get(f"{proc.api}/api/status/services", timeout=10).text
    return dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)


def fetch(proc: ServerProcess, trace_id: bytes) -> dict:
    r = httpx.get(f"{proc.api}/api/traces/{trace_id.hex()}", headers={"Accept": "application/protobuf"}, timeout=60)
    assert r.status_code == 200, f"{trace_id.hex()}: {r.status_code} {r.text}"
    return normalize(TracesData.FromString(r.content))


def searched(proc: ServerProcess) -> set[bytes]:
    r = httpx.get(f"{proc.api}/api/search", params={"q": QUERY, "limit": "1000"}, timeout=60)
    assert r.status_code == 200, r.text
    return {bytes.fromhex(t["traceID"].rjust(32, "0")) for t in r.json()["traces"]}


def everything_found(sent: dict[bytes, dict], *via: ServerProcess) -> None:
    for proc in via:
        assert searched(proc) == set(sent), f"search through {proc.api}"
        for trace_id, want in sent.items():
            assert fetch(proc, trace_id) == want


def wait_until(check, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        time.sleep(0.2)


def test_zone_twins_answer_for_each_other_when_one_is_killed(broker: str, tmp_path: Path) -> None:
    topic = f"zones-{uuid.uuid4().hex[:8]}"
    live_a = kafka_role(tmp_path, broker, topic, "live-a", "live-store", "live_store: {zone: a}\n")
    live_b = kafka_role(tmp_path, broker, topic, "live-b", "live-store", "live_store: {zone: b}\n")
    distributor = kafka_role(tmp_path, broker, topic, "distributor", "distributor")
    live_list = f"""
querier:
  zone: a
  live_store_timeout: 5s
  live_stores:
    - {{url: "{live_a.api}", zone: a}}
    - {{url: "{live_b.api}", zone: b}}
"""
    querier = kafka_role(tmp_path, broker, topic, "querier", "querier", live_list)
    frontend = kafka_role(tmp_path, broker, topic, "frontend", "query-frontend",
                          live_list + f"query_frontend: {{queriers: ['{querier.api}']}}\n")
    procs = [live_a, live_b, distributor, querier, frontend]
    try:
        for proc in procs:
            proc.spawn()
        for proc in procs:
            proc.wait_ready(timeout=90)
        # The ring records both instances of every partition, each with its zone.
        # Each twin creates its instance PENDING and makes it ACTIVE once it has replayed the partition.
        wait_until(lambda: all(status(querier).get(f"partition-{p}", "") ==
                               f"ACTIVE ({live_a.api} zone a, {live_b.api} zone b)" for p in range(4)),
                   30, "the querier reads both zones' instances from the ring, ACTIVE")

        sent: dict[bytes, dict] = {}
        first = sdk_spans("zones-one", traces=16)
        send(distributor, first)
        sent |= by_trace(encoded(first))
        everything_found(sent, querier, frontend)
        assert "did not answer" not in querier.log.read_text()

        # A (the querier's own zone, asked first) is killed: B answers for every partition.
        live_a.kill()
        second = sdk_spans("zones-two", traces=16)
        send(distributor, second)
        sent |= by_trace(encoded(second))
        everything_found(sent, querier, frontend)
        assert f"live-store {live_a.api} (partitions 0,1,2,3, zone a) did not answer" in querier.log.read_text()

        # A comes back (it replays the WAL, acknowledged spans sent while it was down included). Then it
        # hangs (SIGSTOP: connections are accepted, nothing answers): after querier.live_store_timeout (plus
        # the read-after-write wait) its partitions go to B.
        live_a.start(timeout=90)
        assert live_a.proc is not None
        os.kill(live_a.proc.pid, signal.SIGSTOP)
        try:
            assert searched(querier) == set(sent)
            assert searched(frontend) == set(sent)
            trace_id, want = next(iter(sent.items()))
            assert fetch(querier, trace_id) == want
            assert "no answer within 6s" in querier.log.read_text()
        finally:
            os.kill(live_a.proc.pid, signal.SIGCONT)

        # B is killed: A answers.
        live_b.kill()
        third = sdk_spans("zones-three", traces=16)
        send(distributor, third)
        sent |= by_trace(encoded(third))
        everything_found(sent, querier, frontend)

        # Neither answers: 503 naming the partition and each live-store's failure.
        live_a.kill()
        for proc in (querier, frontend):
            r = httpx.get(f"{proc.api}/api/search", params={"q": QUERY}, timeout=60)
            assert r.status_code == 503, r.text
            assert "no live-store of WAL partition 0 answered (2 serve it)" in r.text, r.text
            if proc is querier:  # (the frontend quotes the querier's answer shortened)
                assert live_a.api in r.text and live_b.api in r.text, r.text
            r = httpx.get(f"{proc.api}/api/traces/{next(iter(sent)).hex()}", timeout=60)
            assert r.status_code == 503 and "no live-store of WAL partition" in r.text, r.text
    finally:
        for proc in procs:
            proc.close()

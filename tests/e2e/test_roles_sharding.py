"""Query-frontend sharding over querier processes (frontend/sharding.py), each role its own process on a tansu
broker and a shared block directory: a distributor, two live-stores (partitions 0-1 and 2-3), a block-builder,
two queriers and one query-frontend listing them (`query_frontend.queriers`).

The frontend's answers for search (blocks and live), search of recent data, trace by ID, tags, tag values and
TraceQL metrics equal those of a querier answering alone (the single-process code over every source). One
querier is SIGKILLed while queries run: every query still answers the same (its jobs go to the other
querier); with both gone the frontend answers 503 naming each querier.
"""

from __future__ import annotations

import json
import threading
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


def answers(proc: ServerProcess, now: int) -> dict[str, object]:
    """Every kind of query the frontend serves, as comparable values (query statistics left out)."""
    window = {"start": str(now - 3600), "end": str(now + 60)}

    def get(path: str, params: dict[str, str]) -> dict:
        r = httpx.get(f"{proc.api}{path}", params=params, timeout=60)
        assert r.status_code == 200, f"{path}: {r.status_code} {r.text}"
        body = r.json()
        body.pop("metrics", None)
        return body

    q = '{ resource.service.name =~ "shard-.*" }'
    out: dict[str, object] = {
        "search": get("/api/search", {"q": q, "limit": "1000", **window}),
        "search-span": get("/api/search", {"q": '{ span.http.method = "GET" && kind = server }', "limit": "1000",
                                           "spss": "5", **window}),
        "search-live": get("/api/search", {"q": q, "limit": "1000"}),
        "tags": get("/api/v2/search/tags", window),
        "tag-values": get("/api/v2/search/tag/resource.service.name/values", window),
        "metrics": get("/api/metrics/query_range", {"q": "{ } | rate() by (resource.service.name)", "step": "60",
                                                    **window}),
    }
    return out


def fetch(proc: ServerProcess, trace_id: bytes) -> dict:
    r = httpx.get(f"{proc.api}/api/traces/{trace_id.hex()}", headers={"Accept": "application/protobuf"}, timeout=60)
    assert r.status_code == 200, r.text
    return normalize(TracesData.FromString(r.content))


def live_spans(live_store: ServerProcess) -> int:
    r = httpx.get(f"{live_store.api}/internal/live/snapshot", params={"tenant": "single-tenant", "wait": "2"},
                  timeout=30)
    assert r.status_code == 200, r.text
    return spantable.from_ipc(r.content).num_spans


def metas(blocks: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in blocks.rglob("meta.json")]


def wait_until(check, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        time.sleep(0.2)


def test_frontend_shards_queries_over_queriers_with_the_single_process_answers_and_survives_a_querier_kill(
    broker: str, tmp_path: Path,
) -> None:
    topic = f"shard-{uuid.uuid4().hex[:8]}"
    keep = "live_store: {complete_block_timeout: 2s, partitions: [%s]}"
    live_a = kafka_role(tmp_path, broker, topic, "live-a", "live-store", keep % "0, 1")
    live_b = kafka_role(tmp_path, broker, topic, "live-b", "live-store", keep % "2, 3")
    builder = kafka_role(tmp_path, broker, topic, "block-builder", "block-builder")
    live_list = f"""
querier:
  live_stores:
    - {{url: "{live_a.api}", partitions: [0, 1]}}
    - {{url: "{live_b.api}", partitions: [2, 3]}}
"""
    distributor = kafka_role(tmp_path, broker, topic, "distributor", "distributor")
    q1 = kafka_role(tmp_path, broker, topic, "querier-1", "querier", live_list)
    q2 = kafka_role(tmp_path, broker, topic, "querier-2", "querier", live_list)
    frontend = kafka_role(tmp_path, broker, topic, "frontend", "query-frontend",
                    live_list + f"query_frontend: {{queriers: ['{q1.api}', '{q2.api}']}}\n")
    procs = [live_a, live_b, builder, distributor, q1, q2, frontend]
    try:
        for proc in procs:
            proc.spawn()
        for proc in procs:
            proc.wait_ready(timeout=90)
        services = {line.split(":")[0] for line in httpx.get(f"{frontend.api}/api/status/services").text.splitlines()}
        assert "query-frontend" in services and "querier" not in services

        def ring_active() -> bool:
            text = httpx.get(f"{distributor.api}/api/status/services", timeout=10).text
            return all(f"partition-{p}: ACTIVE" in text for p in range(4))

        # Both live-stores joined before the first write, or the first spans skip one's partitions.
        wait_until(ring_active, 30, "the distributor sees every partition ACTIVE")

        # Older spans reach blocks (and leave the live-stores); then the block-builder stops, so newer ones
        # stay live and every answer stays the same while the test runs.
        sent: dict[bytes, dict] = {}
        old = sdk_spans("shard-old", traces=10)
        send(distributor, old)
        sent |= by_trace(encoded(old))
        blocks = tmp_path / "blocks"
        # Committed by the block-builder and let go by the live-stores (complete_block_timeout).
        wait_until(lambda: live_spans(live_a) + live_spans(live_b) == 0, 60, "the old spans only in blocks")
        builder.kill()
        assert sum(m["total_spans"] for m in metas(blocks)) == len(old)
        partitions = {m["source_partition"] for m in metas(blocks)}
        assert partitions & {0, 1} and partitions & {2, 3}, "blocks of both live-stores' partitions"
        new = sdk_spans("shard-new", traces=10)
        send(distributor, new)
        sent |= by_trace(encoded(new))

        now = int(time.time())
        alone = answers(q1, now)
        assert len(alone["search"]["traces"]) == len(sent)  # type: ignore[index]
        assert len(alone["search-live"]["traces"]) == 10  # type: ignore[index]
        assert answers(frontend, now) == alone
        for trace_id, want in sent.items():
            assert fetch(frontend, trace_id) == want

        # A querier dies while queries run: each still answers the same (its jobs go to the other one).
        failures: list[str] = []
        done = threading.Event()
        rounds = [0]

        def query_loop() -> None:
            while not done.is_set():
                try:
                    if answers(frontend, now) != alone:
                        failures.append("a different answer")
                except AssertionError as exc:
                    failures.append(str(exc))
                rounds[0] += 1

        loop = threading.Thread(target=query_loop)
        loop.start()
        try:
            wait_until(lambda: rounds[0] >= 1, 60, "a round of queries")
            q1.kill()
            start = rounds[0]
            wait_until(lambda: rounds[0] >= start + 2, 90, "two rounds of queries after the kill")
        finally:
            done.set()
            loop.join(timeout=120)
        assert not failures, failures[:3]
        for trace_id, want in list(sent.items())[::4]:
            assert fetch(frontend, trace_id) == want
        log = (frontend.log.read_text())
        assert "sending it to the next querier" in log

        # No querier left: 503 naming each of them.
        q2.kill()
        r = httpx.get(f"{frontend.api}/api/search", params={"q": "{ }", "limit": "5"}, timeout=60)
        assert r.status_code == 503, r.text
        assert q1.api in r.text and q2.api in r.text
    finally:
        for proc in procs:
            proc.close()

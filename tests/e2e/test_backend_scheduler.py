"""The backend-scheduler and backend-workers as real processes (tempo_lite/backend/) on a tansu broker and a
shared block directory: a leading scheduler and a standby, two workers, an ingest process (distributor,
live-store, block-builder) and a querier.

A worker dies (SIGKILL, the `after-compacted-block` fault point) after writing a merged block and before
marking its inputs or reporting: the job times out, goes to the other worker, which finds the block and only
marks the inputs. The leading scheduler is killed: the standby takes over (Kafka group) and hands out the
next jobs. Every acknowledged trace is found with exactly its spans, and the visible blocks hold exactly
the spans sent: no block lost or duplicated.
"""

from __future__ import annotations

import json
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
from server_process import ServerProcess
from wal_brokers import tansu_broker

pytestmark = pytest.mark.slow

BACKEND = """
compactor: {compaction: {compaction_cycle: 2s, compaction_window: 24h}}
backend_scheduler: {job_timeout: 8s, leader_session_timeout: 6s}
"""


@pytest.fixture(scope="module")
def broker() -> Iterator[str]:
    with tansu_broker() as brokers:
        yield brokers


class Cluster:
    def __init__(self, tmp_path: Path, broker: str) -> None:
        self.tmp_path = tmp_path
        self.broker = broker
        self.topic = f"backend-{uuid.uuid4().hex[:8]}"
        self.blocks = tmp_path / "shared-blocks"
        self.procs: list[ServerProcess] = []

    def role(self, name: str, target: str, body: str = "") -> ServerProcess:
        home = self.tmp_path / name
        home.mkdir()
        proc = ServerProcess(home)
        proc.config.write_text(f"""
server: {{http_listen_address: 127.0.0.1, http_listen_port: {proc.http_port}, log_level: info}}
distributor: {{receivers: {{otlp: {{protocols: {{http: {{endpoint: "127.0.0.1:{proc.otlp_port}"}}}}}}}}}}
storage:
  trace:
    backend: local
    local: {{path: {self.blocks}, shared: true}}
    blocklist_poll: 1s
    wal:
      {{backend: kafka, partitions: 4, path: {home / "wal"}, kafka: {{brokers: '{self.broker}', topic: {self.topic}}}}}
block_builder: {{consume_cycle_duration: 1s}}
{BACKEND}
{body}""")
        proc.args = [f"-target={target}"]
        self.procs.append(proc)
        return proc

    def visible(self) -> list[dict]:
        return [json.loads(p.read_text()) for p in self.blocks.rglob("meta.json")]

    def close(self) -> None:
        for proc in self.procs:
            proc.close()


def send(distributor: ServerProcess, spans: list) -> None:  # noqa: ANN001
    exporter = OTLPSpanExporter(endpoint=distributor.otlp)
    try:
        assert exporter.export(spans) == SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()


def fetch(querier: ServerProcess, trace_id: bytes) -> dict:
    r = httpx.get(f"{querier.api}/api/traces/{trace_id.hex()}", headers={"Accept": "application/protobuf"},
                  timeout=30)
    assert r.status_code == 200, r.text
    return normalize(TracesData.FromString(r.content))


def services(proc: ServerProcess) -> dict[str, str]:
    text = httpx.get(f"{proc.api}/api/status/services", timeout=10).text
    return dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)


def jobs(scheduler: ServerProcess) -> dict[str, int]:
    return {k: int(v) for k, v in (kv.split("=") for kv in services(scheduler)["backend-scheduler-jobs"].split())}


def wait_until(check, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        time.sleep(0.3)


def test_scheduler_hands_jobs_to_workers_across_worker_and_scheduler_kills(broker: str, tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, broker)
    try:
        ingest = cluster.role("ingest", "distributor,live-store,block-builder",
                              "live_store: {complete_block_timeout: 2s}")
        querier = cluster.role("querier", "query-frontend,querier",
                               f'querier: {{live_stores: [{{url: "{ingest.api}"}}]}}')
        lead = cluster.role("scheduler-a", "backend-scheduler")
        standby = cluster.role("scheduler-b", "backend-scheduler")
        workers = f'backend_worker: {{schedulers: ["{lead.api}", "{standby.api}"], poll_interval: 0.5s}}'
        crashing = cluster.role("worker-1", "backend-worker", workers)
        steady = cluster.role("worker-2", "backend-worker", workers)
        for proc in (ingest, querier, lead):
            proc.start(timeout=60)
        wait_until(lambda: services(lead)["backend-scheduler-lead"].startswith("leader"), 60, "a leader")
        standby.start(timeout=60)
        # The standby joining does not move the lead (cooperative-sticky assignment; checked again below).
        assert services(standby)["backend-scheduler-lead"] == "standby"
        assert services(lead)["backend-scheduler-lead"].startswith("leader")

        sent: dict[bytes, dict] = {}
        for i in range(4):  # several block-builder cycles: several blocks per partition
            spans = sdk_spans(f"backend-{i}", traces=6)
            send(ingest, spans)
            sent |= by_trace(encoded(spans))
            time.sleep(1.5)
        total = sum(len(spans) for spans in sent.values())
        wait_until(lambda: sum(m["total_spans"] for m in cluster.visible()) == total, 60, "every span in blocks")
        assert len(cluster.visible()) > 2

        # The first worker dies with the merged block written and its inputs still visible.
        crashing.env = {"TEMPO_LITE_FAULT": "after-compacted-block"}
        crashing.start(timeout=60)
        assert crashing.proc is not None
        assert crashing.proc.wait(timeout=120) == -9
        assert sum(m["total_spans"] for m in cluster.visible()) > total, "the output and its inputs both visible"
        # The job times out and goes to the other worker, which finds the output and marks the inputs.
        steady.start(timeout=60)
        crashing.env = {}
        crashing.start(timeout=60)

        def compacted() -> bool:
            visible = cluster.visible()
            return (sum(m["total_spans"] for m in visible) == total and any(m["compaction_level"] > 0 for m in visible)
                    and sum(m["compaction_level"] == 0 for m in visible) <= 1)

        wait_until(compacted, 120, "the blocks compacted, once each")
        counts = jobs(lead)
        assert counts["timed_out"] >= 1 and counts["done"] >= 1, counts
        assert services(standby)["backend-scheduler-lead"] == "standby"
        for trace_id, want in sent.items():
            assert fetch(querier, trace_id) == want

        # The leading scheduler dies: the standby takes over and compacts what arrives next.
        lead.kill()
        wait_until(lambda: services(standby)["backend-scheduler-lead"] == "leader", 60, "the standby leads")
        for i in range(3):
            spans = sdk_spans(f"backend-late-{i}", traces=6)
            send(ingest, spans)
            sent |= by_trace(encoded(spans))
            time.sleep(1.5)
        total = sum(len(spans) for spans in sent.values())
        wait_until(lambda: jobs(standby)["done"] >= 1 and compacted(), 120, "the new leader's jobs done")
        levels = sorted(m["compaction_level"] for m in cluster.visible())
        assert levels[-1] >= 1
        for trace_id, want in sent.items():
            assert fetch(querier, trace_id) == want
    finally:
        cluster.close()

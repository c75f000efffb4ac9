"""tempo-lite split by role (`-target`): each role its own process, over a real Kafka-protocol broker (tansu)
and a shared block directory.

One distributor, two live-stores (partitions 0-1 and 2-3), one block-builder, one querier/query-frontend and
one metrics-generator.
Spans sent to the distributor are found by trace ID and by TraceQL search through the frontend while only
the live-stores hold them, and again from blocks once the live-stores have let them go. The block-builder is
killed (SIGKILL) between a block's meta.json and its WAL commit, and again from outside while running; every
restart reuses what was written, and in the end every partition's offsets are covered by exactly one block
per tenant and range, and every acknowledged trace comes back with exactly its spans.
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

from tempo_lite import spantable

pytestmark = pytest.mark.slow

TENANT = "single-tenant"


@pytest.fixture(scope="module")
def broker() -> Iterator[str]:
    with tansu_broker() as brokers:
        yield brokers


class Cluster:
    def __init__(self, tmp_path: Path, broker: str) -> None:
        self.tmp_path = tmp_path
        self.broker = broker
        self.topic = f"split-{uuid.uuid4().hex[:8]}"
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
{body}""")
        proc.args = [f"-target={target}"]
        self.procs.append(proc)
        return proc

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


def search(querier: ServerProcess, service: str) -> set[str]:
    """TraceQL search over the last hour: blocks and live-stores (without a range, Tempo searches recent data)."""
    now = int(time.time())
    r = httpx.get(f"{querier.api}/api/search", params={"q": f'{{ resource.service.name = "{service}" }}',
                                                       "limit": 1000, "start": now - 3600, "end": now + 60},
                  timeout=30)
    assert r.status_code == 200, r.text
    return {t["traceID"].rjust(32, "0") for t in r.json().get("traces", [])}


def live_spans(live_store: ServerProcess) -> int:
    r = httpx.get(f"{live_store.api}/internal/live/snapshot", params={"tenant": TENANT}, timeout=30)
    assert r.status_code == 200, r.text
    return spantable.from_ipc(r.content).num_spans


def calls(generator: ServerProcess, service: str) -> float:
    """traces_spanmetrics_calls_total summed over every series of `service`."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{generator.api}/metrics", timeout=30).text
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == "traces_spanmetrics_calls_total" and sample.labels.get("service") == service)


def metas(blocks: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in blocks.rglob("meta.json")]


def wait_until(check, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        time.sleep(0.2)


def test_split_roles_answer_live_and_from_blocks_across_block_builder_kills(broker: str, tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, broker)
    try:
        live_a = cluster.role("live-a", "live-store", "live_store: {complete_block_timeout: 4s, partitions: [0, 1]}")
        live_b = cluster.role("live-b", "live-store", "live_store: {complete_block_timeout: 4s, partitions: [2, 3]}")
        # Unused ports of the live-stores' own config are fine: URLs are what the querier is told.
        distributor = cluster.role("distributor", "distributor")
        querier = cluster.role("querier", "query-frontend,querier", f"""
querier:
  live_stores:
    - {{url: "{live_a.api}", partitions: [0, 1]}}
    - {{url: "{live_b.api}", partitions: [2, 3]}}
""")
        builder = cluster.role("block-builder", "block-builder")
        generator = cluster.role("generator", "metrics-generator", "metrics_generator: {enabled: true}")
        for proc in (live_a, live_b, distributor, querier, generator):
            proc.start(timeout=60)

        # Each process lists only its own components; a query sent to a process without the query roles is
        # told where to go.
        services = {line.split(":")[0] for line in httpx.get(f"{querier.api}/api/status/services").text.splitlines()}
        assert {"querier", "query-frontend", "block-list", "store"} <= services
        assert not services & {"distributor", "live-store", "wal", "block-builder"}
        services = {line.split(":")[0] for line in httpx.get(f"{live_a.api}/api/status/services").text.splitlines()}
        # Its components, its part in the partition ring, and the ring's partitions (test_roles_ring.py).
        assert {s for s in services if not s.startswith("partition-")} == {"wal", "live-store", "live-store-ring"}
        refused = httpx.get(f"{distributor.api}/api/search")
        assert refused.status_code == 404 and "-target=distributor" in refused.text

        sent: dict[bytes, dict] = {}
        first = sdk_spans("split-one", traces=12)
        send(distributor, first)
        sent |= by_trace(encoded(first))

        # Live: no block-builder has run, so only the live-stores hold the spans.
        for trace_id, want in sent.items():
            assert fetch(querier, trace_id) == want
        assert search(querier, "split-one") == {t.hex() for t in sent}
        assert not metas(cluster.blocks)
        held_a, held_b = live_spans(live_a), live_spans(live_b)
        assert held_a > 0 and held_b > 0, "each live-store holds its own partitions"
        assert held_a + held_b == sum(len(spans) for spans in sent.values())

        # The block-builder dies between its first block's meta.json and the WAL commit.
        builder.env = {"TEMPO_LITE_FAULT": "after-block-meta"}
        try:
            builder.start(timeout=60)
        except RuntimeError:
            pass  # it may die before it is ready
        assert builder.proc is not None
        assert builder.proc.wait(timeout=120) == -9
        written_before = {m["block_id"] for m in metas(cluster.blocks)}
        assert written_before, "the killed block-builder wrote a block before dying"

        second = sdk_spans("split-two", traces=12)
        send(distributor, second)
        sent |= by_trace(encoded(second))

        # Restarted: it reuses the interrupted flush's block; killed from outside while running, and again.
        builder.env = {}
        builder.start(timeout=60)
        third = sdk_spans("split-three", traces=12)
        send(distributor, third)
        sent |= by_trace(encoded(third))
        builder.kill()
        builder.start(timeout=60)

        # Everything reaches blocks; the live-stores then let it go (complete_block_timeout).
        wait_until(lambda: live_spans(live_a) + live_spans(live_b) == 0, 120, "live-stores hand over to blocks")
        blocks = [m for m in metas(cluster.blocks) if not m.get("compacted_unix")]
        assert written_before <= {m["block_id"] for m in blocks}, "the interrupted flush's block was reused"
        ranges: dict[tuple[str, int], list[tuple[int, int]]] = {}
        for m in blocks:
            ranges.setdefault((m["tenant"], m["source_partition"]), []).append(
                (m["source_first_offset"], m["source_end_offset"]))
        for key, spans in ranges.items():
            spans.sort()
            for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
                assert end <= start, f"{key}: blocks overlap: {spans}"
        assert sum(m["total_spans"] for m in blocks) == sum(len(s) for s in sent.values()), "no span lost or twice"

        # From blocks: every acknowledged trace with exactly its spans, and search finds every one.
        for trace_id, want in sent.items():
            assert fetch(querier, trace_id) == want
        for service, batch in (("split-one", first), ("split-two", second), ("split-three", third)):
            assert search(querier, service) == {t.hex() for t in by_trace(encoded(batch))}

        # The metrics-generator process counted every span once, from every partition.
        wait_until(lambda: calls(generator, "split-three") == len(third), 60, "span metrics of every span")
        assert calls(generator, "split-one") == len(first) and calls(generator, "split-two") == len(second)
    finally:
        cluster.close()


def test_split_role_refuses_a_wal_or_store_it_cannot_share(tmp_path: Path) -> None:
    import subprocess
    import sys

    config = tmp_path / "tempo.yaml"
    cases = [
        ("distributor", "storage: {trace: {backend: memory}}", "storage.trace.wal.backend is embedded"),
        ("querier", "storage: {trace: {backend: memory}}", "storage.trace.backend is memory"),
        ("block-builder", "storage: {trace: {wal: {backend: kafka, kafka: {brokers: 'x:1'}}}}",
         "storage.trace.local.shared: true"),
        ("querier", "storage: {trace: {local: {shared: true}}}", "querier.live_stores"),
    ]
    for target, text, why in cases:
        config.write_text(text + "\n")
        done = subprocess.run([sys.executable, "-m", "tempo_lite", "serve", "-c", str(config), f"-target={target}"],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and why in lines[0], done.stderr

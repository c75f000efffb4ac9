"""Query-frontend sharding over querier processes (frontend/sharding.py), each role its own process on a tansu
broker and a shared block directory: a distributor, two live-stores (partitions 0-1 and 2-3), a block-builder,
two queriers and one query-frontend listing them (`query_frontend.queriers`).

The frontend's answers for search (blocks and live), search of recent data, trace by ID, tags and tag values
(v1 and v2, with `q`, scope and limit) and TraceQL metrics (range and instant), all split into jobs, equal
those of a querier answering alone (the single-process code over every source) and those of an all-in-one
process sent the same spans (except queries of recent data only, which depend on what each has flushed). One
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
        # Every matching span (spss above the spans per trace): which `spss` spans a span set shows
        # otherwise depends on their order in the source (a block's or the live-store's), in one process too.
        "search": spans_sorted(get("/api/search", {"q": q, "limit": "1000", "spss": "100", **window})),
        "search-span": get("/api/search", {"q": '{ span.http.method = "GET" && kind = server }', "limit": "1000",
                                           "spss": "5", **window}),
        "search-live": get("/api/search", {"q": q, "limit": "1000"}),
        "tags": get("/api/v2/search/tags", window),
        "tags-q": get("/api/v2/search/tags", {"q": '{ span.http.method = "GET" }', "scope": "span", **window}),
        "tags-limit": get("/api/v2/search/tags", {"limit": "3", **window}),
        "tags-live": get("/api/v2/search/tags", {}),
        "tags-v1": get("/api/search/tags", window),
        "tags-v1-resource": get("/api/search/tags", {"scope": "resource", **window}),
        "tag-values": get("/api/v2/search/tag/resource.service.name/values", window),
        "tag-values-q": get("/api/v2/search/tag/span.http.method/values",
                            {"q": '{ resource.service.name = "shard-new" }', **window}),
        "tag-values-intrinsic": get("/api/v2/search/tag/name/values", window),
        "tag-values-event": get("/api/v2/search/tag/event.key/values", window),
        "tag-values-v1": get("/api/search/tag/service.name/values", window),
        "tag-values-limit": get("/api/v2/search/tag/span.int/values", {"limit": "1", **window}),
    }
    exemplars: list[dict] = []
    for i, metrics_q in enumerate(METRICS):
        for path in ("/api/metrics/query_range", "/api/metrics/query"):
            body = get(path, {"q": metrics_q, "step": "60", **window})
            for series in body.get("series", []):
                exemplars += series.pop("exemplars", [])
                # Sums of floats may differ in the last bits with the order spans are added in.
                for sample in series.get("samples", []):  # (protobuf JSON leaves out a zero value)
                    sample["value"] = f"{float(sample.get('value', 0)):.10g}"
                if path.endswith("/query"):
                    series["value"] = f"{float(series.get('value', 0)):.10g}"
            out[f"metrics-{i}-{path}"] = body
    # Exemplars are a sample (which spans depends on the order sources answer): each names a sent span.
    out["exemplar-traces"] = {(e["labels"][0]["key"], len(e["labels"][0]["value"]["stringValue"]) > 0)
                              for e in exemplars if e.get("labels")}
    return out


LIVE_ONLY = {"search-live", "tags-live"}
METRICS = [
    "{ } | rate() by (resource.service.name)",
    "{ } | count_over_time()",
    "{ } | avg_over_time(duration) by (name)",
    "{ } | quantile_over_time(duration, .5, .99) by (resource.service.name)",
    "{ } | histogram_over_time(duration)",
    '{ } | compare({ name = "load" })',
    '({ kind = server } | rate()) / ({ } | rate())',
    "{ } | count_over_time() by (name) | topk(2)",
    '{ status = error } | max_over_time(duration) by (span.str)',
]


def spans_sorted(body: dict) -> dict:
    for trace in body.get("traces", []):
        for span_set in [trace.get("spanSet", {}), *trace.get("spanSets", [])]:
            span_set.get("spans", []).sort(key=lambda span: span["spanID"])
    return body


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
    # No end cutoff: metrics answers must not move with the clock while the test compares them.
    no_cutoff = "query_frontend: {query_end_cutoff: 0s}\n"
    q1 = kafka_role(tmp_path, broker, topic, "querier-1", "querier", live_list + no_cutoff)
    q2 = kafka_role(tmp_path, broker, topic, "querier-2", "querier", live_list + no_cutoff)
    frontend = kafka_role(tmp_path, broker, topic, "frontend", "query-frontend",
                    live_list + f"query_frontend: {{query_end_cutoff: 0s, queriers: ['{q1.api}', '{q2.api}']}}\n")
    # The same spans in one all-in-one process (embedded WAL, its own blocks): the answers to compare with.
    (tmp_path / "all").mkdir()
    single = ServerProcess(tmp_path / "all", extra=no_cutoff)
    procs = [live_a, live_b, builder, distributor, q1, q2, frontend, single]
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
        send(single, old)
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
        send(single, new)
        sent |= by_trace(encoded(new))

        now = int(time.time())
        alone = answers(q1, now)
        assert len(alone["search"]["traces"]) == len(sent)  # type: ignore[index]
        assert len(alone["search-live"]["traces"]) == 10  # type: ignore[index]
        assert answers(frontend, now) == alone
        # The all-in-one process answers the same (but for what is still in its live-store: its own
        # block-builder flushes on its own schedule).
        one = answers(single, now)
        differ = [k for k in alone if k not in LIVE_ONLY and one[k] != alone[k]]
        assert not differ, [(k, one[k], alone[k]) for k in differ]
        for trace_id, want in sent.items():
            assert fetch(frontend, trace_id) == want == fetch(single, trace_id)

        # A querier dies while queries run: each still answers the same (its jobs go to the other one).
        failures: list[str] = []
        done = threading.Event()
        rounds = [0]

        def query_loop() -> None:
            while not done.is_set():
                try:
                    got = answers(frontend, now)
                    if got != alone:
                        failures.append("a different answer: " + ", ".join(k for k in alone if got.get(k) != alone[k]))
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

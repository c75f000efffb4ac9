"""Sustained full-speed ingest into a real `tempo-lite serve` keeps the process's memory within
`live_store.max_bytes` plus the overhead docs/reliability.md states, and keeps ingest flowing: a 503
(always with Retry-After) never lasts a whole block cycle, and what was acknowledged is found. When
blocks cannot be written, the live-store fills to `max_bytes` (counting what is acknowledged but not yet
decoded), writes are refused with 503 and Retry-After, and memory stays within the stated bound."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from server_process import ServerProcess

MAX_BYTES = 64 << 20
# docs/reliability.md: peak RSS <= idle RSS + max_bytes + storage.trace.cache_bytes (the block cache
# fills as blocks are written) + live_store.memory_overhead_bytes (160 MiB, the memory watch's allowance)
# + what is in flight when the watch trips (OVERSHOOT: at this max_bytes, the request bytes in flight, a
# 4 MiB block being encoded, a 1 MiB WAL batch being decoded; sampled every 0.1 s) whatever the ingest
# rate; <= idle RSS + 1.25 x max_bytes + 64 MiB when storage does not keep up.
CACHE_BYTES = 16 << 20
MEMORY_OVERHEAD = 160 << 20
OVERSHOOT = 64 << 20
RATE_OVERHEAD = CACHE_BYTES + MEMORY_OVERHEAD + OVERSHOOT
STATED_OVERHEAD = 64 << 20
CYCLE_SECONDS = 10
LOAD_SECONDS = 20


def request(rng: random.Random, spans: int = 1000) -> tuple[bytes, list[bytes]]:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value="memory-test")))
    scope_spans = rs.scope_spans.add()
    trace_ids = [rng.randbytes(16) for _ in range(spans // 10)]
    now = time.time_ns()  # recent: spans older than block_retention (14 days) are expired by the compactor
    for i in range(spans):
        attrs = [KeyValue(key=f"attr.{k}", value=AnyValue(string_value=f"value-{rng.randrange(100_000)}"))
                 for k in range(8)]
        scope_spans.spans.append(Span(
            trace_id=trace_ids[i % len(trace_ids)], span_id=rng.randbytes(8), name=f"op-{i % 20}",
            start_time_unix_nano=now + i, end_time_unix_nano=now + 1_000_000 + i,
            attributes=attrs,
        ))
    return req.SerializeToString(), trace_ids


def server_for(tmp_path: Path, memory_overhead: int = MEMORY_OVERHEAD) -> ServerProcess:
    server = ServerProcess(tmp_path, cycle=f"{CYCLE_SECONDS}s", extra=f"""
live_store: {{max_bytes: {MAX_BYTES}, memory_overhead_bytes: {memory_overhead}}}
overrides:
  defaults:
    ingestion: {{rate_limit_bytes: 10000000000, burst_size_bytes: 10000000000}}
""")
    text = server.config.read_text()
    assert "storage:\n  trace:\n" in text
    cache = f"storage:\n  trace:\n    cache_bytes: {CACHE_BYTES}\n"
    server.config.write_text(text.replace("storage:\n  trace:\n", cache))
    return server


Answers = list[tuple[float, int, str | None]]


def full_speed(server: ServerProcess, seconds: float) -> tuple[int, int, Answers, list[bytes]]:
    """3 clients sending 1,000-span requests as fast as answered; (idle RSS, peak RSS, answers, acked IDs)."""
    rng = random.Random(14)
    payloads = [request(rng) for _ in range(8)]
    proc = psutil.Process(server.proc.pid)  # type: ignore[union-attr]
    time.sleep(1.0)
    idle = proc.memory_info().rss
    peak = [idle]
    answers: Answers = []
    acknowledged: list[bytes] = []
    lock = threading.Lock()
    done = threading.Event()
    stop_at = time.monotonic() + seconds

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.05)

    def client(k: int) -> None:
        with httpx.Client(timeout=60) as http:
            i = k
            while time.monotonic() < stop_at:
                body, ids = payloads[i % len(payloads)]
                r = http.post(server.otlp, content=body, headers={"Content-Type": "application/x-protobuf"})
                with lock:
                    answers.append((time.monotonic(), r.status_code, r.headers.get("retry-after")))
                    if r.status_code == 200:
                        acknowledged.extend(ids)
                if r.status_code == 503:
                    time.sleep(0.1)
                i += 3

    threads = [threading.Thread(target=sample)] + [threading.Thread(target=client, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads[1:]:
        t.join()
    done.set()
    threads[0].join()
    return idle, peak[0], answers, acknowledged


def check_flowing(answers: Answers, acknowledged: list[bytes]) -> float:
    """Every answer 200 or 503 with Retry-After, something acknowledged, no all-503 run as long as a block
    cycle; returns the longest all-503 run in seconds."""
    assert {status for _, status, _ in answers} <= {200, 503}, sorted({s for _, s, _ in answers})
    assert all(retry is not None for _, status, retry in answers if status == 503)
    assert acknowledged, "nothing was acknowledged"
    streak_start = None
    longest = 0.0
    for at, status, _ in answers:
        if status == 503:
            streak_start = at if streak_start is None else streak_start
            longest = max(longest, at - streak_start)
        else:
            streak_start = None
    assert longest < CYCLE_SECONDS, f"every write was refused for {longest:.1f}s"
    return longest


def check_found(server: ServerProcess, acknowledged: list[bytes]) -> None:
    for trace_id in random.Random(1).sample(sorted(set(acknowledged)), 20):
        r = httpx.get(f"{server.api}/api/traces/{trace_id.hex()}", timeout=30)
        assert r.status_code == 200, trace_id.hex()


@pytest.mark.slow
def test_sustained_ingest_stays_within_the_memory_bound_and_keeps_flowing(tmp_path: Path) -> None:
    server = server_for(tmp_path)
    server.start(timeout=60)
    try:
        idle, peak, answers, acknowledged = full_speed(server, LOAD_SECONDS)
        longest = check_flowing(answers, acknowledged)
        growth = peak - idle
        assert growth <= MAX_BYTES + RATE_OVERHEAD, (
            f"peak RSS {peak >> 20} MiB is {growth >> 20} MiB above idle ({idle >> 20} MiB): more than "
            f"max_bytes {MAX_BYTES >> 20} MiB + {RATE_OVERHEAD >> 20} MiB"
        )
        check_found(server, acknowledged)
        print(f"idle {idle >> 20} MiB, peak {peak >> 20} MiB, {len(answers)} answers, "
              f"{sum(1 for _, s, _ in answers if s == 503)} answered 503, longest 503 streak {longest:.1f}s")
    finally:
        server.close()


@pytest.mark.slow
def test_over_its_memory_bound_the_server_flushes_early_and_keeps_ingest_flowing(tmp_path: Path) -> None:
    # 8 MiB of overhead (+ the 16 MiB cache) is less than the working set of full-speed ingest: the memory
    # watch trips and stays over for most of the run. Writes are refused only while the live-store holds a pressure
    # flush's worth, so ingest keeps flowing (in smaller blocks), and nothing acknowledged is lost.
    server = server_for(tmp_path, memory_overhead=8 << 20)
    server.start(timeout=60)
    try:
        idle, peak, answers, acknowledged = full_speed(server, LOAD_SECONDS)
        longest = check_flowing(answers, acknowledged)
        log = server.log.read_text()
        assert "resident memory is" in log and "flushing early" in log, "the memory watch never tripped"
        check_found(server, acknowledged)
        print(f"idle {idle >> 20} MiB, peak {peak >> 20} MiB, {len(answers)} answers, "
              f"{sum(1 for _, s, _ in answers if s == 503)} answered 503, longest 503 streak {longest:.1f}s")
    finally:
        server.close()


@pytest.mark.slow
def test_when_blocks_cannot_be_written_ingest_is_refused_at_the_bound(tmp_path: Path) -> None:
    (tmp_path / "blocks").mkdir()
    (tmp_path / "blocks" / "single-tenant").write_text("a file where the tenant's directory belongs")
    server = server_for(tmp_path)
    server.start(timeout=60)
    try:
        idle, peak, answers, _ = full_speed(server, LOAD_SECONDS)
        statuses = [status for _, status, _ in answers]
        assert set(statuses) <= {200, 503}
        assert 503 in statuses, "the live-store never filled: no write was refused"
        assert all(retry is not None for _, status, retry in answers if status == 503)
        metrics = httpx.get(server.api + "/metrics", timeout=30).text
        live = next(float(line.split()[-1]) for line in metrics.splitlines()
                    if line.startswith("tempo_live_store_bytes "))
        assert live <= MAX_BYTES * 1.25, f"live-store holds {live / 2**20:.0f} MiB of {MAX_BYTES >> 20} MiB"
        growth = peak - idle
        assert growth <= MAX_BYTES * 1.25 + STATED_OVERHEAD, (
            f"peak RSS {peak >> 20} MiB is {growth >> 20} MiB above idle ({idle >> 20} MiB)"
        )
        print(f"idle {idle >> 20} MiB, peak {peak >> 20} MiB, live-store {live / 2**20:.0f} MiB, "
              f"{statuses.count(200)} acknowledged, {statuses.count(503)} answered 503")
    finally:
        server.close()

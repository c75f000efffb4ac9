"""Benchmark: trace by ID through the HTTP API of a real `tempo-lite serve` process over existing blocks.

    .venv/bin/python bench/make_blocks.py /tmp/tl-5m            # 10 blocks x 500k spans, once
    .venv/bin/python bench/trace_by_id.py /tmp/tl-5m [--requests 400] [--profile]

Starts the server on free ports with DIR/blocks as its local store (compaction off, so the blocks stay
as they are), waits `--wait` seconds (the block list loads caches after its first poll), then asks
`GET /api/v2/traces/<id>` (Accept: application/protobuf, as `query_vs_duckdb.py` does) for random trace
IDs taken from the visible blocks, one request at a time, after one lookup per block (reported
separately as the first-request figure). Prints p50/p90/p99/max latency, the load average and the
server's RSS.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
import psutil  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from tests.server_process import ServerProcess  # noqa: E402


def sample_trace_ids(blocks: Path, count: int, seed: int) -> tuple[list[str], list[str]]:
    """(one trace ID per block to warm the caches, `count` random trace IDs over all blocks)."""
    rng = random.Random(seed)
    ids: list[str] = []
    warm: list[str] = []
    for traces in sorted(blocks.glob("*/*/traces.parquet")):
        if not (traces.parent / "meta.json").exists():
            continue  # compacted or being written: not visible
        block_ids = [t.hex() for t in pq.read_table(traces, columns=["trace_id"]).column("trace_id").to_pylist()]
        warm.append(rng.choice(block_ids))
        ids += block_ids
    return warm, rng.sample(ids, min(count, len(ids)))


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--wait", type=float, default=5.0, help="seconds between ready and the first request")
    args = parser.parse_args()
    blocks = args.dir / "blocks"
    n_blocks = len(list(blocks.glob("*/*/meta.json")))
    warm_ids, trace_ids = sample_trace_ids(blocks, args.requests, args.seed)
    server = ServerProcess(args.dir, cycle="1h", extra="compactor: {compaction: {compaction_cycle: 100h}}")
    server.start(timeout=120)
    time.sleep(args.wait)
    try:
        with httpx.Client(base_url=server.api, headers={"Accept": "application/protobuf"}, timeout=30) as client:
            client.get("/api/echo")
            # The first lookup in a block loads its bloom filter and Parquet footer into the cache.
            cold_ms = []
            for tid in warm_ids:
                t0 = time.perf_counter()
                client.get(f"/api/v2/traces/{tid}")
                cold_ms.append((time.perf_counter() - t0) * 1000)
            latencies: list[float] = []
            # Server CPU time per request: what a lookup costs, much less sensitive to other jobs on the
            # machine than latency is.
            proc = psutil.Process(server.proc.pid)
            cpu0 = sum(proc.cpu_times()[:2])
            sizes = 0
            for tid in trace_ids:
                t0 = time.perf_counter()
                r = client.get(f"/api/v2/traces/{tid}")
                elapsed = (time.perf_counter() - t0) * 1000
                if r.status_code != 200:
                    raise SystemExit(f"trace {tid}: HTTP {r.status_code}: {r.text[:200]}")
                sizes += len(r.content)
                latencies.append(elapsed)
            missing = "ab" * 16
            t0 = time.perf_counter()
            r = client.get(f"/api/v2/traces/{missing}")
            not_found = (time.perf_counter() - t0) * 1000
            cpu_ms = (sum(proc.cpu_times()[:2]) - cpu0) * 1000 / len(trace_ids)
        rss = psutil.Process(server.proc.pid).memory_info().rss
    finally:
        server.terminate()
    print(f"blocks: {n_blocks}, requests: {len(latencies)}, mean response {sizes / len(latencies):.0f} bytes")
    print(f"first request per block (cold caches): median {statistics.median(cold_ms):.1f} ms, "
          f"max {max(cold_ms):.1f} ms; absent trace: {not_found:.1f} ms (HTTP {r.status_code})")
    warm = latencies
    print(f"server CPU per request: {cpu_ms:.2f} ms")
    print(f"p50 {percentile(warm, 50):.1f} ms  p90 {percentile(warm, 90):.1f} ms  p99 {percentile(warm, 99):.1f} ms  "
          f"max {max(warm):.1f} ms  mean {statistics.fmean(warm):.1f} ms")
    print(f"server RSS after the run: {rss / 2**20:.0f} MiB; load average {os.getloadavg()}")


if __name__ == "__main__":
    main()

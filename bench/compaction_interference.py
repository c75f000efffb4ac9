"""Benchmark: trace-by-ID latency over HTTP while the compactor merges blocks in the same process.

    .venv/bin/python bench/compaction_interference.py DIR [--blocks 4] [--spans-per-block 200000]

Writes `--blocks` level-0 blocks of synthetic spans (same hour, so the compactor merges them all into
one) into DIR/seed once, then
runs a `tempo-lite serve` process twice on copies of them: once with compaction off, once with a
compaction cycle of `--cycle` seconds. Each run asks `GET /api/v2/traces/<id>` (protobuf) for random
trace IDs of the input blocks, one request at a time; the compaction run keeps asking until the merged
block's `meta.json` exists and reports only the requests made while it was being built. Prints
p50/p90/p99/max for both, the load average and how long the compaction took. Requests go one after
another, so a stall of the server shows as one slow request (max), not many. Figures:
docs/benchmarks.md, "Compaction and query latency".
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import trio  # noqa: E402
from payloads import span_table  # noqa: E402

from tempo_lite.block.meta import block_id_for  # noqa: E402
from tempo_lite.block.writer import encode_block, write_block  # noqa: E402
from tempo_lite.storage.store import local_store  # noqa: E402
from tests.server_process import ServerProcess  # noqa: E402

TENANT = "single-tenant"


async def make_blocks(blocks: Path, count: int, spans: int) -> None:
    store = local_store(str(blocks))
    hour = 3_600_000_000_000
    start = (time.time_ns() // hour - 1) * hour  # one compaction window, within retention
    for i in range(count):
        table = span_table(spans, seed=1000 + i, start_ns=start + i * 1_000_000)
        block = encode_block(table, block_id=block_id_for(TENANT, 0, i), tenant=TENANT)
        await write_block(store, block)
        print(f"block {i}: {block.meta.total_spans} spans", flush=True)


def visible(blocks: Path) -> list[Path]:
    return sorted(p.parent for p in blocks.glob(f"{TENANT}/*/meta.json"))


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def run(seed_dir: Path, work: Path, *, compact: bool, cycle: float, requests: int, ids: list[str]) -> list[float]:
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    shutil.copytree(seed_dir / "blocks", work / "blocks")
    inputs = set(visible(work / "blocks"))
    extra = f"compactor: {{compaction: {{compaction_cycle: {cycle if compact else 360000}s}}}}"
    server = ServerProcess(work, cycle="1h", extra=extra)
    server.start(timeout=120)
    latencies: list[float] = []
    try:
        with httpx.Client(base_url=server.api, headers={"Accept": "application/protobuf"}, timeout=60) as client:
            for tid in ids[:20]:  # warm
                client.get(f"/api/v2/traces/{tid}")
            began = time.monotonic()
            rng = random.Random(3)
            while True:
                if compact:
                    if set(visible(work / "blocks")) - inputs:
                        break
                elif len(latencies) >= requests:
                    break
                tid = rng.choice(ids)
                t0 = time.perf_counter()
                r = client.get(f"/api/v2/traces/{tid}")
                latencies.append((time.perf_counter() - t0) * 1000)
                if r.status_code != 200:
                    raise SystemExit(f"trace {tid}: HTTP {r.status_code}: {r.text[:200]}")
            took = time.monotonic() - began
    finally:
        server.terminate()
    what = f"during compaction ({took:.1f}s after the first request)" if compact else "compaction off"
    print(f"{what}: {len(latencies)} requests, p50 {percentile(latencies, 50):.1f} ms  "
          f"p90 {percentile(latencies, 90):.1f} ms  p99 {percentile(latencies, 99):.1f} ms  "
          f"max {max(latencies):.1f} ms; load average {os.getloadavg()}", flush=True)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path)
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--spans-per-block", type=int, default=200_000)
    parser.add_argument("--requests", type=int, default=300, help="requests in the run without compaction")
    parser.add_argument("--cycle", type=float, default=3.0, help="compaction cycle (s) in the compaction run")
    parser.add_argument("--only", choices=["off", "on"], default=None)
    args = parser.parse_args()
    seed_dir = args.dir / "seed"
    if not (seed_dir / "blocks").exists():
        trio.run(make_blocks, seed_dir / "blocks", args.blocks, args.spans_per_block)
    ids: list[str] = []
    for block in visible(seed_dir / "blocks"):
        ids += [t.hex() for t in pq.read_table(block / "traces.parquet", columns=["trace_id"])
                .column("trace_id").to_pylist()]
    random.Random(7).shuffle(ids)
    ids = ids[:5000]
    if args.only != "on":
        run(seed_dir, args.dir / "off", compact=False, cycle=args.cycle, requests=args.requests, ids=ids)
    if args.only != "off":
        run(seed_dir, args.dir / "on", compact=True, cycle=args.cycle, requests=args.requests, ids=ids)


if __name__ == "__main__":
    main()

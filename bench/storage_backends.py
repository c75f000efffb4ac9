"""Benchmark: trace by ID and one search on the S3 emulator (moto) beside local disk, same blocks, same run.

    .venv/bin/python bench/storage_backends.py [--blocks 4] [--spans-per-block 250000] [--lookups 200]

Writes synthetic blocks once, copies them to an S3 bucket on a moto server started here, then queries each
store through the querier (in-process, fresh caches): trace-by-ID latency p50/p99 and bytes read from the
store per lookup (cold first lookup per block reported apart), and one TraceQL search's time and bytes read.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pyarrow.parquet as pq  # noqa: E402
import trio  # noqa: E402
from payloads import BASE_NS, span_table  # noqa: E402

from tempo_lite import spantable  # noqa: E402
from tempo_lite.block.blocklist import BlockList  # noqa: E402
from tempo_lite.block.meta import block_id_for  # noqa: E402
from tempo_lite.block.writer import encode_block, write_block  # noqa: E402
from tempo_lite.metrics import Metrics  # noqa: E402
from tempo_lite.querier.search import Searcher, SearchRequest, parse_search_query  # noqa: E402
from tempo_lite.querier.tracebyid import Querier  # noqa: E402
from tempo_lite.storage.backends import open_store  # noqa: E402
from tempo_lite.storage.cache import ByteCache  # noqa: E402
from tempo_lite.storage.store import ObjectStore, local_store  # noqa: E402
from tests.storage_emulators import make_s3_emulator  # noqa: E402

TENANT = "single-tenant"
QUERY = '{ span.http.method = "DELETE" && span.http.status_code = 500 } with (most_recent=true)'


class NoLiveSpans:
    """An empty live-store: only blocks are measured."""

    def snapshot(self, tenant: str) -> spantable.SpanTable:
        return spantable.empty_span_table()

    def find_trace(self, tenant: str, trace_id: bytes) -> None:
        return None


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


async def copy_tree(src: ObjectStore, dst: ObjectStore, prefix: str = "") -> None:
    for name in await src.list(prefix):
        path = f"{prefix}/{name}" if prefix else name
        if await src.list(path):
            await copy_tree(src, dst, path)
        else:
            await dst.write(path, await src.read(path))


async def measure(name: str, store: ObjectStore, trace_ids: list[bytes]) -> None:
    blocklist = BlockList(store)
    await blocklist.poll()
    querier = Querier(NoLiveSpans(), blocklist, store, ByteCache(256 << 20), Metrics())  # type: ignore[arg-type]
    cold: list[tuple[float, int]] = []
    warm: list[tuple[float, int]] = []
    for i, tid in enumerate(trace_ids):
        before = store.bytes_read
        t0 = time.perf_counter()
        found = await querier.find_trace(TENANT, tid)
        elapsed = (time.perf_counter() - t0) * 1000
        assert found.table is not None, tid.hex()
        (cold if i == 0 else warm).append((elapsed, store.bytes_read - before))
    lat = [ms for ms, _ in warm]
    data_bytes = sum(m.size_bytes for m in blocklist.blocks(TENANT))
    print(f"{name:6} trace by ID: first (cold caches) {cold[0][0]:7.1f} ms, {cold[0][1] / 1e3:8.1f} kB read; "
          f"then p50 {pct(lat, 50):6.1f} ms, p99 {pct(lat, 99):6.1f} ms, "
          f"{statistics.mean(b for _, b in warm) / 1e3:7.1f} kB read per lookup "
          f"(blocks total {data_bytes / 1e6:.1f} MB)")
    searcher = Searcher(querier)
    query = parse_search_query(QUERY)
    req = SearchRequest(query=query, legacy=None, start_ns=0, end_ns=0, limit=20, spss=3, live_only=False)
    for run in ("cold", "warm"):
        before = store.bytes_read
        t0 = time.perf_counter()
        found, _ = await searcher.search(TENANT, req)
        print(f"{name:6} search ({run}): {(time.perf_counter() - t0) * 1000:7.0f} ms, {len(found)} traces, "
              f"{(store.bytes_read - before) / 1e6:6.1f} MB read")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--spans-per-block", type=int, default=250_000)
    parser.add_argument("--lookups", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        local = local_store(str(Path(tmp) / "blocks"))
        for i in range(args.blocks):
            table = span_table(args.spans_per_block, seed=2000 + i, start_ns=BASE_NS + i * 3_600_000_000_000)
            block = await trio.to_thread.run_sync(
                lambda t=table, i=i: encode_block(t, block_id=block_id_for(TENANT, 0, i), tenant=TENANT))
            await write_block(local, block)
        ids: list[bytes] = []
        for path in sorted((Path(tmp) / "blocks" / TENANT).glob("*/traces.parquet")):
            ids += pq.read_table(path, columns=["trace_id"]).column("trace_id").to_pylist()
        sample = random.Random(7).sample(ids, min(args.lookups, len(ids)))
        emulator = make_s3_emulator(Path(tmp))
        await trio.to_thread.run_sync(emulator.start)
        try:
            s3 = await open_store("s3", emulator.config)
            await copy_tree(local, s3)
            print(f"{args.blocks} blocks x {args.spans_per_block} spans; {len(sample)} lookups; search: {QUERY}")
            await measure("local", local, sample)
            await measure("s3", s3, sample)
        finally:
            await trio.to_thread.run_sync(emulator.stop)


if __name__ == "__main__":
    trio.run(main)

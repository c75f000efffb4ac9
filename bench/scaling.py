"""Benchmark: the split topology with one live-store and one querier against two of each, on tansu.

    .venv/bin/python bench/scaling.py [--seconds 15] [--clients 4] [--spans-per-request 200] [--searches 15]

Each topology runs on a fresh memory-only tansu broker (4 WAL partitions) and a fresh shared block directory,
every role its own `tempo-lite serve` process:

- `1x`: distributor, live-store (partitions 0-3), block-builder, querier;
- `2x`: distributor, live-stores (0-1, 2-3), block-builder, two queriers behind a sharding query-frontend.

Measured per topology: acknowledged ingest (spans/s and p50/p99 request latency, `--clients` threads sending
pre-encoded OTLP/HTTP requests of `--spans-per-request` spans for `--seconds`), how long after the load the
live-stores had consumed every acknowledged span (`catch-up`: their read-after-write wait), and search
latency (p50/p95 over `--searches` rounds of three TraceQL searches through the query address: the
querier for `1x`, the frontend for `2x`), once everything is in blocks and live. The load average is
printed with the results: every process of a topology shares the machine's cores, so on a small machine
two processes per role compete rather than add.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import httpx  # noqa: E402
from payloads import BASE_NS, request_bytes  # noqa: E402
from server_process import ServerProcess  # noqa: E402
from wal_brokers import tansu_broker  # noqa: E402

EXTRA = """
overrides:
  defaults:
    ingestion: {rate_limit_bytes: 10000000000, burst_size_bytes: 10000000000}
"""
QUERIES = [
    '{ span.http.status_code = 500 }',
    '{ resource.service.name = "svc-cart" && span.http.method = "POST" }',
    '{ span.http.route = "/api/checkout" } | count() > 2',
]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else float("nan")


class Topology:
    def __init__(self, root: Path, broker: str, live_stores: int) -> None:
        self.root, self.broker, self.n = root, broker, live_stores
        self.procs: list[ServerProcess] = []

    def role(self, name: str, target: str, body: str = "") -> ServerProcess:
        home = self.root / name
        home.mkdir()
        proc = ServerProcess(home)
        proc.config.write_text(f"""
server: {{http_listen_address: 127.0.0.1, http_listen_port: {proc.http_port}, log_level: warn}}
distributor: {{receivers: {{otlp: {{protocols: {{http: {{endpoint: "127.0.0.1:{proc.otlp_port}"}}}}}}}}}}
storage:
  trace:
    backend: local
    local: {{path: {self.root / "blocks"}, shared: true}}
    blocklist_poll: 2s
    wal: {{backend: kafka, partitions: 4, path: {home / "wal"}, kafka: {{brokers: '{self.broker}', topic: bench}}}}
block_builder: {{consume_cycle_duration: 5s}}
{EXTRA}
{body}""")
        proc.args = [f"-target={target}"]
        self.procs.append(proc)
        return proc

    def start(self) -> tuple[ServerProcess, ServerProcess, list[ServerProcess]]:
        parts = [[0, 1, 2, 3]] if self.n == 1 else [[0, 1], [2, 3]]
        lives = [self.role(f"live-{i}", "live-store", f"live_store: {{partitions: {p}, complete_block_timeout: 30s}}")
                 for i, p in enumerate(parts)]
        listing = "querier:\n  live_stores:\n" + "".join(
            f"    - {{url: '{live.api}', partitions: {p}}}\n" for live, p in zip(lives, parts, strict=True))
        distributor = self.role("distributor", "distributor")
        self.role("block-builder", "block-builder")
        queriers = [self.role(f"querier-{i}", "querier", listing) for i in range(self.n)]
        query = queriers[0]
        if self.n > 1:
            urls = ", ".join(f"'{q.api}'" for q in queriers)
            query = self.role("frontend", "query-frontend", listing + f"query_frontend: {{queriers: [{urls}]}}\n")
        for proc in lives:
            proc.start(timeout=120)
        for proc in self.procs:
            if proc.proc is None:
                proc.spawn()
        for proc in self.procs:
            proc.wait_ready(timeout=120)
        return distributor, query, lives

    def close(self) -> None:
        for proc in self.procs:
            proc.close()


def ingest(url: str, payloads: list[bytes], spans_each: int, seconds: float, clients: int) -> dict[str, float]:
    latencies: list[float] = []
    acked = [0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client(offset: int) -> None:
        with httpx.Client(timeout=60) as http:
            i = offset
            while time.monotonic() < stop:
                t0 = time.perf_counter()
                r = http.post(url, content=payloads[i % len(payloads)],
                              headers={"Content-Type": "application/x-protobuf"})
                took = time.perf_counter() - t0
                i += clients
                if r.status_code == 200:
                    with lock:
                        acked[0] += spans_each
                        latencies.append(took)

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    return {"spans": acked[0], "spans_s": acked[0] / elapsed, "p50_ms": percentile(latencies, 50) * 1000,
            "p99_ms": percentile(latencies, 99) * 1000}


def caught_up(lives: list[ServerProcess]) -> None:
    """Until every live-store has consumed what the WAL held when asked: its read-after-write wait (at most
    10 s per call; an unknown trace ID, so the answer itself is empty)."""
    for live in lives:
        while True:
            t0 = time.monotonic()
            r = httpx.get(f"{live.api}/internal/live/trace", params={"tenant": "single-tenant", "id": "ab" * 16,
                                                                     "wait": "10"}, timeout=120)
            assert r.status_code in (200, 404), r.text
            if time.monotonic() - t0 < 9.5:
                break


def search_latency(query: ServerProcess, rounds: int) -> dict[str, float]:
    start = BASE_NS // 1_000_000_000 - 60
    times: list[float] = []
    with httpx.Client(timeout=120) as http:
        for _ in range(rounds):
            for q in QUERIES:
                t0 = time.perf_counter()
                # The payloads' spans start at BASE_NS (payloads.py); a search range is at most 7 days.
                r = http.get(f"{query.api}/api/search", params={"q": q, "limit": "20", "start": str(start),
                                                                "end": str(start + 6 * 86400)})
                times.append(time.perf_counter() - t0)
                assert r.status_code == 200, r.text
    return {"search_p50_ms": percentile(times, 50) * 1000, "search_p95_ms": percentile(times, 95) * 1000}


def run(n: int, args: argparse.Namespace, payloads: list[bytes]) -> dict[str, float]:
    with tansu_broker() as broker, tempfile.TemporaryDirectory(prefix="tl-scaling-") as tmp:
        topology = Topology(Path(tmp), broker, n)
        try:
            distributor, query, lives = topology.start()
            result = ingest(distributor.otlp, payloads, args.spans_per_request, args.seconds, args.clients)
            t0 = time.monotonic()
            caught_up(lives)
            result["catch_up_s"] = time.monotonic() - t0
            time.sleep(6)  # a block-builder cycle: searches read blocks and live-stores
            result |= search_latency(query, args.searches)
            result["load"] = os.getloadavg()[0]
            return result
        finally:
            topology.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--spans-per-request", type=int, default=200)
    parser.add_argument("--searches", type=int, default=15)
    parser.add_argument("--only", choices=["1x", "2x"], help="run one topology")
    args = parser.parse_args()
    payloads = [request_bytes(args.spans_per_request, seed=s) for s in range(64)]
    print(f"cores: {os.cpu_count()}, load before: {os.getloadavg()[0]:.1f}")
    print("| topology | ack'd spans/s | p50 ms | p99 ms | catch-up s | search p50 ms | search p95 ms | load |")
    print("|---|---|---|---|---|---|---|---|")
    for name, n in (("1x", 1), ("2x", 2)):
        if args.only and args.only != name:
            continue
        r = run(n, args, payloads)
        label = "1 live-store, 1 querier" if n == 1 else "2 live-stores, 2 queriers + frontend"
        print(f"| {label} | {r['spans_s']:.0f} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {r['catch_up_s']:.1f} | "
              f"{r['search_p50_ms']:.0f} | {r['search_p95_ms']:.0f} | {r['load']:.1f} |", flush=True)


if __name__ == "__main__":
    main()

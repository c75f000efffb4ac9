"""Benchmark: peak RSS and 503 streaks of a real `tempo-lite serve` under sustained ingest, shipped defaults.

    .venv/bin/python bench/ingest_memory.py [--seconds 60] [--clients 4] [--spans-per-request 1000] [--max-bytes N]

The server runs with the default live-store and block-builder settings (only the ingestion rate limit
is raised out of the way). Prints acknowledged spans/s, the server's peak RSS (psutil, every 50 ms),
the peak of `tempo_live_store_bytes`, how many requests got 503 and the longest run of seconds in
which every answer was a 503, with the server's idle RSS and the machine's load average (the figures
move with the load: on 2 shared cores, a loaded machine acknowledges fewer spans/s).
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

import httpx  # noqa: E402
import psutil  # noqa: E402
from ingest_http import EXTRA  # noqa: E402
from payloads import request_bytes  # noqa: E402

from tests.server_process import ServerProcess  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--spans-per-request", type=int, default=1000)
    parser.add_argument("--max-bytes", type=int, default=None,
                        help="live_store.max_bytes (default: the shipped default)")
    args = parser.parse_args()
    payloads = [request_bytes(args.spans_per_request, seed=i) for i in range(20)]
    with tempfile.TemporaryDirectory() as tmp:
        extra = EXTRA if args.max_bytes is None else EXTRA + f"live_store: {{max_bytes: {args.max_bytes}}}\n"
        server = ServerProcess(Path(tmp), cycle="30s", extra=extra)  # 30 s: the shipped default
        server.start(timeout=60)
        proc = psutil.Process(server.proc.pid)
        time.sleep(1.0)
        idle_rss = proc.memory_info().rss
        load_before = os.getloadavg()[0]
        peak_rss = [0]
        peak_live = [0.0]
        outcomes: list[tuple[float, int]] = []
        lock = threading.Lock()
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak_rss[0] = max(peak_rss[0], proc.memory_info().rss)
                time.sleep(0.05)

        def watch_live() -> None:
            while not done.is_set():
                text = httpx.get(server.api + "/metrics", timeout=10).text
                for line in text.splitlines():
                    if line.startswith("tempo_live_store_bytes "):
                        peak_live[0] = max(peak_live[0], float(line.split()[-1]))
                time.sleep(0.5)

        start = time.monotonic()
        stop_at = start + args.seconds

        def client(offset: int) -> None:
            with httpx.Client(timeout=60) as http:
                i = offset
                while time.monotonic() < stop_at:
                    r = http.post(server.otlp, content=payloads[i % len(payloads)],
                                  headers={"Content-Type": "application/x-protobuf"})
                    i += args.clients
                    with lock:
                        outcomes.append((time.monotonic() - start, r.status_code))
                    if r.status_code == 503:
                        time.sleep(float(r.headers.get("Retry-After", "1")) / 10)

        threads = [threading.Thread(target=sample), threading.Thread(target=watch_live)]
        threads += [threading.Thread(target=client, args=(c,)) for c in range(args.clients)]
        for t in threads[2:]:
            t.start()
        for t in threads[:2]:
            t.start()
        for t in threads[2:]:
            t.join()
        done.set()
        for t in threads[:2]:
            t.join()
        load_after = os.getloadavg()[0]
        server.terminate(timeout=120)
    ok = sum(1 for _, s in outcomes if s == 200)
    refused = sum(1 for _, s in outcomes if s == 503)
    streak = longest = 0.0
    streak_start = None
    for t, status in outcomes:
        if status == 503:
            streak_start = t if streak_start is None else streak_start
            streak = t - streak_start
            longest = max(longest, streak)
        else:
            streak_start = None
    print(f"{args.seconds:.0f}s, {args.clients} clients, {args.spans_per_request} spans/request: "
          f"{ok * args.spans_per_request / args.seconds:,.0f} spans/s acknowledged, {ok} requests ok, "
          f"{refused} answered 503, longest all-503 streak {longest:.1f}s, other statuses "
          f"{sorted({s for _, s in outcomes} - {200, 503})}")
    print(f"  server peak RSS {peak_rss[0] / 2**20:.0f} MiB (idle {idle_rss / 2**20:.0f} MiB); "
          f"peak tempo_live_store_bytes {peak_live[0] / 2**20:.0f} MiB; "
          f"load average {load_before:.1f} -> {load_after:.1f}")


if __name__ == "__main__":
    main()

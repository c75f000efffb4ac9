"""Benchmark: OTLP/HTTP ingest into a real `tempo-lite serve` process, from this (separate) process.

    .venv/bin/python bench/ingest_http.py [--spans-per-request 100 1000] [--seconds 20] [--clients 4]
        [--client wrk|httpx]

For each batch size: the in-process ceiling first (decode + `spantable.flatten_bytes` of the same
payloads, one core), then a fresh server on free ports (ingestion rate limit raised out of the way)
fed by `--clients` threads with keep-alive connections for `--seconds`. Prints acknowledged spans/s,
p50/p99 request latency, the server's peak RSS (psutil, sampled every 50 ms), and how far the
live-store lags behind (spans acknowledged but not yet decoded when the load stops).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx  # noqa: E402
import psutil  # noqa: E402
from payloads import request_bytes  # noqa: E402

from tempo_lite import spantable  # noqa: E402
from tests.server_process import ServerProcess  # noqa: E402

EXTRA = """
overrides:
  defaults:
    ingestion: {rate_limit_bytes: 10000000000, burst_size_bytes: 10000000000}
"""


def ceiling(payloads: list[bytes], spans: int) -> float:
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for p in payloads:
            spantable.flatten_bytes(p)
        best = min(best, time.perf_counter() - t0)
    return spans / best


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


Sender = Callable[[bytes], str | None]  # sends one request; returns None on success, else the error


def drive(
    open_sender: Callable[[], AbstractContextManager[Sender]],
    payloads: list[bytes], spans_each: int, seconds: float, clients: int,
) -> dict:
    """`clients` threads, each with its own connection (`open_sender()`), sending for `seconds`."""
    latencies: list[float] = []
    failures: list[str] = []
    acked = [0]
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client(offset: int) -> None:
        with open_sender() as send:
            i = offset
            while time.monotonic() < stop_at:
                body = payloads[i % len(payloads)]
                i += clients
                t0 = time.perf_counter()
                error = send(body)
                elapsed = (time.perf_counter() - t0) * 1000
                with lock:
                    if error is None:
                        latencies.append(elapsed)
                        acked[0] += spans_each
                    else:
                        failures.append(error)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return {"acked": acked[0], "wall": wall, "latencies": latencies, "failures": failures}


@contextmanager
def http_sender(url: str) -> Iterator[Sender]:
    headers = {"Content-Type": "application/x-protobuf"}
    with httpx.Client(timeout=60) as http:

        def send(body: bytes) -> str | None:
            r = http.post(url, content=body, headers=headers)
            return None if r.status_code == 200 else f"{r.status_code} {r.text[:100]}"

        yield send


def run_load(url: str, payloads: list[bytes], spans_each: int, seconds: float, clients: int) -> dict:
    return drive(lambda: http_sender(url), payloads, spans_each, seconds, clients)


_WRK_SCRIPT = """
local bodies = {}
for i, path in ipairs({%s}) do
  local f = io.open(path, "rb")
  bodies[i] = f:read("*all")
  f:close()
end
local counter = 0
request = function()
  counter = counter + 1
  return wrk.format("POST", "/v1/traces", {["Content-Type"] = "application/x-protobuf"},
                    bodies[(counter %% #bodies) + 1])
end
"""
_WRK_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _wrk_ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)$", text)
    if not m:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return float(m.group(1)) * _WRK_UNITS[m.group(2)]


def wrk_load(url: str, payloads: list[bytes], spans_each: int, seconds: float, clients: int, tmp: Path) -> dict:
    """The same load from `wrk` (C, one thread): a load generator that leaves the 2 cores to the server."""
    paths = []
    for i, body in enumerate(payloads):
        path = tmp / f"payload-{i}.bin"
        path.write_bytes(body)
        paths.append(f'"{path}"')
    script = tmp / "post.lua"
    script.write_text(_WRK_SCRIPT % ", ".join(paths))
    base = url.rsplit("/v1/traces", 1)[0]
    out = subprocess.run(
        ["wrk", "-t1", f"-c{clients}", f"-d{int(seconds)}s", "--latency", "-s", str(script), base],
        capture_output=True, text=True, check=True,
    ).stdout
    requests = int(re.search(r"(\d+) requests in ([\d.]+)(m?s)", out).group(1))
    wall = float(re.search(r"requests in ([\d.]+)s", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    failed = int(bad.group(1)) if bad else 0
    percentiles = {int(m.group(1)): _wrk_ms(m.group(2)) for m in re.finditer(r"^\s+(\d+)%\s+(\S+)$", out, re.M)}
    return {"acked": (requests - failed) * spans_each, "wall": wall, "requests": requests - failed,
            "failures": [f"{failed} non-2xx"] if failed else [], "p50": percentiles[50], "p99": percentiles[99]}


def bench(spans_per_request: int, seconds: float, clients: int, client: str = "httpx") -> None:
    payloads = [request_bytes(spans_per_request, seed=i) for i in range(max(20, 20_000 // spans_per_request))]
    spans_each = spantable.flatten_bytes(payloads[0]).num_spans
    top = ceiling(payloads, spans_each * len(payloads))
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(Path(tmp), cycle="1h", extra=EXTRA)
        server.start(timeout=60)
        proc = psutil.Process(server.proc.pid)
        peak = [proc.memory_info().rss]
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.is_set():
                peak[0] = max(peak[0], proc.memory_info().rss)
                time.sleep(0.05)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            if client == "wrk":
                result = wrk_load(server.otlp, payloads, spans_each, seconds, clients, Path(tmp))
            else:
                result = run_load(server.otlp, payloads, spans_each, seconds, clients)
                lat = result["latencies"]
                result.update(requests=len(lat), p50=percentile(lat, 50) if lat else 0.0,
                              p99=percentile(lat, 99) if lat else 0.0)
            # How far behind is the live-store? Poll its bytes gauge until it stops growing.
            lag_start = time.perf_counter()
            last = None
            while time.perf_counter() - lag_start < 60:
                metrics = httpx.get(server.api + "/metrics").text
                value = next((ln.split()[-1] for ln in metrics.splitlines()
                              if ln.startswith("tempo_live_store_bytes")), None)
                if value == last:
                    break
                last = value
                time.sleep(0.5)
            drain = time.perf_counter() - lag_start
        finally:
            sampling.set()
            sampler.join()
            server.terminate()
    rate = result["acked"] / result["wall"]
    print(f"{spans_per_request} spans/request, {clients} connections ({client}), {result['wall']:.1f}s: "
          f"ceiling (decode+flatten, 1 core) {top:,.0f} spans/s")
    print(f"  acknowledged {rate:,.0f} spans/s ({rate / top:.0%} of ceiling), {result['requests']} requests, "
          f"{len(result['failures'])} failed {result['failures'][:1]}")
    if result["requests"]:
        print(f"  latency p50 {result['p50']:.1f} ms, p99 {result['p99']:.1f} ms; "
              f"server peak RSS {peak[0] / 2**20:.0f} MiB; live-store settled {drain:.1f}s after the load")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans-per-request", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--clients", type=int, default=4, help="concurrent connections")
    parser.add_argument("--client", choices=("wrk", "httpx"), default="wrk" if shutil.which("wrk") else "httpx",
                        help="load generator: wrk (C; apt-get install wrk) or Python threads with httpx, which "
                             "take a large share of the 2 cores themselves (default: wrk when installed)")
    args = parser.parse_args()
    for n in args.spans_per_request:
        bench(n, args.seconds, args.clients, args.client)


if __name__ == "__main__":
    main()

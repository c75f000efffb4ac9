"""Benchmark: a 10,000-span trace in the built-in UI, end to end, in Debian's chromium.

    PYTHONPATH=. .venv/bin/python bench/ui_big_trace.py [--loads 7] [--requests 15] [--no-encoder]

Starts a real `tempo-lite serve`, sends one trace of 10,000 spans (a root, 99 groups of 100 leaves, three
attributes a span, an event on every tenth) over OTLP/HTTP, then:
- the trace-by-ID call alone (`/api/v2/traces/<id>`, JSON and protobuf): p50/min latency and body size;
- in process: the span table -> protobuf bytes step alone, `spantable.encode_traces_data` against the
  message-building encoder it replaced (tests/otlp_reference.py: `to_traces_data` + `SerializeToString`);
- `/ui/trace/<id>` loaded `--loads` times in chromium (Playwright, `--no-sandbox`): time from navigation
  start to the first waterfall row (a MutationObserver in the page notes `performance.now()`), and of that
  when the page sent the trace request and when its response finished arriving (Resource Timing), so the
  rest is the page's own work (decode, span tree, critical path, first render). Prints p50 and min of each.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import httpx  # noqa: E402
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402
from server_process import ServerProcess  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
SPANS = 10_000

FIRST_ROW_PROBE = """
window.__firstRow = null;
new MutationObserver((_, obs) => {
  if (document.querySelector('.wf-row')) { window.__firstRow = performance.now(); obs.disconnect(); }
}).observe(document, { childList: true, subtree: true });
"""


def big_trace_request() -> tuple[ExportTraceServiceRequest, str]:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    for key, value in (("service.name", "bulk"), ("host.name", "bench-host")):
        kv = rs.resource.attributes.add()
        kv.key, kv.value.string_value = key, value
    ss = rs.scope_spans.add()
    ss.scope.name, ss.scope.version = "bench", "1.0"
    trace_id = bytes.fromhex("0b16" + "cd" * 14)
    now = time.time_ns()
    n = 0

    def add(parent: bytes, kind: str, start: int, dur: int) -> bytes:
        nonlocal n
        n += 1
        span = ss.spans.add()
        span.trace_id, span.span_id, span.parent_span_id = trace_id, n.to_bytes(8, "big"), parent
        span.name, span.kind = f"{kind} {n}", 2 if kind == "root" else 1
        span.start_time_unix_nano, span.end_time_unix_nano = start, start + dur
        for key, value in (("http.route", f"/api/{kind}"), ("worker", n % 7), ("ok", n % 3 != 0)):
            kv = span.attributes.add()
            kv.key = key
            if isinstance(value, bool):
                kv.value.bool_value = value
            elif isinstance(value, int):
                kv.value.int_value = value
            else:
                kv.value.string_value = value
        if n % 10 == 0:
            ev = span.events.add()
            ev.name, ev.time_unix_nano = "tick", start + dur // 2
        if n % 97 == 0:
            span.status.code, span.status.message = 2, "boom"
        return span.span_id

    root = add(b"", "root", now - 2_000_000_000, 1_000_000_000)
    for g in range(99):
        group = add(root, "group", now - 2_000_000_000 + g * 10_000_000, 9_000_000)
        for c in range(100):
            add(group, "leaf", now - 2_000_000_000 + g * 10_000_000 + c * 80_000, 70_000)
    assert n == SPANS
    return req, trace_id.hex()


def p50_min(values: list[float]) -> str:
    return f"p50 {statistics.median(values):7.1f} ms   min {min(values):7.1f} ms"


def encoder_alone(req: ExportTraceServiceRequest, runs: int = 7) -> None:
    """The span table -> OTLP bytes step alone, in process, new and old encoder back to back."""
    from otlp_reference import to_traces_data

    from tempo_lite import spantable

    table = spantable.flatten_bytes(req.SerializeToString())
    table = spantable.dedicate(table, spantable.choose_dedicated_keys(table))  # as a block holds it
    for name, encode in (("spantable.encode_traces_data", spantable.encode_traces_data),
                         ("old to_traces_data + SerializeToString", lambda t: to_traces_data(t).SerializeToString())):
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            encode(table)
            times.append((time.perf_counter() - t0) * 1000)
        print(f"in process: {name:40s} {p50_min(times)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", type=int, default=7)
    parser.add_argument("--requests", type=int, default=15)
    parser.add_argument("--no-encoder", action="store_true", help="skip the in-process encoder timing "
                        "(for a run from a checkout older than spantable.encode_traces_data)")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(Path(tmp), cycle="1h", extra="")
        server.start(timeout=60)
        try:
            req, trace_id = big_trace_request()
            if not args.no_encoder:
                encoder_alone(req)
            r = httpx.post(server.otlp, content=req.SerializeToString(),
                           headers={"Content-Type": "application/x-protobuf"}, timeout=60)
            r.raise_for_status()
            url = f"{server.api}/api/v2/traces/{trace_id}"
            with httpx.Client(timeout=60) as client:
                deadline = time.monotonic() + 30
                while client.get(url).status_code != 200 and time.monotonic() < deadline:
                    time.sleep(0.2)
                for accept in ("application/json", "application/protobuf"):
                    times, size = [], 0
                    client.get(url, headers={"Accept": accept})  # warm
                    for _ in range(args.requests):
                        t0 = time.perf_counter()
                        body = client.get(url, headers={"Accept": accept}).content
                        times.append((time.perf_counter() - t0) * 1000)
                        size = len(body)
                    print(f"trace by ID {accept:22s} {size / 1e6:5.2f} MB  {p50_min(times)}")
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
                firsts, fetched, asked = [], [], []
                for i in range(args.loads + 1):
                    page = browser.new_page()
                    page.add_init_script(FIRST_ROW_PROBE)
                    page.goto(f"{server.api}/ui/trace/{trace_id}")
                    page.wait_for_selector(".wf-row", timeout=60_000)
                    first = page.evaluate("window.__firstRow")
                    sent, done = page.evaluate(
                        "(() => { const e = performance.getEntriesByType('resource')"
                        ".filter(x => x.name.includes('/api/v2/traces/')).pop();"
                        " return [e.startTime, e.responseEnd]; })()")
                    page.close()
                    if i:  # the first load warms the browser's module cache
                        firsts.append(first)
                        fetched.append(done)
                        asked.append(sent)
                browser.close()
            page_work = [f - d for f, d in zip(firsts, fetched, strict=True)]
            print(f"UI first waterfall rows ({args.loads} loads)     {p50_min(firsts)}")
            print(f"  trace request sent at (page loaded)       {p50_min(asked)}")
            print(f"  trace response arrived at                 {p50_min(fetched)}")
            print(f"  page work after the response (parse+tree+render) {p50_min(page_work)}")
        finally:
            server.terminate()
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

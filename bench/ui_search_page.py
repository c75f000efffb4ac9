"""Benchmark: how soon the built-in UI's search page is interactive, in Debian's chromium (issue 10: under
300 ms on localhost).

    PYTHONPATH=. .venv/bin/python bench/ui_search_page.py [--loads 15] [--checkouts 30]

Starts a real `tempo-lite serve`, sends `--checkouts` shop traces through the OpenTelemetry SDK (five
services, 7 spans each, as the browser tests do), then loads `/ui/search?q={ }&since=1h` `--loads` times as
a first visit (a new browser context each time: empty HTTP and code caches) and `--loads` times as a repeat
visit (one context, after a warm-up load), and reports, from navigation start (`performance.now()`, noted by
a MutationObserver in the page), p50 and max:
- interactive: the query field (the plain field of the first paint, or the editor) is in the page and takes
  keys, and the page has painted it: the later of first-contentful-paint and the first frame after the
  field appeared (a `requestAnimationFrame` callback then a task, i.e. after that frame was produced);
- editor ready: the TraceQL editor (CodeMirror) is in the page and takes keys;
- results shown: the result table for the address's query is on screen (the page is fully usable);
- the search request's start and end (Resource Timing), so the rest is loading the modules and rendering.
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
from playwright.sync_api import sync_playwright  # noqa: E402
from server_process import ServerProcess  # noqa: E402
from ui_traces import send_shop_traces  # noqa: E402

CHROMIUM = "/usr/bin/chromium"

PROBE = """
window.__marks = {};
const FIELD = '[data-testid=query-field], .cm-content[contenteditable=true]';
new MutationObserver((_, obs) => {
  const m = window.__marks;
  if (m.field === undefined && document.querySelector(FIELD)) {
    m.field = performance.now();
    requestAnimationFrame(() => setTimeout(() => { m.fieldPainted = performance.now(); }, 0));
  }
  const editor = document.querySelector('.cm-content[contenteditable=true]');
  if (m.editor === undefined && editor) m.editor = performance.now();
  const results = document.querySelector('[data-testid=result-count]');
  if (m.results === undefined && results) m.results = performance.now();
  if (m.field !== undefined && m.editor !== undefined && m.results !== undefined) obs.disconnect();
}).observe(document, { childList: true, subtree: true, attributes: true });
"""

MARKS_DONE = ("window.__marks.editor !== undefined && window.__marks.results !== undefined"
              " && window.__marks.fieldPainted !== undefined")
TIMINGS = """(() => {
  const e = performance.getEntriesByType('resource').filter(x => x.name.includes('/api/search?')).pop();
  const fcp = performance.getEntriesByName('first-contentful-paint')[0];
  return [e.startTime, e.responseEnd, fcp ? fcp.startTime : 0];
})()"""


def p50_max(values: list[float]) -> str:
    return f"p50 {statistics.median(values):6.1f} ms   max {max(values):6.1f} ms"


def poll(page, expr: str, timeout: float = 30.0) -> None:  # noqa: ANN001
    """Wait until `expr` is true in the page (`wait_for_function` polls with a string eval, which the CSP
    forbids; `evaluate` goes through the devtools protocol)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expr):
        if time.monotonic() > deadline:
            raise TimeoutError(expr)
        time.sleep(0.005)


def measure(context, url: str, loads: int, *, warm: bool) -> dict[str, list[float]]:  # noqa: ANN001
    """`loads` loads of `url`, each in a new page of `context()`; with `warm`, one more load first."""
    figures: dict[str, list[float]] = {name: [] for name in (
        "interactive", "field in the page", "first paint (FCP)", "editor ready", "results shown",
        "search request sent", "search answer arrived", "key press to text")}
    for i in range(loads + (1 if warm else 0)):
        ctx = context()
        page = ctx.new_page()
        page.add_init_script(PROBE)
        page.goto(url)
        page.wait_for_selector("[data-testid=result-count]", timeout=30_000)
        poll(page, MARKS_DONE)
        marks = page.evaluate("window.__marks")
        start, end, fcp = page.evaluate(TIMINGS)
        # The editor answers a key at once: time from a key press to the text being in the editor
        # (a round trip through Playwright).
        page.click(".cm-content")
        t0 = page.evaluate("performance.now()")
        page.keyboard.press("End")
        page.keyboard.type(" ")
        poll(page, "document.querySelector('.cm-content').textContent.endsWith(' ')")
        t1 = page.evaluate("performance.now()")
        page.close()
        if not warm:
            ctx.close()
        if warm and i == 0:
            continue
        row = {"interactive": max(marks["fieldPainted"], fcp), "field in the page": marks["field"],
               "first paint (FCP)": fcp, "editor ready": marks["editor"], "results shown": marks["results"],
               "search request sent": start, "search answer arrived": end, "key press to text": t1 - t0}
        for name, value in row.items():
            figures[name].append(value)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", type=int, default=15)
    parser.add_argument("--checkouts", type=int, default=30)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(Path(tmp), cycle="1h", extra="")
        server.start(timeout=60)
        try:
            send_shop_traces(server.otlp, checkouts=args.checkouts, fail_every=4, spread_s=600)
            found = len(httpx.get(server.api + "/api/search", params={"q": "{ }", "limit": 100}).json()["traces"])
            url = f"{server.api}/ui/search?q=%7B%20%7D&since=1h"
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
                first = measure(lambda: browser.new_context(), url, args.loads, warm=False)
                ctx = browser.new_context()
                repeat = measure(lambda: ctx, url, args.loads, warm=True)
                browser.close()
            for label, figures in (("first visit (new context: empty caches)", first),
                                   ("repeat visit (same context, after a warm-up load)", repeat)):
                print(f"search page, {found} traces listed, {args.loads} loads, {label}:")
                for name, values in figures.items():
                    print(f"  {name:22s}{p50_max(values)}")
        finally:
            server.terminate()
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

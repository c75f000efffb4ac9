"""Benchmark: how soon the built-in UI's search page is interactive, in Debian's chromium (issue 10: under
300 ms on localhost).

    PYTHONPATH=. .venv/bin/python bench/ui_search_page.py [--loads 15] [--checkouts 30]

Starts a real `tempo-lite serve`, sends `--checkouts` shop traces through the OpenTelemetry SDK (five
services, 7 spans each, as the browser tests do), then loads `/ui/search?q={ }&since=1h` `--loads` times
(after one warm-up load) and reports, from navigation start (`performance.now()`, noted by a
MutationObserver in the page), p50 and max:
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import httpx  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402
from server_process import ServerProcess  # noqa: E402
from ui_traces import send_shop_traces  # noqa: E402

CHROMIUM = "/usr/bin/chromium"

PROBE = """
window.__marks = {};
new MutationObserver((_, obs) => {
  const m = window.__marks;
  const editor = document.querySelector('.cm-content[contenteditable=true]');
  if (m.editor === undefined && editor) m.editor = performance.now();
  const results = document.querySelector('[data-testid=result-count]');
  if (m.results === undefined && results) m.results = performance.now();
  if (m.editor !== undefined && m.results !== undefined) obs.disconnect();
}).observe(document, { childList: true, subtree: true, attributes: true });
"""


def p50_max(values: list[float]) -> str:
    return f"p50 {statistics.median(values):6.1f} ms   max {max(values):6.1f} ms"


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
                editor, results, sent, answered, typed = [], [], [], [], []
                for i in range(args.loads + 1):
                    page = browser.new_page()
                    page.add_init_script(PROBE)
                    page.goto(url)
                    page.wait_for_selector("[data-testid=result-count]", timeout=30_000)
                    page.wait_for_function("window.__marks.editor !== undefined"
                                           " && window.__marks.results !== undefined")
                    marks = page.evaluate("window.__marks")
                    start, end = page.evaluate(
                        "(() => { const e = performance.getEntriesByType('resource')"
                        ".filter(x => x.name.includes('/api/search?')).pop();"
                        " return [e.startTime, e.responseEnd]; })()")
                    # The editor answers a key at once: time from a key press to the text being in the editor.
                    page.click(".cm-content")
                    t0 = page.evaluate("performance.now()")
                    page.keyboard.press("End")
                    page.keyboard.type(" ")
                    page.wait_for_function("document.querySelector('.cm-content').textContent.endsWith(' ')")
                    t1 = page.evaluate("performance.now()")
                    page.close()
                    if i:  # the first load warms the browser's module cache
                        editor.append(marks["editor"])
                        results.append(marks["results"])
                        sent.append(start)
                        answered.append(end)
                        typed.append(t1 - t0)
                browser.close()
            print(f"search page, {found} traces listed, {args.loads} loads (after a warm-up load):")
            print(f"  editor ready          {p50_max(editor)}")
            print(f"  results shown         {p50_max(results)}")
            print(f"  search request sent   {p50_max(sent)}")
            print(f"  search answer arrived {p50_max(answered)}")
            print(f"  key press to text (round trip through Playwright) {p50_max(typed)}")
        finally:
            server.terminate()
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

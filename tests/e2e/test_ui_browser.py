"""The web UI in a real browser (Debian chromium + Playwright) against a real `tempo-lite serve` process
fed by the OpenTelemetry SDK: search by typed TraceQL, autocomplete, waterfall rows, span detail with
attributes and events, links, compare, metrics, services, live, download, markup shown as text, and a
10,000-span trace. Screenshots of every view go to test-artifacts/ui/ (TEMPO_LITE_UI_ARTIFACTS)."""

from __future__ import annotations

import json
import re
import time
import urllib.parse

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from rich_trace import rich_trace
from server_process import ServerProcess
from ui_browser import ARTIFACTS, launch_args, require_browser
from ui_traces import XSS, send_shop_traces

from tempo_lite.receivers.otlp_json import decode_otlp_json

pytestmark = pytest.mark.slow

BIG_SPANS = 10_000


@pytest.fixture(scope="module")
def server(tmp_path_factory):  # noqa: ANN001, ANN201
    tmp = tmp_path_factory.mktemp("ui")
    srv = ServerProcess(tmp, cycle="1h", extra="metrics_generator: {enabled: true}")
    srv.start()
    sent = send_shop_traces(srv.otlp, checkouts=11, fail_every=3, spread_s=240)  # the last one fails
    big = send_big_trace(srv.otlp)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # every trace searchable (the live-store has them all)
        r = httpx.get(srv.api + "/api/search", params={"q": "{ }", "limit": 100})
        if len(r.json().get("traces", [])) >= len(sent.checkout_ids) + 2:
            break
        time.sleep(0.2)
    yield srv, sent, big
    srv.terminate()


def send_big_trace(otlp: str) -> str:
    """One trace of BIG_SPANS spans: a root with 99 children of 100 spans each (built, not SDK-made:
    the SDK would take minutes to make this many spans on a shared machine)."""
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "bulk"
    ss = rs.scope_spans.add()
    trace_id = bytes.fromhex("0b16" + "ab" * 14)
    now = time.time_ns()
    n = 0

    def add(parent: bytes, depth_name: str, start: int, dur: int) -> bytes:
        nonlocal n
        n += 1
        span = ss.spans.add()
        span.trace_id = trace_id
        span.span_id = n.to_bytes(8, "big")
        span.parent_span_id = parent
        span.name = f"{depth_name} {n}"
        span.start_time_unix_nano = start
        span.end_time_unix_nano = start + dur
        return span.span_id

    root = add(b"", "root", now - 2_000_000_000, 1_000_000_000)
    for g in range(99):
        group = add(root, "group", now - 2_000_000_000 + g * 10_000_000, 9_000_000)
        for c in range(100):
            add(group, "leaf", now - 2_000_000_000 + g * 10_000_000 + c * 80_000, 70_000)
    assert n == BIG_SPANS, n
    r = httpx.post(otlp, content=req.SerializeToString(), headers={"Content-Type": "application/x-protobuf"})
    assert r.status_code == 200, r.text
    return trace_id.hex()


@pytest.fixture(scope="module")
def browser():  # noqa: ANN201
    path = require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=launch_args())
        yield b
        b.close()


@pytest.fixture
def page(browser, server):  # noqa: ANN001, ANN201
    ctx = browser.new_context(viewport={"width": 1400, "height": 900}, color_scheme="light",
                              accept_downloads=True)
    pg = ctx.new_page()
    pg.dialogs = []  # type: ignore[attr-defined]
    pg.errors = []  # type: ignore[attr-defined]
    pg.on("dialog", lambda d: (pg.dialogs.append(d.message), d.dismiss()))
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    pg.set_default_timeout(20_000)
    yield pg
    assert not pg.errors, f"JavaScript errors: {pg.errors}"
    ctx.close()


def shot(pg, name: str) -> None:  # noqa: ANN001
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    pg.wait_for_timeout(300)
    pg.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def type_query(pg, text: str) -> None:  # noqa: ANN001
    pg.click(".cm-content")
    pg.keyboard.press("Control+A")
    pg.keyboard.press("Delete")
    pg.keyboard.type(text)
    pg.keyboard.press("Escape")  # close the completion popup, if any


def wait_until(check, timeout: float = 20.0):  # noqa: ANN001, ANN201
    """Poll `check()` until truthy. (page.wait_for_function evaluates a string, which the UI's CSP forbids.)"""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {check}")
        time.sleep(0.1)


def result_count(pg) -> str:  # noqa: ANN001
    loc = pg.locator("[data-testid=result-count]")
    return loc.inner_text() if loc.count() else ""


def short(trace_id: str) -> str:
    return trace_id.lstrip("0")


def test_root_redirects_to_ui_and_ui_pages_carry_a_same_origin_script_policy(server) -> None:
    srv, _, _ = server
    r = httpx.get(srv.api + "/", follow_redirects=False)
    assert r.status_code == 302 and r.headers["location"].endswith("/ui/")
    for path in ("/ui/", "/ui/search", "/ui/trace/abc", "/ui/static/js/main.js"):
        r = httpx.get(srv.api + path)
        assert r.status_code == 200, path
        assert "script-src 'self'" in r.headers["content-security-policy"]
        assert r.headers["x-content-type-options"] == "nosniff"
    assert httpx.get(srv.api + "/ui/static/nope.js").status_code == 404
    assert httpx.get(srv.api + "/ui/nosuchview").status_code == 404
    assert httpx.get(srv.api + "/api/echo").text == "echo\n"  # the API paths stay as they are


def test_pages_address_assets_under_a_version_cached_as_immutable(server) -> None:
    srv, _, _ = server
    page = httpx.get(srv.api + "/ui/search").text
    scripts = re.findall(r'<script type="module" src="(/ui/static/(v[0-9a-f]{12})/js/main.js)"', page)
    assert len(scripts) == 1
    main_js, version = scripts[0]
    assert re.findall(r'href="(/ui/static/[^"]+)"', page)  # stylesheets and preloads
    refs = re.findall(r'(?:href|src)="(/ui/static/[^"]+)"', page)
    assert all(ref.startswith(f"/ui/static/{version}/") for ref in refs)
    r = httpx.get(srv.api + main_js)
    assert r.status_code == 200 and r.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert r.content == httpx.get(srv.api + "/ui/static/js/main.js").content
    assert "script-src 'self'" in r.headers["content-security-policy"]
    # Unversioned and other versions' addresses still answer, revalidated each time (never immutable).
    for path in ("/ui/static/js/main.js", "/ui/static/v000000000000/js/main.js"):
        r = httpx.get(srv.api + path)
        assert r.status_code == 200 and r.headers["cache-control"] == "no-cache", path
        assert httpx.get(srv.api + path, headers={"If-None-Match": r.headers["etag"]}).status_code == 304
    assert httpx.get(srv.api + f"/ui/static/{version}/js/nope.js").status_code == 404


def test_typed_traceql_query_lists_exactly_the_matching_traces(page, server) -> None:
    srv, sent, _ = server
    page.goto(srv.api + "/ui/search?since=1h")
    page.wait_for_selector("[data-testid=result-count]")
    type_query(page, "{ resource.service.name = \"payment\" && status = error }")
    page.click("button:has-text('Run query')")
    wait_until(lambda: result_count(page).startswith(f"{len(sent.error_ids)} traces"))
    shown = set(page.eval_on_selector_all("tr[data-trace-id]", "rows => rows.map(r => r.dataset.traceId)"))
    assert shown == {short(t) for t in sent.error_ids}
    assert "q=" in page.url and "payment" in urllib.parse.unquote(page.url)  # the query is in the address
    shot(page, "search")
    page.go_back()  # Back returns to the query the page opened with, and runs it again
    wait_until(lambda: page.inner_text(".cm-content") == "{ }")
    wait_until(lambda: result_count(page).startswith(f"{len(sent.checkout_ids) + 2} traces"))


def test_query_typed_before_the_editor_has_loaded_is_kept_and_runs(page, server) -> None:
    """The first paint has a plain query field: what is typed there before CodeMirror has loaded runs on
    Enter, and the editor that replaces the field keeps the text, the cursor and the focus."""
    srv, sent, _ = server
    held: list = []  # the editor's code is held back until the test lets it through
    page.route("**/vendor/codemirror.js", lambda route: held.append(route))
    page.goto(srv.api + "/ui/search?since=1h")
    page.wait_for_selector("[data-testid=query-field]")
    wait_until(lambda: held or page.wait_for_timeout(50))  # routes are handled while Playwright is called
    assert page.locator(".cm-content").count() == 0  # the editor has not loaded
    query = '{ resource.service.name = "payment" && status = error }'
    page.fill("[data-testid=query-field]", "")
    page.type("[data-testid=query-field]", query)
    page.keyboard.press("Enter")
    wait_until(lambda: result_count(page).startswith(f"{len(sent.error_ids)} traces"))
    shown = set(page.eval_on_selector_all("tr[data-trace-id]", "rows => rows.map(r => r.dataset.traceId)"))
    assert shown == {short(t) for t in sent.error_ids}
    assert "payment" in urllib.parse.unquote(page.url)
    for _ in range(2):
        page.keyboard.press("ArrowLeft")  # the cursor before " }"
    for route in held:
        route.continue_()
    page.unroute("**/vendor/codemirror.js")
    page.wait_for_selector(".cm-content[contenteditable=true]")
    assert page.locator("[data-testid=query-field]").count() == 0  # replaced by the editor
    assert page.inner_text(".cm-content") == query
    page.keyboard.type(" && kind = server")  # the editor has the focus and the cursor where it was
    assert page.inner_text(".cm-content") == query[:-2] + " && kind = server" + query[-2:]


def test_search_address_restores_the_query_and_the_scatter_opens_a_trace(page, server) -> None:
    srv, sent, _ = server
    q = urllib.parse.quote('{ resource.service.name = "inventory" }')
    end = int(time.time()) + 60
    page.goto(f"{srv.api}/ui/search?q={q}&start={end - 3600}&end={end}")  # an absolute range
    wait_until(lambda: result_count(page).startswith(f"{len(sent.checkout_ids)} traces"))
    assert 'resource.service.name = "inventory"' in page.inner_text(".cm-content")
    assert page.input_value("select[aria-label='Time range']") == "abs"
    assert f"start={end - 3600}&end={end}" in page.url
    box = page.locator(".scatter .u-over").bounding_box()
    assert box is not None
    # Hover each dot position until the cursor snaps to one, then click: the trace view opens.
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_url("**/ui/trace/*")
    assert page.url.rsplit("/", 1)[1] in {short(t) for t in sent.checkout_ids}


LABELS = ".cm-tooltip-autocomplete li .cm-completionLabel"


def test_autocomplete_offers_attribute_names_then_values_from_the_tag_apis(page, server) -> None:
    srv, _, _ = server
    page.goto(srv.api + "/ui/search?since=1h")
    page.wait_for_selector("[data-testid=result-count]")
    page.click(".cm-content")
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.type("{ resource.serv")
    page.wait_for_selector(".cm-tooltip-autocomplete li")
    names = page.eval_on_selector_all(LABELS, "l => l.map(e => e.textContent)")
    assert "service.name" in names
    page.keyboard.type(".n")
    page.wait_for_selector(".cm-tooltip-autocomplete li[aria-selected] >> text=service.name")
    page.keyboard.press("Enter")  # accept
    page.keyboard.type(" = ")
    values = wait_until(lambda: (v := page.eval_on_selector_all(LABELS, "l => l.map(e => e.textContent)"))
                        and '"checkout"' in v and v)
    assert {'"frontend"', '"checkout"', '"payment"', '"inventory"'} <= set(values)
    shot(page, "autocomplete")
    page.keyboard.type('"payme')
    page.wait_for_selector(".cm-tooltip-autocomplete li[aria-selected]:has-text('payment')")
    page.keyboard.press("Enter")
    assert page.inner_text(".cm-content") == '{ resource.service.name = "payment"}'
    assert 'resource.service.name = "payment"' in page.inner_text(".cm-content")


def test_query_builder_writes_traceql(page, server) -> None:
    srv, _, _ = server
    page.goto(srv.api + "/ui/search?since=1h")
    page.click("summary:has-text('Query builder')")
    page.wait_for_selector("select[aria-label=Service] option[value=checkout]", state="attached")
    page.select_option("select[aria-label=Service]", "checkout")
    page.select_option("select[aria-label=Status]", "error")
    page.fill("input[aria-label='Minimum duration']", "1ms")
    want = '{ resource.service.name = "checkout" && status = error && duration >= 1ms }'
    assert page.inner_text(".cm-content") == want


def test_trace_view_shows_every_span_and_a_span_with_attributes_and_events(page, server) -> None:
    srv, sent, _ = server
    trace_id = sent.error_ids[0]
    page.goto(f"{srv.api}/ui/trace/{trace_id}")
    page.wait_for_selector(".wf-row")
    assert page.locator(".wf-row").count() == sent.spans_per_checkout
    assert page.inner_text("[data-testid=span-count]") == str(sent.spans_per_checkout)
    assert page.locator(".wf-row .err-badge").count() == 2  # Charge and the client span calling it
    page.click(".wf-row:has-text('Charge')")
    detail = page.locator(".span-detail")
    detail.get_by_text("payment.amount").wait_for()
    assert "card declined" in detail.inner_text()
    assert "events (1)" in detail.inner_text().lower() and "CardDeclined" in detail.inner_text()
    assert "shop.instrumentation" in detail.inner_text()  # scope
    assert "deployment.environment" in detail.inner_text()  # resource
    shot(page, "trace")
    # collapse the checkout subtree from the keyboard: rows disappear, and come back
    page.click(".wf-row:has-text('PlaceOrder')")
    page.keyboard.press("ArrowLeft")
    assert page.locator(".wf-row").count() == 3
    page.keyboard.press("ArrowRight")
    assert page.locator(".wf-row").count() == sent.spans_per_checkout


def test_markup_in_span_data_shows_as_text_and_runs_nothing(page, server) -> None:
    srv, sent, _ = server
    page.goto(f"{srv.api}/ui/trace/{sent.checkout_ids[0]}")
    page.click(".wf-row:has-text('GET /checkout')")
    page.locator(".span-detail").get_by_text(XSS, exact=True).wait_for()
    page.click(".wf-row:has-text('PlaceOrder')")
    page.locator(".span-detail").get_by_text(XSS, exact=True).wait_for()  # the event attribute
    page.fill("input[aria-label='Find in trace']", "onerror")
    page.wait_for_timeout(200)
    assert page.locator("img").count() == 0
    assert page.dialogs == []  # type: ignore[attr-defined]
    # the search page's matched spansets show attributes too
    q = urllib.parse.quote('{ span.user.comment =~ ".*onerror.*" } | select(span.user.comment)')
    page.goto(f"{srv.api}/ui/search?q={q}&since=1h")
    page.wait_for_selector("tr[data-trace-id]")
    page.locator("details.spansets summary").first.click()
    page.get_by_text(f"user.comment={XSS}").first.wait_for()
    assert page.locator("img").count() == 0 and page.dialogs == []  # type: ignore[attr-defined]


def test_find_in_trace_and_download_otlp_json(page, server) -> None:
    srv, sent, _ = server
    page.goto(f"{srv.api}/ui/trace/{sent.checkout_ids[1]}")
    page.fill("input[aria-label='Find in trace']", "payment")
    page.wait_for_selector(".wf-row.match")
    assert page.locator(".wf-row.match").count() == 2  # "call payment" and the payment service's Charge
    with page.expect_download() as info:
        page.click("button:has-text('Download OTLP/JSON')")
    body = open(info.value.path(), "rb").read()
    request = decode_otlp_json(body)  # what `tempo-lite import` and any OTLP/JSON reader accept
    spans = [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert len(spans) == sent.spans_per_checkout
    assert {s.trace_id.hex() for s in spans} == {sent.checkout_ids[1]}
    assert json.loads(body)["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"] == sent.checkout_ids[1]


def test_a_span_link_opens_the_linked_trace(page, server) -> None:
    srv, sent, _ = server
    page.goto(f"{srv.api}/ui/trace/{sent.batch_id}")
    page.click(".wf-row:has-text('nightly report')")
    link = page.locator(".span-detail a[data-link-trace]")
    assert "link.reason" in page.inner_text(".span-detail")
    link.click()
    page.wait_for_url(f"**/ui/trace/{sent.checkout_ids[0]}")
    page.wait_for_selector(".wf-row")
    assert page.locator(".wf-row").count() == sent.spans_per_checkout


def test_compare_matches_spans_by_service_and_name(page, server) -> None:
    srv, sent, _ = server
    a, b = sent.checkout_ids[0], sent.error_ids[0]
    page.goto(f"{srv.api}/ui/compare/{a}/{b}")
    page.wait_for_selector(".compare-table tbody tr")
    rows = page.eval_on_selector_all(".compare-table tbody tr",
                                     "rs => rs.map(r => [...r.cells].map(c => c.textContent))")
    assert len(rows) == sent.spans_per_checkout  # every (service, name) once: same shape on both sides
    assert {(r[0], r[1]) for r in rows} >= {("payment", "Charge"), ("checkout", "PlaceOrder")}
    assert all(r[2] == "1" and r[4] == "1" for r in rows)
    assert page.locator(".side-by-side .waterfall").count() == 2
    shot(page, "compare")


def test_metrics_query_draws_a_series_per_service_with_exemplars_that_open_traces(page, server) -> None:
    srv, _, _ = server
    q = urllib.parse.quote('{ resource.service.name != "bulk" } | rate() by (resource.service.name)')
    page.goto(f"{srv.api}/ui/metrics?q={q}&since=5m")
    page.wait_for_selector("[data-testid=series-count]")
    text = page.inner_text("[data-testid=series-count]")
    assert text.startswith("5 series")  # frontend, checkout, inventory, payment, batch-job
    assert page.locator("[data-testid=metrics-plot] canvas").count() == 1
    legend = page.inner_text("[data-testid=metrics-plot] .u-legend")
    assert 'resource.service.name="payment"' in legend
    shot(page, "metrics")
    exemplar = page.locator(".exemplar-list a").first
    exemplar.click()
    page.wait_for_url("**/ui/trace/*")
    page.wait_for_selector(".wf-row")


def test_services_view_draws_the_service_graph_and_red_charts(page, server) -> None:
    srv, _, _ = server
    page.goto(f"{srv.api}/ui/services")
    page.wait_for_selector(".service-graph")
    assert "from the metrics-generator" in page.inner_text(".graph-source")
    nodes = set(page.eval_on_selector_all(".service-graph .node", "ns => ns.map(n => n.dataset.service)"))
    assert {"frontend", "checkout", "inventory", "payment"} <= nodes  # user -> frontend once unpaired halves expire
    labels = edge_labels(page)
    assert {("frontend", "checkout"), ("checkout", "inventory"), ("checkout", "payment")} <= set(labels)
    # request rate (from two scrapes: none yet), error rate, p90 latency on every edge
    assert all(re.fullmatch(r"– req/s · \d+% err · p90 \S+", label) for label in labels.values()), labels
    assert re.search(r" [1-9]\d*% err", labels[("checkout", "payment")])  # a third of the payments failed
    node = page.text_content(".service-graph .node[data-service=payment] .node-stats") or ""
    assert re.fullmatch(r"– req/s · [1-9]\d*% err · p90 \S+", node), node
    assert page.locator(".services-table tr[data-service=payment] td").nth(2).inner_text().endswith("%")
    page.click(".service-graph .node[data-service=payment]")
    page.wait_for_url("**/ui/services/payment")
    page.wait_for_selector(".red-grid .chart canvas")
    wait_until(lambda: page.locator(".red-grid .chart:has(canvas, .empty, .error)").count() == 3)
    assert page.locator(".red-grid .chart canvas").count() == 3
    shot(page, "services-red")


def edge_labels(pg) -> dict[tuple[str, str], str]:  # noqa: ANN001
    return {(d["client"], d["server"]): d["text"] for d in pg.eval_on_selector_all(
        ".service-graph .edge-label",
        "ls => ls.map(l => ({client: l.dataset.client, server: l.dataset.server, text: l.textContent}))")}


def test_services_view_shows_request_rates_from_the_generator_counters(browser, tmp_path) -> None:  # noqa: ANN001
    srv = ServerProcess(tmp_path, cycle="1h", extra="metrics_generator: {enabled: true}")
    srv.start()
    try:
        send_shop_traces(srv.otlp, checkouts=8, fail_every=3, spread_s=240)  # the RED charts' last minutes
        metrics = lambda: httpx.get(srv.api + "/metrics").text  # noqa: E731
        wait_until(lambda: 'traces_service_graph_request_total{client="checkout"' in metrics(), timeout=30)
        ctx = browser.new_context(viewport={"width": 1400, "height": 900})
        pg = ctx.new_page()
        pg.goto(f"{srv.api}/ui/services")
        pg.wait_for_selector(".service-graph .edge-label")
        assert edge_labels(pg)[("checkout", "payment")].startswith("– req/s")  # one scrape: no rate yet
        sent = send_shop_traces(srv.otlp, checkouts=6, fail_every=2)  # while the page is open
        assert len(sent.error_ids) == 3

        def rated() -> bool:
            text = edge_labels(pg).get(("checkout", "payment"), "")
            return bool(re.match(r"\d+(\.\d+)? req/(s|min)", text)) and not text.startswith("0 req/s")
        wait_until(rated, timeout=40)
        rate = float(edge_labels(pg)[("checkout", "payment")].split()[0])
        assert rate > 0
        # the node's request rate in is the sum of its incoming edges
        node = pg.text_content(".service-graph .node[data-service=payment] .node-stats") or ""
        assert re.match(r"\d+(\.\d+)? req/(s|min) · \d+% err · p90 ", node), node
        assert re.search(r"request rates over the last \d+ s", pg.inner_text(".graph-source"))
        # another service's page keeps the scrapes: the rates are there at once
        pg.click(".service-graph .node[data-service=payment]")
        pg.wait_for_url("**/ui/services/payment")
        pg.wait_for_selector(".service-graph .edge-label")
        assert re.match(r"\d+(\.\d+)? req/(s|min) ", edge_labels(pg)[("checkout", "payment")])
        wait_until(lambda: pg.locator(".red-grid .chart:has(canvas, .empty, .error)").count() == 3)
        shot(pg, "services")
        ctx.close()
    finally:
        srv.terminate()


def test_service_graph_figures_in_the_page(page, server) -> None:
    srv, _, _ = server
    page.goto(f"{srv.api}/ui/services")
    page.wait_for_selector(".service-graph")
    got = page.evaluate("""async () => {
      const m = await import('/ui/static/js/services.js');
      const e = (client, server, requests, failed) => ({client, server, requests, failed});
      const before = [e('a', 'b', 10, 1), e('b', 'c', 50, 0)];
      const now = [e('a', 'b', 40, 4), e('b', 'c', 5, 0), e('c', 'd', 7, 7)];
      const rated = m.withRates(now, before, 10).map(e => e.rate);
      const span = (id, parentId, service, kind, error, ms) =>
        ({id, parentId, service, kind, error, durationNs: ms * 1e6});
      const spans = [span('1', '', 'web', 'server', false, 100), span('2', '1', 'web', 'client', false, 80),
                     span('3', '2', 'api', 'server', true, 70), span('4', '', 'job', 'internal', false, 5)];
      const trace = {spans, byId: new Map(spans.map(s => [s.id, s]))};
      const edges = m.graphFromTraces([trace, trace], 60);
      return {rated, edges: edges.map(e => [e.client, e.server, e.requests, e.failed, e.rate, e.p90]),
              node: m.nodeStats(edges, 'api'), text: m.statsText(m.nodeStats(edges, 'api')),
              rates: [0, 0.5, 2 / 60, 2 / 3600, 250, null].map(m.fmtRate)};
    }""")
    assert got["rated"] == [3, 0.5, 0.7]  # b->c went down: the counter restarted, its value is the increase
    assert got["edges"] == [["user", "web", 2, 0, 2 / 60, 0.1], ["web", "api", 2, 2, 2 / 60, 0.07]]
    assert got["node"] == {"requests": 2, "failed": 2, "rate": 2 / 60, "p90": 0.07}
    assert got["text"] == "2.0 req/min · 100% err · p90 70.0ms"
    assert got["rates"] == ["0 req/s", "30.0 req/min", "2.0 req/min", "2.0 req/h", "250 req/s", "– req/s"]


def test_live_view_lists_the_newest_traces_and_updates(page, server) -> None:
    srv, sent, _ = server
    page.goto(f"{srv.api}/ui/live")
    page.wait_for_selector(".live-table tr[data-trace-id]")
    first = page.eval_on_selector(".live-table tr[data-trace-id]", "r => r.dataset.traceId")
    # The newest trace leads: the last checkout (the batch job started a minute before it) or the big trace.
    assert first in {short(sent.checkout_ids[-1]), short(sent.batch_id), "b16" + "ab" * 14}
    sent2 = send_shop_traces(srv.otlp, checkouts=1, fail_every=0)
    page.wait_for_selector(f".live-table tr[data-trace-id='{short(sent2.batch_id)}']", timeout=30_000)
    shot(page, "live")


def test_a_10000_span_trace_opens_with_only_the_visible_rows_in_the_page(page, server) -> None:
    srv, _, big = server
    page.goto(f"{srv.api}/ui/trace/{big}")
    page.wait_for_selector(".wf-row")
    assert page.inner_text("[data-testid=span-count]") == str(BIG_SPANS)
    assert 0 < page.locator(".wf-row").count() < 200
    page.fill("input[aria-label='Find in trace']", "leaf 10000")
    page.press("input[aria-label='Find in trace']", "Enter")
    page.wait_for_selector(".wf-row.selected:has-text('leaf 10000')")
    assert page.locator(".wf-row").count() < 200
    shot(page, "trace-10000-spans")


def test_trace_decoded_from_protobuf_is_the_json_answer(page, server) -> None:
    """The UI asks for traces in protobuf and decodes them to the JSON answer's document: the same, key
    for key, for a trace with every field the server keeps (and for the 10,000-span one)."""
    srv, _, big = server
    trace_id = bytes.fromhex("77" * 16)
    req = ExportTraceServiceRequest()
    req.resource_spans.extend(rich_trace(trace_id).resource_spans)
    for n, sp in enumerate(s for rs in req.resource_spans for ss in rs.scope_spans for s in ss.spans):
        sp.trace_id, sp.span_id = trace_id, sp.span_id or (n + 100).to_bytes(8, "big")
        sp.start_time_unix_nano = time.time_ns() - 10_000 + n  # the server takes times below 2^63 only
        sp.end_time_unix_nano = sp.start_time_unix_nano + 1000 * n
    r = httpx.post(srv.otlp, content=req.SerializeToString(), headers={"Content-Type": "application/x-protobuf"})
    assert r.status_code == 200, r.text
    page.goto(f"{srv.api}/ui/trace/{trace_id.hex()}")
    page.wait_for_selector(".wf-row")
    for tid in (trace_id.hex(), big):
        same = page.evaluate("""async (id) => {
          const { decodeTraceByIdResponse } = await import("/ui/static/js/otlp_proto.js");
          const url = `/api/v2/traces/${id}`;
          const json = await (await fetch(url, { headers: { Accept: "application/json" } })).text();
          const pb = await (await fetch(url, { headers: { Accept: "application/protobuf" } })).arrayBuffer();
          const decoded = JSON.stringify(decodeTraceByIdResponse(pb));
          const text = JSON.stringify(JSON.parse(json));
          return decoded === text ? "same" : decoded.slice(0, 4000) + " <> " + text.slice(0, 4000);
        }""", tid)
        assert same == "same"


def test_dark_theme_follows_the_system_setting(browser, server) -> None:
    srv, sent, _ = server
    ctx = browser.new_context(viewport={"width": 1400, "height": 900}, color_scheme="dark")
    pg = ctx.new_page()
    pg.goto(f"{srv.api}/ui/trace/{sent.error_ids[0]}")
    pg.wait_for_selector(".wf-row")
    bg = pg.evaluate("getComputedStyle(document.body).backgroundColor")
    assert bg == "rgb(21, 24, 30)"
    pg.click(".wf-row:has-text('PlaceOrder')")
    shot(pg, "trace-dark")
    ctx.close()


def test_the_page_makes_no_request_to_another_origin(page, server) -> None:
    srv, sent, _ = server
    origins = set()
    page.on("request", lambda r: origins.add(urllib.parse.urlsplit(r.url)[:2]))
    for path in ("/ui/search?since=1h", f"/ui/trace/{sent.checkout_ids[0]}", "/ui/services",
                 "/ui/metrics?since=15m", "/ui/live"):
        page.goto(srv.api + path)
        page.wait_for_load_state("networkidle")
    assert origins == {("http", f"127.0.0.1:{srv.http_port}")}, origins



def test_tenant_field_sends_x_scope_orgid_when_multitenancy_is_on(browser, tmp_path) -> None:  # noqa: ANN001
    srv = ServerProcess(tmp_path, cycle="1h", extra="multitenancy_enabled: true")
    srv.start()
    try:
        a = send_shop_traces(srv.otlp, checkouts=2, fail_every=0, headers={"X-Scope-OrgID": "team-a"})
        b = send_shop_traces(srv.otlp, checkouts=1, fail_every=0, headers={"X-Scope-OrgID": "team-b"})
        ctx = browser.new_context(viewport={"width": 1400, "height": 900})
        pg = ctx.new_page()
        pg.goto(srv.api + "/ui/search?since=1h")
        assert pg.locator("#tenant-field").is_visible()
        pg.wait_for_selector(".error")
        assert "no org id" in pg.inner_text(".error")
        pg.fill("#tenant", "team-a")
        pg.press("#tenant", "Enter")
        wait_until(lambda: result_count(pg).startswith("3 traces"))
        shown = set(pg.eval_on_selector_all("tr[data-trace-id]", "rows => rows.map(r => r.dataset.traceId)"))
        assert shown == {short(t) for t in [*a.checkout_ids, a.batch_id]}
        pg.goto(f"{srv.api}/ui/trace/{b.checkout_ids[0]}")  # the tenant stays set: team-b's trace is not there
        pg.wait_for_selector(".error")
        assert "not found" in pg.inner_text(".error")
        # no metrics-generator on this server: the service graph comes from team-a's recent traces
        pg.goto(f"{srv.api}/ui/services")
        pg.wait_for_selector(".service-graph")
        assert "from the 3 most recent traces of the last hour: rates over the 1 h" in pg.inner_text(".services-view")
        labels = edge_labels(pg)  # user->frontend->checkout->inventory, payment: 2 requests in the hour each
        assert {edge: label.split(" · ")[0] for edge, label in labels.items()} == {
            ("user", "frontend"): "2.0 req/h", ("frontend", "checkout"): "2.0 req/h",
            ("checkout", "inventory"): "2.0 req/h", ("checkout", "payment"): "2.0 req/h"}
        ctx.close()
    finally:
        srv.terminate()


def test_base64_to_hex_agrees_with_atob(page, server) -> None:
    srv, _, _ = server
    page.goto(f"{srv.api}/ui/search")
    page.wait_for_selector(".cm-content")
    bad = page.evaluate("""async () => {
      const { b64ToHex } = await import('/ui/static/js/api.js');
      const slow = (b64) => [...atob(b64)].map(c => c.charCodeAt(0).toString(16).padStart(2, '0')).join('');
      const bad = [];
      for (let n = 0; n <= 40; n++) {
        for (let k = 0; k < 20; k++) {
          const bytes = Uint8Array.from({ length: n }, () => Math.floor(Math.random() * 256));
          const b64 = btoa(String.fromCharCode(...bytes));
          for (const form of [b64, b64.replace(/=+$/, '')]) if (b64ToHex(form) !== slow(b64)) bad.push(form);
        }
      }
      return bad;
    }""")
    assert bad == []

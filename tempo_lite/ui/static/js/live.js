// Live view: the newest traces as they arrive, refreshed every few seconds (a search over the last minutes).
import { api } from "./api.js";
import { clear, errorBox, fmtAgo, fmtDuration, h, link, serviceColor } from "./dom.js";

export const title = "Live";
const WINDOW_S = 900;

export async function render(main, { params }) {
  const page = h("section", { class: "view live-view" });
  main.append(page);
  const q = params.get("q") || "{ }";
  const every = h("select", { "aria-label": "Refresh every" },
    [["2", "every 2s"], ["5", "every 5s"], ["15", "every 15s"], ["0", "paused"]].map(([v, l]) =>
      h("option", { value: v, selected: v === "2" }, l)));
  const status = h("span", { class: "muted", "aria-live": "polite" });
  const body = h("tbody");
  page.append(h("div", { class: "live-bar" }, h("h1", null, "Live"), h("span", { class: "muted mono" }, q), every, status),
    h("table", { class: "grid live-table" },
      h("thead", null, h("tr", null, ["Started", "Trace", "Root service", "Root span", "Duration", "Spans"]
        .map((c) => h("th", { scope: "col" }, c)))), body));
  const seen = new Map();
  let timer = 0;
  let stopped = false;
  async function tick() {
    if (stopped) return;
    const end = Math.ceil(Date.now() / 1000) + 1;
    try {
      const doc = await api.search({ q, start: end - WINDOW_S, end, limit: 50 });
      const traces = (doc.traces || []).sort((a, b) => (BigInt(b.startTimeUnixNano || 0) > BigInt(a.startTimeUnixNano || 0) ? 1 : -1));
      clear(body);
      for (const t of traces) {
        const fresh = !seen.has(t.traceID) && seen.size > 0;
        if (!seen.has(t.traceID)) seen.set(t.traceID, Date.now());
        const spans = Object.values(t.serviceStats || {}).reduce((n, s) => n + (s.spanCount || 0), 0);
        const errors = Object.values(t.serviceStats || {}).some((s) => s.errorCount);
        body.append(h("tr", { class: fresh ? "fresh" : "", "data-trace-id": t.traceID },
          h("td", null, fmtAgo(Number(BigInt(t.startTimeUnixNano || 0) / 1000000n))),
          h("td", null, link(`/ui/trace/${t.traceID}`, t.traceID.slice(0, 16), { class: "mono" })),
          h("td", null, h("span", { class: "svc-dot", style: { background: serviceColor(t.rootServiceName || "") } }),
            t.rootServiceName || ""),
          h("td", null, t.rootTraceName || ""),
          h("td", { class: "num" }, t.durationMs ? fmtDuration(t.durationMs * 1e6) : "<1ms"),
          h("td", { class: "num" }, String(spans), errors ? h("span", { class: "err-badge" }, "error") : "")));
      }
      if (!traces.length) body.append(h("tr", null, h("td", { colspan: "6", class: "empty" }, "Waiting for traces…")));
      status.textContent = `${traces.length} traces in the last ${WINDOW_S / 60} minutes, updated ${new Date().toLocaleTimeString()}`;
    } catch (err) {
      clear(body).append(h("tr", null, h("td", { colspan: "6" }, errorBox(err.message))));
    }
    const s = Number(every.value);
    if (s > 0 && !stopped) timer = setTimeout(tick, s * 1000);
  }
  every.addEventListener("change", () => { clearTimeout(timer); tick(); });
  tick();
  return () => { stopped = true; clearTimeout(timer); };
}

// Metrics view: a TraceQL metrics query (/api/metrics/query_range) as a time series, exemplars as points
// that open their trace.
import { anyValue, api } from "./api.js";
import { timeSeries } from "./chart.js";
import { clear, errorBox, fmtDuration, fmtTime, h } from "./dom.js";
import { rangeFromParams, rangeParams, resolve, timeRangePicker } from "./timerange.js";
import { createEditor } from "./traceql.js";

export const title = "Metrics";

export function seriesLabel(labels) {
  const parts = (labels || []).filter((l) => l.key !== "__name__")
    .map((l) => `${l.key}=${JSON.stringify(anyValue(l.value))}`);
  return parts.length ? `{${parts.join(", ")}}` : "{}";
}

// A step giving about 120 points over the range, at least 1 s.
export function autoStep(start, end) {
  return Math.max(1, Math.round((end - start) / 120));
}

export function toChart(doc) {
  const series = [];
  const exemplars = [];
  for (const s of doc.series || []) {
    const label = seriesLabel(s.labels);
    const points = (s.samples || []).map((p) => [Number(p.timestampMs) / 1000, Number(p.value ?? 0)]);
    series.push({ label, points });
    for (const e of s.exemplars || []) {
      const idLabel = (e.labels || []).find((l) => l.key === "trace:id");
      if (!idLabel) continue;
      const t = Number(e.timestampMs) / 1000;
      let v = Number(e.value);
      const valued = Number.isFinite(v);
      if (!valued) {
        // rate() and count exemplars carry no value (NaN): draw them on their series, at the highest
        // sample within a step of their time (the bucket that counted them).
        const step = points.length > 1 ? points[1][0] - points[0][0] : 60;
        const near = points.filter((p) => Math.abs(p[0] - t) <= step);
        v = near.length ? Math.max(...near.map((p) => p[1])) : 0;
      }
      exemplars.push({ t, v, valued, traceId: String(anyValue(idLabel.value)) });
    }
  }
  return { series, exemplars };
}

export function durationQuery(q) {
  return /(quantile|avg|min|max|sum)_over_time\s*\(\s*(duration|traceDuration)/.test(q) ||
    /histogram_over_time\s*\(\s*duration/.test(q);
}

export async function render(main, { params, setAddress, navigate }) {
  let range = rangeFromParams(params);
  const page = h("section", { class: "view metrics-view" });
  main.append(page);
  const editorBox = h("div", { class: "editor", "data-autofocus": true });
  const out = h("div", { class: "metrics-out", "aria-live": "polite" });
  const form = h("form", { class: "query-bar" }, editorBox,
    h("div", { class: "query-controls" }, timeRangePicker(range, (r) => { range = r; submit(); }),
      h("button", { type: "submit", class: "btn primary" }, "Run query")));
  page.append(h("h1", { class: "sr-only" }, "TraceQL metrics"), form, out);
  const editor = createEditor(editorBox, { doc: params.get("q") || "{ } | rate() by (resource.service.name)",
    onSubmit: () => submit(), label: "TraceQL metrics query" });
  let chart = null;
  let abort = null;
  let first = true;
  async function submit() {
    const q = editor.get().trim();
    setAddress(`/ui/metrics?${new URLSearchParams({ q, ...rangeParams(range) })}`, { replace: first });
    first = false;
    if (abort) abort.abort();
    abort = new AbortController();
    const { start, end } = resolve(range);
    if (chart) { chart.dispose(); chart = null; }
    clear(out).append(h("p", { class: "muted" }, "Querying…"));
    let doc;
    try {
      doc = await api.queryRange({ q, start, end, step: `${autoStep(start, end)}s`, exemplars: 100 },
        { signal: abort.signal });
    } catch (err) {
      if (err.name !== "AbortError") clear(out).append(errorBox(err.message));
      return;
    }
    clear(out);
    if (doc.message) out.append(errorBox(doc.message));
    const data = toChart(doc);
    if (!data.series.length) { out.append(h("p", { class: "empty" }, "No series: no spans match in this range.")); return; }
    out.append(h("p", { class: "muted", "data-testid": "series-count" },
      `${data.series.length} series, ${data.exemplars.length} exemplars (click one to open its trace)`));
    const box = h("div", { class: "plot", "data-testid": "metrics-plot" });
    out.append(box);
    const seconds = durationQuery(q);
    chart = timeSeries(box, { ...data, height: 340, yFormat: seconds ? (v) => fmtDuration(v * 1e9) : undefined,
      onExemplar: (id) => navigate(`/ui/trace/${id}`) });
    out.append(h("ul", { class: "exemplar-list" }, data.exemplars.slice(0, 20).map((e) => h("li", null,
      h("a", { href: `/ui/trace/${e.traceId}`, "data-nav": true, class: "mono" }, e.traceId), " ",
      h("span", { class: "muted" }, fmtTime(e.t * 1000),
        e.valued ? ` · ${seconds ? fmtDuration(e.v * 1e9) : String(e.v)}` : "")))));
  }
  form.addEventListener("submit", (ev) => { ev.preventDefault(); submit(); });
  submit();
  return () => { if (abort) abort.abort(); if (chart) chart.dispose(); };
}

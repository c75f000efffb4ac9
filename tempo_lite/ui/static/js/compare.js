// Compare view: two traces side by side, spans matched by service and name, durations compared.
import { api } from "./api.js";
import { clear, errorBox, fmtDuration, h, link, serviceColor } from "./dom.js";
import { buildTrace } from "./model.js";
import { waterfall } from "./trace.js";

export const title = "Compare";

// Spans grouped by (service, name): count and total duration on each side.
export function matchSpans(a, b) {
  const groups = new Map();
  const add = (trace, side) => {
    for (const s of trace.spans) {
      const key = `${s.service}\u0000${s.name}`;
      let g = groups.get(key);
      if (!g) { g = { service: s.service, name: s.name, a: { n: 0, total: 0 }, b: { n: 0, total: 0 } }; groups.set(key, g); }
      g[side].n += 1;
      g[side].total += s.durationNs;
    }
  };
  add(a, "a");
  add(b, "b");
  return [...groups.values()].sort((x, y) => Math.abs(y.b.total - y.a.total) - Math.abs(x.b.total - x.a.total));
}

export async function render(main, { args, navigate }) {
  const page = h("section", { class: "view compare-view" });
  main.append(page);
  const form = h("form", { class: "inline-form" },
    h("input", { name: "a", placeholder: "trace ID A", value: args[0] || "", "aria-label": "Trace A",
      "data-autofocus": true, spellcheck: "false" }),
    h("input", { name: "b", placeholder: "trace ID B", value: args[1] || "", "aria-label": "Trace B", spellcheck: "false" }),
    h("button", { class: "btn primary", type: "submit" }, "Compare"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const a = form.elements.a.value.trim();
    const b = form.elements.b.value.trim();
    if (a && b) navigate(`/ui/compare/${encodeURIComponent(a)}/${encodeURIComponent(b)}`);
  });
  page.append(h("h1", null, "Compare traces"), form);
  if (!args[0] || !args[1]) {
    page.append(h("p", { class: "muted" }, "Enter two trace IDs, or use “Compare” on a trace page."));
    return;
  }
  const [docA, docB] = await Promise.all([api.trace(args[0]), api.trace(args[1])]);
  const a = docA && buildTrace(docA);
  const b = docB && buildTrace(docB);
  if (!a || !b) {
    page.append(errorBox(`trace ${!a ? args[0] : args[1]} not found`));
    return;
  }
  const groups = matchSpans(a, b);
  const keyOf = (s) => `${s.service}\u0000${s.name}`;
  const only = new Map(groups.map((g) => [`${g.service}\u0000${g.name}`, g]));
  const mark = (side) => (s) => {
    const g = only.get(keyOf(s));
    if (!g) return "";
    const other = side === "a" ? g.b : g.a;
    return other.n === 0 ? `only-${side}` : "";
  };
  const delta = (g) => {
    if (!g.a.n) return h("span", { class: "only-b-text" }, "only in B");
    if (!g.b.n) return h("span", { class: "only-a-text" }, "only in A");
    const d = g.b.total - g.a.total;
    const pct = g.a.total ? ` (${d >= 0 ? "+" : ""}${((d / g.a.total) * 100).toFixed(0)}%)` : "";
    return h("span", { class: d > 0 ? "slower" : d < 0 ? "faster" : "" }, `${d >= 0 ? "+" : "−"}${fmtDuration(Math.abs(d))}${pct}`);
  };
  page.append(
    h("table", { class: "grid compare-table" },
      h("thead", null, h("tr", null, ["Service", "Span name", "A count", "A total", "B count", "B total", "B − A"]
        .map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", null, groups.map((g) => h("tr", null,
        h("td", null, h("span", { class: "svc-dot", style: { background: serviceColor(g.service) } }), g.service),
        h("td", null, g.name),
        h("td", { class: "num" }, String(g.a.n)), h("td", { class: "num" }, g.a.n ? fmtDuration(g.a.total) : "–"),
        h("td", { class: "num" }, String(g.b.n)), h("td", { class: "num" }, g.b.n ? fmtDuration(g.b.total) : "–"),
        h("td", { class: "num" }, delta(g)))))),
  );
  const wa = waterfall(a, { compact: true, highlight: mark("a") });
  const wb = waterfall(b, { compact: true, highlight: mark("b") });
  page.append(h("div", { class: "side-by-side" },
    h("div", null, h("h2", null, "A ", link(`/ui/trace/${a.id}`, a.id, { class: "mono" }), ` · ${fmtDuration(a.durationNs)}`), wa.el),
    h("div", null, h("h2", null, "B ", link(`/ui/trace/${b.id}`, b.id, { class: "mono" }), ` · ${fmtDuration(b.durationNs)}`), wb.el)));
  return () => { wa.dispose(); wb.dispose(); };
}

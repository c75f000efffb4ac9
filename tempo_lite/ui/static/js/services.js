// Services view: the service graph (from the metrics-generator's service-graph series on /metrics when it
// runs, otherwise from recent traces) and per-service RED charts from TraceQL metrics.
import { api, server, tenant } from "./api.js";
import { timeSeries } from "./chart.js";
import { clear, errorBox, fmtDuration, h, svg } from "./dom.js";
import { buildTrace } from "./model.js";
import { autoStep, toChart } from "./metrics.js";

export const title = "Services";

// Prometheus text exposition -> [{name, labels, value}] (only what the graph needs; no comments).
export function parseProm(text) {
  const out = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = line.match(/^([a-zA-Z_:][\w:]*)(\{(.*)\})?\s+(\S+)/);
    if (!m) continue;
    const labels = {};
    if (m[3]) for (const l of m[3].matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2].replace(/\\(.)/g, "$1");
    out.push({ name: m[1], labels, value: Number(m[4]) });
  }
  return out;
}

function quantileFromBuckets(buckets, q) {
  const sorted = buckets.filter((b) => b.le !== Infinity).sort((a, b) => a.le - b.le);
  const total = buckets.reduce((n, b) => Math.max(n, b.count), 0);
  if (!total) return null;
  const rank = q * total;
  let prevLe = 0;
  let prevCount = 0;
  for (const b of sorted) {
    if (b.count >= rank) return prevLe + ((b.le - prevLe) * (rank - prevCount)) / Math.max(1, b.count - prevCount);
    prevLe = b.le;
    prevCount = b.count;
  }
  return prevLe;
}

export function graphFromProm(samples, tenantName) {
  const edges = new Map();
  const edge = (l) => {
    const key = `${l.client}\u0000${l.server}`;
    if (!edges.has(key)) edges.set(key, { client: l.client, server: l.server, requests: 0, failed: 0, buckets: [] });
    return edges.get(key);
  };
  for (const s of samples) {
    if (s.labels.tenant !== undefined && tenantName && s.labels.tenant !== tenantName) continue;
    if (s.name === "traces_service_graph_request_total") edge(s.labels).requests += s.value;
    else if (s.name === "traces_service_graph_request_failed_total") edge(s.labels).failed += s.value;
    else if (s.name === "traces_service_graph_request_server_seconds_bucket") {
      const le = s.labels.le === "+Inf" ? Infinity : Number(s.labels.le);
      const e = edge(s.labels);
      const b = e.buckets.find((x) => x.le === le);
      if (b) b.count += s.value; else e.buckets.push({ le, count: s.value });
    }
  }
  return [...edges.values()].filter((e) => e.requests > 0).map((e) => ({
    client: e.client || "user", server: e.server || "user", requests: e.requests, failed: e.failed,
    p90: quantileFromBuckets(e.buckets, 0.9) }));
}

// Edges from traces: a span whose parent belongs to another service is a request between the two.
export function graphFromTraces(traces) {
  const edges = new Map();
  for (const t of traces) {
    for (const s of t.spans) {
      const parent = s.parentId && t.byId.get(s.parentId);
      if (!parent || parent.service === s.service) continue;
      const key = `${parent.service}\u0000${s.service}`;
      if (!edges.has(key)) edges.set(key, { client: parent.service, server: s.service, requests: 0, failed: 0, durations: [] });
      const e = edges.get(key);
      e.requests += 1;
      if (s.error) e.failed += 1;
      e.durations.push(s.durationNs / 1e9);
    }
  }
  return [...edges.values()].map((e) => {
    const d = e.durations.sort((a, b) => a - b);
    return { client: e.client, server: e.server, requests: e.requests, failed: e.failed,
      p90: d.length ? d[Math.min(d.length - 1, Math.floor(d.length * 0.9))] : null };
  });
}

const COL = 380; // node width 170 + room for an edge label

// Columns by longest path from the services nobody calls; cycles are cut where first met.
function layout(nodes, edges) {
  const depth = new Map(nodes.map((n) => [n, 0]));
  for (let pass = 0; pass < nodes.length; pass++) {
    let changed = false;
    for (const e of edges) {
      if (e.client === e.server) continue;
      const d = depth.get(e.client) + 1;
      if (d > depth.get(e.server) && d < nodes.length) { depth.set(e.server, d); changed = true; }
    }
    if (!changed) break;
  }
  const cols = new Map();
  for (const n of nodes) {
    const d = depth.get(n);
    if (!cols.has(d)) cols.set(d, []);
    cols.get(d).push(n);
  }
  const pos = new Map();
  for (const [d, list] of cols) list.sort().forEach((n, i) => pos.set(n, { x: 30 + d * COL, y: 30 + i * 80 }));
  const height = Math.max(...[...cols.values()].map((l) => l.length)) * 80 + 60;
  const width = (Math.max(...cols.keys()) + 1) * COL;
  return { pos, width, height };
}

function drawGraph(edges, services, onPick) {
  const nodes = [...new Set([...services, ...edges.flatMap((e) => [e.client, e.server])])];
  if (!nodes.length) return h("p", { class: "empty" }, "No services seen yet.");
  const { pos, width, height } = layout(nodes, edges);
  const W = 170;
  const H = 44;
  const root = svg("svg", { class: "service-graph", viewBox: `0 0 ${width} ${height}`, width, height, role: "img",
    "aria-label": `Service graph: ${nodes.length} services, ${edges.length} edges` });
  root.append(svg("defs", {}, svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "10", refY: "5",
    markerWidth: "7", markerHeight: "7", orient: "auto-start-reverse" }, svg("path", { d: "M 0 0 L 10 5 L 0 10 z", class: "arrow" }))));
  for (const e of edges) {
    const a = pos.get(e.client);
    const b = pos.get(e.server);
    const x1 = a.x + W;
    const y1 = a.y + H / 2;
    const x2 = b.x;
    const y2 = b.y + H / 2;
    const back = x2 <= x1;
    const d = back ? `M ${a.x + W / 2} ${a.y + H} C ${a.x + W / 2} ${a.y + H + 60}, ${b.x + W / 2} ${b.y + H + 60}, ${b.x + W / 2} ${b.y + H}` :
      `M ${x1} ${y1} C ${x1 + 60} ${y1}, ${x2 - 60} ${y2}, ${x2} ${y2}`;
    const errRate = e.requests ? e.failed / e.requests : 0;
    root.append(svg("path", { d, class: "edge" + (errRate > 0 ? " edge-error" : ""), "marker-end": "url(#arrow)" }));
    const lx = back ? (a.x + b.x + W) / 2 : (x1 + x2) / 2;
    const ly = back ? Math.max(a.y, b.y) + H + 50 : (y1 + y2) / 2 - 8;
    root.append(svg("text", { x: lx, y: ly, class: "edge-label", "text-anchor": "middle",
      text: `${e.requests} req · ${(errRate * 100).toFixed(0)}% err${e.p90 != null ? ` · p90 ${fmtDuration(e.p90 * 1e9)}` : ""}` }));
  }
  for (const n of nodes) {
    const p = pos.get(n);
    const g = svg("g", { class: "node", tabindex: "0", role: "button", "aria-label": `service ${n}`, "data-service": n,
      onclick: () => onPick(n), onkeydown: (ev) => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); onPick(n); } } },
    svg("rect", { x: p.x, y: p.y, width: W, height: H, rx: 8 }),
    svg("text", { x: p.x + W / 2, y: p.y + H / 2 + 5, "text-anchor": "middle", text: n.length > 22 ? `${n.slice(0, 21)}…` : n }));
    root.append(g);
  }
  return h("div", { class: "graph-box" }, root);
}

async function recentTraces(limit = 40) {
  const end = Math.ceil(Date.now() / 1000);
  const doc = await api.search({ q: "{ }", start: end - 3600, end, limit });
  const ids = (doc.traces || []).map((t) => t.traceID);
  const traces = [];
  for (let i = 0; i < ids.length; i += 6) {
    const docs = await Promise.all(ids.slice(i, i + 6).map((id) => api.trace(id).catch(() => null)));
    for (const d of docs) { const t = d && buildTrace(d); if (t) traces.push(t); }
  }
  return traces;
}

export async function render(main, { args, navigate }) {
  const page = h("section", { class: "view services-view" });
  main.append(page);
  const source = h("p", { class: "muted" });
  const graphBox = h("div", { class: "graph-wrap" }, h("p", { class: "muted" }, "Loading service graph…"));
  const red = h("div", { class: "red" });
  page.append(h("h1", null, "Services"), source, graphBox, red);
  let charts = [];
  const dispose = () => { for (const c of charts) c.dispose(); charts = []; };

  const pick = (svc) => navigate(`/ui/services/${encodeURIComponent(svc)}`);
  let edges = [];
  let services = [];
  try {
    const end = Math.ceil(Date.now() / 1000);
    const names = await api.tagValues("resource.service.name", { start: end - 3600, end });
    services = (names.tagValues || []).map((v) => v.value);
    if (server.generator) {
      edges = graphFromProm(parseProm(await api.promMetrics()), server.multitenancy ? tenant() : "single-tenant");
      source.textContent = "Service graph from the metrics-generator (counts since it started).";
    }
    if (!server.generator || !edges.length) {
      const traces = await recentTraces();
      edges = graphFromTraces(traces);
      source.textContent = `Service graph from the ${traces.length} most recent traces of the last hour` +
        (server.generator ? " (the metrics-generator has no service-graph series yet)." : ".");
    }
  } catch (err) {
    clear(graphBox).append(errorBox(err.message));
    return dispose;
  }
  clear(graphBox).append(drawGraph(edges, services, pick));
  const selected = args[0] || "";
  graphBox.append(h("table", { class: "grid services-table" },
    h("thead", null, h("tr", null, ["Service", "Calls out", "Calls in", "Errors in"].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", null, services.map((s) => {
      const out = edges.filter((e) => e.client === s).reduce((n, e) => n + e.requests, 0);
      const inn = edges.filter((e) => e.server === s);
      const req = inn.reduce((n, e) => n + e.requests, 0);
      const fail = inn.reduce((n, e) => n + e.failed, 0);
      return h("tr", { class: s === selected ? "selected" : "" },
        h("td", null, h("a", { href: `/ui/services/${encodeURIComponent(s)}`, "data-nav": true }, s)),
        h("td", { class: "num" }, String(out)), h("td", { class: "num" }, String(req)),
        h("td", { class: "num" }, req ? `${((fail / req) * 100).toFixed(0)}%` : "–"));
    }))));
  if (selected) await showRed(red, selected, (c) => charts.push(c), navigate);
  else red.append(h("p", { class: "muted" }, "Pick a service for its rate, errors and duration charts."));
  return dispose;
}

async function showRed(box, svc, keep, navigate) {
  const end = Math.ceil(Date.now() / 1000);
  const start = end - 3600;
  const step = `${autoStep(start, end)}s`;
  const sel = `resource.service.name = ${JSON.stringify(svc)}`;
  const panels = [
    ["Rate (spans/s)", `{ ${sel} } | rate()`, undefined],
    ["Errors (spans/s)", `{ ${sel} && status = error } | rate()`, undefined],
    ["Duration", `{ ${sel} } | quantile_over_time(duration, .5, .9, .99)`, (v) => fmtDuration(v * 1e9)],
  ];
  box.append(h("h2", null, `${svc}: last hour`));
  const grid = h("div", { class: "red-grid" });
  box.append(grid);
  for (const [label, q, fmt] of panels) {
    const fig = h("figure", { class: "chart" }, h("figcaption", null, label, " ",
      h("a", { href: `/ui/metrics?${new URLSearchParams({ q })}`, "data-nav": true, class: "muted small" }, "open in Metrics")));
    grid.append(fig);
    try {
      const doc = await api.queryRange({ q, start, end, step, exemplars: 20 });
      const data = toChart(doc);
      if (!data.series.length) { fig.append(h("p", { class: "empty" }, "no data")); continue; }
      const plot = h("div", { class: "plot" });
      fig.append(plot);
      keep(timeSeries(plot, { ...data, height: 200, yFormat: fmt, onExemplar: (id) => navigate(`/ui/trace/${id}`) }));
    } catch (err) {
      fig.append(errorBox(err.message));
    }
  }
}

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

function quantileOf(sortedValues, q) {
  return sortedValues.length ? sortedValues[Math.min(sortedValues.length - 1, Math.floor(sortedValues.length * q))] : null;
}

const edgeKey = (e) => `${e.client}\u0000${e.server}`;

// Edges of the generator's service-graph series (counts since it started): requests, failed, p90 of the
// server-side latency buckets; `rate` (requests/s) is set by `withRates` from two scrapes.
export function graphFromProm(samples, tenantName) {
  const edges = new Map();
  const edge = (l) => {
    const e = { client: l.client || "user", server: l.server || "user" };
    const key = edgeKey(e);
    if (!edges.has(key)) edges.set(key, { ...e, requests: 0, failed: 0, buckets: [], rate: null });
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
  return [...edges.values()].filter((e) => e.requests > 0).map((e) => ({ ...e, p90: quantileFromBuckets(e.buckets, 0.9) }));
}

// Request rates between two scrapes of the counters, `seconds` apart (a counter that went down restarted:
// its new value is what happened since).
export function withRates(now, before, seconds) {
  const old = new Map(before.map((e) => [edgeKey(e), e]));
  return now.map((e) => {
    const prev = old.get(edgeKey(e));
    const delta = prev && e.requests >= prev.requests ? e.requests - prev.requests : e.requests;
    return { ...e, rate: seconds > 0 ? delta / seconds : null };
  });
}

// Edges from traces: a span whose parent belongs to another service is a request between the two, a root
// server span one from `user` (as the generator counts them). `windowS`: the seconds the traces cover.
export function graphFromTraces(traces, windowS) {
  const edges = new Map();
  const count = (client, s) => {
    const key = `${client}\u0000${s.service}`;
    if (!edges.has(key)) edges.set(key, { client, server: s.service, requests: 0, failed: 0, durations: [] });
    const e = edges.get(key);
    e.requests += 1;
    if (s.error) e.failed += 1;
    e.durations.push(s.durationNs / 1e9);
  };
  for (const t of traces) {
    for (const s of t.spans) {
      const parent = s.parentId && t.byId.get(s.parentId);
      if (!parent) { if (s.kind === "server") count("user", s); continue; }
      if (parent.service !== s.service) count(parent.service, s);
    }
  }
  return [...edges.values()].map((e) => {
    const durations = e.durations.sort((a, b) => a - b);
    return { ...e, durations, p90: quantileOf(durations, 0.9), rate: windowS > 0 ? e.requests / windowS : null };
  });
}

// A service's requests in: its incoming edges summed (rate, error rate, p90 of the merged latencies).
export function nodeStats(edges, service) {
  const inn = edges.filter((e) => e.server === service);
  if (!inn.length) return null;
  const requests = inn.reduce((n, e) => n + e.requests, 0);
  const failed = inn.reduce((n, e) => n + e.failed, 0);
  const rate = inn.some((e) => e.rate == null) ? null : inn.reduce((n, e) => n + e.rate, 0);
  let p90;
  if (inn.every((e) => e.buckets)) {
    const merged = new Map();
    for (const e of inn) for (const b of e.buckets) merged.set(b.le, (merged.get(b.le) || 0) + b.count);
    p90 = quantileFromBuckets([...merged].map(([le, c]) => ({ le, count: c })), 0.9);
  } else {
    p90 = quantileOf(inn.flatMap((e) => e.durations || []).sort((a, b) => a - b), 0.9);
  }
  return { requests, failed, rate, p90 };
}

export function fmtRate(perSecond) {
  if (perSecond == null) return "– req/s";
  if (perSecond === 0) return "0 req/s";
  if (perSecond >= 1) return `${perSecond >= 100 ? perSecond.toFixed(0) : perSecond.toFixed(1)} req/s`;
  if (perSecond * 60 >= 1) return `${(perSecond * 60).toFixed(1)} req/min`;
  return `${(perSecond * 3600).toFixed(1)} req/h`;
}

// "rate · error rate · p90" of an edge or a node.
export function statsText(st) {
  const err = st.requests ? `${((st.failed / st.requests) * 100).toFixed(0)}% err` : "– err";
  return `${fmtRate(st.rate)} · ${err}${st.p90 != null ? ` · p90 ${fmtDuration(st.p90 * 1e9)}` : ""}`;
}

const statsTitle = (st) => `${st.requests} requests, ${st.failed} failed`;

const W = 230; // node width
const H = 56;
const COL = W + 230; // room for an edge label between columns

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
  for (const [d, list] of cols) list.sort().forEach((n, i) => pos.set(n, { x: 30 + d * COL, y: 30 + i * 92 }));
  const height = Math.max(...[...cols.values()].map((l) => l.length)) * 92 + 60;
  const width = (Math.max(...cols.keys()) + 1) * COL;
  return { pos, width, height };
}

// The graph, and `update(edges)`, which rewrites the edge and node figures in place (same edges).
function drawGraph(edges, services, onPick) {
  const nodes = [...new Set([...services, ...edges.flatMap((e) => [e.client, e.server])])];
  if (!nodes.length) return { el: h("p", { class: "empty" }, "No services seen yet."), update: () => {} };
  const { pos, width, height } = layout(nodes, edges);
  const root = svg("svg", { class: "service-graph", viewBox: `0 0 ${width} ${height}`, width, height, role: "img",
    "aria-label": `Service graph: ${nodes.length} services, ${edges.length} edges` });
  root.append(svg("defs", {}, svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "10", refY: "5",
    markerWidth: "7", markerHeight: "7", orient: "auto-start-reverse" }, svg("path", { d: "M 0 0 L 10 5 L 0 10 z", class: "arrow" }))));
  const edgeLabels = new Map();
  const nodeLabels = new Map();
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
    const path = svg("path", { d, class: "edge", "marker-end": "url(#arrow)" });
    const lx = back ? (a.x + b.x + W) / 2 : (x1 + x2) / 2;
    const ly = back ? Math.max(a.y, b.y) + H + 50 : (y1 + y2) / 2 - 8;
    const label = svg("text", { x: lx, y: ly, class: "edge-label", "text-anchor": "middle",
      "data-client": e.client, "data-server": e.server });
    const tip = svg("title");
    root.append(svg("g", {}, path, label, tip));
    edgeLabels.set(edgeKey(e), { path, label, tip });
  }
  for (const n of nodes) {
    const p = pos.get(n);
    const stats = svg("text", { x: p.x + W / 2, y: p.y + 40, "text-anchor": "middle", class: "node-stats" });
    const tip = svg("title");
    const g = svg("g", { class: "node", tabindex: "0", role: "button", "aria-label": `service ${n}`, "data-service": n,
      onclick: () => onPick(n), onkeydown: (ev) => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); onPick(n); } } },
    svg("rect", { x: p.x, y: p.y, width: W, height: H, rx: 8 }),
    svg("text", { x: p.x + W / 2, y: p.y + 21, "text-anchor": "middle", class: "node-name", text: n.length > 28 ? `${n.slice(0, 27)}…` : n }),
    stats, tip);
    root.append(g);
    nodeLabels.set(n, { stats, tip });
  }
  const update = (current) => {
    for (const e of current) {
      const el = edgeLabels.get(edgeKey(e));
      if (!el) continue;
      el.label.textContent = statsText(e);
      el.tip.textContent = `${e.client} → ${e.server}: ${statsTitle(e)}`;
      el.path.setAttribute("class", "edge" + (e.failed > 0 ? " edge-error" : ""));
    }
    for (const [n, el] of nodeLabels) {
      const st = nodeStats(current, n);
      el.stats.textContent = st ? statsText(st) : "no requests in";
      el.tip.textContent = st ? `${n}: ${statsTitle(st)} in` : n;
    }
  };
  update(edges);
  return { el: h("div", { class: "graph-box" }, root), update };
}

function servicesTable(edges, services, selected) {
  return h("table", { class: "grid services-table" },
    h("thead", null, h("tr", null, ["Service", "Requests in", "Error rate in", "p90 in", "Calls out"].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", null, services.map((s) => {
      const st = nodeStats(edges, s);
      const out = edges.filter((e) => e.client === s);
      const outRate = out.some((e) => e.rate == null) ? null : out.reduce((n, e) => n + e.rate, 0);
      return h("tr", { class: s === selected ? "selected" : "", "data-service": s },
        h("td", null, h("a", { href: `/ui/services/${encodeURIComponent(s)}`, "data-nav": true }, s)),
        h("td", { class: "num" }, st ? fmtRate(st.rate) : "–"),
        h("td", { class: "num" }, st && st.requests ? `${((st.failed / st.requests) * 100).toFixed(0)}%` : "–"),
        h("td", { class: "num" }, st && st.p90 != null ? fmtDuration(st.p90 * 1e9) : "–"),
        h("td", { class: "num" }, out.length ? fmtRate(outRate) : "–"));
    })));
}

// The most recent traces of the last hour, and the seconds they cover: the whole hour when the search
// returned them all, else from the oldest one's start.
async function recentTraces(limit = 40) {
  const end = Math.ceil(Date.now() / 1000);
  const doc = await api.search({ q: "{ }", start: end - 3600, end, limit });
  const found = doc.traces || [];
  let windowS = 3600;
  if (found.length >= limit) {
    const oldest = Math.min(...found.map((t) => Number(t.startTimeUnixNano || 0) / 1e9));
    windowS = Math.max(1, Date.now() / 1000 - oldest);
  }
  const traces = [];
  for (let i = 0; i < found.length; i += 6) {
    const docs = await Promise.all(found.slice(i, i + 6).map((t) => api.trace(t.traceID).catch(() => null)));
    for (const d of docs) { const t = d && buildTrace(d); if (t) traces.push(t); }
  }
  return { traces, windowS };
}

function generatorSource(seconds) {
  return "Service graph from the metrics-generator's counters on /metrics, scraped every 5 s while this view is " +
    `open: request rates over the last ${seconds >= 1 ? fmtWindow(seconds) : "scrapes (from the next one)"}, ` +
    "error rates and p90 latency since the generator started.";
}

function fmtWindow(s) {
  return s >= 3600 ? `${(s / 3600).toFixed(s % 3600 ? 1 : 0)} h` : s >= 60 ? `${Math.round(s / 60)} min` : `${Math.round(s)} s`;
}

export const RESCRAPE_MS = 5000;
const RATE_WINDOW_S = 300;

// The generator's counters as scraped while the Services view was open, oldest first, kept across visits
// (per tenant) so a rate is there at once: its window is the oldest scrape of the last 5 minutes.
const scrapes = [];

function remember(tenantName, edges) {
  const now = performance.now();
  if (scrapes.length && scrapes[0].tenant !== tenantName) scrapes.length = 0;
  scrapes.push({ t: now, edges, tenant: tenantName });
  while (scrapes.length > 2 && (now - scrapes[1].t) / 1000 >= RATE_WINDOW_S) scrapes.shift();
  const seconds = (now - scrapes[0].t) / 1000;
  return { edges: seconds >= 1 ? withRates(edges, scrapes[0].edges, seconds) : edges, seconds };
}

export async function render(main, { args, navigate }) {
  const page = h("section", { class: "view services-view" });
  main.append(page);
  const source = h("p", { class: "muted graph-source" });
  const graphBox = h("div", { class: "graph-wrap" }, h("p", { class: "muted" }, "Loading service graph…"));
  const red = h("div", { class: "red" });
  page.append(h("h1", null, "Services"), source, graphBox, red);
  let charts = [];
  let timer = null;
  const dispose = () => { for (const c of charts) c.dispose(); charts = []; if (timer) clearTimeout(timer); timer = null; };

  const pick = (svc) => navigate(`/ui/services/${encodeURIComponent(svc)}`);
  const selected = args[0] || "";
  const tenantName = server.multitenancy ? tenant() : "single-tenant";
  let edges = [];
  let services = [];
  let fromGenerator = false;
  try {
    const end = Math.ceil(Date.now() / 1000);
    const names = await api.tagValues("resource.service.name", { start: end - 3600, end });
    services = (names.tagValues || []).map((v) => v.value);
    if (server.generator) {
      const rated = remember(tenantName, graphFromProm(parseProm(await api.promMetrics()), tenantName));
      edges = rated.edges;
      fromGenerator = edges.length > 0;
      source.textContent = generatorSource(rated.seconds);
    }
    if (!fromGenerator) {
      const { traces, windowS } = await recentTraces();
      edges = graphFromTraces(traces, windowS);
      source.textContent = `Service graph from the ${traces.length} most recent traces of the last hour: rates over ` +
        `the ${fmtWindow(windowS)} they cover` +
        (server.generator ? " (the metrics-generator has no service-graph series yet)." : ".");
    }
  } catch (err) {
    clear(graphBox).append(errorBox(err.message));
    return dispose;
  }
  let graph = drawGraph(edges, services, pick);
  let table = servicesTable(edges, services, selected);
  clear(graphBox).append(graph.el, table);
  if (fromGenerator) {
    // Prometheus' way: a rate is the counters' increase between two scrapes over the time between them.
    const rescrape = async () => {
      timer = null;
      try {
        const rated = remember(tenantName, graphFromProm(parseProm(await api.promMetrics()), tenantName));
        const current = rated.edges;
        source.textContent = generatorSource(rated.seconds);
        const same = current.length === edges.length && current.every((e) => edges.some((x) => edgeKey(x) === edgeKey(e)));
        if (same) graph.update(current);
        else {
          graph = drawGraph(current, services, pick);
          clear(graphBox).append(graph.el, table);
        }
        edges = current;
        const fresh = servicesTable(edges, services, selected);
        table.replaceWith(fresh);
        table = fresh;
      } catch (_) { /* the next scrape tries again */ }
      if (page.isConnected) timer = setTimeout(rescrape, RESCRAPE_MS);
    };
    timer = setTimeout(rescrape, RESCRAPE_MS);
  }
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

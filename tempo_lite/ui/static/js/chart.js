// Charts with uPlot: time series (TraceQL metrics, RED) with exemplar points, and the search scatter.
import uPlot from "../vendor/uplot.js";
import { h, serviceColor } from "./dom.js";

function css(name) {
  return getComputedStyle(document.body).getPropertyValue(name).trim() || "#888";
}

function axes(yFormat) {
  const stroke = css("--fg-muted");
  const grid = { stroke: css("--grid"), width: 1 };
  return [
    { stroke, grid, ticks: grid },
    { stroke, grid, ticks: grid, size: 76, values: yFormat ? (u, vals) => vals.map(yFormat) : undefined },
  ];
}

function sized(container, make) {
  const width = () => Math.max(300, container.clientWidth || 600);
  const chart = make(width());
  const ro = new ResizeObserver(() => chart.setSize({ width: width(), height: chart.height }));
  ro.observe(container);
  return { chart, dispose: () => { ro.disconnect(); chart.destroy(); } };
}

// series: [{label, points: [[unixSeconds, value], ...]}]; exemplars: [{t, v, traceId, label}]
export function timeSeries(container, { series, exemplars = [], height = 260, yFormat, onExemplar, title }) {
  const xs = [...new Set(series.flatMap((s) => s.points.map((p) => p[0])).concat(exemplars.map((e) => e.t)))]
    .sort((a, b) => a - b);
  const index = new Map(xs.map((x, i) => [x, i]));
  const data = [xs];
  const opts = {
    title, height, axes: axes(yFormat), legend: { live: true },
    cursor: { points: { size: 8 } }, scales: { x: { time: true } },
    series: [{}],
  };
  for (const s of series) {
    const ys = new Array(xs.length).fill(null);
    for (const [t, v] of s.points) ys[index.get(t)] = v;
    data.push(ys);
    opts.series.push({ label: s.label, stroke: serviceColor(s.label), width: 2, spanGaps: false,
      points: { show: xs.length < 60 }, value: (u, v) => (v == null ? "–" : yFormat ? yFormat(v) : v.toPrecision(4)) });
  }
  if (exemplars.length) {
    const ys = new Array(xs.length).fill(null);
    const ids = new Array(xs.length).fill(null);
    for (const e of exemplars) { ys[index.get(e.t)] = e.v; ids[index.get(e.t)] = e.traceId; }
    data.push(ys);
    opts.series.push({ label: "exemplars", stroke: css("--accent"), fill: css("--accent"), paths: () => null,
      points: { show: true, size: 9, width: 2, fill: css("--bg") },
      value: (u, v) => (v == null ? "–" : yFormat ? yFormat(v) : v.toPrecision(4)) });
    opts.hooks = { ready: [(u) => {
      u.over.addEventListener("click", () => {
        const i = u.cursor.idx;
        if (i != null && ids[i] && onExemplar) onExemplar(ids[i]);
      });
    }] };
    container.dataset.exemplarIds = ids.filter(Boolean).join(",");
  }
  return sized(container, (width) => new uPlot({ ...opts, width }, data, container));
}

// points: [{t: unixSeconds, v: durationMs, id, error}] drawn as dots; clicking a dot opens its trace.
export function scatter(container, points, { onClick, height = 180, yFormat } = {}) {
  const sorted = points.slice().sort((a, b) => a.t - b.t);
  const xs = sorted.map((p) => p.t);
  const ok = sorted.map((p) => (p.error ? null : p.v));
  const bad = sorted.map((p) => (p.error ? p.v : null));
  const dots = (color) => ({ stroke: color, fill: color, paths: () => null, points: { show: true, size: 9, fill: color } });
  const opts = {
    height, axes: axes(yFormat), legend: { show: false }, scales: { x: { time: true } },
    cursor: { points: { size: 12 }, dataIdx: (u, seriesIdx, closestIdx) => closestIdx },
    series: [{}, { label: "ok", ...dots(css("--accent")) }, { label: "error", ...dots(css("--error")) }],
    hooks: { ready: [(u) => {
      u.over.style.cursor = "pointer";
      u.over.addEventListener("click", () => {
        const i = u.cursor.idx;
        if (i != null && sorted[i] && onClick) onClick(sorted[i]);
      });
    }] },
  };
  return sized(container, (width) => new uPlot({ ...opts, width }, [xs, ok, bad], container));
}

export function chartBox(titleText, ...extra) {
  return h("figure", { class: "chart" }, h("figcaption", null, titleText), ...extra);
}

// DOM helpers. Span data is text, never markup: everything goes in through textContent or attributes
// set with setAttribute; nothing in the UI parses data as HTML (tests/unit/test_ui_assets.py checks the sinks).

export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  if (props) {
    for (const [k, v] of Object.entries(props)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") el.className = v;
      else if (k === "text") el.textContent = String(v);
      else if (k === "style") Object.assign(el.style, v);
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "dataset") Object.assign(el.dataset, v);
      else el.setAttribute(k, v === true ? "" : String(v));
    }
  }
  append(el, children);
  return el;
}

export function svg(tag, attrs, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "text") el.textContent = String(v);
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function link(href, text, props = {}) {
  return h("a", { href, "data-nav": true, ...props }, text);
}

export function errorBox(message) {
  return h("div", { class: "error", role: "alert" }, message);
}

export function fmtDuration(ns) {
  const n = Number(ns);
  if (!Number.isFinite(n)) return "";
  if (n < 1e3) return `${n}ns`;
  if (n < 1e6) return `${(n / 1e3).toFixed(n < 1e4 ? 2 : 1)}µs`;
  if (n < 1e9) return `${(n / 1e6).toFixed(n < 1e7 ? 2 : 1)}ms`;
  if (n < 60e9) return `${(n / 1e9).toFixed(2)}s`;
  const m = Math.floor(n / 60e9);
  return `${m}m${Math.round((n - m * 60e9) / 1e9)}s`;
}

export function fmtTime(ms) {
  const d = new Date(ms);
  const pad = (x, w = 2) => String(x).padStart(w, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

export function fmtAgo(ms) {
  const s = Math.round((Date.now() - ms) / 1000);
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

// A colour per service name: the palette slot its name hashes to, or the next free one, so the services
// on one page get distinct colours and a name keeps its colour for the whole visit.
const palette = ["#3b82f6", "#f59e0b", "#10b981", "#ec4899", "#8b5cf6", "#06b6d4", "#ef8354", "#84cc16",
  "#6366f1", "#14b8a6", "#d946ef", "#eab308", "#0ea5e9", "#f43f5e", "#22c55e", "#a855f7"];
const assigned = new Map();
const taken = new Set();
export function serviceColor(name) {
  const key = String(name);
  if (assigned.has(key)) return assigned.get(key);
  let hash = 2166136261;
  for (const ch of key) hash = Math.imul(hash ^ ch.codePointAt(0), 16777619) >>> 0;
  let slot = hash % palette.length;
  for (let i = 0; i < palette.length && taken.has(slot); i++) slot = (slot + 1) % palette.length;
  taken.add(slot);
  if (taken.size >= palette.length) taken.clear();
  assigned.set(key, palette[slot]);
  return palette[slot];
}

export function debounce(fn, ms) {
  let t;
  return (...args) => { clearTimeout(t); t = setTimeout(() => fn(...args), ms); };
}

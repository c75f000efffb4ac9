// Trace view: virtualised waterfall (collapsible tree, service colours, time axis, critical path, errors),
// span detail by scope with events and links, find in trace, download as OTLP/JSON.
import { api, valueText } from "./api.js";
import { clear, errorBox, fmtDuration, fmtTime, h, link, serviceColor } from "./dom.js";
import { buildTrace, otlpJson } from "./model.js";

export const title = "Trace";
const ROW = 28;
const OVERSCAN = 12;

export async function render(main, { args, params }) {
  const id = (args[0] || "").trim();
  const page = h("section", { class: "view trace-view" });
  main.append(page);
  if (!id) { page.append(errorBox("no trace ID in the address: /ui/trace/<trace id>")); return; }
  page.append(h("p", { class: "muted" }, "Loading trace ", id, "…"));
  const doc = await api.trace(id);
  clear(page);
  const trace = doc && buildTrace(doc);
  if (!trace) { page.append(errorBox(`trace ${id} not found`)); return; }
  if (doc.status === "PARTIAL") page.append(errorBox(doc.message || "partial trace"));
  page.append(header(trace, doc));
  const wf = waterfall(trace, { onSelect: (s) => showDetail(detail, s, trace) });
  const detail = h("aside", { class: "span-detail", "aria-label": "Span detail" },
    h("p", { class: "muted" }, "Select a span to see its attributes, events and links."));
  page.append(h("div", { class: "trace-body" }, wf.el, detail));
  const wanted = params && params.get("span");
  if (wanted && trace.byId.has(wanted)) wf.select(trace.byId.get(wanted));
  wf.focus();
  return wf.dispose;
}

function header(trace, doc) {
  const root = trace.root;
  const download = h("button", { type: "button", class: "btn" }, "Download OTLP/JSON");
  download.addEventListener("click", () => {
    const blob = new Blob([JSON.stringify(otlpJson(doc), null, 1)], { type: "application/json" });
    const a = h("a", { href: URL.createObjectURL(blob), download: `trace-${trace.id}.json` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 1000);
  });
  const compareWith = h("form", { class: "inline-form" },
    h("input", { name: "other", placeholder: "compare with trace ID", "aria-label": "Compare with trace ID",
      spellcheck: "false" }),
    h("button", { class: "btn", type: "submit" }, "Compare"));
  compareWith.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const other = compareWith.elements.other.value.trim();
    if (other) {
      history.pushState(null, "", `/ui/compare/${trace.id}/${encodeURIComponent(other)}`);
      dispatchEvent(new PopStateEvent("popstate"));
    }
  });
  return h("div", { class: "trace-header" },
    h("h1", null, h("span", { class: "svc-dot", style: { background: serviceColor(root.service) } }),
      root.service, ": ", root.name),
    h("dl", { class: "facts" },
      h("dt", null, "Trace ID"), h("dd", { class: "mono", "data-testid": "trace-id" }, trace.id),
      h("dt", null, "Start"), h("dd", null, fmtTime(Number(trace.startBig / 1000000n))),
      h("dt", null, "Duration"), h("dd", null, fmtDuration(trace.durationNs)),
      h("dt", null, "Spans"), h("dd", { "data-testid": "span-count" }, String(trace.spans.length)),
      h("dt", null, "Services"), h("dd", null, String(trace.services.length)),
      h("dt", null, "Errors"), h("dd", { class: trace.errors ? "err-text" : "" }, String(trace.errors))),
    h("div", { class: "actions" }, download, compareWith));
}

// The waterfall. Only the rows in view (plus some overscan) exist in the DOM, so a 10,000-span trace
// opens as fast as a small one.
export function waterfall(trace, { onSelect, compact = false, highlight = null } = {}) {
  const collapsed = new Set();
  let visible = [];
  let selected = null;
  let matches = [];
  let matchIndex = -1;
  const matchSet = new Set();

  const recompute = () => {
    visible = [];
    const hidden = new Set();
    for (const s of trace.spans) {
      const parent = s.parentId && trace.byId.get(s.parentId);
      if (parent && (hidden.has(parent) || collapsed.has(parent))) { hidden.add(s); continue; }
      visible.push(s);
    }
  };

  const axis = h("div", { class: "wf-axis", "aria-hidden": "true" });
  const spacer = h("div", { class: "wf-spacer" });
  const scroller = h("div", { class: "wf-scroll", tabindex: "0", role: "tree",
    "aria-label": "Span waterfall: arrows move, left/right collapse and expand, Enter selects" }, spacer);
  const findInput = h("input", { type: "search", placeholder: "Find in trace (name, service, attribute, ID)",
    "aria-label": "Find in trace", class: "find", spellcheck: "false" });
  const findCount = h("span", { class: "muted find-count", "aria-live": "polite" });
  const legend = h("div", { class: "legend" }, trace.services.map((svc) =>
    h("span", { class: "legend-item" }, h("span", { class: "svc-dot", style: { background: serviceColor(svc) } }), svc)),
    h("span", { class: "legend-item" }, h("span", { class: "crit-swatch" }), "critical path"));
  const el = h("div", { class: "waterfall" + (compact ? " compact" : ""), "data-span-count": trace.spans.length },
    compact ? null : h("div", { class: "wf-tools" }, findInput, findCount, legend), axis, scroller);

  for (let i = 0; i <= 4; i++) {
    const pct = i * 25;
    axis.append(h("span", { class: "tick", style: { left: `calc(var(--name-w) + (100% - var(--name-w)) * ${pct / 100})` } },
      fmtDuration((trace.durationNs * i) / 4)));
  }

  const total = Math.max(1, trace.durationNs);
  const pool = new Map(); // span -> row element currently in the DOM

  function rowFor(s, index) {
    const pad = 6 + s.depth * 14;
    const hasKids = s.children.length > 0;
    const toggle = hasKids ? h("button", { type: "button", class: "toggle", tabindex: "-1",
      "aria-label": collapsed.has(s) ? "expand" : "collapse",
      onclick: (ev) => { ev.stopPropagation(); toggleSpan(s); } }, collapsed.has(s) ? "▸" : "▾") :
      h("span", { class: "toggle-pad" });
    const left = (s.start / total) * 100;
    const width = Math.max(0.15, (s.durationNs / total) * 100);
    const bar = h("div", { class: "bar" + (s.error ? " bar-error" : ""),
      style: { left: `${left}%`, width: `${width}%`, background: serviceColor(s.service) } });
    for (const [a, b] of s.critical) {
      const cl = ((a - s.start) / Math.max(1, s.durationNs)) * 100;
      const cw = ((b - a) / Math.max(1, s.durationNs)) * 100;
      bar.append(h("span", { class: "crit", style: { left: `${cl}%`, width: `${cw}%` } }));
    }
    for (const e of s.events) {
      const el2 = h("span", { class: "event-mark", title: e.name,
        style: { left: `${((e.offset - s.start) / Math.max(1, s.durationNs)) * 100}%` } });
      bar.append(el2);
    }
    const onLeft = left + width > 88;
    const label = h("span", { class: "dur", style: onLeft ? { right: `${100 - left}%` } : { left: `${left + width}%` } },
      fmtDuration(s.durationNs));
    if (onLeft && left < 12) { label.style.right = ""; label.style.left = "0"; label.classList.add("dur-inside"); }
    const row = h("div", {
      class: "wf-row" + (s === selected ? " selected" : "") + (matchSet.has(s) ? " match" : "") +
        (highlight && highlight(s) ? " " + highlight(s) : ""),
      role: "treeitem", "aria-level": s.depth + 1, "aria-selected": s === selected ? "true" : "false",
      "aria-expanded": hasKids ? String(!collapsed.has(s)) : null,
      "data-span-id": s.id, id: `row-${s.id}`, style: { top: `${index * ROW}px` },
      onclick: () => select(s),
    },
    h("div", { class: "wf-name", style: { paddingLeft: `${pad}px` } }, toggle,
      h("span", { class: "svc-dot", style: { background: serviceColor(s.service) } }),
      h("span", { class: "svc" }, s.service), " ", h("span", { class: "span-name" }, s.name),
      s.error ? h("span", { class: "err-badge", title: s.statusMessage || "error" }, "error") : null),
    h("div", { class: "wf-bar" }, bar, label));
    return row;
  }

  let raf = 0;
  function paint(force = false) {
    raf = 0;
    spacer.style.height = `${visible.length * ROW}px`;
    const top = scroller.scrollTop;
    const height = scroller.clientHeight || 600;
    const first = Math.max(0, Math.floor(top / ROW) - OVERSCAN);
    const last = Math.min(visible.length, Math.ceil((top + height) / ROW) + OVERSCAN);
    const wanted = new Set(visible.slice(first, last));
    for (const [s, row] of pool) {
      if (force || !wanted.has(s)) { row.remove(); pool.delete(s); }
    }
    for (let i = first; i < last; i++) {
      const s = visible[i];
      if (pool.has(s)) continue;
      const row = rowFor(s, i);
      pool.set(s, row);
      spacer.append(row);
    }
  }
  const schedule = () => { if (!raf) raf = requestAnimationFrame(() => paint()); };
  scroller.addEventListener("scroll", schedule);
  const ro = new ResizeObserver(schedule);
  ro.observe(scroller);

  function toggleSpan(s, state) {
    const collapse = state === undefined ? !collapsed.has(s) : state;
    if (collapse) collapsed.add(s); else collapsed.delete(s);
    recompute();
    paint(true);
  }

  function reveal(s) {
    let p = s.parentId && trace.byId.get(s.parentId);
    let changed = false;
    while (p) { if (collapsed.delete(p)) changed = true; p = p.parentId && trace.byId.get(p.parentId); }
    if (changed) recompute();
    const i = visible.indexOf(s);
    if (i >= 0) {
      const top = i * ROW;
      if (top < scroller.scrollTop || top + ROW > scroller.scrollTop + scroller.clientHeight) {
        scroller.scrollTop = Math.max(0, top - scroller.clientHeight / 3);
      }
    }
    paint(true);
  }

  function select(s) {
    selected = s;
    reveal(s);
    scroller.setAttribute("aria-activedescendant", `row-${s.id}`);
    if (onSelect) onSelect(s);
  }

  scroller.addEventListener("keydown", (ev) => {
    const i = selected ? visible.indexOf(selected) : -1;
    if (ev.key === "ArrowDown" || ev.key === "j") { ev.preventDefault(); if (visible[i + 1]) select(visible[i + 1]); }
    else if (ev.key === "ArrowUp" || ev.key === "k") { ev.preventDefault(); if (i > 0) select(visible[i - 1]); }
    else if (ev.key === "ArrowLeft" && selected) {
      ev.preventDefault();
      if (selected.children.length && !collapsed.has(selected)) toggleSpan(selected, true);
      else if (selected.parentId && trace.byId.get(selected.parentId)) select(trace.byId.get(selected.parentId));
    } else if (ev.key === "ArrowRight" && selected) { ev.preventDefault(); toggleSpan(selected, false); }
    else if (ev.key === "Home") { ev.preventDefault(); if (visible[0]) select(visible[0]); }
    else if (ev.key === "End") { ev.preventDefault(); if (visible.length) select(visible[visible.length - 1]); }
  });

  const find = () => {
    const q = findInput.value.trim().toLowerCase();
    matches = [];
    matchSet.clear();
    matchIndex = -1;
    if (q) {
      for (const s of trace.spans) {
        const hay = [s.name, s.service, s.id, s.statusMessage,
          ...s.attributes.map((a) => `${a.key}=${valueText(a.value)}`),
          ...s.resource.map((a) => `${a.key}=${valueText(a.value)}`)].join("\n").toLowerCase();
        if (hay.includes(q)) { matches.push(s); matchSet.add(s); }
      }
    }
    findCount.textContent = q ? `${matches.length} of ${trace.spans.length} spans` : "";
    paint(true);
  };
  findInput.addEventListener("input", find);
  findInput.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && matches.length) {
      ev.preventDefault();
      matchIndex = (matchIndex + (ev.shiftKey ? matches.length - 1 : 1)) % matches.length;
      findCount.textContent = `${matchIndex + 1} / ${matches.length} spans`;
      select(matches[matchIndex]);
    }
  });

  recompute();
  requestAnimationFrame(() => paint(true));
  paint(true);
  return {
    el,
    focus: () => scroller.focus({ preventScroll: true }),
    select,
    dispose: () => { ro.disconnect(); if (raf) cancelAnimationFrame(raf); },
  };
}

function attrTable(caption, attrs) {
  if (!attrs.length) return null;
  return h("table", { class: "kv" }, h("caption", null, caption),
    h("tbody", null, attrs.map((a) => h("tr", null, h("th", { scope: "row" }, a.key),
      h("td", { class: "mono" }, valueText(a.value))))));
}

export function showDetail(panel, s, trace) {
  clear(panel);
  const status = s.statusCode.replace("STATUS_CODE_", "").toLowerCase();
  // Element.append would print a null as the text "null": absent sections are filtered out.
  const put = (...nodes) => panel.append(...nodes.filter(Boolean));
  put(
    h("h2", null, h("span", { class: "svc-dot", style: { background: serviceColor(s.service) } }), s.name),
    h("dl", { class: "facts" },
      h("dt", null, "Service"), h("dd", null, s.service),
      h("dt", null, "Duration"), h("dd", null, fmtDuration(s.durationNs)),
      h("dt", null, "Start"), h("dd", null, `+${fmtDuration(s.start)}`),
      h("dt", null, "Kind"), h("dd", null, s.kind),
      h("dt", null, "Status"), h("dd", { class: s.error ? "err-text" : "" }, status,
        s.statusMessage ? `: ${s.statusMessage}` : ""),
      h("dt", null, "Span ID"), h("dd", { class: "mono" }, s.id),
      s.parentId ? [h("dt", null, "Parent"), h("dd", { class: "mono" }, s.parentId)] : null,
      h("dt", null, "Critical path"), h("dd", null, fmtDuration(s.critical.reduce((n, [a, b]) => n + b - a, 0)))),
    attrTable("Span attributes", s.attributes),
    attrTable("Resource attributes", s.resource),
    s.scope.name || s.scope.attributes.length ? attrTable("Instrumentation scope",
      [...(s.scope.name ? [{ key: "name", value: { stringValue: s.scope.name } }] : []),
        ...(s.scope.version ? [{ key: "version", value: { stringValue: s.scope.version } }] : []),
        ...s.scope.attributes]) : null,
  );
  if (s.events.length) {
    const line = h("div", { class: "event-line", "aria-hidden": "true" });
    for (const e of s.events) {
      line.append(h("span", { class: "event-mark", title: e.name,
        style: { left: `${((e.offset - s.start) / Math.max(1, s.durationNs)) * 100}%` } }));
    }
    put(h("section", { class: "events" }, h("h3", null, `Events (${s.events.length})`), line,
      s.events.map((e) => h("div", { class: "event" },
        h("div", null, h("strong", null, e.name), " ", h("span", { class: "muted" }, `+${fmtDuration(e.offset - s.start)}`)),
        attrTable("", e.attributes)))));
  }
  if (s.links.length) {
    put(h("section", { class: "links" }, h("h3", null, `Links (${s.links.length})`),
      s.links.map((l) => h("div", { class: "span-link" },
        trace.byId.has(l.spanId) && l.traceId === trace.id ?
          h("span", null, "this trace, span ", h("span", { class: "mono" }, l.spanId)) :
          link(`/ui/trace/${l.traceId}`, `trace ${l.traceId.replace(/^0+/, "")}`, { class: "mono", "data-link-trace": l.traceId }),
        " ", h("span", { class: "muted mono" }, `span ${l.spanId}`),
        attrTable("", l.attributes)))));
  }
}

// Search view: TraceQL editor (highlighting, autocomplete), a simple form that writes TraceQL, time range,
// a duration-over-time scatter and the results table with matched spansets.
// The page is usable before the editor's code has loaded: the first paint has a plain query field (written
// by the server into the page; Enter runs the search) and the results area, the search is already on its
// way, and the CodeMirror editor replaces the field when it has loaded, keeping what was typed there, the
// selection and the focus.
import { api, valueText } from "./api.js";
import { clear, errorBox, fmtDuration, fmtTime, h, link, serviceColor } from "./dom.js";
import { searchRequest, takeEarly } from "./search_request.js";
import { rangeFromParams, rangeParams, timeRangePicker } from "./timerange.js";

export const title = "Search";

function quote(s) { return JSON.stringify(s); }

// The form's state as TraceQL; every condition on one spanset so the form and the query agree.
export function formToTraceQL(f) {
  const conds = [];
  if (f.service) conds.push(`resource.service.name = ${quote(f.service)}`);
  if (f.name) conds.push(`name = ${quote(f.name)}`);
  if (f.status) conds.push(`status = ${f.status}`);
  if (f.minDuration) conds.push(`duration >= ${f.minDuration}`);
  if (f.maxDuration) conds.push(`duration <= ${f.maxDuration}`);
  for (const a of f.attrs) {
    if (!a.key) continue;
    const key = /^(resource|span|event|link|instrumentation)?\./.test(a.key) ? a.key : `.${a.key}`;
    const v = a.value.trim();
    const literal = /^-?\d+(\.\d+)?$/.test(v) || v === "true" || v === "false" ? v : quote(v);
    conds.push(`${key} ${a.op} ${literal}`);
  }
  return conds.length ? `{ ${conds.join(" && ")} }` : "{ }";
}

function builder(onQuery) {
  const state = { service: "", name: "", status: "", minDuration: "", maxDuration: "", attrs: [] };
  const service = h("select", { "aria-label": "Service" }, h("option", { value: "" }, "any service"));
  const name = h("input", { placeholder: "span name", "aria-label": "Span name", list: "span-names" });
  const names = h("datalist", { id: "span-names" });
  const status = h("select", { "aria-label": "Status" }, ["", "error", "ok", "unset"].map((s) =>
    h("option", { value: s }, s ? `status ${s}` : "any status")));
  const minD = h("input", { placeholder: "min e.g. 100ms", "aria-label": "Minimum duration", size: 10 });
  const maxD = h("input", { placeholder: "max e.g. 2s", "aria-label": "Maximum duration", size: 10 });
  const attrRows = h("div", { class: "attr-rows" });
  const addAttr = h("button", { type: "button", class: "btn small" }, "+ attribute");
  const emit = () => {
    state.service = service.value;
    state.name = name.value.trim();
    state.status = status.value;
    state.minDuration = /^\d+(\.\d+)?(ns|us|µs|ms|s|m|h)$/.test(minD.value.trim()) ? minD.value.trim() : "";
    state.maxDuration = /^\d+(\.\d+)?(ns|us|µs|ms|s|m|h)$/.test(maxD.value.trim()) ? maxD.value.trim() : "";
    state.attrs = [...attrRows.children].map((r) => ({ key: r.querySelector(".k").value.trim(),
      op: r.querySelector(".op").value, value: r.querySelector(".v").value }));
    onQuery(formToTraceQL(state));
  };
  addAttr.addEventListener("click", () => {
    const row = h("div", { class: "attr-row" },
      h("input", { class: "k", placeholder: "span.http.route", "aria-label": "Attribute", spellcheck: "false" }),
      h("select", { class: "op", "aria-label": "Operator" }, ["=", "!=", "=~", ">", "<"].map((o) => h("option", { value: o }, o))),
      h("input", { class: "v", placeholder: "value", "aria-label": "Attribute value" }),
      h("button", { type: "button", class: "btn small", "aria-label": "Remove attribute",
        onclick: () => { row.remove(); emit(); } }, "×"));
    attrRows.append(row);
    row.querySelector(".k").focus();
  });
  const form = h("form", { class: "builder", "aria-label": "Query builder" },
    service, name, names, status, minD, maxD, attrRows, addAttr);
  form.addEventListener("input", emit);
  form.addEventListener("change", emit);
  form.addEventListener("submit", (ev) => ev.preventDefault());
  // The choices are loaded when the builder is first opened, not with every search page.
  form.loadChoices = () => {
    const end = Math.ceil(Date.now() / 1000);
    api.tagValues("resource.service.name", { start: end - 86400, end }).then((doc) => {
      for (const v of doc.tagValues || []) service.append(h("option", { value: v.value }, v.value));
    }).catch(() => {});
    api.tagValues("name", { start: end - 86400, end }).then((doc) => {
      for (const v of doc.tagValues || []) names.append(h("option", { value: v.value }));
    }).catch(() => {});
    form.loadChoices = () => {};
  };
  return form;
}

export async function render(main, { params, setAddress }) {
  let range = rangeFromParams(params);
  let limit = Number(params.get("limit")) || 20;
  const page = h("section", { class: "view search-view" });
  main.prepend(page);
  const editorBox = h("div", { class: "editor", "data-autofocus": true });
  const run = h("button", { type: "submit", class: "btn primary" }, "Run query");
  const limitInput = h("input", { type: "number", min: "1", max: "1000", value: String(limit), "aria-label": "Limit",
    class: "limit" });
  const results = h("div", { class: "results", "aria-live": "polite" });
  const form = h("form", { class: "query-bar" }, editorBox,
    h("div", { class: "query-controls" }, timeRangePicker(range, (r) => { range = r; submit(); }),
      h("label", null, "Limit ", limitInput), run));
  const form2 = builder((q) => field.set(q));
  const builderToggle = h("details", { class: "builder-box" }, h("summary", null, "Query builder"), form2);
  builderToggle.addEventListener("toggle", () => { if (builderToggle.open) form2.loadChoices(); });
  page.append(h("h1", { class: "sr-only" }, "Search traces"), form, builderToggle, results);

  const early = main.querySelector("[data-early-search]");
  const field = plainField(editorBox, params.get("q") || "{ }", early && early.querySelector("[data-testid=query-field]"));
  if (early) early.remove();
  field.upgrade(() => submit());
  let abort = null;
  let chart = null;

  let first = true;
  async function submit() {
    const q = field.get().trim() || "{ }";
    limit = Math.max(1, Number(limitInput.value) || 20);
    const qs = new URLSearchParams({ q, ...rangeParams(range), limit: String(limit) });
    setAddress(`/ui/search?${qs}`, { replace: first });
    first = false;
    if (abort) abort.abort();
    const mine = abort = new AbortController();
    const req = searchRequest(q, range, limit);
    clear(results).append(h("p", { class: "muted" }, "Searching…"));
    let doc;
    try {
      doc = await (takeEarly(req) || api.search(req.params, { signal: mine.signal }));
    } catch (err) {
      if (err.name === "AbortError") return;
      clear(results).append(errorBox(err.message));
      return;
    }
    if (mine.signal.aborted) return; // a newer search is on its way
    if (chart) { chart.dispose(); chart = null; }
    chart = showResults(results, doc.traces || [], doc.metrics || {});
  }
  form.addEventListener("submit", (ev) => { ev.preventDefault(); submit(); });
  submit();
  return () => { field.dispose(); if (abort) abort.abort(); if (chart) chart.dispose(); };
}

// The query field of the first paint: a text field that takes keys at once (Enter submits its form, which runs
// the query), swapped for the TraceQL editor by `upgrade` once `traceql.js` (CodeMirror) has loaded. The
// server writes it into the search page (`early`, so it is there before any script has run); otherwise it is
// made here. Until the swap `get`/`set` read and write the field, afterwards the editor.
export function plainField(box, doc, early = null) {
  let ta = early;
  if (ta) {
    const focused = document.activeElement === ta;
    const [from, to, dir] = [ta.selectionStart, ta.selectionEnd, ta.selectionDirection];
    box.append(ta); // moving the field takes its focus: give it back, with the selection
    if (focused) { ta.focus(); ta.setSelectionRange(from, to, dir); }
  } else {
    ta = h("input", { type: "text", class: "plain-query", name: "q", spellcheck: "false", autocomplete: "off",
      "aria-label": "TraceQL query", "data-testid": "query-field",
      placeholder: "{ resource.service.name = \"checkout\" && status = error }" });
    ta.value = doc;
    box.append(ta);
  }
  let editor = null;
  let disposed = false;
  return {
    get: () => (editor ? editor.get() : ta.value),
    set: (text) => { if (editor) editor.set(text); else ta.value = text; },
    dispose() { disposed = true; if (editor) editor.view.destroy(); },
    upgrade(submit) {
      return import("./traceql.js").then(({ createEditor }) => {
        if (disposed || !ta.isConnected) return;
        const focused = document.activeElement === ta;
        const back = ta.selectionDirection === "backward";
        const selection = { anchor: back ? ta.selectionEnd : ta.selectionStart,
          head: back ? ta.selectionStart : ta.selectionEnd };
        editor = createEditor(box, { doc: ta.value, selection, onSubmit: submit });
        ta.remove();
        if (focused) editor.focus();
      }).catch((err) => { box.title = `editor not loaded: ${err.message}`; }); // the plain field keeps working
    },
  };
}

function spanCount(t) {
  return Object.values(t.serviceStats || {}).reduce((n, s) => n + (s.spanCount || 0), 0);
}

function hasErrors(t) {
  return Object.values(t.serviceStats || {}).some((s) => (s.errorCount || 0) > 0);
}

function showResults(box, traces, metrics) {
  clear(box);
  const inspected = metrics.inspectedTraces ? `, ${metrics.inspectedTraces} inspected` : "";
  box.append(h("p", { class: "muted", "data-testid": "result-count" }, `${traces.length} traces${inspected}`));
  if (!traces.length) {
    box.append(h("p", { class: "empty" }, "No traces match. Widen the time range or loosen the query."));
    return null;
  }
  const plot = h("div", { class: "scatter", "aria-label": "Trace duration over time; click a dot to open the trace" });
  box.append(plot);
  // The chart library loads after the results are on screen: the page is usable before it.
  const chart = { plot: null, disposed: false, dispose() { this.disposed = true; if (this.plot) this.plot.dispose(); } };
  import("./chart.js").then(({ scatter }) => {
    if (chart.disposed) return;
    chart.plot = scatter(plot, traces.map((t) => ({ t: Number(BigInt(t.startTimeUnixNano || 0) / 1000000n) / 1000,
      v: t.durationMs || 0, id: t.traceID, error: hasErrors(t) })), {
      yFormat: (v) => fmtDuration(v * 1e6),
      onClick: (p) => { history.pushState(null, "", `/ui/trace/${p.id}`); dispatchEvent(new PopStateEvent("popstate")); },
    });
  }).catch((err) => { if (!chart.disposed) plot.append(errorBox(`chart: ${err.message}`)); });
  const rows = traces.map((t) => {
    const sets = t.spanSets || (t.spanSet ? [t.spanSet] : []);
    const matched = sets.reduce((n, s) => n + (s.matched || 0), 0);
    const detail = sets.length ? h("details", { class: "spansets" }, h("summary", null, `${matched} matched`),
      sets.map((set) => h("ul", null, (set.spans || []).map((sp) => h("li", null,
        link(`/ui/trace/${t.traceID}?span=${sp.spanID}`, sp.name || "(no name)"), " ",
        h("span", { class: "muted" }, fmtDuration(Number(sp.durationNanos || 0))), " ",
        (sp.attributes || []).map((a) => h("span", { class: "chip" }, `${a.key}=${valueText(a.value)}`))))))) : "";
    return h("tr", { "data-trace-id": t.traceID },
      h("td", null, link(`/ui/trace/${t.traceID}`, t.traceID.slice(0, 16), { class: "mono", title: t.traceID })),
      h("td", null, h("span", { class: "svc-dot", style: { background: serviceColor(t.rootServiceName || "") } }),
        t.rootServiceName || "<root span not yet received>"),
      h("td", null, t.rootTraceName || ""),
      h("td", null, fmtTime(Number(BigInt(t.startTimeUnixNano || 0) / 1000000n))),
      h("td", { class: "num" }, t.durationMs != null ? fmtDuration((t.durationMs || 0) * 1e6) : "<1ms"),
      h("td", { class: "num" }, String(spanCount(t)), hasErrors(t) ? h("span", { class: "err-badge" }, "error") : ""),
      h("td", null, detail));
  });
  box.append(h("table", { class: "grid results-table" },
    h("thead", null, h("tr", null, ["Trace", "Root service", "Root span", "Start", "Duration", "Spans", "Matched"]
      .map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", null, rows)));
  return chart;
}

// The TraceQL editor: CodeMirror 6 with a TraceQL tokenizer for highlighting and autocomplete fed by the
// tag APIs (/api/v2/search/tags for scopes and names, /api/v2/search/tag/<tag>/values for values).
import {
  EditorState, EditorView, HighlightStyle, Prec, StreamLanguage, autocompletion, bracketMatching, closeBrackets,
  closeBracketsKeymap, completionKeymap, completionStatus, defaultKeymap, history, historyKeymap, keymap, placeholder,
  syntaxHighlighting, tags as t,
} from "../vendor/codemirror.js";
import { api, tenant } from "./api.js";

export const INTRINSICS = ["name", "status", "statusMessage", "kind", "duration", "rootName", "rootServiceName",
  "traceDuration", "event:name", "event:timeSinceStart", "link:traceID", "link:spanID", "span:id", "trace:id",
  "instrumentation:name", "instrumentation:version", "span:parentID", "nestedSetParent"];
const SCOPES = ["resource.", "span.", "event.", "link.", "instrumentation.", "."];
const ENUMS = {
  status: ["error", "ok", "unset"],
  kind: ["server", "client", "producer", "consumer", "internal", "unspecified"],
};
const METRICS_FNS = ["rate()", "count_over_time()", "avg_over_time(duration)", "min_over_time(duration)",
  "max_over_time(duration)", "sum_over_time(duration)", "quantile_over_time(duration, .5, .9, .99)",
  "histogram_over_time(duration)", "compare({status=error})", "by(resource.service.name)", "select()",
  "count()", "avg(duration)", "max(duration)", "min(duration)", "sum(duration)"];
const KEYWORDS = new Set(["true", "false", "nil", "by", "with", "select", "rate", "count_over_time",
  "avg_over_time", "min_over_time", "max_over_time", "sum_over_time", "quantile_over_time",
  "histogram_over_time", "compare", "count", "avg", "min", "max", "sum", "topk", "bottomk"]);
const ENUM_WORDS = new Set([...ENUMS.status, ...ENUMS.kind]);

const traceqlLanguage = StreamLanguage.define({
  name: "traceql",
  token(stream) {
    if (stream.eatSpace()) return null;
    if (stream.match(/^"(?:[^"\\]|\\.)*"?/) || stream.match(/^`[^`]*`?/)) return "string";
    if (stream.match(/^-?\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h)\b/)) return "number";
    if (stream.match(/^-?(?:\d+(?:\.\d*)?|\.\d+)/)) return "number";
    if (stream.match(/^(?:resource|span|event|link|instrumentation|trace|parent)?\.[\w.\-/]+/)) return "attributeName";
    if (stream.match(/^(?:event|link|span|trace|instrumentation):\w+/)) return "propertyName";
    if (stream.match(/^(?:&&|\|\||!=|=~|!~|>=|<=|>>|<<|!>>|!<<|!~|~|=|<|>|!|\+|-|\*|\/|%|\^|\|)/)) return "operator";
    if (stream.match(/^[{}()[\],]/)) return "bracket";
    const word = stream.match(/^[A-Za-z_]\w*/);
    if (word) {
      const w = word[0];
      if (INTRINSICS.includes(w)) return "propertyName";
      if (ENUM_WORDS.has(w)) return "atom";
      if (KEYWORDS.has(w)) return "keyword";
      return "variableName";
    }
    stream.next();
    return "invalid";
  },
});

const highlight = HighlightStyle.define([
  { tag: t.string, color: "var(--hl-string)" },
  { tag: t.number, color: "var(--hl-number)" },
  { tag: t.attributeName, color: "var(--hl-attr)" },
  { tag: t.propertyName, color: "var(--hl-intrinsic)", fontWeight: "600" },
  { tag: t.operator, color: "var(--hl-op)" },
  { tag: t.keyword, color: "var(--hl-keyword)", fontWeight: "600" },
  { tag: t.atom, color: "var(--hl-atom)" },
  { tag: t.bracket, color: "var(--hl-bracket)" },
  { tag: t.invalid, color: "var(--error)", textDecoration: "underline wavy" },
]);

// Tag names per tenant (5 minutes) and values per tag (30 seconds): autocomplete is cheap to retype.
const cache = new Map();
async function cached(key, ttlMs, load) {
  const hit = cache.get(key);
  if (hit && hit.until > Date.now()) return hit.value;
  const value = await load();
  cache.set(key, { value, until: Date.now() + ttlMs });
  return value;
}

async function tagNames() {
  return cached(`tags|${tenant()}`, 300000, async () => {
    const end = Math.ceil(Date.now() / 1000);
    const doc = await api.tags({ start: end - 86400, end });
    const byScope = {};
    for (const s of doc.scopes || []) byScope[s.name] = s.tags || [];
    return byScope;
  });
}

async function tagValues(tag) {
  return cached(`values|${tenant()}|${tag}`, 30000, async () => {
    const end = Math.ceil(Date.now() / 1000);
    const doc = await api.tagValues(tag, { start: end - 86400, end });
    return doc.tagValues || [];
  });
}

function quoteValue(v) {
  if (v.type === "string") return JSON.stringify(v.value);
  return v.value;
}

async function complete(context) {
  const before = context.state.sliceDoc(Math.max(0, context.pos - 300), context.pos);
  // 1. attribute names after a scope: `resource.ser|`, `span.|`, `.htt|`
  let m = before.match(/(?:^|[^\w.])(resource|span|event|link|instrumentation)?\.([\w.\-/]*)$/);
  if (m && !/\d$/.test(before.slice(0, before.length - m[2].length - 1))) {
    const scope = m[1] || "";
    const names = await tagNames().catch(() => ({}));
    const list = scope ? (names[scope] || []) :
      [...new Set([...(names.span || []), ...(names.resource || [])])];
    return {
      from: context.pos - m[2].length,
      options: list.map((n) => ({ label: n, type: "property", detail: scope || "any scope" })),
      validFor: /^[\w.\-/]*$/,
    };
  }
  // 2. values after `tag op `: `resource.service.name = "fr|`, `status = |`
  m = before.match(/((?:resource|span|event|link|instrumentation)?\.[\w.\-/]+|[A-Za-z:]+)\s*(=|!=|=~|!~|>=|<=|>|<)\s*("?[^"\s]*)$/);
  if (m) {
    const [, tag, , partial] = m;
    const from = context.pos - partial.length;
    if (ENUMS[tag]) return { from, options: ENUMS[tag].map((v) => ({ label: v, type: "enum" })) };
    const values = await tagValues(tag).catch(() => []);
    // A quoted value also replaces the closing quote that closeBrackets typed after the cursor.
    const apply = (text) => (view, _c, f, t) => {
      const end = text.endsWith('"') && view.state.sliceDoc(t, t + 1) === '"' ? t + 1 : t;
      view.dispatch({ changes: { from: f, to: end, insert: text }, selection: { anchor: f + text.length } });
    };
    return {
      from,
      options: values.map((v) => {
        const label = String(quoteValue(v));
        return { label, type: "text", detail: v.type, apply: apply(label) };
      }),
      validFor: /^"?[^"]*$/,
    };
  }
  // 3. metrics functions after a pipe
  m = before.match(/\|\s*(\w*)$/);
  if (m) {
    return { from: context.pos - m[1].length, options: METRICS_FNS.map((f) => ({ label: f, type: "function" })) };
  }
  // 4. the start of a condition: scopes and intrinsics
  m = before.match(/(?:^|[{(&|!]|&&|\|\|)\s*([\w:]*)$/);
  if (m && (m[1] || context.explicit || /[{(]\s*$/.test(before) || /(&&|\|\|)\s*$/.test(before))) {
    return {
      from: context.pos - m[1].length,
      options: [
        ...SCOPES.map((s) => ({ label: s, type: "namespace", boost: 2 })),
        ...INTRINSICS.map((i) => ({ label: i, type: "keyword" })),
      ],
      validFor: /^[\w:]*$/,
    };
  }
  return null;
}

// createEditor(parent, {doc, selection: {anchor, head}, onSubmit, onChange, placeholderText, label})
//   -> {get, set, focus, view}
export function createEditor(parent, opts = {}) {
  const submit = (view) => {
    if (completionStatus(view.state) === "active") return false; // Enter picks the completion
    if (opts.onSubmit) opts.onSubmit(view.state.doc.toString()); return true; };
  const view = new EditorView({
    parent,
    state: EditorState.create({
      doc: opts.doc || "",
      selection: opts.selection,
      extensions: [
        history(),
        closeBrackets(),
        bracketMatching(),
        traceqlLanguage,
        syntaxHighlighting(highlight),
        autocompletion({ override: [complete], activateOnTyping: true, icons: false }),
        Prec.highest(keymap.of([{ key: "Enter", run: submit }, { key: "Mod-Enter", run: submit }])),
        keymap.of([...closeBracketsKeymap, ...completionKeymap, ...historyKeymap, ...defaultKeymap]),
        placeholder(opts.placeholderText || "{ resource.service.name = \"checkout\" && status = error }"),
        EditorView.contentAttributes.of({ "aria-label": opts.label || "TraceQL query", spellcheck: "false" }),
        EditorView.updateListener.of((u) => { if (u.docChanged && opts.onChange) opts.onChange(u.state.doc.toString()); }),
      ],
    }),
  });
  return {
    view,
    get: () => view.state.doc.toString(),
    set: (text) => view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: text } }),
    focus: () => view.focus(),
  };
}

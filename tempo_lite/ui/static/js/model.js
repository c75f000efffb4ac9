// A trace from /api/v2/traces/<id> (protobuf JSON: base64 IDs, enum names) as a span tree for the views,
// and the same trace as OTLP/JSON (hex IDs, enums as integers) for download.
import { anyValue, b64ToHex } from "./api.js";

const KIND = { SPAN_KIND_UNSPECIFIED: 0, SPAN_KIND_INTERNAL: 1, SPAN_KIND_SERVER: 2, SPAN_KIND_CLIENT: 3,
  SPAN_KIND_PRODUCER: 4, SPAN_KIND_CONSUMER: 5 };
const STATUS = { STATUS_CODE_UNSET: 0, STATUS_CODE_OK: 1, STATUS_CODE_ERROR: 2 };

export function kindName(kind) {
  return String(kind || "SPAN_KIND_UNSPECIFIED").replace("SPAN_KIND_", "").toLowerCase();
}

function big(v) {
  try { return BigInt(v || 0); } catch (_) { return 0n; }
}

const NONE = Object.freeze([]);

// A KeyValue list of the document as it is ({key, value} already): shared, not copied (nothing changes it).
export function attrsOf(list) {
  return list || NONE;
}

export function buildTrace(doc) {
  const resourceSpans = (doc && doc.trace && doc.trace.resourceSpans) || [];
  const spans = [];
  let lastTraceB64 = null; // every span of a trace has the same trace ID: convert it once
  let lastTraceHex = "";
  for (const rs of resourceSpans) {
    const resAttrs = attrsOf(rs.resource && rs.resource.attributes);
    const svcAttr = resAttrs.find((a) => a.key === "service.name");
    const service = svcAttr ? String(anyValue(svcAttr.value)) : "unknown_service";
    for (const ss of rs.scopeSpans || []) {
      const scope = ss.scope || {};
      for (const s of ss.spans || []) {
        const startBig = big(s.startTimeUnixNano);
        const endBig = big(s.endTimeUnixNano);
        spans.push({
          id: b64ToHex(s.spanId),
          parentId: s.parentSpanId ? b64ToHex(s.parentSpanId) : "",
          traceId: s.traceId === lastTraceB64 ? lastTraceHex : (lastTraceHex = b64ToHex(lastTraceB64 = s.traceId)),
          name: s.name || "",
          service,
          kind: kindName(s.kind),
          startBig,
          durationNs: Number(endBig - startBig),
          statusCode: (s.status && s.status.code) || "STATUS_CODE_UNSET",
          statusMessage: (s.status && s.status.message) || "",
          attributes: attrsOf(s.attributes),
          resource: resAttrs,
          scope: { name: scope.name || "", version: scope.version || "", attributes: attrsOf(scope.attributes) },
          events: (s.events || []).map((e) => ({ timeBig: big(e.timeUnixNano), name: e.name || "",
            attributes: attrsOf(e.attributes) })),
          links: (s.links || []).map((l) => ({ traceId: b64ToHex(l.traceId), spanId: b64ToHex(l.spanId),
            attributes: attrsOf(l.attributes) })),
          children: [],
          depth: 0,
          error: ((s.status && s.status.code) || "") === "STATUS_CODE_ERROR",
        });
      }
    }
  }
  if (!spans.length) return null;
  let minStart = spans[0].startBig;
  for (const s of spans) if (s.startBig < minStart) minStart = s.startBig;
  const byId = new Map();
  for (const s of spans) {
    s.start = Number(s.startBig - minStart);
    s.end = s.start + Math.max(0, s.durationNs);
    for (const e of s.events) e.offset = Number(e.timeBig - minStart);
    byId.set(s.id, s);
  }
  const roots = [];
  for (const s of spans) {
    const parent = s.parentId && byId.get(s.parentId);
    if (parent && parent !== s) parent.children.push(s);
    else roots.push(s);
  }
  const byStart = (a, b) => a.start - b.start || a.name.localeCompare(b.name);
  roots.sort(byStart);
  const order = [];
  const stack = roots.slice().reverse().map((s) => [s, 0]);
  const seen = new Set();
  while (stack.length) {
    const [s, depth] = stack.pop();
    if (seen.has(s)) continue; // a parent loop in bad data must not hang the page
    seen.add(s);
    s.depth = depth;
    order.push(s);
    s.children.sort(byStart);
    for (let i = s.children.length - 1; i >= 0; i--) stack.push([s.children[i], depth + 1]);
  }
  let end = 0;
  for (const s of spans) end = Math.max(end, s.end);
  const services = [...new Set(spans.map((s) => s.service))];
  const root = roots[0];
  const trace = { id: spans[0].traceId, spans: order, byId, roots, startBig: minStart, durationNs: end,
    services, root, errors: spans.filter((s) => s.error).length };
  markCriticalPath(trace);
  return trace;
}

// The critical path: walking back from each span's end, the child that finished last before the cursor
// is on it, the time no child covers belongs to the span itself (Jaeger's definition).
export function markCriticalPath(trace) {
  for (const s of trace.spans) s.critical = [];
  const visit = (span, until) => {
    let cursor = Math.min(span.end, until);
    // Latest-ending first: each child taken ends no later (once clipped to the cursor) than the last.
    const kids = span.children.filter((c) => c.start < cursor).sort((a, b) => b.end - a.end);
    for (const child of kids) {
      if (cursor <= span.start) break;
      if (child.start >= cursor) continue;
      const childEnd = Math.min(child.end, cursor);
      if (childEnd < cursor) span.critical.push([childEnd, cursor]);
      visit(child, childEnd);
      cursor = Math.max(child.start, span.start);
    }
    if (cursor > span.start) span.critical.push([span.start, cursor]);
  };
  for (const r of trace.roots) visit(r, r.end);
}

// OTLP/JSON as the specification writes it (what `tempo-lite import` reads).
export function otlpJson(doc) {
  const out = JSON.parse(JSON.stringify((doc && doc.trace) || { resourceSpans: [] }));
  const fix = (o) => {
    for (const k of ["traceId", "spanId", "parentSpanId"]) if (o[k]) o[k] = b64ToHex(o[k]);
  };
  for (const rs of out.resourceSpans || []) {
    for (const ss of rs.scopeSpans || []) {
      for (const s of ss.spans || []) {
        fix(s);
        if (typeof s.kind === "string") s.kind = KIND[s.kind] ?? 0;
        if (s.status && typeof s.status.code === "string") s.status.code = STATUS[s.status.code] ?? 0;
        for (const l of s.links || []) fix(l);
      }
    }
  }
  return out;
}

export function attrText(list, key) {
  const a = (list || []).find((x) => x.key === key);
  return a ? anyValue(a.value) : undefined;
}

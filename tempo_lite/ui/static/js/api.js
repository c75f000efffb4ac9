// The UI's only way to the server: tempo-lite's public HTTP API, with X-Scope-OrgID when a tenant is set.
import { decodeTraceByIdResponse } from "./otlp_proto.js";

const TENANT_KEY = "tempo-lite.tenant";

export const server = JSON.parse(document.body.dataset.server || "{}");

export function tenant() {
  return localStorage.getItem(TENANT_KEY) || "";
}

export function setTenant(value) {
  if (value) localStorage.setItem(TENANT_KEY, value);
  else localStorage.removeItem(TENANT_KEY);
}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export async function get(path, params = {}, { signal, accept = "application/json", raw = false, binary = false } = {}) {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") qs.set(k, String(v));
  }
  const url = qs.toString() ? `${path}?${qs}` : path;
  const headers = { Accept: accept };
  const t = tenant();
  if (t) headers["X-Scope-OrgID"] = t;
  let resp;
  try {
    resp = await fetch(url, { headers, signal });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, `cannot reach tempo-lite: ${err.message}`);
  }
  if (resp.status === 404 && path.includes("/traces/")) return null;
  if (!resp.ok) {
    const html = (resp.headers.get("Content-Type") || "").includes("html");
    const body = html ? "" : (await resp.text()).trim();
    throw new ApiError(resp.status, body || `HTTP ${resp.status} ${resp.statusText || "error"} from ${path}`);
  }
  if (raw) return resp.text();
  if (binary) return resp.arrayBuffer();
  return resp.json();
}

export const api = {
  search: (params, opts) => get("/api/search", params, opts),
  // Asked in protobuf (a third of the bytes, no JSON to build on the server: a 10,000-span trace arrives
  // several times sooner) and decoded to the same document the JSON answer is.
  trace: async (id, opts) => {
    const body = await get(`/api/v2/traces/${encodeURIComponent(id)}`, {},
      { ...opts, accept: "application/protobuf", binary: true });
    return body && decodeTraceByIdResponse(body);
  },
  tags: (params, opts) => get("/api/v2/search/tags", params, opts),
  tagValues: (tag, params, opts) =>
    get(`/api/v2/search/tag/${encodeURIComponent(tag)}/values`, params, opts),
  queryRange: (params, opts) => get("/api/metrics/query_range", params, opts),
  promMetrics: (opts) => get("/metrics", {}, { ...opts, accept: "text/plain", raw: true }),
};

// OTLP AnyValue (as the API's protobuf JSON renders it) to a JS value, and to display text.
export function anyValue(v) {
  if (!v) return null;
  if ("stringValue" in v) return v.stringValue;
  if ("intValue" in v) return Number(v.intValue);
  if ("doubleValue" in v) return v.doubleValue;
  if ("boolValue" in v) return v.boolValue;
  if ("bytesValue" in v) return b64ToHex(v.bytesValue);
  if ("arrayValue" in v) return (v.arrayValue.values || []).map(anyValue);
  if ("kvlistValue" in v) {
    return Object.fromEntries((v.kvlistValue.values || []).map((kv) => [kv.key, anyValue(kv.value)]));
  }
  return null;
}

export function valueText(v) {
  const x = anyValue(v);
  if (x === null) return "";
  if (typeof x === "object") return JSON.stringify(x);
  return String(x);
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));
const B64 = new Int8Array(128).fill(-1);
for (const [i, c] of [..."ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"].entries()) B64[c.charCodeAt(0)] = i;

// Base64 (standard alphabet, padded or not) to hex, straight from the characters: no binary string in
// between (IDs of a 10,000-span trace are tens of thousands of calls). Anything else goes through atob.
export function b64ToHex(b64) {
  if (!b64) return "";
  let out = "";
  let acc = 0;
  let bits = 0;
  for (let i = 0; i < b64.length; i++) {
    const c = b64.charCodeAt(i);
    if (c === 61) break; // "="
    const v = c < 128 ? B64[c] : -1;
    if (v < 0) return atobHex(b64);
    acc = ((acc << 6) | v) & 0xffff;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += HEX[(acc >> bits) & 0xff];
    }
  }
  return out;
}

function atobHex(b64) {
  const bin = atob(b64);
  let out = "";
  for (let i = 0; i < bin.length; i++) out += HEX[bin.charCodeAt(i)];
  return out;
}

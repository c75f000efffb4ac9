// `/api/v2/traces/<id>` answered in protobuf (`tempopb.TraceByIDResponse` carrying an OTLP `TracesData`),
// decoded into the very document the JSON answer is: proto3 JSON names, base64 IDs, enums by name,
// 64-bit integers as strings, default values left out. The protobuf answer is a third the size and
// the server writes it without building JSON, so a 10,000-span trace arrives several times sooner;
// everything after this module sees the same document either way. Unknown fields are skipped.

const KIND = ["SPAN_KIND_UNSPECIFIED", "SPAN_KIND_INTERNAL", "SPAN_KIND_SERVER", "SPAN_KIND_CLIENT",
  "SPAN_KIND_PRODUCER", "SPAN_KIND_CONSUMER"];
const CODE = ["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"];
const PARTIAL = ["COMPLETE", "PARTIAL"];
const B64 = Array.from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", (c) => c.charCodeAt(0));
const utf8 = new TextDecoder("utf-8");

class Reader {
  constructor(bytes) {
    this.b = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pos = 0;
  }

  // Varints up to 2^53 as numbers (tags, lengths, counts, enums, bools).
  uint() {
    const b = this.b;
    let x = 0;
    let mul = 1;
    for (;;) {
      if (this.pos >= b.length) throw new Error("truncated protobuf");
      const c = b[this.pos++];
      x += (c & 0x7f) * mul;
      if (c < 0x80) return x;
      mul *= 128;
      if (mul > 2 ** 63) throw new Error("bad varint");
    }
  }

  int64() {
    const b = this.b;
    let x = 0n;
    let shift = 0n;
    for (;;) {
      if (this.pos >= b.length) throw new Error("truncated protobuf");
      const c = b[this.pos++];
      x |= BigInt(c & 0x7f) << shift;
      if (c < 0x80) return BigInt.asIntN(64, x).toString();
      shift += 7n;
    }
  }

  fixed64() {
    const v = this.view.getBigUint64(this.pos, true);
    this.pos += 8;
    return v.toString();
  }

  fixed32() {
    const v = this.view.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }

  double() {
    const v = this.view.getFloat64(this.pos, true);
    this.pos += 8;
    if (Number.isFinite(v)) return v;
    return Number.isNaN(v) ? "NaN" : (v > 0 ? "Infinity" : "-Infinity");
  }

  // A length-delimited field's end offset; the caller reads up to it.
  end() {
    const len = this.uint();
    const end = this.pos + len;
    if (end > this.b.length) throw new Error("truncated protobuf");
    return end;
  }

  // Strings are made in one piece (flat): built a character at a time they would be ropes that every
  // later use (BigInt, atob, Map keys) has to flatten first.
  string() {
    const end = this.end();
    const b = this.b;
    let ascii = true;
    for (let i = this.pos; i < end; i++) if (b[i] >= 0x80) { ascii = false; break; }
    const s = ascii && end - this.pos < 4096
      ? String.fromCharCode.apply(null, b.subarray(this.pos, end))
      : utf8.decode(b.subarray(this.pos, end));
    this.pos = end;
    return s;
  }

  base64() {
    const end = this.end();
    const b = this.b;
    const out = [];
    let i = this.pos;
    for (; i + 2 < end; i += 3) {
      const n = (b[i] << 16) | (b[i + 1] << 8) | b[i + 2];
      out.push(B64[n >> 18], B64[(n >> 12) & 63], B64[(n >> 6) & 63], B64[n & 63]);
    }
    if (end - i === 1) out.push(B64[b[i] >> 2], B64[(b[i] & 3) << 4], 61, 61);
    else if (end - i === 2) {
      const n = (b[i] << 8) | b[i + 1];
      out.push(B64[n >> 10], B64[(n >> 4) & 63], B64[(n & 15) << 2], 61);
    }
    this.pos = end;
    return String.fromCharCode.apply(null, out);
  }

  skip(wire) {
    if (wire === 0) this.uint();
    else if (wire === 1) this.pos += 8;
    else if (wire === 2) this.pos = this.end();
    else if (wire === 5) this.pos += 4;
    else throw new Error(`unsupported protobuf wire type ${wire}`);
  }
}

// Reads fields until `end`, handing each (field number, wire type) to `field`, which returns false
// when it does not know the field (then it is skipped).
function message(r, end, field) {
  while (r.pos < end) {
    const tag = r.uint();
    const wire = tag & 7;
    if (!field(tag >>> 3, wire)) r.skip(wire);
  }
  if (r.pos !== end) throw new Error("malformed protobuf");
}

function enumName(names, v) {
  return v < names.length ? names[v] : v;
}

function anyValue(r, end) {
  const out = {};
  message(r, end, (n, w) => {
    if (n === 1 && w === 2) out.stringValue = r.string();
    else if (n === 2 && w === 0) out.boolValue = r.uint() !== 0;
    else if (n === 3 && w === 0) out.intValue = r.int64();
    else if (n === 4 && w === 1) out.doubleValue = r.double();
    else if ((n === 5 || n === 6) && w === 2) {
      const e = r.end();
      const values = [];
      message(r, e, (m, mw) => {
        if (m !== 1 || mw !== 2) return false;
        const ve = r.end();
        values.push(n === 5 ? anyValue(r, ve) : keyValue(r, ve));
        return true;
      });
      out[n === 5 ? "arrayValue" : "kvlistValue"] = values.length ? { values } : {};
    } else if (n === 7 && w === 2) out.bytesValue = r.base64();
    else return false;
    return true;
  });
  return out;
}

function keyValue(r, end) {
  const out = {};
  message(r, end, (n, w) => {
    if (w !== 2) return false;
    if (n === 1) { const k = r.string(); if (k) out.key = k; } else if (n === 2) out.value = anyValue(r, r.end());
    else return false;
    return true;
  });
  return out;
}

// Repeated KeyValue field `attributes` onto `out`.
function pushAttribute(r, out) {
  const kv = keyValue(r, r.end());
  (out.attributes || (out.attributes = [])).push(kv);
}

function setUint(out, key, v) {
  if (v) out[key] = v;
}

function setString(r, out, key) {
  const s = r.string();
  if (s) out[key] = s;
}

function setBase64(r, out, key) {
  const s = r.base64();
  if (s) out[key] = s;
}

function setFixed64(r, out, key) {
  const s = r.fixed64();
  if (s !== "0") out[key] = s;
}

function event(r, end) {
  const out = {};
  message(r, end, (n, w) => {
    if (n === 1 && w === 1) setFixed64(r, out, "timeUnixNano");
    else if (n === 2 && w === 2) setString(r, out, "name");
    else if (n === 3 && w === 2) pushAttribute(r, out);
    else if (n === 4 && w === 0) setUint(out, "droppedAttributesCount", r.uint());
    else return false;
    return true;
  });
  return out;
}

function spanLink(r, end) {
  const out = {};
  message(r, end, (n, w) => {
    if (n === 1 && w === 2) setBase64(r, out, "traceId");
    else if (n === 2 && w === 2) setBase64(r, out, "spanId");
    else if (n === 3 && w === 2) setString(r, out, "traceState");
    else if (n === 4 && w === 2) pushAttribute(r, out);
    else if (n === 5 && w === 0) setUint(out, "droppedAttributesCount", r.uint());
    else if (n === 6 && w === 5) setUint(out, "flags", r.fixed32());
    else return false;
    return true;
  });
  return out;
}

function status(r, end) {
  const out = {};
  message(r, end, (n, w) => {
    if (n === 2 && w === 2) setString(r, out, "message");
    else if (n === 3 && w === 0) { const c = r.uint(); if (c) out.code = enumName(CODE, c); } else return false;
    return true;
  });
  return out;
}

function span(r, end) {
  const out = {};
  message(r, end, (n, w) => {
    if (w === 2) {
      if (n === 1) setBase64(r, out, "traceId");
      else if (n === 2) setBase64(r, out, "spanId");
      else if (n === 3) setString(r, out, "traceState");
      else if (n === 4) setBase64(r, out, "parentSpanId");
      else if (n === 5) setString(r, out, "name");
      else if (n === 9) pushAttribute(r, out);
      else if (n === 11) (out.events || (out.events = [])).push(event(r, r.end()));
      else if (n === 13) (out.links || (out.links = [])).push(spanLink(r, r.end()));
      else if (n === 15) out.status = status(r, r.end());
      else return false;
    } else if (w === 0) {
      const v = r.uint();
      if (n === 6) { if (v) out.kind = enumName(KIND, v); } else if (n === 10) setUint(out, "droppedAttributesCount", v);
      else if (n === 12) setUint(out, "droppedEventsCount", v);
      else if (n === 14) setUint(out, "droppedLinksCount", v);
      // other varint fields: already consumed, nothing to keep
    } else if (w === 1 && (n === 7 || n === 8)) setFixed64(r, out, n === 7 ? "startTimeUnixNano" : "endTimeUnixNano");
    else if (w === 5 && n === 16) setUint(out, "flags", r.fixed32());
    else return false;
    return true;
  });
  return out;
}

// Resource (1 attributes, 2 dropped) and InstrumentationScope (1 name, 2 version, 3 attributes, 4 dropped).
function resource(r, end) {
  const out = {};
  message(r, end, (n, w) => {
    if (n === 1 && w === 2) pushAttribute(r, out);
    else if (n === 2 && w === 0) setUint(out, "droppedAttributesCount", r.uint());
    else return false;
    return true;
  });
  return out;
}

function scope(r, end) {
  const out = {};
  message(r, end, (n, w) => {
    if (n === 1 && w === 2) setString(r, out, "name");
    else if (n === 2 && w === 2) setString(r, out, "version");
    else if (n === 3 && w === 2) pushAttribute(r, out);
    else if (n === 4 && w === 0) setUint(out, "droppedAttributesCount", r.uint());
    else return false;
    return true;
  });
  return out;
}

function scopeSpans(r, end) {
  const out = {};
  message(r, end, (n, w) => {
    if (w !== 2) return false;
    if (n === 1) out.scope = scope(r, r.end());
    else if (n === 2) (out.spans || (out.spans = [])).push(span(r, r.end()));
    else if (n === 3) setString(r, out, "schemaUrl");
    else return false;
    return true;
  });
  return out;
}

function resourceSpans(r, end) {
  const out = {};
  message(r, end, (n, w) => {
    if (w !== 2) return false;
    if (n === 1) out.resource = resource(r, r.end());
    else if (n === 2) (out.scopeSpans || (out.scopeSpans = [])).push(scopeSpans(r, r.end()));
    else if (n === 3) setString(r, out, "schemaUrl");
    else return false;
    return true;
  });
  return out;
}

// OTLP TracesData bytes -> `{resourceSpans: [...]}` (or `{}` when it has none).
export function decodeTracesData(bytes) {
  const r = new Reader(bytes);
  const out = {};
  message(r, bytes.length, (n, w) => {
    if (n !== 1 || w !== 2) return false;
    (out.resourceSpans || (out.resourceSpans = [])).push(resourceSpans(r, r.end()));
    return true;
  });
  return out;
}

// tempopb.TraceByIDResponse bytes -> the `/api/v2/traces/<id>` JSON document.
export function decodeTraceByIdResponse(buffer) {
  const bytes = buffer instanceof Uint8Array ? buffer : new Uint8Array(buffer);
  const r = new Reader(bytes);
  const out = { trace: {} };
  message(r, bytes.length, (n, w) => {
    if (n === 1 && w === 2) {
      const end = r.end();
      out.trace = decodeTracesData(bytes.subarray(r.pos, end));
      r.pos = end;
    } else if (n === 2 && w === 2) {
      const metrics = {};
      message(r, r.end(), (m, mw) => {
        if (m !== 1 || mw !== 0) return false;
        const v = r.int64();
        if (v !== "0") metrics.inspectedBytes = BigInt.asUintN(64, BigInt(v)).toString();
        return true;
      });
      if (metrics.inspectedBytes) out.metrics = metrics; // as the JSON answer: left out when zero
    } else if (n === 3 && w === 0) { const s = r.uint(); if (s) out.status = enumName(PARTIAL, s); } else if (n === 4 && w === 2) setString(r, out, "message");
    else return false;
    return true;
  });
  return out;
}

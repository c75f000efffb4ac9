// Time range picker: relative (last 5m ... 7d) or absolute; the address carries start/end in unix seconds.
import { h } from "./dom.js";

export const RELATIVE = [["5m", 300], ["15m", 900], ["1h", 3600], ["3h", 10800], ["6h", 21600],
  ["12h", 43200], ["24h", 86400], ["2d", 172800], ["7d", 604800]];

// A range is {since: seconds} (relative to now) or {start, end} (unix seconds).
export function rangeFromParams(params, defaultSince = 3600) {
  const start = Number(params.get("start"));
  const end = Number(params.get("end"));
  if (params.get("start") && params.get("end") && Number.isFinite(start) && Number.isFinite(end) && end > start) {
    return { start, end };
  }
  const since = RELATIVE.find(([label]) => label === params.get("since"));
  return { since: since ? since[1] : defaultSince };
}

export function resolve(range) {
  if (range.since) {
    const end = Math.ceil(Date.now() / 1000);
    return { start: end - range.since, end };
  }
  return { start: range.start, end: range.end };
}

export function rangeParams(range) {
  if (range.since) {
    const label = RELATIVE.find(([, s]) => s === range.since);
    return { since: label ? label[0] : "1h" };
  }
  return { start: String(range.start), end: String(range.end) };
}

function toLocalInput(sec) {
  const d = new Date(sec * 1000);
  const pad = (x) => String(x).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function timeRangePicker(range, onChange) {
  const select = h("select", { "aria-label": "Time range", class: "range-select" },
    RELATIVE.map(([label, s]) => h("option", { value: String(s), selected: range.since === s }, `Last ${label}`)),
    h("option", { value: "abs", selected: !range.since }, "Absolute…"));
  const abs = resolve(range);
  const from = h("input", { type: "datetime-local", "aria-label": "From", value: toLocalInput(abs.start) });
  const to = h("input", { type: "datetime-local", "aria-label": "To", value: toLocalInput(abs.end) });
  const absBox = h("span", { class: "abs-range", hidden: !!range.since }, from, "–", to);
  const emit = () => {
    if (select.value !== "abs") {
      onChange({ since: Number(select.value) });
      return;
    }
    const s = Math.floor(new Date(from.value).getTime() / 1000);
    const e = Math.floor(new Date(to.value).getTime() / 1000);
    if (Number.isFinite(s) && Number.isFinite(e) && e > s) onChange({ start: s, end: e });
  };
  select.addEventListener("change", () => { absBox.hidden = select.value !== "abs"; emit(); });
  from.addEventListener("change", emit);
  to.addEventListener("change", emit);
  return h("span", { class: "range-picker" }, select, absBox);
}

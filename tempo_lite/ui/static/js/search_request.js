// The search view's request for a query, range and limit, and the one its address asks for first: the
// router sends that one while the view's modules (the TraceQL editor is most of the page's code) load, and
// the view takes its answer instead of asking again (`takeEarly`).
import { api } from "./api.js";
import { rangeFromParams, rangeParams, resolve } from "./timerange.js";

export function searchRequest(q, range, limit) {
  const { start, end } = resolve(range);
  return { key: JSON.stringify([q, rangeParams(range), limit]), params: { q, start, end, limit, spss: 3 } };
}

export function initialSearch(params) {
  const q = (params.get("q") || "{ }").trim() || "{ }";
  return searchRequest(q, rangeFromParams(params), Math.max(1, Number(params.get("limit")) || 20));
}

let early = null;

export function sendEarly(params) {
  const req = initialSearch(params);
  const answer = api.search(req.params);
  answer.catch(() => {}); // the view reports a failure when it takes the answer
  early = { key: req.key, answer };
}

// The early answer for this request, once; null when none was sent for it.
export function takeEarly(req) {
  const found = early && early.key === req.key ? early.answer : null;
  early = null;
  return found;
}

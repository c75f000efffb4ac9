// Router: every view has its own address under /ui/; links marked data-nav navigate without a reload.
import { server, setTenant, tenant } from "./api.js";
import { errorBox, h } from "./dom.js";
import { sendEarly } from "./search_request.js";

const views = {
  search: () => import("./search.js"),
  trace: () => import("./trace.js"),
  compare: () => import("./compare.js"),
  services: () => import("./services.js"),
  metrics: () => import("./metrics.js"),
  live: () => import("./live.js"),
};

let cleanup = null;
let generation = 0;

export function navigate(url, { replace = false } = {}) {
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  route();
}

// Update the address (e.g. a new query) without re-rendering the view. A view's first run replaces the
// entry it was opened with, so Back leaves the view instead of landing on the same page again.
export function setAddress(url, { replace = false } = {}) {
  if (url === location.pathname + location.search) return;
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
}

async function route() {
  const main = document.getElementById("main");
  const parts = location.pathname.replace(/^\/ui\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  const name = parts[0] || "search";
  const params = new URLSearchParams(location.search);
  for (const a of document.querySelectorAll("nav a[data-view]")) {
    if (a.dataset.view === name) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  if (cleanup) { try { cleanup(); } catch (_) { /* a view's cleanup must not stop navigation */ } }
  cleanup = null;
  const mine = ++generation;
  // The server's first paint of the search page (`[data-early-search]`) stays for the view to take over.
  for (const el of [...main.children]) if (!(name === "search" && el.matches("[data-early-search]"))) el.remove();
  const load = views[name];
  if (!load) {
    main.append(errorBox(`no view named ${name}`));
    return;
  }
  if (name === "search") sendEarly(params); // in parallel with loading the view's modules
  try {
    const mod = await load();
    if (mine !== generation) return;
    document.title = `${mod.title || name} · tempo-lite`;
    cleanup = (await mod.render(main, { args: parts.slice(1), params, navigate, setAddress })) || null;
  } catch (err) {
    if (mine === generation) main.append(errorBox(String(err.message || err)));
  }
}

document.addEventListener("click", (ev) => {
  const a = ev.target.closest("a[data-nav]");
  if (!a || ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin) return;
  ev.preventDefault();
  navigate(url.pathname + url.search);
});

window.addEventListener("popstate", () => route());

document.getElementById("goto").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const input = document.getElementById("goto-id");
  const id = input.value.trim();
  if (id) navigate(`/ui/trace/${encodeURIComponent(id)}`);
  input.value = "";
});

if (server.multitenancy) {
  const field = document.getElementById("tenant-field");
  const input = document.getElementById("tenant");
  field.hidden = false;
  input.value = tenant();
  input.addEventListener("change", () => { setTenant(input.value.trim()); route(); });
}

// Keyboard: "/" focuses the view's main input, "g" then s/t/m/l/c goes to a view.
let pendingG = false;
document.addEventListener("keydown", (ev) => {
  const t = ev.target;
  if (t.closest && t.closest("input, textarea, select, .cm-editor")) return;
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
  if (ev.key === "/") {
    const target = document.querySelector("[data-autofocus] .cm-content") ||
      document.querySelector("[data-autofocus] .plain-query") || document.querySelector("[data-autofocus]");
    if (target) { ev.preventDefault(); target.focus(); }
    return;
  }
  if (pendingG) {
    pendingG = false;
    const dest = { s: "search", v: "services", m: "metrics", l: "live", c: "compare" }[ev.key];
    if (dest) navigate(`/ui/${dest}`);
    return;
  }
  if (ev.key === "g") pendingG = true;
});

document.body.append(h("div", { id: "toast", role: "status", "aria-live": "polite" }));
route();

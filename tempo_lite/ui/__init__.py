"""The built-in web UI: static assets served by the API listener under `/ui/` (`/` redirects there).

The UI is a client of tempo-lite's public HTTP API and nothing else: every view is a page of the same
single-page shell (`static/index.html`), routed in the browser by its path (`/ui/search`, `/ui/trace/<id>`,
`/ui/compare/<a>/<b>`, `/ui/services`, `/ui/metrics`, `/ui/live`), so each view has an address that can be
shared. Assets ship inside the wheel (package data) and are read once at start; the page loads nothing
from any other origin. Every UI response carries a Content-Security-Policy that allows only same-origin
scripts; see docs/ui.md.

Caching: the pages address the assets under a version, `/ui/static/v<hash of every asset>/js/main.js` (the
modules' relative imports then resolve under it too), and those answers are `immutable` for a year: a repeat
visit takes the modules from the browser's cache without asking (and Chromium can reuse the code it compiled
for them). A new release changes the version. The unversioned paths (and an old version) are answered
with `no-cache` and an `ETag`.
"""

from __future__ import annotations

import hashlib
import html
import json
import posixpath
import re
from collections.abc import Sequence
from importlib import resources
from typing import TYPE_CHECKING

from quart import Response, redirect, request
from werkzeug.wrappers.response import Response as WerkzeugResponse

if TYPE_CHECKING:
    from quart_trio import QuartTrio

    from tempo_lite.frontend.service import QueryService

# Scripts, connections, images and fonts from this origin only; no plugins, no framing, no <base>.
# Styles allow 'unsafe-inline' because CodeMirror and uPlot set element styles from script (positions,
# sizes); no style can run code, and scripts stay same-origin only.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
}
VIEWS = ("search", "trace", "compare", "services", "metrics", "live")
# Modules a view imports right after its first render (the search page's editor, swapped in for the plain
# query field): preloaded after the view's own, so they load while the page starts instead of after it.
AFTER_FIRST_RENDER = {"search": "js/traceql.js"}
# Stylesheets written into the page (small; the page's first paint waits for no request).
INLINE_CSS = ("app.css", "vendor/uplot.css")


def load_assets() -> dict[str, bytes]:
    """Every file under `static/` by its path relative to it (`js/main.js`); licences and notes excluded."""
    root = resources.files(__package__).joinpath("static")
    assets: dict[str, bytes] = {}

    def walk(node, prefix: str) -> None:  # noqa: ANN001 - importlib Traversable
        for child in node.iterdir():
            name = prefix + child.name
            if child.is_dir():
                walk(child, name + "/")
            elif any(name.endswith(ext) for ext in CONTENT_TYPES):
                assets[name] = child.read_bytes()

    walk(root, "")
    return assets


# `import ... from "./x.js";` / `import "./x.js";` at the start of a line: a module's static imports (a
# view is loaded with `import("./view.js")`, which this leaves out).
_STATIC_IMPORT = re.compile(rb'^import\s(?:[^;]*?\sfrom\s)?"(\.{1,2}/[^"]+)";', re.MULTILINE)


def static_imports(assets: dict[str, bytes], entry: str) -> list[str]:
    """`entry` and every module it imports statically, directly or not (asset names, `js/search.js`)."""
    seen: list[str] = []
    todo = [entry]
    while todo:
        name = todo.pop()
        if name in seen or name not in assets:
            continue
        seen.append(name)
        for target in _STATIC_IMPORT.findall(assets[name]):
            todo.append(posixpath.normpath(posixpath.join(posixpath.dirname(name), target.decode())))
    return seen


def assets_version(assets: dict[str, bytes]) -> str:
    """One version for the whole set of assets (`v` and 12 hex digits of a hash over names and contents)."""
    digest = hashlib.sha256()
    for name in sorted(assets):
        digest.update(name.encode() + b"\0" + hashlib.sha256(assets[name]).digest())
    return "v" + digest.hexdigest()[:12]


_VERSION = re.compile(r"v[0-9a-f]{12}")


def shell(index: bytes, *, multitenancy: bool, generator: bool, preload: Sequence[str] = (),
          version: str = "", inline_css: dict[str, bytes] | None = None) -> bytes:
    """The page shell with the server facts the UI needs (as data attributes, not script), and
    `<link rel="modulepreload">` for the modules of the view it opens: fetched in parallel instead of one
    import level at a time, and only those (other views' modules cost the page nothing). With `version`,
    every asset is addressed under `/ui/static/<version>/` (cached as immutable); the stylesheets in
    `inline_css` are written into the page instead of linked."""
    base = f"/ui/static/{version}/" if version else "/ui/static/"
    facts = html.escape(json.dumps({"multitenancy": multitenancy, "generator": generator}), quote=True)
    links = "".join(f'<link rel="modulepreload" href="{base}{html.escape(m)}">\n' for m in preload)
    page = index
    for name, css in (inline_css or {}).items():  # no request before the first paint on a first visit
        if b"</style" in css.lower():
            raise ValueError(f"{name} cannot be written into a <style> element")
        link = f'<link rel="stylesheet" href="/ui/static/{name}">'.encode()
        page = page.replace(link, b"<style>" + css + b"</style>")
    page = page.replace(b'"/ui/static/', f'"{base}'.encode())
    page = page.replace(b"</head>", links.encode() + b"</head>", 1)
    return page.replace(b"<body>", f'<body data-server="{facts}">'.encode(), 1)


MAIN = b'<main id="main" tabindex="-1"></main>'
SEARCH_PARAMS = ("since", "start", "end", "limit")


def early_search(args: dict[str, str]) -> bytes:
    """The search page's first paint, written before any script runs: the query field with the address's
    query (a plain form, so it takes keys at once and Enter runs the search even before the scripts have
    loaded) and the results area. `js/search.js` takes the field over and later swaps in the editor."""
    q = args.get("q", "").strip() or "{ }"
    hidden = "".join(f'<input type="hidden" name="{k}" value="{html.escape(args[k], quote=True)}">'
                     for k in SEARCH_PARAMS if args.get(k))
    return (
        '<section class="view search-view" data-early-search>'
        '<form class="query-bar" action="/ui/search" method="get"><div class="editor">'
        '<input type="text" class="plain-query" name="q" spellcheck="false" autocomplete="off"'
        ' aria-label="TraceQL query" data-testid="query-field" data-autofocus'
        f' value="{html.escape(q, quote=True)}">'
        f'</div>{hidden}</form><div class="results"><p class="muted">Searching…</p></div></section>'
    ).encode()


def register_ui_routes(app: QuartTrio, tl: QueryService) -> None:
    assets = load_assets()
    etags = {name: '"' + hashlib.sha256(body).hexdigest()[:20] + '"' for name, body in assets.items()}
    version = assets_version(assets)
    common = static_imports(assets, "js/main.js")
    pages = {
        view: shell(
            assets["index.html"],
            multitenancy=tl.config.multitenancy_enabled,
            generator=tl.config.metrics_generator.enabled,
            preload=[m for m in dict.fromkeys(static_imports(assets, f"js/{view}.js") + common
                                              + static_imports(assets, AFTER_FIRST_RENDER.get(view, "")))
                     if m != "js/main.js"],
            version=version,
            inline_css={name: assets[name] for name in INLINE_CSS},
        )
        for view in VIEWS
    }

    def respond(body: bytes, ctype: str, *, cache: str, etag: str | None = None) -> Response:
        headers = dict(SECURITY_HEADERS, **{"Cache-Control": cache})
        if etag is not None:
            headers["ETag"] = etag
            if request.headers.get("If-None-Match") == etag:
                return Response(b"", status=304, headers=headers)
        return Response(body, content_type=ctype, headers=headers)

    @app.route("/")
    async def root() -> WerkzeugResponse:
        return redirect("/ui/", 302)

    @app.route("/ui")
    async def ui_bare() -> WerkzeugResponse:
        return redirect("/ui/", 302)

    @app.route("/ui/")
    @app.route("/ui/<view>")
    @app.route("/ui/<view>/<path:rest>")
    async def ui_page(view: str = "search", rest: str = "") -> Response:
        if view == "static":
            cache = "no-cache"
            first, _, path = rest.partition("/")
            if path and _VERSION.fullmatch(first):
                rest = path
                if first == version:  # this release's assets never change under this address
                    cache = "public, max-age=31536000, immutable"
            ext = "." + rest.rsplit(".", 1)[-1] if "." in rest else ""
            if rest not in assets or ext not in CONTENT_TYPES:
                return Response("404 page not found\n", status=404, content_type="text/plain; charset=utf-8",
                                headers=SECURITY_HEADERS)
            return respond(assets[rest], CONTENT_TYPES[ext], cache=cache, etag=etags[rest])
        if view not in VIEWS:
            return Response("404 page not found\n", status=404, content_type="text/plain; charset=utf-8",
                            headers=SECURITY_HEADERS)
        page = pages[view]
        if view == "search" and not rest:
            early = early_search({k: v for k, v in request.args.items() if isinstance(v, str)})
            page = page.replace(MAIN, MAIN[:-7] + early + MAIN[-7:], 1)
        return respond(page, CONTENT_TYPES[".html"], cache="no-store")

"""The UI's assets as shipped (package data): every module a page imports is there, no script writes
markup from data, vendored code comes with its licence, and the shell carries the server facts as an
escaped attribute. Pure: no sockets."""

from __future__ import annotations

import html
import json
import re

from tempo_lite.ui import CSP, assets_version, early_search, load_assets, shell, static_imports


def test_every_imported_module_and_linked_file_is_shipped() -> None:
    assets = load_assets()
    assert "index.html" in assets
    linked = re.findall(r'(?:src|href)="/ui/static/([^"]+)"', assets["index.html"].decode())
    assert {"js/main.js", "app.css", "vendor/uplot.css"} <= set(linked)
    missing = [name for name in linked if name not in assets]
    for name, body in assets.items():
        if not name.startswith("js/"):
            continue
        for target in re.findall(r'(?:from\s+|import\()\s*"(\.{1,2}/[^"]+)"', body.decode()):
            parts = ("js/" + target).split("/")
            resolved: list[str] = []
            for part in parts:
                if part == "..":
                    resolved.pop()
                elif part != ".":
                    resolved.append(part)
            if "/".join(resolved) not in assets:
                missing.append(f"{name} -> {target}")
    assert not missing


def test_no_view_writes_markup_into_the_page() -> None:
    for name, body in load_assets().items():
        if name.startswith("js/"):
            text = body.decode()
            for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
                assert sink not in text, f"{name} uses {sink}"


def test_vendored_libraries_ship_with_their_licences() -> None:
    from importlib import resources

    vendor = resources.files("tempo_lite.ui").joinpath("static", "vendor")
    for lib in ("codemirror", "uplot"):
        assert "MIT License" in vendor.joinpath(f"{lib}.LICENSE").read_text() or \
            "Permission is hereby granted" in vendor.joinpath(f"{lib}.LICENSE").read_text()
    assert "@codemirror/view@" in vendor.joinpath("VERSIONS").read_text()


def test_shell_carries_server_facts_escaped_and_scripts_are_same_origin_only() -> None:
    page = shell(b"<html><body><main></main></body></html>", multitenancy=True, generator=False)
    attr = re.search(rb'<body data-server="([^"]*)">', page)
    assert attr is not None
    assert json.loads(html.unescape(attr.group(1).decode())) == {"multitenancy": True, "generator": False}
    assert "script-src 'self'" in CSP and "unsafe-eval" not in CSP and "object-src 'none'" in CSP


def test_each_view_preloads_exactly_its_static_imports() -> None:
    assets = load_assets()
    search = static_imports(assets, "js/search.js")
    assert {"js/timerange.js", "js/search_request.js"} <= set(search)
    # The editor loads after the first paint (a plain query field until then); the metrics view needs it at once.
    assert "js/traceql.js" not in search and "vendor/codemirror.js" not in search
    assert {"js/traceql.js", "vendor/codemirror.js"} <= set(static_imports(assets, "js/metrics.js"))
    assert "js/trace.js" not in search and "vendor/uplot.js" not in search  # the scatter's library loads later
    assert {"js/model.js", "js/otlp_proto.js"} <= set(static_imports(assets, "js/trace.js"))
    fake = {"js/a.js": b'import { x } from "./b.js";\nimport "../vendor/c.js";\nconst v = () => import("./d.js");\n',
            "js/b.js": b'import {\n  y,\n} from "./a.js";\n', "vendor/c.js": b"", "js/d.js": b""}
    assert sorted(static_imports(fake, "js/a.js")) == ["js/a.js", "js/b.js", "vendor/c.js"]
    page = shell(b"<html><head></head><body></body></html>", multitenancy=False, generator=False,
                 preload=["js/b.js", "vendor/c.js"])
    assert b'<link rel="modulepreload" href="/ui/static/js/b.js">\n' \
           b'<link rel="modulepreload" href="/ui/static/vendor/c.js">\n</head>' in page


def test_search_first_paint_has_the_query_field_with_the_address_query_as_text() -> None:
    first = early_search({"q": '{ name = "<img src=x onerror=alert(1)>" }', "since": "1h", "other": "x"}).decode()
    assert '<input type="text" class="plain-query" name="q"' in first and 'data-testid="query-field"' in first
    assert 'value="{ name = &quot;&lt;img src=x onerror=alert(1)&gt;&quot; }"' in first
    assert "<img" not in first and "<script" not in first
    assert '<input type="hidden" name="since" value="1h">' in first and "other" not in first
    assert 'form class="query-bar" action="/ui/search" method="get"' in first  # Enter works before any script
    assert 'value="{ }"' in early_search({}).decode()


def test_asset_version_changes_with_any_asset_and_shell_addresses_assets_under_it() -> None:
    assets = load_assets()
    version = assets_version(assets)
    assert re.fullmatch(r"v[0-9a-f]{12}", version)
    assert assets_version({**assets, "js/dom.js": assets["js/dom.js"] + b"\n"}) != version
    page = shell(assets["index.html"], multitenancy=False, generator=False, preload=["js/api.js"],
                 version=version).decode()
    refs = re.findall(r'(?:src|href)="(/ui/static/[^"]+)"', page)
    assert f"/ui/static/{version}/js/main.js" in refs and f"/ui/static/{version}/js/api.js" in refs
    assert all(ref.startswith(f"/ui/static/{version}/") for ref in refs)


def test_shell_writes_the_stylesheets_into_the_page() -> None:
    assets = load_assets()
    page = shell(assets["index.html"], multitenancy=False, generator=False, version="v0123456789ab",
                 inline_css={"app.css": assets["app.css"]}).decode()
    assert "<style>" + assets["app.css"].decode() + "</style>" in page
    assert "app.css" not in page and 'href="/ui/static/v0123456789ab/vendor/uplot.css"' in page

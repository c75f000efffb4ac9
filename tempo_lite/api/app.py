"""The query API (port 3200) as a quart-trio app: thin handlers over the frontend and querier.

Paths, parameters and bodies follow Tempo's HTTP API (the calls Grafana makes are listed in docs/grafana.md).
"""

from __future__ import annotations

import json
import logging
import platform
from typing import TYPE_CHECKING, Any

from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from tempo_lite import TEMPO_COMPAT_VERSION, __version__
from tempo_lite.api import encoding
from tempo_lite.api.http import TEXT, resolve_query_tenants, text
from tempo_lite.api.metrics import register_metrics_routes
from tempo_lite.api.search import register_search_routes
from tempo_lite.errors import InvalidRequest, TempoLiteError
from tempo_lite.frontend.params import parse_time_range
from tempo_lite.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from tempo_lite.ui import register_ui_routes

if TYPE_CHECKING:
    from tempo_lite.frontend.service import QueryService

log = logging.getLogger(__name__)


def create_api(tl: QueryService) -> QuartTrio:
    app = QuartTrio("tempo_lite")
    app.config["MAX_CONTENT_LENGTH"] = 1 << 20

    @app.errorhandler(TempoLiteError)
    async def on_error(exc: TempoLiteError) -> Response:
        body = exc.message if exc.message.endswith("\n") else exc.message + "\n"
        return text(body, exc.http_status)

    @app.route("/ready")
    async def ready() -> Response:
        problem = tl.not_ready_reason()
        if problem:
            return text(problem + "\n", 503)
        return text("ready\n")

    @app.route("/api/echo")
    async def echo() -> Response:
        return text("echo\n")

    @app.route("/api/status/services")
    async def services() -> Response:
        # Tempo's format: one `name: State` line per service.
        return text("".join(f"{name}: {state}\n" for name, state in tl.service_states()))

    @app.route("/api/status/buildinfo")
    async def buildinfo() -> Response:
        info = {
            "version": TEMPO_COMPAT_VERSION,
            "revision": f"tempo-lite-{__version__}",
            "branch": "main",
            "buildUser": "tempo-lite",
            "buildDate": "",
            "goVersion": f"python{platform.python_version()}",
        }
        return Response(json.dumps(info), content_type="application/json")

    @app.route("/metrics")
    async def metrics() -> Response:
        tl.refresh_gauges()
        return Response(tl.metrics.exposition(), content_type=METRICS_CONTENT_TYPE)

    async def lookup(trace_id_text: str) -> tuple[Any, int, list[str]]:
        trace_id = encoding.parse_trace_id(trace_id_text)
        time_range = parse_time_range(request.args)
        tenants = resolve_query_tenants(tl)
        return await tl.frontend.find_trace(tenants, trace_id, time_range.start_ns, time_range.end_ns)

    @app.route("/api/traces/<trace_id>")
    async def trace_v1(trace_id: str) -> Response:
        trace, _inspected, _failed = await lookup(trace_id)
        if trace is None:
            return Response(b"", status=404, content_type=TEXT)
        ctype = encoding.negotiate(request.headers.get("Accept"))
        return Response(encoding.trace_v1(trace, ctype), content_type=ctype)

    @app.route("/api/v2/traces/<trace_id>")
    async def trace_v2(trace_id: str) -> Response:
        trace, inspected, failed = await lookup(trace_id)
        if trace is None:
            if failed:
                return text(f"trace lookup failed: {len(failed)} block(s) unreadable: {failed[0]}\n", 503)
            return Response(b"", status=404, content_type=TEXT)
        ctype = encoding.negotiate(request.headers.get("Accept"))
        partial = (
            f"{len(failed)} block(s) could not be read, a partial trace is returned: {failed[0]}" if failed else ""
        )
        return Response(encoding.trace_v2(trace, inspected, ctype, partial_message=partial), content_type=ctype)

    register_search_routes(app, tl)
    register_metrics_routes(app, tl)
    register_ui_routes(app, tl)

    @app.errorhandler(404)
    async def not_found(_exc: Exception) -> Response:
        return text("404 page not found\n", 404)

    @app.errorhandler(InvalidRequest)
    async def bad_request(exc: InvalidRequest) -> Response:
        return text(exc.message + "\n", 400)

    # Never Quart's HTML pages: other HTTP errors (405, 413, ...) and unexpected failures answer in text,
    # as Tempo does (Grafana shows the body; an HTML page reads as "the Tempo instance may be unavailable").
    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response:
        return text(f"{exc.code} {(exc.name or 'error').lower()}\n", exc.code or 500)

    @app.errorhandler(Exception)
    async def internal_error(exc: Exception) -> Response:
        log.error("%s %s failed", request.method, request.path, exc_info=exc)
        return text(f"internal error: {type(exc).__name__}: {exc}\n", 500)

    return app

"""TraceQL metrics HTTP routes: `/api/metrics/query_range` and `/api/metrics/query` (instant); the queries
run in `frontend/metrics.py`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from quart import Response, request

from tempo_lite.api.http import resolve_query_tenants, respond
from tempo_lite.frontend.metrics import run_query_instant, run_query_range

if TYPE_CHECKING:
    from quart_trio import QuartTrio

    from tempo_lite.frontend.service import QueryService


def register_metrics_routes(app: QuartTrio, tl: QueryService) -> None:
    @app.route("/api/metrics/query_range")
    async def metrics_query_range() -> Response:
        return respond(await run_query_range(tl, resolve_query_tenants(tl), request.args))

    @app.route("/api/metrics/query")
    async def metrics_query() -> Response:
        return respond(await run_query_instant(tl, resolve_query_tenants(tl), request.args))

"""Search, tag-name and tag-value HTTP routes: the query runs in `frontend/search.py`; this module routes
and encodes (JSON, or protobuf when asked).
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import unquote

from quart import Response, request

from tempo_lite.api import encoding
from tempo_lite.api.http import resolve_query_tenants, respond
from tempo_lite.frontend.search import run_tags, search_answer, tag_values_answer

if TYPE_CHECKING:
    from quart_trio import QuartTrio

    from tempo_lite.frontend.service import QueryService


def register_search_routes(app: QuartTrio, tl: QueryService) -> None:
    @app.route("/api/search")
    async def search() -> Response:
        ctype = encoding.negotiate(request.headers.get("Accept"))
        protobuf = ctype == encoding.PROTOBUF
        found, metrics = await search_answer(tl, resolve_query_tenants(tl), request.args, protobuf=protobuf)
        return Response(found.protobuf_body(metrics) if protobuf else found.json_body(metrics), content_type=ctype)

    @app.route("/api/search/tags")
    async def search_tags() -> Response:
        return respond(await run_tags(tl, resolve_query_tenants(tl), request.args, v2=False))

    @app.route("/api/v2/search/tags")
    async def search_tags_v2() -> Response:
        return respond(await run_tags(tl, resolve_query_tenants(tl), request.args, v2=True))

    # Grafana double-encodes the tag in the path; the router decoded it once.
    @app.route("/api/search/tag/<path:tag>/values")
    async def tag_values(tag: str) -> Response:
        return respond(await tag_values_answer(tl, resolve_query_tenants(tl), unquote(tag), request.args, v2=False))

    @app.route("/api/v2/search/tag/<path:tag>/values")
    async def tag_values_v2_route(tag: str) -> Response:
        return respond(await tag_values_answer(tl, resolve_query_tenants(tl), unquote(tag), request.args, v2=True))

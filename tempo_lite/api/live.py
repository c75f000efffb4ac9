"""A live-store's internal HTTP API (split deployments): what queriers ask it for its recent spans.

`GET /internal/live/snapshot?tenant=T&wait=S` -> every recent span of tenant T as `spantable.to_ipc`
bytes; `GET /internal/live/trace?tenant=T&id=HEX&wait=S` -> the recent spans of one trace (404: none).
Both first wait, at most `wait` seconds, until the live-store has consumed everything its partitions held
when the request arrived (read after write across processes). A snapshot carries an `ETag` naming this
process and the live-store's version: a querier that sends it back in `If-None-Match` gets 304 and
reuses the table it has. Internal: not part of Tempo's API, and no other client should depend on it.
"""

from __future__ import annotations

import uuid

from quart import Response, request
from quart_trio import QuartTrio

from tempo_lite import spantable
from tempo_lite.api.encoding import parse_trace_id
from tempo_lite.distributor.tenant import check_tenant_id
from tempo_lite.errors import InvalidRequest
from tempo_lite.livestore import LiveStore

ARROW = "application/vnd.apache.arrow.stream"
MAX_WAIT_SECONDS = 10.0


def register_live_routes(app: QuartTrio, livestore: LiveStore) -> None:
    instance = uuid.uuid4().hex[:12]  # a restarted live-store's versions start again: never the same ETag
    partitions = ",".join(str(p) for p in livestore.partitions)

    async def prepare() -> str:
        tenant = request.args.get("tenant", "")
        check_tenant_id(tenant)
        try:
            wait = float(request.args.get("wait", "0"))
        except ValueError:
            raise InvalidRequest(f"invalid wait {request.args.get('wait')!r}: expected seconds") from None
        if wait > 0:
            await livestore.wait_consumed(min(wait, MAX_WAIT_SECONDS))
        return tenant

    def arrow(table: spantable.SpanTable, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        return Response(spantable.to_ipc(table), status=status, content_type=ARROW,
                        headers={"X-Live-Partitions": partitions, **(headers or {})})

    @app.route("/internal/live/snapshot")
    async def snapshot() -> Response:
        tenant = await prepare()
        etag = f'"{instance}-{livestore.version}"'
        if request.headers.get("If-None-Match") == etag:
            return Response(b"", status=304, headers={"ETag": etag, "X-Live-Partitions": partitions})
        return arrow(livestore.snapshot(tenant), headers={"ETag": etag})

    @app.route("/internal/live/trace")
    async def trace() -> Response:
        tenant = await prepare()
        trace_id = parse_trace_id(request.args.get("id", ""))
        found = livestore.find_trace(tenant, trace_id)
        if found is None:
            return Response(b"", status=404, headers={"X-Live-Partitions": partitions})
        return arrow(found)

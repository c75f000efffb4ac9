"""HTTP helpers shared by the API's handlers: plain-text and negotiated protobuf/JSON responses, and the
query tenants of a request (`X-Scope-OrgID`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from quart import Response, request

from tempo_lite._gen import tempopb_pb2 as pb
from tempo_lite.api import encoding
from tempo_lite.distributor.tenant import check_tenant_id
from tempo_lite.errors import Unauthenticated
from tempo_lite.frontend.metrics import query_range_json
from tempo_lite.querier.search_json import search_response_json
from tempo_lite.querier.tags import TagValuesAnswer

if TYPE_CHECKING:
    from tempo_lite.frontend.service import QueryService

TEXT = "text/plain; charset=utf-8"


def text(body: str, status: int = 200) -> Response:
    return Response(body, status=status, content_type=TEXT, headers={"X-Content-Type-Options": "nosniff"})


def query_tenants(multitenancy: bool, org_id: str | None) -> list[str]:
    """Query tenants: `single-tenant`, or the X-Scope-OrgID value (which may name several: `a|b`)."""
    if not multitenancy:
        return ["single-tenant"]
    tenants = sorted({t.strip() for t in (org_id or "").split("|") if t.strip()})
    if not tenants:
        raise Unauthenticated("no org id")
    for tenant in tenants:
        check_tenant_id(tenant)  # the rule writes obey (400): no ID that could not name a tenant's data
    return tenants


def resolve_query_tenants(tl: QueryService) -> list[str]:
    return query_tenants(tl.config.multitenancy_enabled, request.headers.get("X-Scope-OrgID"))


def respond(message) -> Response:  # noqa: ANN001 - a protobuf message, or an answer that renders itself
    ctype = encoding.negotiate(request.headers.get("Accept"))
    if isinstance(message, TagValuesAnswer):  # built column-wise: no message per value for JSON
        return Response(message.protobuf() if ctype == encoding.PROTOBUF else message.json(), content_type=ctype)
    if ctype == encoding.PROTOBUF:
        body = message.SerializeToString()
    elif isinstance(message, pb.SearchResponse):
        body = search_response_json(message)  # the same document, built without json_format's reflection
    elif isinstance(message, pb.QueryRangeResponse):
        body = query_range_json(message)  # likewise
    else:
        body = encoding.message_json(message)
    return Response(body, content_type=ctype)

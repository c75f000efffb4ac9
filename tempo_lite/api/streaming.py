"""Grafana's streaming gRPC API (`tempopb.StreamingQuerier`) on the HTTP port, over h2c.

Grafana with "streaming" enabled opens a plaintext gRPC connection to the data source's host:port and
calls `Search`, `SearchTags(V2)`, `SearchTagValues(V2)`,
`MetricsQueryRange` and `MetricsQueryInstant`. Each call answers with one message holding
the complete result (the protocol allows diffs; one full message is what Grafana accumulates anyway).
Requests are mapped onto the same parameters as the HTTP endpoints, so validation and results agree.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from tempo_lite._gen import tempopb_pb2 as pb
from tempo_lite.api.http import query_tenants
from tempo_lite.frontend.metrics import run_query_instant, run_query_range
from tempo_lite.frontend.search import run_search, run_tag_values, run_tags
from tempo_lite.grpc_server import GrpcCall, ServerStreamingMethod, grpc_app
from tempo_lite.server import ASGIApp

if TYPE_CHECKING:
    from tempo_lite.frontend.service import QueryService

SERVICE = "/tempopb.StreamingQuerier/"
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


def search_params(req: pb.SearchRequest) -> dict[str, str]:
    params: dict[str, str] = {}
    if req.Query:
        params["q"] = req.Query
    elif req.Tags:
        params["tags"] = " ".join(f'{k}="{v}"' for k, v in sorted(req.Tags.items()))
    if req.Limit:
        params["limit"] = str(req.Limit)
    if req.SpansPerSpanSet:
        params["spss"] = str(req.SpansPerSpanSet)
    if req.start or req.end:
        params["start"], params["end"] = str(req.start), str(req.end)
    if req.MinDurationMs:
        params["minDuration"] = f"{req.MinDurationMs}ms"
    if req.MaxDurationMs:
        params["maxDuration"] = f"{req.MaxDurationMs}ms"
    return params


def tags_params(req: pb.SearchTagsRequest) -> dict[str, str]:
    params = {"scope": req.scope, "q": req.query}
    if req.start or req.end:
        params["start"], params["end"] = str(req.start), str(req.end)
    if req.maxTagsPerScope:
        params["limit"] = str(req.maxTagsPerScope)
    return {k: v for k, v in params.items() if v}


def tag_values_params(req: pb.SearchTagValuesRequest) -> dict[str, str]:
    params = {"q": req.query}
    if req.start or req.end:
        params["start"], params["end"] = str(req.start), str(req.end)
    if req.maxTagValues:
        params["limit"] = str(req.maxTagValues)
    return {k: v for k, v in params.items() if v}


def query_range_params(req: pb.QueryRangeRequest) -> dict[str, str]:
    """Streaming metrics requests carry start/end/step in nanoseconds."""
    params = {"q": req.query}
    if req.start:
        params["start"] = str(req.start)
    if req.end:
        params["end"] = str(req.end)
    if req.step:
        params["step"] = f"{req.step}ns"
    if req.exemplars:
        params["exemplars"] = str(req.exemplars)
    if req.maxSeries:
        params["maxSeries"] = str(req.maxSeries)
    return params


def query_instant_params(req: pb.QueryInstantRequest) -> dict[str, str]:
    """Instant metrics requests carry start/end in nanoseconds."""
    params = {"query": req.query}
    if req.start:
        params["start"] = str(req.start)
    if req.end:
        params["end"] = str(req.end)
    return params


def streaming_querier_app(tl: QueryService, fallback: ASGIApp) -> ASGIApp:
    """The API listener's app: gRPC StreamingQuerier calls here, every other request to `fallback`."""

    def tenants(call: GrpcCall) -> list[str]:
        return query_tenants(tl.config.multitenancy_enabled, call.metadata.get("x-scope-orgid"))

    async def search(req: pb.SearchRequest, call: GrpcCall) -> AsyncIterator[pb.SearchResponse]:
        yield await run_search(tl, tenants(call), search_params(req))

    async def search_tags(req: pb.SearchTagsRequest, call: GrpcCall) -> AsyncIterator[pb.SearchTagsResponse]:
        yield await run_tags(tl, tenants(call), tags_params(req), v2=False)

    async def search_tags_v2(req: pb.SearchTagsRequest, call: GrpcCall) -> AsyncIterator[pb.SearchTagsV2Response]:
        yield await run_tags(tl, tenants(call), tags_params(req), v2=True)

    async def tag_values(req: pb.SearchTagValuesRequest, call: GrpcCall) -> AsyncIterator[pb.SearchTagValuesResponse]:
        yield await run_tag_values(tl, tenants(call), req.tagName, tag_values_params(req), v2=False)

    async def tag_values_v2(
        req: pb.SearchTagValuesRequest, call: GrpcCall
    ) -> AsyncIterator[pb.SearchTagValuesV2Response]:
        yield await run_tag_values(tl, tenants(call), req.tagName, tag_values_params(req), v2=True)

    async def metrics_query_range(req: pb.QueryRangeRequest, call: GrpcCall) -> AsyncIterator[pb.QueryRangeResponse]:
        yield await run_query_range(tl, tenants(call), query_range_params(req))

    async def metrics_query_instant(
        req: pb.QueryInstantRequest, call: GrpcCall
    ) -> AsyncIterator[pb.QueryInstantResponse]:
        yield await run_query_instant(tl, tenants(call), query_instant_params(req))

    methods = {
        SERVICE + "MetricsQueryInstant": ServerStreamingMethod(pb.QueryInstantRequest, metrics_query_instant),
        SERVICE + "MetricsQueryRange": ServerStreamingMethod(pb.QueryRangeRequest, metrics_query_range),
        SERVICE + "Search": ServerStreamingMethod(pb.SearchRequest, search),
        SERVICE + "SearchTags": ServerStreamingMethod(pb.SearchTagsRequest, search_tags),
        SERVICE + "SearchTagsV2": ServerStreamingMethod(pb.SearchTagsRequest, search_tags_v2),
        SERVICE + "SearchTagValues": ServerStreamingMethod(pb.SearchTagValuesRequest, tag_values),
        SERVICE + "SearchTagValuesV2": ServerStreamingMethod(pb.SearchTagValuesRequest, tag_values_v2),
    }
    return grpc_app(methods, max_message_bytes=MAX_MESSAGE_BYTES, fallback=fallback)

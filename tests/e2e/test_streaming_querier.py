"""Grafana's streaming gRPC search (`tempopb.StreamingQuerier`) on the HTTP port, next to the HTTP API."""

from __future__ import annotations

import grpc
import httpx
import trio
from conftest import Running
from test_search_api import ingest_fixture_a
from traceql_fixtures import TRACE_ID_A_HEX

from tempo_lite._gen import tempopb_pb2 as pb


def stream(address: str, method: str, request, response_type, metadata=()) -> list:  # noqa: ANN001
    with grpc.insecure_channel(address) as channel:
        call = channel.unary_stream(
            f"/tempopb.StreamingQuerier/{method}",
            request_serializer=type(request).SerializeToString,
            response_deserializer=response_type.FromString,
        )
        return list(call(request, metadata=metadata, timeout=20))


async def test_streaming_search_and_tags_answer_like_http(tempo: Running, http: httpx.AsyncClient) -> None:
    await ingest_fixture_a(tempo, http)
    host, port = tempo.tl.listeners.addresses["http"]
    address = f"{host}:{port}"
    req = pb.SearchRequest(Query='{ resource.service.name = "MyService" }', Limit=5, SpansPerSpanSet=2,
                           start=1000, end=1001)
    (msg,) = await trio.to_thread.run_sync(stream, address, "Search", req, pb.SearchResponse)
    assert [t.traceID for t in msg.traces] == [TRACE_ID_A_HEX]
    http_doc = (await http.get(tempo.url() + "/api/search", params={
        "q": req.Query, "limit": 5, "spss": 2, "start": 1000, "end": 1001}, headers={"Accept": "application/protobuf"}))
    assert pb.SearchResponse.FromString(http_doc.content).traces == msg.traces

    (tags,) = await trio.to_thread.run_sync(stream, address, "SearchTagsV2", pb.SearchTagsRequest(scope="resource"),
                                            pb.SearchTagsV2Response)
    assert "service.name" in tags.scopes[0].tags
    (values,) = await trio.to_thread.run_sync(
        stream, address, "SearchTagValuesV2", pb.SearchTagValuesRequest(tagName="resource.service.name"),
        pb.SearchTagValuesV2Response)
    assert ("string", "MyService") in {(v.type, v.value) for v in values.tagValues}

    def bad_query() -> grpc.StatusCode:
        try:
            stream(address, "Search", pb.SearchRequest(Query="{ .a = }"), pb.SearchResponse)
        except grpc.RpcError as exc:
            assert "parse error" in exc.details()
            return exc.code()
        return grpc.StatusCode.OK

    assert await trio.to_thread.run_sync(bad_query) == grpc.StatusCode.INVALID_ARGUMENT
    # Plain HTTP keeps working on the same port.
    assert (await http.get(tempo.url() + "/api/echo")).text == "echo\n"


async def test_streaming_metrics_query_range(tempo: Running, http: httpx.AsyncClient) -> None:
    await ingest_fixture_a(tempo, http)
    host, port = tempo.tl.listeners.addresses["http"]
    req = pb.QueryRangeRequest(query="{ } | count_over_time() by (resource.service.name)",
                               start=990 * 10**9, end=1010 * 10**9, step=10 * 10**9)
    (msg,) = await trio.to_thread.run_sync(stream, f"{host}:{port}", "MetricsQueryRange", req,
                                           pb.QueryRangeResponse)
    totals = {s.labels[0].value.string_value: sum(x.value for x in s.samples) for s in msg.series}
    assert totals == {"MyService": 1, "RootService": 1, "Service3": 1, "BrokenService": 1}
    r = await http.get(tempo.url() + "/api/metrics/query_range", params={
        "q": req.query, "start": 990, "end": 1010, "step": "10s"}, headers={"Accept": "application/protobuf"})
    assert pb.QueryRangeResponse.FromString(r.content).series == msg.series


async def test_streaming_metrics_query_instant_answers_like_http(tempo: Running, http: httpx.AsyncClient) -> None:
    await ingest_fixture_a(tempo, http)
    host, port = tempo.tl.listeners.addresses["http"]
    req = pb.QueryInstantRequest(query="{ } | count_over_time() by (resource.service.name)",
                                 start=990 * 10**9, end=1010 * 10**9)
    (msg,) = await trio.to_thread.run_sync(stream, f"{host}:{port}", "MetricsQueryInstant", req,
                                           pb.QueryInstantResponse)
    assert {s.labels[0].value.string_value: s.value for s in msg.series} == {
        "MyService": 1, "RootService": 1, "Service3": 1, "BrokenService": 1}
    r = await http.get(tempo.url() + "/api/metrics/query", params={"q": req.query, "start": 990, "end": 1010},
                       headers={"Accept": "application/protobuf"})
    assert pb.QueryInstantResponse.FromString(r.content).series == msg.series

    def bad_query() -> tuple[grpc.StatusCode, str]:
        try:
            stream(f"{host}:{port}", "MetricsQueryInstant", pb.QueryInstantRequest(query="{ }", start=1, end=2),
                   pb.QueryInstantResponse)
        except grpc.RpcError as exc:
            return exc.code(), exc.details()
        return grpc.StatusCode.OK, ""

    code, details = await trio.to_thread.run_sync(bad_query)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "not a metrics query" in details

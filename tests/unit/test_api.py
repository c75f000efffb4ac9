"""The query API (`api/`): routes answer with the frontend's result in JSON or protobuf as the Accept header
asks, trace IDs and tenants are read as Tempo reads them, and every error is a plain-text body with its status.
Driven through quart-trio's test client (ASGI calls, no sockets) over a real querier: fixture A in a live
table, and a block in a local store."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from urllib.parse import quote

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData
from quart_trio import QuartTrio
from test_tracebyid import _Live
from traceql_fixtures import SEC, TRACE_ID_A, TRACE_ID_A_HEX, fixture_a, make_span

from tempo_lite import spantable
from tempo_lite._gen import tempopb_pb2 as pb
from tempo_lite.api import encoding
from tempo_lite.api.app import create_api
from tempo_lite.block.blocklist import BlockList
from tempo_lite.block.writer import encode_block, write_block
from tempo_lite.config import Config
from tempo_lite.errors import InvalidRequest
from tempo_lite.frontend.service import QueryFrontend
from tempo_lite.metrics import Metrics
from tempo_lite.querier.search import Searcher
from tempo_lite.querier.tracebyid import Querier
from tempo_lite.storage.cache import ByteCache
from tempo_lite.storage.store import local_store

TRACE_B = bytes([0xBB] * 16)
SINGLE = "single-tenant"
PROTOBUF = {"Accept": "application/protobuf"}


def _block_trace() -> TracesData:
    """Trace B: three spans of `blocksvc`, one second after fixture A."""
    data = TracesData()
    rs = data.resource_spans.add()
    rs.resource.attributes.add(key="service.name").value.string_value = "blocksvc"
    for i in range(3):
        rs.scope_spans.add().spans.append(make_span(TRACE_B, bytes([0xB0 + i] * 8), bytes([0xB0] * 8) if i else b"",
                                                    f"b{i}", 1001 * SEC, 1001 * SEC + (i + 1) * 1000, kind=2))
    return data


class _Service:
    """A QueryService over a querier (live table and blocks), with readiness and states set by the test."""

    def __init__(self, querier: Querier, multitenancy: bool = False) -> None:
        self.config = Config(multitenancy_enabled=multitenancy)
        self.metrics = Metrics()
        self.frontend = QueryFrontend(querier, Searcher(querier))
        self.problem: str | None = None
        self.gauge_refreshes = 0

    def not_ready_reason(self) -> str | None:
        return self.problem

    def refresh_gauges(self) -> None:
        self.gauge_refreshes += 1

    def service_states(self) -> list[tuple[str, str]]:
        return [("distributor", "Running"), ("live-store", "Starting")]


async def _api(tmp_path: Path, *, tenants: tuple[str, ...] = (SINGLE,), multitenancy: bool = False,
               corrupt: bool = False) -> tuple[QuartTrio, _Service]:
    """Fixture A live (every tenant), trace B in one block per tenant (unreadable with `corrupt`)."""
    store = local_store(str(tmp_path / "blocks"))
    blocklist = BlockList(store)
    for tenant in tenants:
        block = encode_block(spantable.flatten(_block_trace().resource_spans), block_id="b0", tenant=tenant)
        await write_block(store, block)
        if corrupt:
            (tmp_path / "blocks" / tenant / "b0" / "data.parquet").write_bytes(b"not parquet")
        blocklist.add(block.meta)
    live = _Live(spantable.flatten(fixture_a().resource_spans))
    service = _Service(Querier(live, blocklist, store, ByteCache(1 << 24), Metrics()), multitenancy)
    return create_api(service), service


def _span_ids(data: TracesData) -> set[str]:
    return {bytes(s.span_id).hex() for rs in data.resource_spans for ss in rs.scope_spans for s in ss.spans}


async def test_trace_by_id_answers_protobuf_when_asked_and_json_otherwise(tmp_path: Path) -> None:
    app, _ = await _api(tmp_path)
    client = app.test_client()
    want = _span_ids(fixture_a())
    got = await client.get(f"/api/traces/{TRACE_ID_A.hex()}", headers=PROTOBUF)
    assert got.status_code == 200 and got.content_type == "application/protobuf"
    assert _span_ids(TracesData.FromString(await got.get_data())) == want
    for accept in ({}, {"Accept": "text/html, */*"}):
        got = await client.get(f"/api/traces/{TRACE_ID_A.hex()}", headers=accept)
        assert got.status_code == 200 and got.content_type == "application/json"
        batches = json.loads(await got.get_data())["batches"]
        assert {base64.b64decode(s["spanId"]).hex() for b in batches for ss in b["scopeSpans"]
                for s in ss["spans"]} == want
    v2 = await client.get(f"/api/v2/traces/{TRACE_ID_A.hex()}", headers=PROTOBUF)
    answer = pb.TraceByIDResponse.FromString(await v2.get_data())
    assert _span_ids(TracesData.FromString(answer.trace)) == want
    assert answer.metrics.inspectedBytes > 0 and answer.status != pb.PARTIAL
    doc = json.loads(await (await client.get(f"/api/v2/traces/{TRACE_ID_A.hex()}")).get_data())
    assert set(doc) == {"trace", "metrics"} and len(doc["trace"]["resourceSpans"]) == 4


async def test_trace_ids_are_hex_left_padded_and_malformed_ones_are_refused(tmp_path: Path) -> None:
    app, _ = await _api(tmp_path)
    client = app.test_client()
    assert TRACE_ID_A_HEX != TRACE_ID_A.hex()  # the search results' form, leading zeros dropped
    for text in (TRACE_ID_A_HEX, TRACE_ID_A.hex().upper()):
        assert (await client.get(f"/api/traces/{text}")).status_code == 200, text
    block = await client.get(f"/api/traces/{TRACE_B.hex()}", headers=PROTOBUF)
    assert {s.name for rs in TracesData.FromString(await block.get_data()).resource_spans
            for ss in rs.scope_spans for s in ss.spans} == {"b0", "b1", "b2"}
    for path in ("/api/traces/", "/api/v2/traces/"):
        missing = await client.get(path + "ab" * 16)
        assert missing.status_code == 404 and await missing.get_data() == b""
        for bad, reason in (("xyz", "not hex"), ("1" * 33, "1 to 32 hex digits")):
            got = await client.get(path + bad)
            assert got.status_code == 400 and got.content_type.startswith("text/plain")
            assert reason in (await got.get_data()).decode()
    assert encoding.parse_trace_id("1") == bytes(15) + b"\x01"
    assert encoding.trace_id_to_hex(bytes(16)) == "0" and encoding.span_id_to_hex(b"\x01") == "0" * 14 + "01"
    with pytest.raises(InvalidRequest):
        encoding.parse_trace_id(" ")


async def test_an_unreadable_block_holding_the_only_copy_answers_v2_with_503(tmp_path: Path) -> None:
    app, _ = await _api(tmp_path, corrupt=True)
    client = app.test_client()
    got = await client.get(f"/api/v2/traces/{TRACE_B.hex()}")
    assert got.status_code == 503 and "1 block(s) unreadable" in (await got.get_data()).decode()
    # The live copy of fixture A is whole; the corrupt block is not a candidate for it (its trace-ID range).
    assert (await client.get(f"/api/v2/traces/{TRACE_ID_A.hex()}")).status_code == 200


async def test_an_unreadable_block_beside_a_live_copy_gives_a_partial_v2_answer(tmp_path: Path) -> None:
    store = local_store(str(tmp_path / "blocks"))
    blocklist = BlockList(store)
    block = encode_block(spantable.flatten(fixture_a().resource_spans), block_id="b0", tenant=SINGLE)
    await write_block(store, block)
    (tmp_path / "blocks" / SINGLE / "b0" / "data.parquet").write_bytes(b"not parquet")
    blocklist.add(block.meta)
    live = _Live(spantable.flatten(fixture_a().resource_spans))
    client = create_api(_Service(Querier(live, blocklist, store, ByteCache(1 << 24), Metrics()))).test_client()
    answer = pb.TraceByIDResponse.FromString(
        await (await client.get(f"/api/v2/traces/{TRACE_ID_A.hex()}", headers=PROTOBUF)).get_data())
    assert answer.status == pb.PARTIAL and "b0" in answer.message
    assert _span_ids(TracesData.FromString(answer.trace)) == _span_ids(fixture_a())
    doc = json.loads(await (await client.get(f"/api/v2/traces/{TRACE_ID_A.hex()}")).get_data())
    assert doc["status"] == "PARTIAL" and "1 block(s) could not be read" in doc["message"]


async def test_search_answers_the_same_traces_in_json_and_protobuf(tmp_path: Path) -> None:
    app, _ = await _api(tmp_path)
    client = app.test_client()
    window = {"start": "900", "end": "1100"}
    for q, want in (("{ }", {TRACE_ID_A_HEX, TRACE_B.hex()}), ('{ resource.service.name = "blocksvc" }',
                                                              {TRACE_B.hex()}), ('{ name = "nothing" }', set())):
        doc = json.loads(await (await client.get("/api/search", query_string={"q": q, **window})).get_data())
        assert {t["traceID"] for t in doc.get("traces", [])} == want, q
        assert doc["metrics"]["totalBlocks"] == 1
        msg = pb.SearchResponse.FromString(await (await client.get(
            "/api/search", query_string={"q": q, **window}, headers=PROTOBUF)).get_data())
        assert {t.traceID for t in msg.traces} == want and msg.metrics.totalBlocks == 1
    # Without a time range a search reads the live-store only (as Tempo's reads the ingesters).
    recent = json.loads(await (await client.get("/api/search", query_string={"q": "{ }"})).get_data())
    assert [t["traceID"] for t in recent["traces"]] == [TRACE_ID_A_HEX] and "totalBlocks" not in recent["metrics"]
    newest = json.loads(await (await client.get("/api/search", query_string={
        "q": "{ } with (most_recent=true)", "limit": "1", **window})).get_data())
    assert [t["traceID"] for t in newest["traces"]] == [TRACE_B.hex()]
    bad = await client.get("/api/search", query_string={"q": "{ span.x = }"})
    assert bad.status_code == 400 and bad.content_type.startswith("text/plain") and await bad.get_data()
    metrics_query = await client.get("/api/search", query_string={"q": "{ } | rate()"})
    assert metrics_query.status_code == 400 and b"/api/metrics/query_range" in await metrics_query.get_data()


async def test_tag_routes_answer_names_and_values_and_decode_a_double_encoded_tag(tmp_path: Path) -> None:
    app, _ = await _api(tmp_path)
    client = app.test_client()
    tags = {"start": "900", "end": "1100"}  # fixture A's spans are at 1000 s
    v2 = json.loads(await (await client.get("/api/v2/search/tags", query_string=tags)).get_data())
    scopes = {s["name"]: s["tags"] for s in v2["scopes"]}
    assert "service.name" in scopes["resource"] and "http.method" in scopes["span"]
    v1 = pb.SearchTagsResponse.FromString(
        await (await client.get("/api/search/tags", query_string=tags, headers=PROTOBUF)).get_data())
    assert "http.method" in v1.tagNames
    services = json.loads(await (await client.get("/api/v2/search/tag/resource.service.name/values",
                                                  query_string=tags)).get_data())
    assert {v["value"] for v in services["tagValues"]} == {"MyService", "RootService", "Service3", "BrokenService",
                                                           "blocksvc"}
    odd = 'span."{ } ( ) = ~ ! < > & | ^"'  # a quoted attribute name; Grafana double-encodes a tag in the path
    got = json.loads(await (await client.get(f"/api/v2/search/tag/{quote(quote(odd, safe=''), safe='')}/values",
                                             query_string=tags)).get_data())
    assert {v["value"] for v in got["tagValues"]} == {"foobaz"}
    v1_values = json.loads(await (await client.get("/api/search/tag/http.method/values",
                                                   query_string=tags)).get_data())
    assert v1_values["tagValues"] == ["Get"]


async def test_metrics_routes_answer_a_range_and_an_instant_query(tmp_path: Path) -> None:
    app, _ = await _api(tmp_path)
    client = app.test_client()
    window = {"q": "{ } | count_over_time() by (resource.service.name)", "start": "960", "end": "1080",
              "step": "60s"}
    doc = json.loads(await (await client.get("/api/metrics/query_range", query_string=window)).get_data())
    counts = {s["labels"][0]["value"]["stringValue"]: sum(float(x.get("value", 0)) for x in s["samples"])
              for s in doc["series"]}
    assert counts == {"MyService": 1, "RootService": 1, "Service3": 1, "BrokenService": 1, "blocksvc": 3}
    instant = pb.QueryInstantResponse.FromString(await (await client.get(
        "/api/metrics/query", query_string={k: window[k] for k in ("q", "start", "end")}, headers=PROTOBUF)).get_data())
    assert {s.labels[0].value.string_value: s.value for s in instant.series} == counts
    bad = await client.get("/api/metrics/query_range", query_string={"q": "{ }", "start": "960", "end": "1080"})
    assert bad.status_code == 400 and await bad.get_data()


async def test_with_multitenancy_the_org_id_names_the_tenants_and_is_required(tmp_path: Path) -> None:
    app, _ = await _api(tmp_path, tenants=("a", "b"), multitenancy=True)
    client = app.test_client()
    path = f"/api/traces/{TRACE_B.hex()}"
    missing = await client.get(path)
    assert missing.status_code == 401 and b"no org id" in await missing.get_data()
    for org in ("a", "a|b", " b | zzz "):
        got = await client.get(path, headers={"X-Scope-OrgID": org, **PROTOBUF})
        assert got.status_code == 200, org
        # a|b: the same spans in both tenants' blocks, merged once
        assert len(_span_ids(TracesData.FromString(await got.get_data()))) == 3, org
    assert (await client.get(path, headers={"X-Scope-OrgID": "zzz"})).status_code == 404
    bad = await client.get(path, headers={"X-Scope-OrgID": "../etc"})
    assert bad.status_code == 400 and await bad.get_data()


async def test_status_routes_and_every_error_answer_in_plain_text(tmp_path: Path) -> None:
    app, service = await _api(tmp_path)
    client = app.test_client()
    ready = await client.get("/ready")
    assert ready.status_code == 200 and await ready.get_data() == b"ready\n"
    service.problem = "live-store: replaying the WAL"
    ready = await client.get("/ready")
    assert ready.status_code == 503 and await ready.get_data() == b"live-store: replaying the WAL\n"
    states = await client.get("/api/status/services")
    assert await states.get_data() == b"distributor: Running\nlive-store: Starting\n"
    info = json.loads(await (await client.get("/api/status/buildinfo")).get_data())
    assert info["version"] and info["revision"].startswith("tempo-lite-")
    metrics = await client.get("/metrics")
    assert metrics.status_code == 200 and service.gauge_refreshes == 1
    assert (await client.get("/api/echo")).status_code == 200
    for method, path, status in (("GET", "/nope", 404), ("POST", "/api/echo", 405), ("DELETE", "/api/search", 405)):
        got = await client.open(path, method=method)
        assert got.status_code == status and got.content_type.startswith("text/plain"), path
        assert (await got.get_data()).decode().startswith(str(status)), path
    assert await (await client.get("/nope")).get_data() == b"404 page not found\n"

"""The Grafana Tempo data source's contract: one test per call it makes (path, parameters, headers, Accept),
each response parsed strictly against Tempo's protobuf messages (no unknown fields) or their JSON form
(`json_format.Parse` refusing unknown keys), over data that sits in the live-store only, in the
live-store and in blocks with every trace split across two blocks, and in the split blocks only.

The calls are those of Grafana's `tempo` data source (browser and Go backend, docs/grafana.md lists
them). Spans come from the OpenTelemetry SDK: a `frontend` service calling a `backend` service, whose
halves of each trace are exported separately (so each trace is split when the halves are flushed apart).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import grpc
import httpx
import pytest
import trio
from conftest import Running, start_tempo, tempo_config_text
from google.protobuf import json_format
from google.protobuf.message import Message
from google.protobuf.unknown_fields import UnknownFieldSet
from opentelemetry import trace as trace_api
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client.parser import text_string_to_metric_families

from tempo_lite._gen import tempopb_pb2 as pb

pytestmark = pytest.mark.slow

S = 1_000_000_000
TRACES = 6
FORMS = ["live", "live and split blocks", "split blocks"]
TENANT = "grafana-org"


# --------------------------------------------------------------------------------------------- the data


def _provider(service: str) -> tuple[TracerProvider, InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service, "deployment.environment": "test"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return provider, memory


def make_spans(base_ns: int) -> tuple[list[ReadableSpan], list[ReadableSpan]]:
    """(frontend spans, backend spans): per trace a frontend SERVER root and CLIENT call, and the backend's
    SERVER span (child of the call) with an internal db span; every third trace fails in the backend."""
    front, front_mem = _provider("frontend")
    back, back_mem = _provider("backend")
    ft, bt = front.get_tracer("shop"), back.get_tracer("shop-backend")
    for t in range(TRACES):
        start = base_ns + t * 10 * S
        failed = t % 3 == 0
        root = ft.start_span("GET /checkout", kind=SpanKind.SERVER, start_time=start,
                             attributes={"http.method": "GET", "http.route": "/checkout", "http.status_code": 200})
        ctx = trace_api.set_span_in_context(root)
        call = ft.start_span("POST /pay", kind=SpanKind.CLIENT, context=ctx, start_time=start + 1_000_000,
                             attributes={"http.method": "POST", "peer.service": "backend"})
        remote = trace_api.set_span_in_context(trace_api.NonRecordingSpan(call.get_span_context()))
        server = bt.start_span("POST /pay", kind=SpanKind.SERVER, context=remote, start_time=start + 2_000_000,
                               attributes={"http.method": "POST", "http.status_code": 500 if failed else 200})
        db = bt.start_span("SELECT payments", kind=SpanKind.CLIENT,
                           context=trace_api.set_span_in_context(server), start_time=start + 3_000_000,
                           attributes={"db.system": "postgresql"})
        if failed:
            db.add_event("exception", {"exception.message": "deadlock"}, timestamp=start + 4_000_000)
            db.set_status(Status(StatusCode.ERROR, "deadlock"))
            server.set_status(Status(StatusCode.ERROR))
        db.end(start + 5_000_000 + t * 1_000_000)
        server.end(start + 7_000_000 + t * 1_000_000)
        call.end(start + 8_000_000 + t * 1_000_000)
        root.end(start + 10_000_000 + t * 1_000_000)
    front.shutdown()
    back.shutdown()
    return list(front_mem.get_finished_spans()), list(back_mem.get_finished_spans())


async def _export(tempo: Running, http: httpx.AsyncClient, spans: list[ReadableSpan], headers: dict) -> None:
    r = await http.post(tempo.url("otlp_http") + "/v1/traces", content=encode_spans(spans).SerializeToString(),
                        headers={"Content-Type": "application/x-protobuf", **headers})
    assert r.status_code == 200, r.text


async def _wait_live(tempo: Running, tenant: str, spans: int) -> None:
    with trio.fail_after(15):
        while tempo.tl.livestore.snapshot(tenant).num_spans < spans:
            await trio.sleep(0.02)


class Grafana:
    """What the data source knows: the URL, its custom headers (the tenant) and the time range shown."""

    def __init__(self, tempo: Running, http: httpx.AsyncClient, frontend: list, backend: list, base_ns: int,
                 multitenant: bool) -> None:
        self.tempo, self.http = tempo, http
        self.headers = {"X-Scope-OrgID": TENANT} if multitenant else {}
        self.metadata = (("x-scope-orgid", TENANT),) if multitenant else ()
        self.frontend, self.backend = frontend, backend
        self.trace_ids = sorted({s.context.trace_id for s in frontend})
        self.start_s = base_ns // S - 60
        self.end_s = base_ns // S + TRACES * 10 + 60

    async def get(self, path: str, params: dict | None = None, accept: str = "application/json") -> httpx.Response:
        return await self.http.get(self.tempo.url() + path, params=params,
                                   headers={"Accept": accept, **self.headers})

    def grpc_address(self) -> str:
        host, port = self.tempo.tl.listeners.addresses["http"]
        return f"{host}:{port}"


@pytest.fixture(params=FORMS)
async def grafana(request: pytest.FixtureRequest, nursery: trio.Nursery, tmp_path: Path,
                  http: httpx.AsyncClient) -> AsyncIterator[Grafana]:
    """tempo-lite (multitenancy on, metrics-generator on) holding the spans in the requested form."""
    form = request.param
    config = tempo_config_text(tmp_path, """
        multitenancy_enabled: true
        metrics_generator:
          enabled: true
          processors: [service-graphs, span-metrics]
          metrics_ingestion_time_range_slack: 15m   # the spans are ten minutes old
    """)
    tempo = await start_tempo(nursery, config)
    base_ns = (time.time_ns() // S - 600) * S
    frontend, backend = make_spans(base_ns)
    g = Grafana(tempo, http, frontend, backend, base_ns, multitenant=True)
    await _export(tempo, http, frontend, g.headers)
    if form != "live":
        await _wait_live(tempo, TENANT, len(frontend))
        assert await tempo.tl.blockbuilder.flush_all() == 1
    await _export(tempo, http, backend, g.headers)
    await _wait_live(tempo, TENANT, len(frontend) + len(backend))
    if form != "live":
        assert await tempo.tl.blockbuilder.flush_all() == 1  # each trace now split over two blocks
    if form == "split blocks":
        tempo.tl.livestore.complete_block_timeout = 0
        tempo.tl.livestore.expire()
        assert tempo.tl.livestore.snapshot(TENANT).num_spans == 0
    yield g
    await tempo.stop()


# --------------------------------------------------------------------------------------------- parsing


def strict_proto(message_type: type[Message], body: bytes) -> Message:
    msg = message_type.FromString(body)

    def check(m: Message, path: str) -> None:
        assert len(UnknownFieldSet(m)) == 0, f"unknown fields in {path}"
        for field, value in m.ListFields():
            if field.message_type is None:
                continue
            if field.message_type.GetOptions().map_entry:
                items = value.values() if field.message_type.fields_by_name["value"].message_type else []
                for v in items:
                    check(v, f"{path}.{field.name}")
            elif isinstance(value, Message):
                check(value, f"{path}.{field.name}")
            else:
                for i, v in enumerate(value):
                    check(v, f"{path}.{field.name}[{i}]")

    check(msg, message_type.__name__)
    return msg


def strict_json(message_type: type[Message], r: httpx.Response) -> Message:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json"), r.headers
    return json_format.Parse(r.text, message_type(), ignore_unknown_fields=False)


def stream(g: Grafana, method: str, request: Message, response_type: type[Message]) -> list[Message]:
    with grpc.insecure_channel(g.grpc_address()) as channel:
        call = channel.unary_stream(f"/tempopb.StreamingQuerier/{method}",
                                    request_serializer=type(request).SerializeToString,
                                    response_deserializer=lambda b: strict_proto(response_type, b))
        return list(call(request, metadata=g.metadata, timeout=20))


def _hex(trace_id: int) -> str:
    return f"{trace_id:032x}"


def _search_hex(trace_id: int) -> str:
    return f"{trace_id:x}"  # search results drop leading zeros (Tempo's TraceIDToHexString)


# --------------------------------------------------------------------------------------------- the calls


async def test_save_and_test_calls_echo(grafana: Grafana) -> None:
    r = await grafana.get("/api/echo", accept="*/*")
    assert (r.status_code, r.text) == (200, "echo\n")


async def test_buildinfo_reports_a_version_that_turns_streaming_on(grafana: Grafana) -> None:
    r = await grafana.get("/api/status/buildinfo")
    info = r.json()
    assert set(info) == {"version", "revision", "branch", "buildUser", "buildDate", "goVersion"}
    assert all(isinstance(v, str) for v in info.values())
    major, minor, *_ = (int(x) for x in info["version"].split("-")[0].split("."))
    assert (major, minor) >= (2, 7)  # Grafana: streaming search >= 2.2, streaming metrics >= 2.7


async def test_trace_view_v2_protobuf_has_every_span_of_the_split_trace(grafana: Grafana) -> None:
    want = {}
    for s in grafana.frontend + grafana.backend:
        want.setdefault(s.context.trace_id, set()).add(s.context.span_id.to_bytes(8, "big"))
    for trace_id in grafana.trace_ids:
        for params in (None, {"start": grafana.start_s, "end": grafana.end_s}):  # with "time shift" on
            r = await grafana.get(f"/api/v2/traces/{_hex(trace_id)}", params, accept="application/protobuf")
            assert r.status_code == 200, r.text
            msg = strict_proto(pb.TraceByIDResponse, r.content)
            assert msg.status == pb.COMPLETE and not msg.message
            trace = strict_proto(TracesData, msg.trace)  # tempopb.Trace: OTLP ResourceSpans as field 1
            got = {sp.span_id for rs in trace.resource_spans for ss in rs.scope_spans for sp in ss.spans}
            assert got == want[trace_id]
            services = {kv.value.string_value for rs in trace.resource_spans for kv in rs.resource.attributes
                        if kv.key == "service.name"}
            assert services == {"frontend", "backend"}


async def test_trace_view_unknown_id_is_404_on_v2_then_v1(grafana: Grafana) -> None:
    for trace_id in ("0", "abc", "f" * 32):
        for path in ("/api/v2/traces/", "/api/traces/"):
            r = await grafana.get(path + trace_id, accept="application/protobuf")
            assert r.status_code == 404, (path, trace_id, r.text)


async def test_trace_view_v1_protobuf_fallback(grafana: Grafana) -> None:
    trace_id = grafana.trace_ids[0]
    r = await grafana.get(f"/api/traces/{_hex(trace_id)}", accept="application/protobuf")
    msg = strict_proto(TracesData, r.content)  # tempopb.Trace
    assert sum(len(ss.spans) for rs in msg.resource_spans for ss in rs.scope_spans) == 4


async def test_traceql_search_from_the_browser(grafana: Grafana) -> None:
    params = {"q": '{ resource.service.name = "backend" && status = error }', "limit": 20, "spss": 3,
              "start": grafana.start_s, "end": grafana.end_s}
    msg = strict_json(pb.SearchResponse, await grafana.get("/api/search", params))
    failed = {_search_hex(t) for i, t in enumerate(sorted(grafana.trace_ids, key=_start_of(grafana))) if i % 3 == 0}
    assert {t.traceID for t in msg.traces} == failed
    for t in msg.traces:
        assert t.rootServiceName == "frontend" and t.rootTraceName == "GET /checkout"
        assert t.spanSet == t.spanSets[0] and t.spanSets[0].matched == 2
        assert len(t.spanSets[0].spans) == 2
        assert t.serviceStats["backend"].errorCount == 2 and t.serviceStats["frontend"].spanCount == 2
    starts = [t.startTimeUnixNano for t in msg.traces]
    assert starts == sorted(starts, reverse=True)
    # The search form's "{}" with a limit, as the data source's test does when streaming is on.
    msg = strict_json(pb.SearchResponse, await grafana.get("/api/search", {"q": "{}", "limit": 1, "spss": 3,
                                                                          "start": grafana.start_s,
                                                                          "end": grafana.end_s}))
    assert len(msg.traces) == 1


def _start_of(g: Grafana):  # noqa: ANN202
    starts = {s.context.trace_id: s.start_time for s in g.frontend if s.parent is None}
    return lambda t: starts[t]


async def test_streaming_search(grafana: Grafana) -> None:
    req = pb.SearchRequest(Query='{ span.http.route = "/checkout" }', Limit=20, SpansPerSpanSet=3,
                           start=grafana.start_s, end=grafana.end_s)
    msgs = await trio.to_thread.run_sync(stream, grafana, "Search", req, pb.SearchResponse)
    found = {t.traceID for m in msgs for t in m.traces}
    assert found == {_search_hex(t) for t in grafana.trace_ids}


async def test_autocomplete_tags_v2(grafana: Grafana) -> None:
    for params in ({"limit": 5000}, {"limit": 5000, "start": grafana.start_s, "end": grafana.end_s}):
        msg = strict_json(pb.SearchTagsV2Response, await grafana.get("/api/v2/search/tags", params))
        scopes = {s.name: set(s.tags) for s in msg.scopes}
        assert {"service.name", "deployment.environment"} <= scopes["resource"]
        assert {"http.method", "http.route", "http.status_code", "db.system", "peer.service"} <= scopes["span"]
        assert {"duration", "name", "status", "kind", "rootServiceName", "event:name"} <= scopes["intrinsic"]
        assert "exception.message" in scopes.get("event", set())


async def test_autocomplete_tags_v1_fallback(grafana: Grafana) -> None:
    msg = strict_json(pb.SearchTagsResponse, await grafana.get("/api/search/tags"))
    assert {"service.name", "http.method", "db.system"} <= set(msg.tagNames)
    assert list(msg.tagNames) == sorted(msg.tagNames)


async def test_autocomplete_tags_streaming(grafana: Grafana) -> None:
    streamed = await trio.to_thread.run_sync(stream, grafana, "SearchTagsV2", pb.SearchTagsRequest(scope="span"),
                                             pb.SearchTagsV2Response)
    assert "http.route" in {t for m in streamed for s in m.scopes for t in s.tags}


async def test_autocomplete_tag_values_v2_with_double_encoded_tag(grafana: Grafana) -> None:
    tag = quote(quote("resource.service.name", safe=""), safe="")  # encodeURIComponent twice
    msg = strict_json(pb.SearchTagValuesV2Response, await grafana.get(
        f"/api/v2/search/tag/{tag}/values", {"limit": 5000, "q": '{ span.http.method = "POST" }'}))
    assert {(v.type, v.value) for v in msg.tagValues} == {("string", "frontend"), ("string", "backend")}
    msg = strict_json(pb.SearchTagValuesV2Response, await grafana.get(
        "/api/v2/search/tag/span.http.status_code/values", {"limit": 5000, "q": "{}",
                                                            "start": grafana.start_s, "end": grafana.end_s}))
    assert {(v.type, v.value) for v in msg.tagValues} == {("int", "200"), ("int", "500")}
    msg = strict_json(pb.SearchTagValuesV2Response, await grafana.get("/api/v2/search/tag/status/values"))
    assert {v.value for v in msg.tagValues} == {"ok", "error", "unset"}


async def test_autocomplete_tag_values_v1_fallback(grafana: Grafana) -> None:
    msg = strict_json(pb.SearchTagValuesResponse, await grafana.get("/api/search/tag/db.system/values"))
    assert list(msg.tagValues) == ["postgresql"]


async def test_autocomplete_tag_values_streaming(grafana: Grafana) -> None:
    streamed = await trio.to_thread.run_sync(
        stream, grafana, "SearchTagValuesV2", pb.SearchTagValuesRequest(tagName="span.db.system"),
        pb.SearchTagValuesV2Response)
    assert {v.value for m in streamed for v in m.tagValues} == {"postgresql"}


def _counts(msg: pb.QueryRangeResponse) -> dict[str, float]:
    return {s.labels[0].value.string_value: sum(x.value for x in s.samples) for s in msg.series}


async def test_metrics_panel_query_range_json(grafana: Grafana) -> None:
    params = {"q": "{ } | count_over_time() by (resource.service.name)", "start": grafana.start_s,
              "end": grafana.end_s, "step": "30s", "exemplars": 10}
    msg = strict_json(pb.QueryRangeResponse, await grafana.get("/api/metrics/query_range", params))
    assert _counts(msg) == {"frontend": 2 * TRACES, "backend": 2 * TRACES}
    exemplars = [e for s in msg.series for e in s.exemplars]
    assert exemplars and all("trace:id" in {lab.key for lab in e.labels} for e in exemplars)
    assert all(e.value > 0 for e in exemplars)  # the interval's sample, not NaN
    # Attribute-free queries over traces that sit in several places (once a 500 with an HTML page).
    for q in ("{ } | rate()", "{ status = error } | rate() by (resource.service.name)",
              "{ } | histogram_over_time(duration)", "{ } | quantile_over_time(duration, .5, .99)"):
        msg = strict_json(pb.QueryRangeResponse, await grafana.get("/api/metrics/query_range", {**params, "q": q}))
        assert msg.series, q
    msg = strict_json(pb.QueryRangeResponse, await grafana.get("/api/metrics/query_range", {
        **params, "q": "{ status = error } | count_over_time() by (resource.service.name)"}))
    assert _counts(msg) == {"backend": 2 * (TRACES // 3)}


async def test_metrics_panel_instant_json(grafana: Grafana) -> None:
    msg = strict_json(pb.QueryInstantResponse, await grafana.get("/api/metrics/query", {
        "q": "{ kind = server } | count_over_time() by (resource.service.name)",
        "start": grafana.start_s, "end": grafana.end_s}))
    assert {s.labels[0].value.string_value: s.value for s in msg.series} == {"frontend": TRACES, "backend": TRACES}


async def test_streaming_metrics_range(grafana: Grafana) -> None:
    q = "{ } | count_over_time() by (resource.service.name)"
    req = pb.QueryRangeRequest(query=q, start=grafana.start_s * S, end=grafana.end_s * S, step=30 * S, exemplars=5)
    msgs = await trio.to_thread.run_sync(stream, grafana, "MetricsQueryRange", req, pb.QueryRangeResponse)
    assert _counts(msgs[-1]) == {"frontend": 2 * TRACES, "backend": 2 * TRACES}


async def test_streaming_metrics_instant(grafana: Grafana) -> None:
    q = "{ } | count_over_time() by (resource.service.name)"
    ireq = pb.QueryInstantRequest(query=q, start=grafana.start_s * S, end=grafana.end_s * S)
    msgs = await trio.to_thread.run_sync(stream, grafana, "MetricsQueryInstant", ireq, pb.QueryInstantResponse)
    assert {s.labels[0].value.string_value: s.value for s in msgs[-1].series} == {
        "frontend": 2 * TRACES, "backend": 2 * TRACES}


async def test_tenant_header_is_required_and_scopes_every_call(grafana: Grafana) -> None:
    r = await grafana.http.get(grafana.tempo.url() + "/api/search", params={"q": "{}"})
    assert (r.status_code, r.text) == (401, "no org id\n")
    other = await grafana.http.get(grafana.tempo.url() + f"/api/v2/traces/{_hex(grafana.trace_ids[0])}",
                                   headers={"X-Scope-OrgID": "someone-else", "Accept": "application/protobuf"})
    assert other.status_code == 404


async def test_service_graph_and_apm_table_series_for_the_prometheus_data_source(grafana: Grafana) -> None:
    """Grafana draws the service graph and APM table from the generator's series (scraped from /metrics)."""
    with trio.fail_after(15):
        while True:
            r = await grafana.get("/metrics", accept="text/plain")
            families = {f.name: f for f in text_string_to_metric_families(r.text)}
            if "traces_service_graph_request" in families:
                break
            await trio.sleep(0.05)
    edges = {(s.labels["client"], s.labels["server"]): s.value
             for s in families["traces_service_graph_request"].samples if s.name.endswith("_total")}
    assert edges[("frontend", "backend")] == TRACES
    failed = {(s.labels["client"], s.labels["server"]): s.value
              for s in families["traces_service_graph_request_failed"].samples if s.name.endswith("_total")}
    assert failed[("frontend", "backend")] == len(range(0, TRACES, 3))  # every third trace fails
    assert any(s.name == "traces_service_graph_request_server_seconds_bucket"
               for s in families["traces_service_graph_request_server_seconds"].samples)
    calls = {(s.labels["service"], s.labels["span_name"], s.labels["span_kind"], s.labels["status_code"]): s.value
             for s in families["traces_spanmetrics_calls"].samples if s.name.endswith("_total")}
    assert calls[("backend", "POST /pay", "SPAN_KIND_SERVER", "STATUS_CODE_ERROR")] == 2
    assert any(s.name == "traces_spanmetrics_latency_bucket" for s in families["traces_spanmetrics_latency"].samples)


def test_strict_parsers_refuse_unknown_fields() -> None:
    """The checks above mean something: a field Tempo's messages lack fails them."""
    trace = pb.TraceSearchMetadata(traceID="1").SerializeToString()
    strict_proto(pb.SearchResponse, b"\x0a" + bytes([len(trace)]) + trace)
    trace += b"\xc0\x3e\x01"  # field 1000, a varint: in no Tempo message
    with pytest.raises(AssertionError, match=r"unknown fields in SearchResponse.traces\[0\]"):
        strict_proto(pb.SearchResponse, b"\x0a" + bytes([len(trace)]) + trace)
    doc = httpx.Response(200, json={"traces": [], "extra": 1}, headers={"content-type": "application/json"})
    with pytest.raises(json_format.ParseError):
        strict_json(pb.SearchResponse, doc)
    assert json.loads(doc.text)["extra"] == 1

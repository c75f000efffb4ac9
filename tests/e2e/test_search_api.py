"""Fixture A ingested over OTLP/HTTP: every conformance case through /api/search and the tag-value API,
answered from the live-store, then again from a block; event, link and unscoped attributes in returned
spans for spans sent by the OpenTelemetry SDK."""

from __future__ import annotations

import time

import httpx
import pytest
import trio
from conformance import FIXTURE_CASES, requires
from conftest import Running
from google.protobuf import json_format
from opentelemetry import trace as trace_api
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource as SdkResource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from traceql_fixtures import (
    TRACE_ID_A,
    TRACE_ID_A_HEX,
    expected_span_id,
    fixture_a_with_filler,
    load_cases,
    substitute,
)

from tempo_lite._gen import tempopb_pb2 as pb

ALL = load_cases()
CASES = [c for c in ALL.get("cases_fixture_A", []) if not (c.get("tempo_quirk") or c.get("not_representable_via_otlp"))]
TAG_VALUE_CASES = ALL.get("tag_value_cases_fixture_A", [])


async def ingest_fixture_a(tempo: Running, http: httpx.AsyncClient) -> None:
    body = ExportTraceServiceRequest(resource_spans=fixture_a_with_filler().resource_spans).SerializeToString()
    r = await http.post(tempo.url("otlp_http") + "/v1/traces", content=body,
                        headers={"Content-Type": "application/x-protobuf"})
    assert r.status_code == 200, r.text
    with trio.fail_after(10):
        while (await http.get(f"{tempo.url()}/api/traces/{TRACE_ID_A.hex()}")).status_code != 200:
            await trio.sleep(0.02)


def _value(v: dict) -> object:
    ((typ, val),) = v.items()
    return int(val) if typ == "intValue" else val


def _canon(items) -> tuple:  # noqa: ANN001 - a set-like of comparable-by-repr items
    return tuple(sorted(items, key=repr))


def _got_spansets(trace: dict) -> tuple:
    out = []
    for ss in trace.get("spanSets", []):
        spans = _canon(
            (sp["spanID"], sp.get("name"), _canon((a["key"], _value(a["value"])) for a in sp.get("attributes", [])))
            for sp in ss.get("spans", [])
        )
        attrs = _canon((a["key"], _value(a["value"])) for a in ss.get("attributes", []))
        out.append((spans, ss.get("matched", 0), attrs))
    return _canon(out)


def _expected_spansets(case: dict) -> tuple:
    out = []
    for ss in case["expected_spansets"]:
        spans = _canon(
            (expected_span_id(sp["spanID"]), sp.get("name"),
             _canon((k, _value(v) if isinstance(v, dict) else v) for k, v in (sp.get("attributes") or {}).items()))
            for sp in ss["spans"]
        )
        attrs = _canon((k, _value(v)) for k, v in (ss.get("attributes") or {}).items())
        out.append((spans, ss["matched"], attrs))
    return _canon(out)


async def check_cases(tempo: Running, http: httpx.AsyncClient, where: str) -> list[str]:
    failures = []
    for case in CASES:
        window = case.get("legacy_search_params") or {}
        params = {"q": substitute(case["query"]), "start": window.get("start", 1000),
                  "end": window.get("end", 1001), "limit": 20, "spss": 100}
        r = await http.get(tempo.url() + "/api/search", params=params)
        if r.status_code != 200:
            failures.append(f"[{where}] {case['query']}: HTTP {r.status_code} {r.text}")
            continue
        traces = r.json().get("traces", [])
        found = [t for t in traces if t["traceID"] == TRACE_ID_A_HEX]
        if (case["expect"] == "match") != bool(found):
            failures.append(f"[{where}] {case['query']}: expected {case['expect']}, got {len(found)} result(s)")
            continue
        if found:
            t = found[0]
            assert t["rootServiceName"] == "RootService" and t["rootTraceName"] == "RootSpan"
            assert t["startTimeUnixNano"] == "1000000000000" and t["durationMs"] == 2000
            assert t["spanSet"] == t["spanSets"][0]
            if "expected_spansets" in case and _got_spansets(t) != _expected_spansets(case):
                failures.append(f"[{where}] {case['query']}: spansets {_got_spansets(t)} != {_expected_spansets(case)}")
        if "tags" in window or "minDuration" in window:
            legacy = {"start": 1000, "end": 1001}
            keys = ("tags", "minDuration", "maxDuration", "start", "end")
            legacy.update((k, v) for k, v in window.items() if k in keys)
            r = await http.get(tempo.url() + "/api/search", params=legacy)
            got = any(t["traceID"] == TRACE_ID_A_HEX for t in r.json().get("traces", []))
            if got != (case["expect"] == "match"):
                failures.append(f"[{where}] legacy {legacy}: expected {case['expect']}")
    for case in TAG_VALUE_CASES:
        tag = case["tag"]
        r = await http.get(f"{tempo.url()}/api/v2/search/tag/{tag}/values",
                           params={"q": case["q"], "start": 1000, "end": 1001})
        got = {(v["type"], v["value"]) for v in r.json().get("tagValues", [])}
        want = {(v["type"], v["value"]) for v in case["expected_values"]}
        if got != want:
            failures.append(f"[{where}] tag values {tag} q={case['q']}: {got} != {want}")
    return failures


@requires(FIXTURE_CASES)
async def test_fixture_a_cases_over_http_live_then_block(tempo: Running, http: httpx.AsyncClient) -> None:
    await ingest_fixture_a(tempo, http)
    failures = await check_cases(tempo, http, "live")
    assert await tempo.tl.blockbuilder.flush_all() == 1
    tempo.tl.livestore.complete_block_timeout = 0
    tempo.tl.livestore.expire()
    assert tempo.tl.livestore.snapshot("single-tenant").num_spans == 0
    failures += await check_cases(tempo, http, "block")
    assert not failures, "\n".join(failures)


async def test_search_protobuf_and_parameter_errors(tempo: Running, http: httpx.AsyncClient) -> None:
    await ingest_fixture_a(tempo, http)
    base = tempo.url() + "/api/search"
    r = await http.get(base, params={"q": "{ }", "start": 1000, "end": 1001},
                       headers={"Accept": "application/protobuf"})
    assert r.headers["content-type"] == "application/protobuf"
    msg = pb.SearchResponse.FromString(r.content)
    assert [t.traceID for t in msg.traces] == [TRACE_ID_A_HEX]
    assert json_format.MessageToDict(msg)["traces"][0]["spanSets"][0]["matched"] == 4
    # No start/end: only recent (live) data, as Tempo does.
    assert len((await http.get(base, params={"q": "{ }"})).json()["traces"]) == 2
    for params, fragment in [
        ({"q": "{ .a = }"}, "parse error at line 1, col"),
        ({"q": "{ 1 = \"a\" }"}, ""),
        ({"q": "{ } | rate()"}, "metrics"),
        ({"q": "{ }", "tags": "a=b"}, "can't specify tags and q"),
        ({"q": "{ }", "limit": "0"}, "limit"),
        ({"q": "{ }", "spss": "1000"}, "spss"),
        ({"q": "{ }", "start": "10", "end": "5"}, "start must be before end"),
        ({"q": "{ }", "start": "abc", "end": "5"}, "start"),
        ({"tags": "a=b a=c"}, "duplicate"),
        ({"minDuration": "5x"}, "minDuration"),
    ]:
        r = await http.get(base, params=params)
        assert r.status_code == 400, (params, r.text)
        assert fragment in r.text
    # Most recent first and limit.
    r = await http.get(base, params={"q": "{ } with(most_recent=true)", "limit": 1, "start": 1000, "end": 1001})
    assert len(r.json()["traces"]) == 1


async def test_tag_names_v1_v2(tempo: Running, http: httpx.AsyncClient) -> None:
    await ingest_fixture_a(tempo, http)
    r = await http.get(tempo.url() + "/api/search/tags")
    names = r.json()["tagNames"]
    assert "service.name" in names and "http.method" in names and names == sorted(names)
    assert "duration" not in names
    r = await http.get(tempo.url() + "/api/v2/search/tags")
    scopes = {s["name"]: s["tags"] for s in r.json()["scopes"]}
    assert "service.name" in scopes["resource"] and "http.status_code" in scopes["span"]
    assert "trace:id" in scopes["intrinsic"] and "exception.message" in scopes["event"]
    assert "relation" in scopes["link"] and "scope-attr-str" in scopes["instrumentation"]
    r = await http.get(tempo.url() + "/api/v2/search/tags", params={"scope": "span",
                                                                     "q": '{ resource.service.name = "RootService" }'})
    (span_scope,) = r.json()["scopes"]
    assert "parent" in span_scope["tags"] and "child" not in span_scope["tags"]
    assert (await http.get(tempo.url() + "/api/search/tags", params={"scope": "bogus"})).status_code == 400
    r = await http.get(tempo.url() + "/api/search/tag/service.name/values")
    assert r.json()["tagValues"] == sorted(["BrokenService", "MyService", "RootService", "Service3", "test-service"])
    r = await http.get(tempo.url() + "/api/v2/search/tag/service.name/values")
    assert r.status_code == 400 and "valid tagName" in r.text
    # Grafana double-encodes: span."attr with space" style names survive.
    r = await http.get(tempo.url() + "/api/v2/search/tag/resource.service.name/values",
                       headers={"Accept": "application/protobuf"})
    values = pb.SearchTagValuesV2Response.FromString(r.content).tagValues
    assert {(v.type, v.value) for v in values} >= {("string", "RootService")}


def test_query_over_128_kib_is_refused() -> None:
    import pytest

    from tempo_lite.errors import InvalidRequest
    from tempo_lite.frontend.params import parse_search

    with pytest.raises(InvalidRequest, match="larger than"):
        parse_search({"q": "{ " + "true && " * 20000 + "true }"}, default_limit=20, max_limit=100,
                     max_spss=100, max_duration_s=3600)


Shown = list[list[tuple[str, object]]]


async def _search_spans(tempo: Running, http: httpx.AsyncClient, q: str, window: dict) -> Shown:
    r = await http.get(tempo.url() + "/api/search", params={"q": q, "spss": 10, **window})
    assert r.status_code == 200, r.text
    return [sorted((a["key"], _value(a["value"])) for a in sp.get("attributes", []))
            for t in r.json().get("traces", []) for ss in t["spanSets"] for sp in ss["spans"]]


@pytest.mark.slow
async def test_event_and_link_attributes_in_returned_spans_live_then_block(
    tempo: Running, http: httpx.AsyncClient
) -> None:
    provider = TracerProvider(resource=SdkResource.create({"service.name": "shop", "tier": "resource"}))
    exporter = OTLPSpanExporter(endpoint=tempo.url("otlp_http") + "/v1/traces")
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    other = trace_api.SpanContext(0x9 << 64, 0x7, is_remote=True)
    link = trace_api.Link(other, {"link.kind": "follows"})

    def emit() -> None:
        with tracer.start_as_current_span("pay", attributes={"tier": "span"}, links=[link]) as span:
            for etype in ("IOError", "ValueError", "IOError"):
                span.add_event("exception", {"exception.type": etype, "only.event": "yes"})
        provider.shutdown()

    now = int(time.time())
    await trio.to_thread.run_sync(emit)
    with trio.fail_after(10):
        while tempo.tl.livestore.snapshot("single-tenant").num_spans < 1:
            await trio.sleep(0.02)
    window = {"start": now - 60, "end": now + 60}
    for where in ("live", "block"):
        if where == "block":
            assert await tempo.tl.blockbuilder.flush_all() == 1
            tempo.tl.livestore.complete_block_timeout = 0
            tempo.tl.livestore.expire()
            assert tempo.tl.livestore.snapshot("single-tenant").num_spans == 0
        got = await _search_spans(tempo, http, '{ event.exception.type = "ValueError" }', window)
        assert got == [[("exception.type", "ValueError")]], where
        q = '{ name = "pay" } | select(event.exception.type, link.link.kind)'
        got = await _search_spans(tempo, http, q, window)
        assert got == [[("exception.type", "IOError"), ("link.kind", "follows")]], where
        # Unscoped: span and resource values only; each value that passes is shown under the bare name.
        assert await _search_spans(tempo, http, '{ .only.event = "yes" }', window) == [], where
        assert await _search_spans(tempo, http, '{ .tier = "resource" }', window) == [[("tier", "resource")]], where
        got = await _search_spans(tempo, http, "{ .tier != nil }", window)
        assert got == [[("tier", "resource"), ("tier", "span")]], where

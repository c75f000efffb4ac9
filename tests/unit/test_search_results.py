"""Search responses and legacy tag search built from span tables (fixture A); tag names and values: test_tags.py."""

from __future__ import annotations

import json

import pytest
from conformance import FIXTURE_CASES, params
from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData
from traceql_fixtures import (
    TRACE_ID_A,
    TRACE_ID_A_HEX,
    fixture_a,
    fixture_a_with_filler,
    load_cases,
)

from tempo_lite import spantable
from tempo_lite._gen import tempopb_pb2 as pb
from tempo_lite.querier import legacy_search, search_json, search_pb
from tempo_lite.querier.search import SearchRequest, matcher_for, parse_search_query
from tempo_lite.traceql import parse
from tempo_lite.traceql.engine import evaluate

ALL_CASES = load_cases()
LEGACY_CASES = [c for c in ALL_CASES.get("cases_fixture_A", []) if "legacy_search_params" in c]


def _with_filler() -> spantable.SpanTable:
    return spantable.flatten(fixture_a_with_filler().resource_spans)


LIVE = spantable.flatten(fixture_a().resource_spans)
BLOCK = spantable.dedicate(spantable.with_nested_sets(spantable.sort_by_trace(_with_filler())), ["span-dedicated.01"])


def test_go_duration_rendering() -> None:
    assert search_pb.render_go_duration(1_500_000_000) == "1.5s"
    assert search_pb.render_go_duration(100_000_000) == "100ms"
    assert search_pb.render_go_duration(3_600_000_000_000) == "1h0m0s"
    assert search_pb.render_go_duration(0) == "0s"


def test_search_response_fields_follow_tempo_jsonpb() -> None:
    matches = evaluate("{ .parent } >> { .child } | select(name, status)", LIVE, spss=3)
    resp = search_pb.search_response(search_pb.search_results(matches, LIVE), limit=20)
    doc = MessageToDict(resp)
    (trace,) = doc["traces"]
    assert trace["traceID"] == TRACE_ID_A_HEX and not trace["traceID"].startswith("0")
    assert trace["rootServiceName"] == "RootService"
    assert trace["rootTraceName"] == "RootSpan"
    assert trace["startTimeUnixNano"] == "1000000000000"
    assert trace["durationMs"] == 2000
    assert trace["serviceStats"]["MyService"] == {"spanCount": 1, "errorCount": 1}
    assert trace["spanSet"] == trace["spanSets"][0]
    (span,) = trace["spanSets"][0]["spans"]
    assert span["spanID"] == "0000000000010203"
    assert span["name"] == "MySpan"
    assert span["durationNanos"] == "1000000000"
    attrs = {a["key"]: a["value"] for a in span["attributes"]}
    assert attrs == {"child": {"boolValue": True}, "status": {"stringValue": "error"}}
    assert trace["spanSets"][0]["matched"] == 1


def test_spanset_attributes_and_span_keys_without_scope() -> None:
    matches = evaluate("{} | by(resource.service.name) | count() = 1", LIVE, spss=3)
    doc = MessageToDict(search_pb.search_response(search_pb.search_results(matches, LIVE)))
    sets = doc["traces"][0]["spanSets"]
    assert len(sets) == 4
    for ss in sets:
        keys = {a["key"] for a in ss["attributes"]}
        assert keys == {"by(resource.service.name)", "count()"}
        assert {a["key"] for a in ss["spans"][0]["attributes"]} == {"service.name"}
        assert "name" not in ss["spans"][0]


def test_results_sorted_newest_first_and_limited() -> None:
    table = _with_filler()
    matches = evaluate("{}", table, spss=1)
    got = search_pb.search_response(search_pb.search_results(matches, table), limit=1)
    assert [t.traceID for t in got.traces] == [TRACE_ID_A_HEX]
    both = search_pb.search_response(search_pb.search_results(matches, table), limit=5)
    starts = [t.startTimeUnixNano for t in both.traces]
    assert starts == sorted(starts, reverse=True) and len(starts) == 2


def test_merge_keeps_first_occurrence_of_a_trace() -> None:
    a = search_pb.search_results(evaluate("{ name = `MySpan` }", LIVE, spss=3), LIVE)
    b = search_pb.search_results(evaluate("{ name = `RootSpan` }", LIVE, spss=3), LIVE)
    merged = search_pb.merge_search_results(a, b)
    assert len(merged) == 1 and merged[0].spanSets[0].spans[0].name == "MySpan"


def test_root_not_yet_received() -> None:
    part = LIVE.take([0, 2])
    doc = MessageToDict(search_pb.search_response(search_pb.search_results(evaluate("{}", part, spss=3), part)))
    assert doc["traces"][0]["rootServiceName"] == "<root span not yet received>"
    assert "rootTraceName" not in doc["traces"][0]


@pytest.mark.parametrize(
    "case", params(FIXTURE_CASES, LEGACY_CASES, lambda i, c: f"{i}-{c['legacy_search_params']}")
)
def test_legacy_tag_search_fixture_a(case: dict) -> None:
    params = case["legacy_search_params"]
    tags = dict(kv.split("=", 1) for kv in params.get("tags", "").split()) if params.get("tags") else {}

    def ms(v: str | None) -> int:
        return int(v.removesuffix("ms")) if v else 0

    search = legacy_search.LegacySearch(
        tags=tags,
        min_duration_ms=ms(params.get("minDuration")),
        max_duration_ms=ms(params.get("maxDuration")),
        start=params.get("start", 0),
        end=params.get("end", 0),
    )
    for table in (LIVE, BLOCK):
        got = TRACE_ID_A in legacy_search.legacy_tag_search(table, search)
        assert got is (case["expect"] == "match")


def test_empty_results_serialize_as_empty_objects() -> None:
    assert MessageToDict(search_pb.search_response([])) == {}
    assert parse("{}").pipeline.stages
    empty = spantable.flatten(TracesData().resource_spans)
    assert legacy_search.legacy_tag_search(empty, legacy_search.LegacySearch({})) == []


def test_search_response_json_is_the_json_format_document() -> None:
    found = []
    for q in ["{ }", "{ span.foo = `Bar` } | select(span.http.status_code, resource.service.name)",
              "{ } | by(span.foo)", "{ status = error } | count() > 0", "{ duration > 0 } | avg(duration) > 0"]:
        found += matcher_for(SearchRequest(query=parse_search_query(q), legacy=None, start_ns=0, end_ns=0,
                                           limit=20, spss=3, live_only=False))(BLOCK)
    assert found
    stats = {"a": pb.ServiceStats(), "b": pb.ServiceStats(errorCount=2)}
    edge = pb.TraceSearchMetadata(traceID="1", serviceStats=stats)
    edge.spanSet.CopyFrom(pb.SpanSet())
    values = [pb.AnyValue(int_value=0), pb.AnyValue(bool_value=False), pb.AnyValue(double_value=float("nan")),
              pb.AnyValue(double_value=-float("inf")), pb.AnyValue(double_value=1e300), pb.AnyValue(string_value=""),
              pb.AnyValue(array_value=pb.ArrayValue()), pb.AnyValue(bytes_value=b"\x00\xff"), pb.AnyValue(),
              pb.AnyValue(array_value=pb.ArrayValue(values=[pb.AnyValue(int_value=-(2**63))]))]
    edge.spanSets.add(matched=0, attributes=[pb.KeyValue(key=f"k{i}", value=v) for i, v in enumerate(values)]
                      + [pb.KeyValue(key="no value")])
    resp = pb.SearchResponse(traces=[*found, edge], metrics=pb.SearchMetrics(inspectedBytes=5, totalBlocks=1))
    assert json.loads(search_json.search_response_json(resp)) == MessageToDict(resp)
    assert json.loads(search_json.search_response_json(pb.SearchResponse())) == {}


def test_search_stats_add_up_across_tenants_and_from_a_querier_answer() -> None:
    from tempo_lite.querier.search import SearchStats

    total = SearchStats(inspected_traces=1, inspected_bytes=10, failed_blocks=["a"])
    total.add(SearchStats(inspected_traces=2, inspected_spans=5, total_jobs=3, failed_blocks=["b"]))
    total.add(SearchStats.from_message(SearchStats(total_blocks=4, total_block_bytes=7, completed_jobs=2).message()))
    assert total == SearchStats(inspected_traces=3, inspected_spans=5, inspected_bytes=10, total_blocks=4,
                                completed_jobs=2, total_jobs=3, total_block_bytes=7, failed_blocks=["a", "b"])

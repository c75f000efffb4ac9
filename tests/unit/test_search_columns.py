"""Search results built column-wise (`evaluate_columns`, `result_columns`, `result_json`) give exactly the
answer of the per-trace path (one `TraceMatch` and one protobuf message per trace, rendered by
`search_json`): the same JSON document with fields in the same order on one table (only the order of
`serviceStats` map entries may differ: the per-trace path has them in protobuf map order), and the same
document over live-store and blocks with traces split across them, for every kind of pipeline,
spansets, shown attributes and limits."""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path

import pytest
from google.protobuf.json_format import MessageToDict
from test_metrics_sources import _data, _forms, _tempo
from test_search_pushdown import QUERIES as PUSHDOWN_QUERIES
from test_search_pushdown import SEC, _traces
from traceql_fixtures import fixture_a, fixture_a_with_filler

from tempo_lite import spantable
from tempo_lite._gen import tempopb_pb2 as pb
from tempo_lite.errors import InvalidRequest
from tempo_lite.querier.legacy_search import LegacySearch
from tempo_lite.querier.result_columns import ResultColumns, metrics_json
from tempo_lite.querier.search import SearchRequest, column_matcher_for, matcher_for, parse_search_query
from tempo_lite.querier.search_json import search_response_json
from tempo_lite.querier.search_pb import merge_search_results

EXTRA_QUERIES = [
    "{ }",
    "{ } | select(span.http.method, duration, status, kind, name, span.http.status_code)",
    '{ span.http.method = "POST" } && { status = error }',
    '{ span.http.method = "POST" } || { kind = client }',
    '{ .http.method = "GET" }',
    "{ } | by(span.http.method)",
    "{ kind = server } | count() > 1 | by(resource.service.name)",
    "{ duration > 0 } | avg(duration) > 0",
    "{ kind = server } | count() = 1",
    "{ } | count() > 2",
    "{ } ~ { }",
    "{ } > { }",
    "{ kind = server } > { name = \"db\" }",
    "{ name = \"db\" } ~ { kind = server }",
    '{ name = "db" } !< { kind = server }',
    '{ span.http.method = "PATCH" } | select(event.exception.type, link.only.link)',
]


def _old_body(req: SearchRequest, table: spantable.SpanTable) -> bytes:
    return search_response_json(pb.SearchResponse(traces=merge_search_results(matcher_for(req)(table))))


# Each query is parsed once for the module (a parsed Query is immutable); the tests run every query with
# several limits and span counts over several tables.
_parse = functools.cache(parse_search_query)


def _request(q: str | None, *, limit: int, spss: int, legacy: LegacySearch | None = None) -> SearchRequest:
    return SearchRequest(query=_parse(q) if q is not None else None, legacy=legacy, start_ns=0,
                         end_ns=0, limit=limit, spss=spss, live_only=False)


def _without_some_roots(table: spantable.SpanTable) -> spantable.SpanTable:
    """Every other root span dropped: those traces answer `<root span not yet received>`."""
    roots = [i for i, p in enumerate(table.spans.column("parent_span_id").to_pylist()) if not p]
    drop = set(roots[::2])
    keep = [i for i in range(table.num_spans) if i not in drop]
    return spantable.SpanTable(table.spans.take(keep), table.resources, dict(table.dedicated))


# 60 traces (235 spans): every query matches the same way as on 120 (none, a few, most, all), with
# array and int values of http.method, events, links and keys only some spans hold among them.
GENERATED = spantable.concat([_traces(seed=1, traces=60, base_ns=1_700_000_000 * SEC)])
TABLES = {
    "generated": GENERATED,
    "generated, some roots missing": _without_some_roots(GENERATED),
    "fixture A": spantable.flatten(fixture_a().resource_spans),
    "fixture A in a block": spantable.dedicate(spantable.with_nested_sets(spantable.sort_by_trace(
        spantable.flatten(fixture_a_with_filler().resource_spans))), ["span-dedicated.01"]),
}


@pytest.mark.parametrize("q", PUSHDOWN_QUERIES + EXTRA_QUERIES)
@pytest.mark.parametrize("table_name", list(TABLES))
def test_column_wise_results_are_the_per_trace_results(q: str, table_name: str) -> None:
    table = TABLES[table_name]
    for spss in (1, 3):
        for limit in (1000, 2):
            req = _request(q, limit=limit, spss=spss)
            got = column_matcher_for(req)(table).merged().json_body()
            _assert_same_document(got, _old_body(req, table), f"{q} spss={spss} limit={limit}")


class _Pairs(list):
    """A JSON object as its (key, value) pairs in document order."""


def _ordered_pairs(pairs: list[tuple[str, object]]) -> _Pairs:
    """serviceStats entries sorted (a map: the per-trace path has them in protobuf map order)."""
    return _Pairs((k, _Pairs(sorted(v)) if k == "serviceStats" and isinstance(v, _Pairs) else v) for k, v in pairs)


def _field_order(body: bytes) -> object:
    """The document with every object's keys in order (parsed once, the pairs kept by the JSON decoder)."""
    return json.loads(body, object_pairs_hook=_ordered_pairs)


def _assert_same_document(got: bytes, want: bytes, what: str) -> None:
    if got == want:  # the same bytes: the same document, fields in the same order
        return
    assert json.loads(got) == json.loads(want), what
    assert _field_order(got) == _field_order(want), what


def test_the_comparison_covers_spansets_attributes_and_many_traces() -> None:
    table = TABLES["generated"]
    doc = json.loads(column_matcher_for(_request(EXTRA_QUERIES[1], limit=1000, spss=3))(table).merged().json_body())
    assert len(doc["traces"]) == 60
    shown = [sp for t in doc["traces"] for ss in t["spanSets"] for sp in ss["spans"]]
    assert {kv["key"] for sp in shown for kv in sp["attributes"]} >= {"http.method", "status", "kind"}
    assert any("arrayValue" in kv["value"] for sp in shown for kv in sp["attributes"])
    rootless = column_matcher_for(_request("{ }", limit=1000, spss=1))(TABLES["generated, some roots missing"])
    assert b"<root span not yet received>" in rootless.json_body()
    grouped = json.loads(column_matcher_for(_request(EXTRA_QUERIES[5], limit=1000, spss=1))(table).json_body())
    assert any(len(t["spanSets"]) > 1 and t["spanSets"][1]["attributes"] for t in grouped["traces"])


@pytest.mark.parametrize("tags", [{}, {"http.method": "POS"}, {"service.name": "svc-1", "http.status_code": "404"},
                                  {"name": "db"}, {"status.code": "error"}, {"nothing": "x"}])
def test_legacy_tag_search_results_are_the_per_trace_results(tags: dict[str, str]) -> None:
    table = TABLES["generated"]
    req = _request(None, limit=1000, spss=3, legacy=LegacySearch(tags))
    _assert_same_document(column_matcher_for(req)(table).merged().json_body(), _old_body(req, table), str(tags))


def test_messages_and_metrics_are_the_protobuf_answer() -> None:
    table = TABLES["generated"]
    req = _request(EXTRA_QUERIES[1], limit=1000, spss=2)
    found = column_matcher_for(req)(table).merged()
    assert found.messages() == merge_search_results(matcher_for(req)(table))
    metrics = pb.SearchMetrics(inspectedTraces=3, inspectedBytes=2**40, totalBlocks=1, completedJobs=2, totalJobs=2)
    assert json.loads(metrics_json(metrics)) == MessageToDict(metrics)
    assert json.loads(found.json_body(metrics))["metrics"] == MessageToDict(metrics)
    assert ResultColumns.empty().json_body(pb.SearchMetrics()) == b'{"metrics":{}}'
    assert ResultColumns.empty().json_body() == b"{}"


def test_merge_keeps_the_first_result_of_a_trace_newest_first_and_cuts_at_the_limit() -> None:
    table = TABLES["generated"]
    a = column_matcher_for(_request('{ span.http.method = "POST" }', limit=1000, spss=1))(table)
    b = column_matcher_for(_request("{ kind = server }", limit=1000, spss=1))(table)
    got = ResultColumns.concat([a, b]).merged(7)
    old = merge_search_results(a.messages(), b.messages(), limit=7)
    assert got.messages() == old
    assert ResultColumns.concat([a, b]).distinct() == len(merge_search_results(a.messages(), b.messages()))


def test_one_sources_results_are_rendered_newest_first_so_merging_them_is_a_slice() -> None:
    table = TABLES["generated"]
    for q in ("{ }", '{ span.http.method = "POST" } || { kind = client }', "{ } | by(span.http.method)"):
        found = column_matcher_for(_request(q, limit=1000, spss=2))(table)
        assert found.in_order
        starts = found.table.column("start").to_pylist()
        assert starts == sorted(starts, reverse=True)
        unordered = ResultColumns(found.table)  # the same rows, merged the long way
        for limit in (None, 1, 5, len(found)):
            assert found.merged(limit).table.equals(unordered.merged(limit).table)
        assert found.kth_newest_start(4) == unordered.kth_newest_start(4)
        assert found.distinct() == unordered.distinct() == len(found)
        assert ResultColumns.concat([found, ResultColumns.empty()]) is found
        assert not ResultColumns.concat([found, found]).in_order
        assert ResultColumns.concat([found, found]).merged().table.equals(found.table)


def _sorted_doc(body: bytes) -> dict:
    """Traces by ID and each spanset's spans by span ID: sources hold a trace's rows in different orders
    (blocks sort them, assembled split traces concatenate sources), and spansets list rows in order."""
    doc = json.loads(body)
    traces = doc.get("traces", [])
    starts = [int(t["startTimeUnixNano"]) for t in traces]
    assert starts == sorted(starts, reverse=True), "newest first"
    for t in traces:
        for ss in [t.get("spanSet", {}), *t.get("spanSets", [])]:
            ss["spans"] = sorted(ss.get("spans", []), key=lambda sp: sp["spanID"])
    return {"traces": sorted(traces, key=lambda t: t["traceID"])}


QUERIES_SPLIT = [
    "{ }",
    '{ span.http.method = "POST" }',
    "{ kind = server } >> { status = error }",
    "{ } | count() > 3",
    '{ span.http.method = "GET" } && { status = error }',
    "{ status = error } | by(resource.service.name)",
    '{ event.level = "a" }',
    "{ traceDuration > 10ms }",
    "{ } ~ { }",
    "{ kind = server } > { }",
]


@pytest.mark.parametrize("q", QUERIES_SPLIT)
async def test_all_matches_over_live_store_and_blocks_equal_the_per_trace_path_on_whole_traces(
    tmp_path: Path, q: str
) -> None:
    forms = _forms(_data())
    whole = forms["live"][0]
    tls = {name: await _tempo(tmp_path, live, blocks, shared=True) for name, (live, blocks) in forms.items()}
    for spss in (1, 100):  # 1: matched counts and spanset attributes; 100: every span shown
        req = _request(q, limit=1000, spss=spss)
        reference = _sorted_doc(_old_body(req, whole))
        if spss == 1:
            for t in reference["traces"]:
                for ss in [t.get("spanSet", {}), *t.get("spanSets", [])]:
                    ss.pop("spans", None)
        assert reference["traces"], f"{q}: no match, the comparison would prove nothing"
        for name, tl in tls.items():
            found, stats = await tl.frontend.searcher.search_columns("t", req)
            got = _sorted_doc(found.json_body())
            if spss == 1:
                for t in got["traces"]:
                    for ss in [t.get("spanSet", {}), *t.get("spanSets", [])]:
                        assert len(ss.pop("spans", [])) == 1
            assert got == reference, f"{q}: {name} spss={spss}"
            assert not stats.failed_blocks


async def test_a_search_over_many_blocks_answers_newest_first_with_the_limit(tmp_path: Path) -> None:
    data = _data(seed=5, traces=60)
    tables = [spantable.flatten(list(data.resource_spans)[i::4]) for i in range(4)]
    tl = await _tempo(tmp_path, spantable.empty_span_table(), tables)
    whole = spantable.concat(tables)
    for limit in (1, 5, 1000):
        req = _request("{ } with (most_recent=true)", limit=limit, spss=1)
        found, _ = await tl.frontend.searcher.search_columns("t", req)
        reference = merge_search_results(matcher_for(req)(spantable.dedupe_spans(whole)), limit=limit)
        assert [t["startTimeUnixNano"] for t in json.loads(found.json_body()).get("traces", [])] == [
            str(t.startTimeUnixNano) for t in reference]
        if limit == 1000:
            assert sorted(found.table.column("id").to_pylist()) == sorted(t.traceID for t in reference)


async def test_a_search_over_many_blocks_holds_at_most_two_blocks_at_a_time(tmp_path: Path) -> None:
    data = _data(seed=9, traces=60)
    tables = [spantable.flatten(list(data.resource_spans)[i::6]) for i in range(6)]
    tl = await _tempo(tmp_path, spantable.empty_span_table(), tables)
    searcher = tl.frontend.searcher
    inner = searcher._block_job
    held = [0, 0]  # (now, most)

    async def counting_job(*args: object, **kwargs: object) -> None:
        held[0] += 1
        held[1] = max(held)
        try:
            await inner(*args, **kwargs)
        finally:
            held[0] -= 1

    searcher._block_job = counting_job
    req = _request("{ }", limit=1000, spss=1)
    found, stats = await searcher.search_columns("t", req)
    assert len(found) == 60 and not stats.failed_blocks
    assert held[1] == 2, "blocks are searched two at a time, each released before the next starts"


def test_a_repeated_search_query_is_parsed_once_and_a_bad_one_fails_every_time() -> None:
    q = '{ span.http.method = "POST" } | count() > 1'
    assert parse_search_query(q) is parse_search_query(q)
    assert parse_search_query(q) == parse_search_query.__wrapped__(q)
    for _ in range(2):
        with pytest.raises(InvalidRequest):
            parse_search_query("{ } | rate()")


@pytest.mark.parametrize("q", PUSHDOWN_QUERIES + EXTRA_QUERIES)
@pytest.mark.parametrize("table_name", list(TABLES))
def test_protobuf_results_built_column_wise_are_the_per_trace_messages(q: str, table_name: str) -> None:
    table = TABLES[table_name]
    for spss in (1, 3):
        for limit in (1000, 2):
            req = _request(q, limit=limit, spss=spss)
            found = column_matcher_for(dataclasses.replace(req, protobuf=True))(table).merged()
            assert found.protobuf or not len(found)
            want = pb.SearchResponse(traces=merge_search_results(matcher_for(req)(table)))
            assert pb.SearchResponse.FromString(found.protobuf_body()) == want, f"{q} spss={spss} limit={limit}"
            assert found.messages() == list(want.traces)


@pytest.mark.parametrize("tags", [{}, {"http.method": "POS"}, {"service.name": "svc-1", "http.status_code": "404"}])
def test_protobuf_legacy_results_and_the_metrics_field_are_the_protobuf_answer(tags: dict[str, str]) -> None:
    table = TABLES["generated"]
    req = _request(None, limit=1000, spss=3, legacy=LegacySearch(tags))
    found = column_matcher_for(dataclasses.replace(req, protobuf=True))(table).merged()
    metrics = pb.SearchMetrics(inspectedTraces=3, inspectedBytes=2**40, totalBlocks=1, completedJobs=2, totalJobs=2)
    want = pb.SearchResponse(traces=merge_search_results(matcher_for(req)(table)), metrics=metrics)
    assert pb.SearchResponse.FromString(found.protobuf_body(metrics)) == want
    # JSON rows (results that arrived as messages) give the same protobuf body.
    as_json = column_matcher_for(req)(table).merged()
    assert pb.SearchResponse.FromString(as_json.protobuf_body(metrics)) == want
    assert ResultColumns.empty().protobuf_body(metrics) == pb.SearchResponse(metrics=metrics).SerializeToString()
    with pytest.raises(ValueError):
        found.json_body()

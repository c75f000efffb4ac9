"""Tag names and tag values (querier/tags.py) built from span tables (fixture A), and over a querier's sources."""

from __future__ import annotations

import pytest
from conformance import FIXTURE_CASES, params
from google.protobuf.json_format import MessageToDict
from traceql_fixtures import fixture_a, fixture_a_with_filler, load_cases

from tempo_lite import spantable
from tempo_lite.querier import tags
from tempo_lite.traceql import parse_attribute, parse_lenient_filter

TAG_VALUE_CASES = load_cases().get("tag_value_cases_fixture_A", [])
LIVE = spantable.flatten(fixture_a().resource_spans)
BLOCK = spantable.dedicate(
    spantable.with_nested_sets(spantable.sort_by_trace(spantable.flatten(fixture_a_with_filler().resource_spans))),
    ["span-dedicated.01"],
)


@pytest.mark.parametrize("case", params(FIXTURE_CASES, TAG_VALUE_CASES, lambda i, c: f"{c['tag']}-{c['q']}"))
def test_tag_values_fixture_a(case: dict) -> None:
    ref = parse_attribute(case["tag"])
    q = parse_lenient_filter(case["q"])
    expected = {(v["type"], v["value"]) for v in case["expected_values"]}
    # Two sources (block + live) merged, as the querier does.
    halves = [BLOCK, LIVE]
    merged = tags.merge_tag_values(*(tags.tag_values_v2(t, ref, q) for t in halves))
    assert merged == expected
    doc = MessageToDict(tags.tag_values_v2_response(merged))
    assert {(v["type"], v["value"]) for v in doc.get("tagValues", [])} == expected


def test_tag_value_keyword_shortcuts_and_same_tag_shortcut() -> None:
    assert tags.tag_values_v2(LIVE, parse_attribute("status")) == {
        ("keyword", "ok"),
        ("keyword", "error"),
        ("keyword", "unset"),
    }
    assert len(tags.tag_values_v2(LIVE, parse_attribute("span:kind"))) == 6
    assert tags.tag_values_v2(LIVE, parse_attribute("duration")) == set()
    q = parse_lenient_filter('{ resource.service.name = "zzz" }')
    assert tags.tag_values_v2(LIVE, parse_attribute("resource.service.name"), q) == {("string", "zzz")}
    typed = tags.tag_values_v2(LIVE, parse_attribute(".http.status_code"))
    assert typed == {("int", "500")}


def test_tag_values_v1_strings_and_virtual_tags() -> None:
    assert tags.tag_values_v1(LIVE, "service.name") == {"MyService", "RootService", "Service3", "BrokenService"}
    assert tags.tag_values_v1(LIVE, "status.code") == {"unset", "ok", "error"}
    resp = MessageToDict(tags.tag_values_response(tags.tag_values_v1(LIVE, "http.status_code")))
    assert resp == {"tagValues": ["500"]}


def test_tag_names_v1_and_v2() -> None:
    names = tags.merge_tag_names(tags.tag_names(LIVE), tags.tag_names(BLOCK))
    v1 = tags.search_tags_response(names).tagNames
    assert list(v1) == sorted(v1) and "service.name" in v1 and "foo" in v1 and "duration" not in v1
    assert "span-dedicated.01" in tags.search_tags_response(tags.tag_names(BLOCK), "span").tagNames
    v2 = MessageToDict(tags.search_tags_v2_response(names))
    scopes = {s["name"]: s["tags"] for s in v2["scopes"]}
    assert "exception.message" in scopes["event"] and "relation" in scopes["link"]
    assert scopes["instrumentation"] == ["scope-attr-str"]
    assert "trace:id" in scopes["intrinsic"]
    only = tags.search_tags_response(names, "intrinsic").tagNames
    assert "rootServiceName" in only
    filtered = tags.tag_names(LIVE, parse_lenient_filter("{ resource.service.name = `Service3` }"))
    assert filtered["span"] == {"child2"} and filtered["resource"] == {"service.name"}
    with pytest.raises(ValueError):
        tags.search_tags_response(names, "bogus")


# --- over a querier's sources (querier/tag_source.py) ------------------------------------------------

VALUE_REFS = [
    "span.http.method", "span.http.status_code", "resource.service.name", ".http.method", ".service.name", "name",
    "status", "kind", "duration", "event.level", "event:name", "span:statusMessage", "span.no.such",
    "resource.no.such",
]
FILTERS = [None, "{ status = error }", '{ resource.service.name = "svc-1" }', '{ span.http.method = "POST" }',
           "{ span.http.method = `GET` && kind = server }"]


async def _sources(tmp_path):  # noqa: ANN001, ANN202
    from test_metrics_sources import TENANT, _data, _forms, _tempo

    data = _data(traces=60)
    whole = spantable.flatten(data.resource_spans)
    for name, (live, blocks) in _forms(data).items():
        yield name, TENANT, whole, await _tempo(tmp_path, live, blocks, shared=True)


async def test_tag_values_from_catalogues_dictionaries_and_slices_equal_evaluating_every_span(tmp_path) -> None:  # noqa: ANN001
    from tempo_lite.querier.search import SearchStats
    from tempo_lite.querier.tag_source import TagSource

    wants: dict[tuple[str, str | None], object] = {}  # every form holds the same spans: evaluated once
    async for name, tenant, whole, tl in _sources(tmp_path):
        source = TagSource(tl.frontend.searcher, chunk_rows=40)
        for tag in VALUE_REFS:
            ref = parse_attribute(tag)
            for text in FILTERS:
                q = parse_lenient_filter(text) if text else None
                if (tag, text) not in wants:
                    wants[tag, text] = tags.tag_values_v2(whole, ref, q)
                want = wants[tag, text]
                got = await source.values(tenant, 0, 0, ref, q, SearchStats())
                assert got == want, (name, tag, text)
                if text is None and tag in ("span.http.method", "resource.service.name", "name"):
                    assert want, f"{tag}: no values, the comparison would prove nothing"
                    # again, from the per-block cache
                    assert await source.values(tenant, 0, 0, ref, q, SearchStats()) == want


async def test_tag_names_from_catalogues_and_slices_equal_evaluating_every_span(tmp_path) -> None:  # noqa: ANN001
    from tempo_lite.querier.search import SearchStats
    from tempo_lite.querier.tag_source import TagSource

    async for name, tenant, whole, tl in _sources(tmp_path):
        source = TagSource(tl.frontend.searcher, chunk_rows=40)
        for text in (None, "{ status = error }", '{ resource.service.name = "svc-1" }'):
            q = parse_lenient_filter(text) if text else None
            want = tags.tag_names(whole, q)
            assert want["span"] and want["resource"]
            assert await source.names(tenant, 0, 0, q, SearchStats()) == want, (name, text)


async def test_an_unreadable_block_is_reported_and_the_others_answer(tmp_path) -> None:  # noqa: ANN001
    from test_metrics_sources import TENANT, _data, _tempo

    from tempo_lite.querier.search import SearchStats
    from tempo_lite.querier.tag_source import TagSource

    rs = list(_data(traces=60).resource_spans)
    evens, odds = spantable.flatten(rs[0::2]), spantable.flatten(rs[1::2])
    tl = await _tempo(tmp_path, spantable.empty_span_table(), [evens, odds])
    for name in ("data.parquet", "values.parquet"):  # the spans and the value catalogue
        (tmp_path / "blocks" / TENANT / "b1" / name).write_bytes(b"not parquet")
    source = TagSource(tl.frontend.searcher)
    for tag, text in (("span.http.method", None), ("resource.service.name", None), ("name", "{ status = error }")):
        ref, q = parse_attribute(tag), parse_lenient_filter(text) if text else None
        stats = SearchStats()
        assert await source.values(TENANT, 0, 0, ref, q, stats) == tags.tag_values_v2(evens, ref, q), tag
        assert len(stats.failed_blocks) == 1 and "b1" in stats.failed_blocks[0]

"""TraceQL search over traces that sit in several sources (live-store and blocks, or split over blocks):
structural operators and nested-set intrinsics see each assembled trace numbered afresh, so every form
answers as the live-store alone does (the per-block nested sets of split traces once gave no match)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_metrics_sources import _data, _forms, _tempo

from tempo_lite.querier.search import SearchRequest, parse_search_query

QUERIES = [
    "{ kind = server } >> { status = error }",
    "{ } >> { } | count() > 3",
    "{ nestedSetParent = -1 }",
    "{ } > { kind = client }",
    "{ } ~ { }",
    "{ } !< { status = error }",
]


async def _search(tl, q: str) -> list:  # noqa: ANN001
    req = SearchRequest(query=parse_search_query(q), legacy=None, start_ns=0, end_ns=0, limit=1000, spss=100,
                        live_only=False)
    found, _ = await tl.frontend.searcher.search("t", req)
    return sorted(found, key=lambda t: t.traceID)


@pytest.mark.parametrize("q", QUERIES)
async def test_structural_search_agrees_over_live_block_and_split_forms(tmp_path: Path, q: str) -> None:
    forms = _forms(_data())
    live, _ = forms["live"]
    reference = await _search(await _tempo(tmp_path, live, [], shared=True), q)
    assert reference, f"{q}: no match, the comparison would prove nothing"
    for name, (live, blocks) in forms.items():
        got = await _search(await _tempo(tmp_path, live, blocks, shared=True), q)
        assert [t.traceID for t in got] == [t.traceID for t in reference], f"{q}: {name}"
        for g, r in zip(got, reference, strict=True):
            assert sorted(sp.spanID for ss in g.spanSets for sp in ss.spans) == sorted(
                sp.spanID for ss in r.spanSets for sp in ss.spans), f"{q}: {name}: {g.traceID}"

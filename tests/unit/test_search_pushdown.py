"""Search push-down: row-group pruning from Parquet statistics, filter-column planning, and block search
through the two-stage reader giving exactly the traces the engine finds on the whole table."""

from __future__ import annotations

import functools
import io
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from tempo_lite import spantable
from tempo_lite.block.blocklist import BlockList
from tempo_lite.block.writer import EncodedBlock, encode_block, write_block
from tempo_lite.metrics import Metrics
from tempo_lite.querier import pushdown
from tempo_lite.querier.search import Searcher, SearchRequest, matcher_for, parse_search_query
from tempo_lite.querier.search_pb import hex_trace_id, merge_search_results
from tempo_lite.querier.search_request import _overlapping
from tempo_lite.querier.tracebyid import Querier
from tempo_lite.storage.cache import ByteCache
from tempo_lite.storage.store import local_store
from tempo_lite.traceql import parse
from tempo_lite.traceql.engine import evaluate, trace_matches
from tempo_lite.traceql.engine_summary import trace_index, trace_summaries

SEC = 1_000_000_000


def _footer() -> pq.FileMetaData:
    """Two row groups: short OK server spans named a..b of svc-a, then long error client spans x..y of svc-b."""
    table = pa.table({
        "duration_nano": pa.array([1_000, 2_000, 5 * SEC, 9 * SEC], pa.int64()),
        "name": ["a", "b", "x", "y"],
        "status_code": pa.array([0, 1, 2, 2], pa.int8()),
        "kind": pa.array([2, 2, 3, 3], pa.int8()),
        "service_name": ["svc-a", "svc-a", "svc-b", "svc-b"],
    })
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=2)
    return pq.ParquetFile(pa.BufferReader(sink.getvalue())).metadata


@pytest.mark.parametrize(
    ("q", "groups"),
    [
        ("{ duration > 1s }", [1]),
        ("{ duration < 1ms }", [0]),
        ("{ duration > 100 }", [0, 1]),  # an int literal compares with durations as nanoseconds
        ("{ duration > 10s }", []),
        ('{ name = "b" }', [0]),
        ('{ name = "zzz" }', []),
        ("{ status = error }", [1]),
        ("{ status != error }", [0]),
        ("{ kind = client && duration > 1s }", [1]),
        ('{ kind = client && name = "a" }', []),
        ('{ duration > 1s || name = "a" }', [0, 1]),
        ('{ resource.service.name = "svc-a" }', [0]),
        ('{ resource.service.name = "svc-c" }', []),
        ('{ span.foo = "svc-c" }', [0, 1]),  # no statistics for attributes: keep
        ('{ !(name = "zzz") }', [0, 1]),  # negations are not pruned
        ('{ name = "a" } > { name = "zzz" }', [0]),  # union of the filters' candidates
        ('{ name = "zzz" } | count() > 1', []),
        ("{ } | count() > 1", [0, 1]),
        ('{ name = "zzz" } | by(name)', []),
    ],
)
def test_row_groups_are_pruned_only_when_statistics_rule_out_every_filter(q: str, groups: list[int]) -> None:
    assert pushdown.row_groups(parse(q), _footer()) == groups


def test_filter_plan_reads_dedicated_columns_instead_of_generic_attrs() -> None:
    dedicated = {"http.method": "span.http.method"}
    plan = pushdown.filter_plan(parse('{ span.http.method = "GET" && duration > 1s }'), dedicated)
    assert plan is not None
    assert plan.columns == ["duration_nano", "span.http.method", "trace_id"]  # no resource values needed
    assert plan.needs_generic == {"http.method"}
    plan = pushdown.filter_plan(parse("{ .http.status_code = 500 }"), dedicated)
    assert plan is not None and "attrs" in plan.columns
    assert "resource_index" in plan.columns  # unscoped: the resource value is an alternative
    plan = pushdown.filter_plan(parse('{ resource.service.name = "a" }'), dedicated)
    assert plan is not None and plan.columns == ["resource_index", "trace_id"]
    plan = pushdown.filter_plan(parse("{ } | by(name)"), dedicated)  # `{ }` is a filter that is always true
    assert plan is not None and plan.columns == ["trace_id"]


CATALOGUE = {
    "span": {"http.method": [spantable.STRING, spantable.ARRAY], "http.status_code": [spantable.INT],
             "cache.hit": [spantable.BOOL]},
    "resource": {"service.name": [spantable.STRING]},
    "scope": {}, "event": {"exception.message": [spantable.STRING]}, "link": {},
}


@pytest.mark.parametrize(
    ("q", "may"),
    [
        ('{ span.nope = "x" }', False),
        ('{ span.nope != "x" }', False),  # a missing value never compares true with a literal
        ('{ span.nope !~ "x.*" }', False),
        ("{ span.nope = nil }", True),  # ... but is nil
        ('{ .nope = "x" || resource.nope = 1 }', False),
        ('{ .service.name = "a" }', True),  # unscoped: the resource has it
        ('{ span.http.status_code = "500" }', False),  # held only as an int
        ("{ span.http.status_code >= 400 }", True),
        ("{ span.http.status_code = 1.5 }", True),  # ints and floats compare
        ("{ span.http.method = 7 }", True),  # an array may hold ints
        ('{ span.cache.hit = "true" }', False),
        ("{ span.cache.hit = true }", True),
        ('{ event.exception.message =~ "boom.*" }', True),
        # Unscoped `.attr` is matched on span and resource values only (as Tempo's storage pushes it), so
        # a key held only by events cannot satisfy it.
        ('{ .exception.message =~ "boom.*" }', False),
        ('{ link.nope = "x" }', False),
        ('{ span.nope = "x" && duration > 1s }', False),
        ('{ span.nope = "x" || duration > 1s }', True),
        ('{ span.nope = "x" } && { span.http.status_code = 500 }', True),  # a filter that may match is enough
        ('{ span.nope = "x" } || { span.other = 1 }', False),
        ('{ span.nope + 1 > 2 }', True),  # arithmetic: not judged
        ('{ span.nope = "x" } | count() > 1', False),
        ("{ } | count() > 1", True),
    ],
)
def test_key_catalogue_rules_out_blocks_only_when_no_filter_can_hold(q: str, may: bool) -> None:
    assert pushdown.block_may_match(parse(q), CATALOGUE) is may
    assert pushdown.block_may_match(parse(q), {}) is True  # blocks without a catalogue: unknown


def _kv(key: str, value: object) -> KeyValue:
    if isinstance(value, list):
        items = [AnyValue(string_value=v) for v in value]
        return KeyValue(key=key, value=AnyValue(array_value=ArrayValue(values=items)))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


@functools.cache
def _traces(seed: int, traces: int, base_ns: int) -> spantable.SpanTable:
    """Built once per arguments and shared by the tests (here and in test_search_columns)."""
    rng = random.Random(seed)
    data = TracesData()
    for t in range(traces):
        rs = data.resource_spans.add()
        rs.resource.attributes.extend([_kv("service.name", f"svc-{t % 4}")])
        ss = rs.scope_spans.add()
        trace_id = rng.randbytes(16)
        ids = [rng.randbytes(8) for _ in range(rng.randrange(2, 7))]
        for i, sid in enumerate(ids):
            start = base_ns + t * SEC + i * 1000
            method: object = rng.choice(["GET", "POST", "PUT"])
            if rng.random() < 0.03:
                method = 7  # same key, another type: stays in the generic attrs of a block
            elif rng.random() < 0.03:
                method = ["PATCH", "GET"]
            span = ss.spans.add(
                trace_id=trace_id, span_id=sid, parent_span_id=ids[rng.randrange(i)] if i else b"",
                name=rng.choice(["GET /a", "GET /b", "db"]), kind=rng.choice((1, 2, 3)),
                start_time_unix_nano=start, end_time_unix_nano=start + rng.randrange(1, 10) * 10**rng.randrange(3, 10),
                attributes=[_kv("http.method", method), _kv("http.status_code", rng.choice((200, 404, 500)))],
            )
            if rng.random() < 0.1:
                span.status.code = 2
            if seed == 1 and rng.random() < 0.2:
                span.attributes.append(_kv("only.second", "yes"))  # a key one block lacks
            if seed == 1 and rng.random() < 0.3:
                # Keys the first block lacks in every scope and the second holds only on events / links.
                for n in range(rng.randrange(1, 3)):
                    span.events.add(name="exception", time_unix_nano=start + n, attributes=[
                        _kv("exception.type", rng.choice(["IOError", "ValueError"])), _kv("only.event", "yes")])
                span.links.add(trace_id=rng.randbytes(16), span_id=rng.randbytes(8),
                               attributes=[_kv("only.link", rng.choice(["a", "b"]))])
    return spantable.flatten(data.resource_spans)


QUERIES = [
    '{ span.http.method = "POST" }',
    '{ span.http.method = "PATCH" }',
    "{ span.http.method = 7 }",
    '{ span.http.method != "GET" }',
    "{ span.http.status_code = 500 && duration > 1ms }",
    '{ resource.service.name = "svc-1" } > { status = error }',
    '{ name = "db" } | count() > 1',
    '{ name = "db" } | avg(duration) > 10ms',
    "{ status = error } | by(resource.service.name)",
    "{ duration > 5s }",
    '{ name = "nothing" }',
    "{ } | count() > 4",
    '{ name = "db" } | sum(duration) > 1s',
    '{ name = "db" } | max(duration) > 1s | min(duration) < 1ms',
    '{ name = "db" } | count() > 1 | { kind = server } | count() = 1',
    "{ span.http.status_code >= 404 } | avg(span.http.status_code) > 450",
    '{ kind = server } | select(span.http.method) | coalesce()',
    '{ span.only.second = "yes" }',
    '{ span.only.second = "yes" } || { span.http.status_code = 404 }',
    '{ span.http.status_code = "500" }',
    '{ span.no.such.key = "x" }',
    "{ span.only.second = nil && span.http.status_code = 500 }",
    "{ traceDuration > 5s }",
    '{ trace:rootService = "svc-1" && status = error }',
    '{ rootName = "db" } | count() > 1',
    '{ trace:rootName != "db" && traceDuration < 100ms } > { kind = server }',
    '{ event.exception.type = "IOError" }',
    '{ event.only.event = "yes" && event.exception.type != "IOError" }',
    '{ link.only.link = "a" }',
    '{ status = error } | select(event.exception.type, link.only.link)',
    '{ .only.event = "yes" }',  # unscoped: span and resource values only, so no match
    '{ .only.link != nil || .only.second = "yes" }',
]


@functools.cache
def _two_blocks() -> tuple[list[spantable.SpanTable], list[EncodedBlock]]:
    """Two blocks an hour apart, the second holding keys the first lacks; encoded once for every query."""
    tables = [_traces(seed=i, traces=150, base_ns=1_700_000_000 * SEC + i * 3600 * SEC) for i in range(2)]
    return tables, [encode_block(t, block_id=f"b{i}", tenant="t", row_group_spans=40) for i, t in enumerate(tables)]


@pytest.mark.parametrize("q", QUERIES)
async def test_block_search_finds_what_the_engine_finds_on_the_whole_table(tmp_path: Path, q: str) -> None:
    store = local_store(str(tmp_path / "blocks"))
    blocklist = BlockList(store)
    tables, blocks = _two_blocks()
    for block in blocks:
        await write_block(store, block)
        blocklist.add(block.meta)

    class NoLive:
        async def snapshot(self, tenant: str) -> spantable.SpanTable:
            return spantable.empty_span_table()

    searcher = Searcher(Querier(NoLive(), blocklist, store, ByteCache(1 << 24), Metrics()))  # type: ignore[arg-type]
    whole = spantable.concat(tables)
    expected = {m.trace_id for m in evaluate(parse(q), whole)}
    starts = trace_summaries(whole).by_trace_id()
    newest = sorted(expected, key=lambda t: starts[t]["start_unix_nano"], reverse=True)

    for limit in (1000, 5):
        req = SearchRequest(query=parse_search_query(q + " with (most_recent=true)"), legacy=None, start_ns=0,
                            end_ns=0, limit=limit, spss=3, live_only=False)
        found, stats = await searcher.search("t", req)
        assert [r.traceID for r in found] == [hex_trace_id(t) for t in newest[:limit]]
        assert not stats.failed_blocks
        # Result metadata (spansets, aggregate values, shown spans) as the engine gives it on whole traces.
        assert found == merge_search_results(matcher_for(req)(whole), limit=limit)

    # Without most_recent any `limit` matches will do; with a time range only traces overlapping it count.
    req = SearchRequest(query=parse_search_query(q), legacy=None, start_ns=0, end_ns=0, limit=5, spss=3,
                        live_only=False)
    found, _ = await searcher.search("t", req)
    assert len(found) == min(5, len(expected))
    assert {r.traceID for r in found} <= {hex_trace_id(t) for t in expected}
    lo, hi = 1_700_000_000 * SEC + 3650 * SEC, 1_700_000_000 * SEC + 3700 * SEC
    ranged = [t for t in newest if starts[t]["start_unix_nano"] <= hi
              and starts[t]["start_unix_nano"] + (starts[t]["end_unix_nano"] - starts[t]["start_unix_nano"])
              // 1_000_000 * 1_000_000 >= lo]
    req = SearchRequest(query=parse_search_query(q + " with (most_recent=true)"), legacy=None, start_ns=lo,
                        end_ns=hi, limit=3, spss=3, live_only=False)
    found, _ = await searcher.search("t", req)
    assert [r.traceID for r in found] == [hex_trace_id(t) for t in ranged[:3]]


@pytest.mark.parametrize("q", QUERIES)
def test_column_wise_trace_matches_agree_with_the_per_trace_walk(q: str) -> None:
    table = spantable.concat([_traces(seed=7, traces=200, base_ns=1_700_000_000 * SEC)])
    ids, span_trace = trace_index(table.spans.column("trace_id"))
    candidates, exact = trace_matches(parse(q), table, span_trace, len(ids))
    walked = {m.trace_id for m in evaluate(parse(q), table)}
    assert walked <= set(ids.filter(pa.array(candidates)).to_pylist())
    if exact is not None:
        assert set(ids.filter(pa.array(exact)).to_pylist()) == walked


def test_float_sums_and_structure_are_left_to_the_per_trace_walk() -> None:
    table = spantable.concat([_traces(seed=3, traces=50, base_ns=1_700_000_000 * SEC)])
    ids, span_trace = trace_index(table.spans.column("trace_id"))
    for q in ('{ name = "db" } > { kind = server }', "{ duration > 1ms } | avg(1.5 * duration) > 2"):
        assert trace_matches(parse(q), table, span_trace, len(ids))[1] is None
    assert trace_matches(parse("{ duration > 1ms } | avg(duration) > 2"), table, span_trace, len(ids))[1] is not None


@pytest.mark.parametrize("q", ['{ span.http.method != "GET" }', "{ } | count() > 1", "{ status = error } > { }",
                               '{ name = "db" } | count() > 1 | { kind = server } | count() = 1'])
async def test_every_match_reads_stage_ones_columns_once_and_answers_as_the_engine_on_the_whole_table(
    tmp_path: Path, q: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the traces stage one chose lie in every row group it read, stage two reads only the other
    columns and takes stage one's from its table: the answer is the whole-table answer."""
    store = local_store(str(tmp_path / "blocks"))
    blocklist = BlockList(store)
    table = _traces(seed=3, traces=150, base_ns=1_700_000_000 * SEC)
    block = encode_block(table, block_id="b0", tenant="t", row_group_spans=200)
    await write_block(store, block)
    blocklist.add(block.meta)
    reads: list[list[str] | None] = []
    read_groups = Searcher._read_groups

    async def counted(self, meta, groups, columns, stats):  # noqa: ANN001, ANN202
        reads.append(columns)
        return await read_groups(self, meta, groups, columns, stats)

    monkeypatch.setattr(Searcher, "_read_groups", counted)

    class NoLive:
        async def snapshot(self, tenant: str) -> spantable.SpanTable:
            return spantable.empty_span_table()

    searcher = Searcher(Querier(NoLive(), blocklist, store, ByteCache(1 << 24), Metrics()))  # type: ignore[arg-type]
    for spss in (1, 3):
        reads.clear()
        req = SearchRequest(query=parse_search_query(q), legacy=None, start_ns=0, end_ns=0, limit=1000, spss=spss,
                            live_only=False)
        found, stats = await searcher.search("t", req)
        assert not stats.failed_blocks
        assert found == merge_search_results(matcher_for(req)(table))
        assert len(reads) == 2, "stage one in one read (the limit is above the block's trace count), then stage two"
        stage_one, stage_two = reads
        assert stage_one is not None and stage_two is not None
        assert not set(stage_one) & set(stage_two), "stage two did not read stage one's columns again"
    # A time range: traces outside it are evaluated with the rest (every trace of the block is read whole)
    # and left out of the answer.
    everything = merge_search_results(matcher_for(req)(table))
    lo, hi = int(everything[len(everything) // 3].startTimeUnixNano), int(everything[5].startTimeUnixNano)
    ranged = SearchRequest(query=parse_search_query(q), legacy=None, start_ns=lo, end_ns=hi, limit=1000, spss=3,
                           live_only=False)
    found, _ = await searcher.search("t", ranged)
    assert found == _overlapping(everything, lo, hi) and 0 < len(found) < len(everything)

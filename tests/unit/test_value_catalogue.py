"""A block's tag-value catalogue (`values.parquet`, block/catalogue.py): written with every block, equal to
evaluating every span, used by tag-value lookups instead of reading spans, bounded per key, kept right by
compaction; blocks without one (written before it) answer as before. And the tag-values answer itself:
sorted, cut at `limit` and at Tempo's byte limit, rendered as `json_format` would."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import pytest
from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from tempo_lite import spantable
from tempo_lite._gen import tempopb_pb2 as pb
from tempo_lite.block import paths
from tempo_lite.block.blocklist import BlockList
from tempo_lite.block.catalogue import ValueCatalogue
from tempo_lite.block.meta import BlockMeta
from tempo_lite.block.writer import encode_block, write_block
from tempo_lite.compactor import Compactor
from tempo_lite.config import BlockConfig, CompactionConfig, Config
from tempo_lite.frontend.service import QueryFrontend
from tempo_lite.metrics import Metrics
from tempo_lite.querier.search import Searcher, SearchStats
from tempo_lite.querier.tag_source import TagSource
from tempo_lite.querier.tags import TagValuesAnswer, tag_values_v2, values_table
from tempo_lite.querier.tracebyid import Querier
from tempo_lite.storage.cache import ByteCache
from tempo_lite.storage.store import local_store
from tempo_lite.traceql import parse_attribute
from tempo_lite.traceql.tag_values import CATALOGUE_INTRINSICS, catalogue_ref

TENANT = "t"
SEC = 1_000_000_000
T0 = 1_700_000_000 * SEC


def _kv(key: str, value: object) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    if isinstance(value, list):
        return KeyValue(key=key, value=AnyValue(array_value=ArrayValue(values=[_kv("", v).value for v in value])))
    if isinstance(value, dict):
        pairs = [_kv(k, v) for k, v in value.items()]
        return KeyValue(key=key, value=AnyValue(kvlist_value=KeyValueList(values=pairs)))
    if isinstance(value, bytes):
        return KeyValue(key=key, value=AnyValue(bytes_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


def _data(seed: int, traces: int = 30, *, extra_key: str = "") -> TracesData:
    """Spans with attributes of every type: strings (a dedicated column in blocks), ints, doubles, bools, an
    array, a key-value list, bytes, a key repeated on one span (the first value wins), a key held by spans
    and resources alike, events and links with attributes, scope attributes, empty strings."""
    rng = random.Random(seed)
    data = TracesData()
    for t in range(traces):
        trace_id = rng.randbytes(16)
        rs = data.resource_spans.add()
        rs.resource.attributes.extend([_kv("service.name", f"svc-{t % 3}"), _kv("shared", f"res-{t % 2}"),
                                       _kv("host.id", t % 4)])
        ss = rs.scope_spans.add()
        ss.scope.name = "lib"
        ss.scope.attributes.extend([_kv("scope.attr", rng.choice(["a", "b", ""]))])
        for i in range(rng.randrange(1, 5)):
            attrs = [_kv("http.method", rng.choice(["GET", "POST", ""])), _kv("code", rng.choice([200, 404, 500])),
                     _kv("load", rng.choice([0.5, 1.25, 3.0])), _kv("hit", rng.random() < 0.5),
                     _kv("dup", "first"), _kv("dup", "second-" + str(i))]
            if rng.random() < 0.3:
                attrs.append(_kv("tags", ["x", rng.choice(["y", "z"]), 7]))
            if rng.random() < 0.3:
                attrs.append(_kv("blob", b"\x00\x01"))
                attrs.append(_kv("nested", {"k": "v"}))
            if rng.random() < 0.2:
                attrs.append(_kv("shared", "span-value"))
            if extra_key:
                attrs.append(_kv(extra_key, f"{extra_key}-{t}"))
            start = T0 + (t * 10 + i) * SEC
            span = ss.spans.add(trace_id=trace_id, span_id=rng.randbytes(8), name=rng.choice(["GET /a", "db", ""]),
                                start_time_unix_nano=start, end_time_unix_nano=start + 1000, attributes=attrs)
            if rng.random() < 0.3:
                span.status.code = 2
                span.status.message = rng.choice(["boom", "timeout"])
            if rng.random() < 0.4:
                span.events.add(time_unix_nano=start + 1, name="ex", attributes=[_kv("level", rng.choice("ab"))])
            if rng.random() < 0.3:
                span.links.add(trace_id=rng.randbytes(16), span_id=rng.randbytes(8),
                               attributes=[_kv("relation", rng.choice(["parent", "follows"]))])
    return data


def _table(data: TracesData) -> spantable.SpanTable:
    return spantable.flatten(list(data.resource_spans))


def _expected(table: spantable.SpanTable, scope: str, key: str) -> set[tuple[str, str]]:
    return tag_values_v2(table, catalogue_ref(scope, key))


class _Live:
    async def snapshot(self, tenant: str) -> spantable.SpanTable:
        return spantable.empty_span_table()


async def _querier(root: Path) -> tuple[Querier, BlockList]:
    store = local_store(str(root))
    blocklist = BlockList(store)
    await blocklist.poll()
    querier = Querier(_Live(), blocklist, store, ByteCache(1 << 24), Metrics())  # type: ignore[arg-type]
    return querier, blocklist


async def _write(root: Path, block_id: str, table: spantable.SpanTable, **kwargs: object) -> BlockMeta:
    block = encode_block(table, block_id=block_id, tenant=TENANT, row_group_spans=20, **kwargs)  # type: ignore[arg-type]
    await write_block(local_store(str(root)), block)
    return block.meta


REFS = ["span.http.method", "span.code", "span.load", "span.hit", "span.dup", "span.tags", "span.blob", "span.nested",
        "span.shared", "resource.service.name", "resource.shared", "resource.host.id", ".http.method",
        ".service.name", ".shared", "instrumentation.scope.attr", "event.level", "link.relation", "name",
        "span:name", "statusMessage", "span.no.such", "resource.no.such"]


def _catalogued(meta: BlockMeta) -> list[tuple[str, str]]:
    keys = [(scope, key) for scope, names in meta.attribute_keys.items() for key in names]
    return keys + [("intrinsic", key) for key in CATALOGUE_INTRINSICS]


async def test_every_block_gets_a_catalogue_equal_to_evaluating_every_span(tmp_path: Path) -> None:
    table = _table(_data(1))
    meta = await _write(tmp_path, "b0", table)
    assert (tmp_path / TENANT / "b0" / paths.VALUES).exists()
    assert meta.value_catalogue == {"max_bytes_per_key": 1_000_000, "capped": {}}
    assert "http.method" in meta.dedicated_columns  # values moved out of `attrs` are catalogued all the same
    querier, _ = await _querier(tmp_path)
    catalogue = await querier.reader(meta).value_catalogue()
    assert catalogue is not None
    for scope, key in _catalogued(meta):
        got = catalogue.values(scope, key)
        assert got is not None
        rows = set(zip(got.column("type").to_pylist(), got.column("value").to_pylist(), strict=True))
        assert rows == _expected(table, scope, key), (scope, key)
    # the cases that make the comparison mean something
    assert ("string", "first") in _expected(table, "span", "dup") and len(_expected(table, "span", "dup")) == 1
    assert ("int", "7") in _expected(table, "span", "tags")
    assert {("float", "1.25"), ("bool", "true"), ("string", "")} <= (
        _expected(table, "span", "load") | _expected(table, "span", "hit") | _expected(table, "span", "http.method"))


async def test_tag_values_come_from_the_catalogue_without_reading_spans(tmp_path: Path) -> None:
    table = _table(_data(2))
    await _write(tmp_path, "b0", table)
    (tmp_path / TENANT / "b0" / paths.DATA).write_bytes(b"not parquet")  # any read of the spans would fail
    querier, _ = await _querier(tmp_path)
    source = TagSource(Searcher(querier))
    for tag in ("span.http.method", "resource.service.name", "event.level", "link.relation", "name",
                "statusMessage", "instrumentation.scope.attr", ".http.method", "span.tags"):
        stats = SearchStats()
        ref = parse_attribute(tag)
        assert await source.values(TENANT, 0, 0, ref, None, stats) == tag_values_v2(table, ref), tag
        assert not stats.failed_blocks and stats.inspected_bytes == 0, tag


async def test_blocks_without_a_catalogue_capped_keys_and_keys_of_spans_and_resources_read_the_spans(
    tmp_path: Path,
) -> None:
    tables = [_table(_data(3)), _table(_data(4, extra_key="wide"))]
    for fmt in ("tl1", "tl2"):
        root = tmp_path / fmt
        old = await _write(root, "old", tables[0], format=fmt)
        # A block as written before catalogues: no values.parquet, no `value_catalogue` in meta.json.
        (root / TENANT / "old" / paths.VALUES).unlink()
        legacy = json.loads(old.to_json())
        del legacy["value_catalogue"]
        (root / TENANT / "old" / paths.META).write_text(json.dumps(legacy))
        capped = await _write(root, "capped", tables[1], format=fmt, max_catalogue_bytes_per_key=200)
        assert "wide" in capped.value_catalogue["capped"]["span"]
        assert "http.method" not in capped.value_catalogue["capped"].get("span", [])
        querier, blocklist = await _querier(root)
        [listed_old] = [m for m in blocklist.blocks(TENANT) if m.block_id == "old"]
        assert listed_old.value_catalogue == {} and await querier.reader(listed_old).value_catalogue() is None
        catalogue = await querier.reader(capped).value_catalogue()
        assert catalogue is not None and catalogue.values("span", "wide") is None
        whole = spantable.concat(tables)
        source = TagSource(Searcher(querier), chunk_rows=20)
        for tag in [*REFS, "span.wide", ".wide"]:
            ref = parse_attribute(tag)
            got = await source.values(TENANT, 0, 0, ref, None, SearchStats())
            assert got == tag_values_v2(whole, ref), (fmt, tag)
        assert tag_values_v2(whole, parse_attribute(".shared")), "the unscoped key both scopes hold proves nothing"


async def test_compaction_writes_the_catalogue_of_the_merged_spans(tmp_path: Path) -> None:
    tables = [_table(_data(5)), _table(_data(6, extra_key="only.in.second"))]
    for i, table in enumerate(tables):
        await _write(tmp_path, f"b{i}", table)
    querier, blocklist = await _querier(tmp_path)
    compactor = Compactor(local_store(str(tmp_path)), blocklist, ByteCache(1 << 24), Metrics(),
                          compaction=CompactionConfig(), block=BlockConfig(), wall_clock=lambda: T0 / SEC)
    assert await compactor.cycle() == 1
    [merged] = blocklist.blocks(TENANT)
    assert merged.compaction_level == 1 and merged.value_catalogue["capped"] == {}
    raw = (tmp_path / TENANT / merged.block_id / paths.VALUES).read_bytes()
    catalogue = ValueCatalogue.decode(raw, merged.value_catalogue)
    whole = spantable.concat(tables)
    for scope, key in _catalogued(merged):
        got = catalogue.values(scope, key)
        assert got is not None
        assert set(zip(got.column("type").to_pylist(), got.column("value").to_pylist(), strict=True)) == _expected(
            whole, scope, key), (scope, key)
    assert catalogue.values("span", "only.in.second") is not None
    assert catalogue.values("span", "only.in.second").num_rows == 30


def test_a_reader_of_an_old_meta_json_sees_no_catalogue() -> None:
    meta = BlockMeta(block_id="b", tenant=TENANT, start_unix_nano=0, end_unix_nano=1, total_traces=1, total_spans=1,
                     size_bytes=1)
    raw = json.loads(meta.to_json())
    del raw["value_catalogue"]
    assert BlockMeta.from_json(json.dumps(raw).encode()).value_catalogue == {}
    assert dataclasses.replace(meta, value_catalogue={"capped": {}}).value_catalogue


# --- the answer ------------------------------------------------------------------------------------------

VALUES = [("string", "b"), ("int", "200"), ("string", ""), ("string", "a\"é\n"), ("", "typeless"), ("bool", "")]


def test_v2_answer_is_sorted_and_renders_as_json_format_does() -> None:
    answer = TagValuesAnswer.v2(values_table(VALUES))
    answer.metrics = pb.MetadataMetrics(inspectedBytes=12, totalBlocks=2, totalJobs=3, completedJobs=3)
    reference = pb.SearchTagValuesV2Response(
        tagValues=[pb.TagValue(type=t, value=v) for t, v in sorted(VALUES)], metrics=answer.metrics)
    assert answer.message() == reference
    assert json.loads(answer.json()) == MessageToDict(reference)
    assert answer.json() == json.dumps(MessageToDict(reference), separators=(",", ":")).encode()
    assert pb.SearchTagValuesV2Response.FromString(answer.protobuf()) == reference
    empty = TagValuesAnswer.v2(values_table([]))
    assert json.loads(empty.json()) == MessageToDict(pb.SearchTagValuesV2Response(metrics=pb.MetadataMetrics()))


@pytest.mark.parametrize("types", [["string"], ["string", "int", ""]])
def test_json_is_json_formats_for_any_string(types: list[str]) -> None:
    tricky = ['","', "a\\", "\\", '"', "é", "\u2028", 'x"', '"",""', "plain", "", "\n\t", "🙂"]
    values = [(t, v) for t in types for v in tricky]
    answer = TagValuesAnswer.v2(values_table(values))
    assert answer.json() == json.dumps(MessageToDict(answer.message()), separators=(",", ":")).encode()
    v1 = TagValuesAnswer.v1(values_table(values).column("value"))
    assert v1.json() == json.dumps(MessageToDict(v1.message()), separators=(",", ":")).encode()


def test_v1_answer_is_distinct_sorted_strings() -> None:
    table = values_table(VALUES + [("int", "b")])
    answer = TagValuesAnswer.v1(table.column("value"), limit=3)
    assert answer.values == ["", "200", "a\"é\n"]
    reference = pb.SearchTagValuesResponse(tagValues=answer.values, metrics=answer.metrics)
    assert answer.json() == json.dumps(MessageToDict(reference), separators=(",", ":")).encode()


@pytest.mark.parametrize("max_bytes", [0, 1, 20, 21, 22, 31, 1000])
def test_answers_stop_where_tempos_collector_stops(max_bytes: int) -> None:
    # Tempo's DistinctValue: a value is kept while the total, with it, stays under the limit (v2 counts type
    # and value, v1 the value); the first value that does not fit ends the collection. 0: no limit.
    values = [("string", f"value-{i:02d}") for i in range(5)]  # 6 + 8 = 14 bytes each
    v2 = TagValuesAnswer.v2(values_table(values), max_bytes=max_bytes)
    kept, total = [], 0
    for t, v in sorted(values):
        if max_bytes and total + len(t) + len(v) >= max_bytes:
            break
        kept.append(v)
        total += len(t) + len(v)
    assert v2.values == kept
    v1 = TagValuesAnswer.v1(values_table(values).column("value"), max_bytes=max_bytes)
    assert len(v1.values) == (5 if not max_bytes else min(5, sum(1 for k in range(1, 6) if 8 * k < max_bytes)))


def test_the_byte_limit_is_a_per_tenant_override() -> None:
    from tempo_lite.config import load_config_text, tenant_overrides

    config = load_config_text("overrides:\n  defaults:\n    read:\n      max_bytes_per_tag_values_query: 5000\n"
                              "  tenants:\n    big:\n      read:\n        max_bytes_per_tag_values_query: 0\n")
    assert int(tenant_overrides(config, "x").read.max_bytes_per_tag_values_query) == 5000
    assert int(tenant_overrides(config, "big").read.max_bytes_per_tag_values_query) == 0
    assert int(Config().overrides.defaults.read.max_bytes_per_tag_values_query) == 1_000_000


async def test_the_http_answer_applies_the_limit_of_the_query_tenants(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from tempo_lite.config import load_config_text
    from tempo_lite.frontend.search import tag_values_answer

    table = _table(_data(7, traces=40, extra_key="many"))
    await _write(tmp_path, "b0", table)
    querier, _ = await _querier(tmp_path)
    config = load_config_text("overrides:\n  defaults:\n    read:\n      max_bytes_per_tag_values_query: 100\n")
    tl = SimpleNamespace(frontend=QueryFrontend(querier, Searcher(querier)), metrics=Metrics(), config=config)
    window = {"start": str(T0 // SEC - 10), "end": str(T0 // SEC + 1000)}
    answer = await tag_values_answer(tl, [TENANT], "span.many", window, v2=True)  # type: ignore[arg-type]
    every = sorted(tag_values_v2(table, parse_attribute("span.many")))
    assert len(every) == 40 and answer.values == [v for _, v in every][: len(answer.values)]
    assert 0 < len(answer.values) < 40 and sum(6 + len(v) for v in answer.values) < 100

"""Trace by ID in the querier (`querier.tracebyid`): every source merged, blocks of both formats, caches
loaded when the block list is refreshed, unreadable blocks reported."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from tempo_lite import spantable
from tempo_lite.block import paths
from tempo_lite.block.blocklist import BlockList
from tempo_lite.block.writer import encode_block, write_block
from tempo_lite.metrics import Metrics
from tempo_lite.querier.tracebyid import Querier
from tempo_lite.storage.cache import ByteCache
from tempo_lite.storage.store import ObjectStore, local_store

TRACE = bytes(range(16))


def _spans(trace_id: bytes, first: int, count: int, extra_traces: int = 20, seed: int = 0) -> TracesData:
    """`count` spans of `trace_id` (span IDs first..first+count-1) plus some other traces."""
    rng = np.random.default_rng(seed)
    data = TracesData()
    rs = data.resource_spans.add()
    rs.resource.attributes.add(key="service.name", value=AnyValue(string_value="svc"))
    scope = rs.scope_spans.add()
    for i in range(first, first + count):
        scope.spans.add(trace_id=trace_id, span_id=i.to_bytes(8, "big"), name=f"op{i}", kind=2,
                        start_time_unix_nano=1_000 + i, end_time_unix_nano=2_000 + i,
                        attributes=[KeyValue(key="http.method", value=AnyValue(string_value="GET"))])
    for _ in range(extra_traces):
        other = rng.bytes(16)
        for j in range(3):
            scope.spans.add(trace_id=other, span_id=rng.bytes(8), name="x", start_time_unix_nano=1_000 + j,
                            end_time_unix_nano=2_000)
    return data


class _Live:
    """A live-store answering for the spans it was given (the LiveSource protocol)."""

    def __init__(self, table: spantable.SpanTable | None = None) -> None:
        self.table = table

    async def snapshot(self, tenant: str) -> spantable.SpanTable:
        assert self.table is not None
        return self.table

    async def find_trace(self, tenant: str, trace_id: bytes) -> spantable.SpanTable | None:
        if self.table is None:
            return None
        ids = self.table.spans.column("trace_id").to_pylist()
        rows = [i for i, t in enumerate(ids) if t == trace_id]
        return spantable.SpanTable(self.table.spans.take(rows), self.table.resources) if rows else None


async def _write(store: ObjectStore, block_id: str, data: TracesData, fmt: str, **kwargs: object) -> None:
    table = spantable.flatten(data.resource_spans)
    await write_block(store, encode_block(table, block_id=block_id, tenant="t", format=fmt, **kwargs))  # type: ignore[arg-type]


async def _querier(store: ObjectStore, live: _Live | None = None, cache_bytes: int = 1 << 24) -> Querier:
    blocks = BlockList(store)
    querier = Querier(live or _Live(), blocks, store, ByteCache(cache_bytes), Metrics())
    await blocks.poll()
    return querier


def _span_ids(table: spantable.SpanTable | None) -> list[int]:
    assert table is not None
    return [int.from_bytes(s, "big") for s in table.spans.column("span_id").to_pylist()]


async def test_a_trace_split_over_tl1_and_tl2_blocks_and_the_live_store_is_merged_once(tmp_path: Path) -> None:
    store = local_store(str(tmp_path))
    await _write(store, "old", _spans(TRACE, 0, 6, seed=1), "tl1", row_group_spans=8)
    await _write(store, "new", _spans(TRACE, 4, 6, seed=2), "tl2", row_group_spans=8)
    live = spantable.flatten(_spans(TRACE, 9, 3, extra_traces=0).resource_spans)
    querier = await _querier(store, _Live(live))
    found = await querier.find_trace("t", TRACE)
    assert found.failed_blocks == [] and found.inspected_bytes > 0
    assert _span_ids(found.table) == list(range(12))  # 0-5, 4-9 and 9-11, each span once, in start order
    assert found.table is not None and set(found.table.spans.column("trace_id").to_pylist()) == {TRACE}
    data = TracesData.FromString(spantable.encode_traces_data(found.table))
    assert sum(len(ss.spans) for rs in data.resource_spans for ss in rs.scope_spans) == 12


async def test_a_trace_in_one_block_comes_back_whole_with_its_attributes(tmp_path: Path) -> None:
    store = local_store(str(tmp_path))
    await _write(store, "b", _spans(TRACE, 0, 30, extra_traces=40), "tl2", row_group_spans=16)
    querier = await _querier(store)
    found = await querier.find_trace("t", TRACE)
    assert _span_ids(found.table) == list(range(30))  # straddles two row groups
    assert found.table is not None
    data = TracesData.FromString(spantable.encode_traces_data(found.table))
    span = data.resource_spans[0].scope_spans[0].spans[0]
    assert span.trace_id == TRACE and span.attributes[0].value.string_value == "GET"
    missing = await querier.find_trace("t", b"\xee" * 16)
    assert missing.table is None and missing.failed_blocks == []


async def test_refreshing_the_block_list_loads_what_lookups_need(tmp_path: Path) -> None:
    store = local_store(str(tmp_path))
    for i, fmt in enumerate(["tl1", "tl2"]):
        await _write(store, f"b{i}", _spans(TRACE if i else bytes(16), 0, 4, seed=i), fmt)
    querier = await _querier(store)
    assert len(querier.cache) == 0
    assert await querier.blocklist.warm() == 2
    keys = {str(k).rsplit("/", 1)[-1] for k in querier.cache._entries}
    assert {paths.BLOOM, f"{paths.DATA}#footer", f"{paths.TRACES}#index", paths.RESOURCES} <= keys
    before = store.bytes_read
    found = await querier.find_trace("t", TRACE)
    assert _span_ids(found.table) == [0, 1, 2, 3]
    footer_and_metadata = store.bytes_read - before
    assert 0 < footer_and_metadata < (tmp_path / "t" / "b1" / paths.DATA).stat().st_size  # row groups only


async def test_warming_stops_when_the_cache_is_mostly_full(tmp_path: Path) -> None:
    store = local_store(str(tmp_path))
    for i in range(3):
        await _write(store, f"b{i}", _spans(bytes([i]) * 16, 0, 4, seed=i), "tl2")
    roomy = await _querier(store)
    await roomy.reader(roomy.blocklist.blocks("t")[0]).warm()
    one_block = roomy.cache.total_bytes
    querier = await _querier(store, cache_bytes=int(one_block * 1.2))
    assert await querier.blocklist.warm() == 1  # then the cache is over 75 % full: the others wait
    assert 0 < querier.cache.total_bytes <= querier.cache.max_bytes and querier.cache.evictions == 0


async def test_an_unreadable_block_is_reported_and_the_others_still_answer(tmp_path: Path) -> None:
    store = local_store(str(tmp_path))
    await _write(store, "good", _spans(TRACE, 0, 3, seed=1), "tl2")
    await _write(store, "bad", _spans(TRACE, 3, 3, seed=2), "tl2")
    (tmp_path / "t" / "bad" / paths.DATA).write_bytes(b"garbage" * 50)
    querier = await _querier(store)
    found = await querier.find_trace("t", TRACE)
    assert _span_ids(found.table) == [0, 1, 2]
    assert len(found.failed_blocks) == 1 and "block t/bad" in found.failed_blocks[0]
    assert querier.metrics.blocks_unreadable._value.get() == 1  # type: ignore[attr-defined]


async def test_a_block_whose_cached_bloom_filter_rules_the_trace_out_is_not_read(tmp_path: Path) -> None:
    store = local_store(str(tmp_path))
    await _write(store, "holds", _spans(TRACE, 0, 3, seed=1), "tl2")
    await _write(store, "lacks", _spans(bytes(16), 0, 3, extra_traces=0, seed=2), "tl2")
    querier = await _querier(store)
    await querier.blocklist.warm()
    # The other block's data would fail to read: it must not be touched.
    (tmp_path / "t" / "lacks" / paths.DATA).write_bytes(b"garbage" * 50)
    found = await querier.find_trace("t", TRACE)
    assert _span_ids(found.table) == [0, 1, 2] and found.failed_blocks == []

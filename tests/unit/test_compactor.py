"""The compactor (tempo_lite/compactor/): which blocks it merges, what a merge writes, retention and deletion.

Blocks are written to an in-memory object store and read back through the same reader queries use; the
wall clock is a plain function, so retention and the grace period need no waiting.
"""

from __future__ import annotations

import dataclasses

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from tempo_lite import spantable
from tempo_lite.block.blocklist import BlockList
from tempo_lite.block.meta import COMPACTED_META, META, BlockMeta, compacted_block_id
from tempo_lite.block.reader import BlockReader
from tempo_lite.block.writer import encode_block, write_block
from tempo_lite.compactor import Compactor, plan_compactions
from tempo_lite.config import BlockConfig, CompactionConfig
from tempo_lite.metrics import Metrics
from tempo_lite.storage.cache import ByteCache
from tempo_lite.storage.store import ObjectStore, memory_store
from tempo_lite.units import ByteSize, Duration

HOUR_NS = 3600 * 10**9
NOW = 1_700_000_000.0  # the compactor's wall clock, Unix seconds
NOW_NS = int(NOW * 1e9)


def _meta(block_id: str, *, start_ns: int, size: int = 100, level: int = 0) -> BlockMeta:
    return BlockMeta(block_id=block_id, tenant="t", start_unix_nano=start_ns, end_unix_nano=start_ns + 1000,
                     total_traces=1, total_spans=1, size_bytes=size, compaction_level=level)


def _traces(trace_byte: int, start_ns: int, spans: int = 3) -> TracesData:
    data = TracesData()
    rs = data.resource_spans.add()
    rs.resource.attributes.add(key="service.name", value=AnyValue(string_value="svc"))
    scope = rs.scope_spans.add()
    for i in range(spans):
        scope.spans.add(trace_id=bytes([trace_byte]) * 16, span_id=bytes([trace_byte, i + 1]) * 4, name=f"op{i}",
                        start_time_unix_nano=start_ns + i, end_time_unix_nano=start_ns + i + 10,
                        attributes=[KeyValue(key="i", value=AnyValue(int_value=i))])
    return data


async def _write(store: ObjectStore, block_id: str, data: TracesData) -> BlockMeta:
    block = encode_block(spantable.flatten(data.resource_spans), block_id=block_id, tenant="t")
    await write_block(store, block)
    return block.meta


async def _compactor(store: ObjectStore, **config: object) -> tuple[Compactor, BlockList]:
    blocks = BlockList(store)
    await blocks.poll()
    compaction = dataclasses.replace(CompactionConfig(), **config)  # type: ignore[arg-type]
    compactor = Compactor(store, blocks, ByteCache(1 << 20), Metrics(), compaction=compaction,
                          block=BlockConfig(), wall_clock=lambda: NOW)
    return compactor, blocks


def test_blocks_of_one_window_and_level_are_merged_together() -> None:
    metas = [_meta("a", start_ns=0), _meta("b", start_ns=10), _meta("c", start_ns=HOUR_NS + 5),
             _meta("d", start_ns=20, level=1)]
    plans = plan_compactions(metas, window_ns=HOUR_NS, max_block_bytes=1 << 20)
    # "c" is alone in the next window and "d" alone at its level: nothing to merge them with.
    assert [[m.block_id for m in plan] for plan in plans] == [["a", "b"]]


def test_a_plan_stops_at_the_size_bound_and_the_input_count() -> None:
    metas = [_meta(f"b{i}", start_ns=i, size=40) for i in range(5)]
    by_size = plan_compactions(metas, window_ns=HOUR_NS, max_block_bytes=100)
    assert [[m.block_id for m in plan] for plan in by_size] == [["b0", "b1"], ["b2", "b3"]]
    by_count = plan_compactions(metas, window_ns=HOUR_NS, max_block_bytes=1 << 20, max_inputs=3)
    assert [[m.block_id for m in plan] for plan in by_count] == [["b0", "b1", "b2"], ["b3", "b4"]]


async def test_compaction_merges_blocks_drops_duplicate_spans_and_hides_the_inputs() -> None:
    store = memory_store()
    start = NOW_NS - 60 * 10**9
    await _write(store, "one", _traces(1, start))
    await _write(store, "two", _traces(2, start + 5))
    await _write(store, "copy", _traces(1, start))  # the same spans again, as a WAL replay can produce
    compactor, blocks = await _compactor(store)

    assert await compactor.cycle() == 1
    [merged] = blocks.blocks("t")
    assert merged.block_id == compacted_block_id("t", ["copy", "one", "two"])
    assert merged.compaction_level == 1
    table = await BlockReader(store, merged, ByteCache(1 << 20)).read_all()
    assert table.spans.num_rows == 6  # 3 spans of each trace, the copies dropped
    for block_id in ("one", "two", "copy"):
        assert not await store.exists(f"t/{block_id}/{META}")  # invisible to new queries...
        assert await store.exists(f"t/{block_id}/{COMPACTED_META}")  # ...kept for those already running


async def test_compacted_inputs_are_deleted_only_after_the_grace_period() -> None:
    store = memory_store()
    start = NOW_NS - 60 * 10**9
    await _write(store, "one", _traces(1, start))
    await _write(store, "two", _traces(2, start))
    compactor, _ = await _compactor(store, compacted_block_retention=Duration(600.0))
    await compactor.cycle()
    assert await compactor.delete_expired() == 0

    compactor.wall_clock = lambda: NOW + 601
    assert await compactor.delete_expired() == 2
    assert await store.list("t") == [compacted_block_id("t", ["one", "two"])]


async def test_blocks_past_retention_are_marked_and_newer_ones_kept() -> None:
    store = memory_store()
    await _write(store, "old", _traces(1, NOW_NS - 3 * 86400 * 10**9))
    await _write(store, "new", _traces(2, NOW_NS - 60 * 10**9))
    compactor, blocks = await _compactor(store, block_retention=Duration(86400.0),
                                         max_block_bytes=ByteSize(1))  # no merging: retention only
    assert await compactor.apply_retention("t") == 1
    assert [m.block_id for m in blocks.blocks("t")] == ["new"]
    assert await store.exists(f"t/old/{COMPACTED_META}")

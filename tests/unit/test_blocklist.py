"""The block list (`block.blocklist`): which blocks are visible, and loading their caches when it is refreshed."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from tempo_lite import spantable
from tempo_lite.block import paths
from tempo_lite.block.blocklist import BlockList
from tempo_lite.block.meta import BlockMeta
from tempo_lite.block.writer import encode_block, write_block
from tempo_lite.errors import StorageError
from tempo_lite.storage.store import ObjectStore, local_store


def _table(seed: int, start: int) -> spantable.SpanTable:
    rng = np.random.default_rng(seed)
    data = TracesData()
    rs = data.resource_spans.add()
    rs.resource.attributes.add(key="service.name", value=AnyValue(string_value="svc"))
    scope = rs.scope_spans.add()
    for t in range(5):
        scope.spans.add(trace_id=rng.bytes(16), span_id=rng.bytes(8), name="op",
                        start_time_unix_nano=start + t, end_time_unix_nano=start + t + 10)
    return spantable.flatten(data.resource_spans)


async def _block(store: ObjectStore, block_id: str, start: int, tenant: str = "t", fmt: str = "tl2") -> BlockMeta:
    block = encode_block(_table(start, start), block_id=block_id, tenant=tenant, format=fmt)
    await write_block(store, block)
    return block.meta


async def test_poll_lists_blocks_with_meta_json_of_known_formats_only(tmp_path: Path) -> None:
    store = local_store(str(tmp_path))
    await _block(store, "old", 1_000, fmt="tl1")
    await _block(store, "new", 2_000)
    await _block(store, "other-tenant", 3_000, tenant="u")
    half = await _block(store, "half-written", 4_000)
    await store.delete(paths.block_file("t", half.block_id, paths.META))
    compacted = await _block(store, "being-compacted", 5_000)
    await store.write(paths.block_file("t", compacted.block_id, paths.COMPACTED_META), compacted.to_json())
    future = await _block(store, "future", 6_000)
    await store.write(paths.block_file("t", future.block_id, paths.META),
                      dataclasses.replace(future, format="tl9").to_json())
    blocks = BlockList(store)
    await blocks.poll()
    assert [m.block_id for m in blocks.blocks("t")] == ["new", "old"]  # newest first
    assert blocks.tenants() == ["t", "u"]
    assert [m.format for m in blocks.blocks("t")] == ["tl2", "tl1"]
    assert [m.block_id for m in blocks.blocks("t", 1_500, 1_600)] == []
    assert [m.block_id for m in blocks.blocks("t", 900, 1_005)] == ["old"]


async def test_removed_blocks_go_and_added_ones_come_without_a_poll(tmp_path: Path) -> None:
    store = local_store(str(tmp_path))
    a = await _block(store, "a", 1_000)
    blocks = BlockList(store)
    await blocks.poll()
    b = await _block(store, "b", 2_000)
    blocks.add(b)
    assert [m.block_id for m in blocks.blocks("t")] == ["b", "a"]
    blocks.remove("t", a.block_id)
    assert [m.block_id for m in blocks.blocks("t")] == ["b"]


async def test_warm_runs_every_warmer_once_per_block_newest_first(tmp_path: Path) -> None:
    store = local_store(str(tmp_path))
    for i, name in enumerate(["a", "b", "c"]):
        await _block(store, name, 1_000 * (i + 1))
    blocks = BlockList(store)
    seen: list[str] = []

    async def warmer(meta: BlockMeta) -> bool:
        seen.append(meta.block_id)
        return True

    blocks.warmers.append(warmer)
    await blocks.poll()
    assert await blocks.warm() == 3 and seen == ["c", "b", "a"]
    assert await blocks.warm() == 0 and seen == ["c", "b", "a"]
    blocks.add(await _block(store, "d", 9_000))
    assert await blocks.warm() == 1 and seen[-1] == "d"


async def test_warm_retries_a_failed_block_and_stops_when_a_warmer_has_no_room(tmp_path: Path) -> None:
    store = local_store(str(tmp_path))
    for i, name in enumerate(["a", "b", "c"]):
        await _block(store, name, 1_000 * (i + 1))
    blocks = BlockList(store)
    failing = {"b"}
    room = [True]
    seen: list[str] = []

    async def warmer(meta: BlockMeta) -> bool:
        if meta.block_id in failing:
            raise StorageError(f"cannot read {meta.block_id}")
        seen.append(meta.block_id)
        return room[0]

    blocks.warmers.append(warmer)
    await blocks.poll()
    assert await blocks.warm() == 2 and seen == ["c", "a"]  # b failed, the others still warmed
    failing.clear()
    assert await blocks.warm() == 1 and seen == ["c", "a", "b"]
    room[0] = False
    blocks.add(await _block(store, "d", 8_000))
    blocks.add(await _block(store, "e", 9_000))
    assert await blocks.warm() == 0 and seen[-1] == "e"  # no room for e: the round ends, d is not tried
    room[0] = True
    assert await blocks.warm() == 2 and seen[-2:] == ["e", "d"]


@pytest.mark.parametrize("bad", [b"not json", b"[1, 2]", b'{"format": "tl2"}'])
async def test_a_block_with_an_unreadable_meta_json_is_skipped(tmp_path: Path, bad: bytes) -> None:
    store = local_store(str(tmp_path))
    await _block(store, "good", 1_000)
    await store.write(paths.block_file("t", "bad", paths.META), bad)
    blocks = BlockList(store)
    await blocks.poll()
    assert [m.block_id for m in blocks.blocks("t")] == ["good"]

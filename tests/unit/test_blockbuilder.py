"""The block-builder (tempo_lite/blockbuilder/): one block per tenant and WAL range, the WAL committed only
after the blocks exist, a replayed range reusing the block an interrupted flush wrote, and another source's
block under the same ID never replaced.

A real embedded WAL in a temp directory and an in-memory object store; no sockets.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from tempo_lite.block.blocklist import BlockList
from tempo_lite.block.meta import META, BlockConflict, BlockMeta
from tempo_lite.blockbuilder import BlockBuilder
from tempo_lite.config import BlockConfig
from tempo_lite.livestore import BLOCKBUILDER_GROUP, LiveStore, decode_records
from tempo_lite.metrics import Metrics
from tempo_lite.storage.store import ObjectStore, memory_store
from tempo_lite.wal import WalEntry, WriteAheadLog
from tempo_lite.wal.factory import WalOptions, open_wal


def _payload(trace_byte: int) -> bytes:
    data = TracesData()
    scope = data.resource_spans.add().scope_spans.add()
    for i in range(3):
        scope.spans.add(trace_id=bytes([trace_byte]) * 16, span_id=bytes([trace_byte, i + 1]) * 4, name=f"op{i}",
                        start_time_unix_nano=1_000 + i, end_time_unix_nano=1_010 + i)
    return data.SerializeToString()


@asynccontextmanager
async def _builder(tmp_path: Path, store: ObjectStore) -> AsyncIterator[tuple[BlockBuilder, WriteAheadLog, BlockList]]:
    """A block-builder over a WAL holding three records of tenants t, u, t, all in the live-store."""
    async with open_wal(WalOptions(path=str(tmp_path / "wal"), partitions=1)) as wal:
        await wal.append([WalEntry(0, "t", _payload(1)), WalEntry(0, "u", _payload(2)), WalEntry(0, "t", _payload(3))])
        livestore = LiveStore(wal, Metrics(), max_bytes=1 << 30, complete_block_timeout=60.0)
        records = await wal.read(0, 0, 10)
        livestore.add_segment(0, 0, 3, decode_records(records))
        blocks = BlockList(store)
        yield BlockBuilder(wal, livestore, store, blocks, Metrics(), cycle=60.0, max_block_bytes=1 << 30,
                           block=BlockConfig()), wal, blocks


async def test_a_flush_writes_one_block_per_tenant_then_commits_the_wal(tmp_path: Path) -> None:
    store = memory_store()
    async with _builder(tmp_path, store) as (builder, wal, blocks):
        assert await builder.flush_all() == 2
        assert await wal.committed(BLOCKBUILDER_GROUP, 0) == 3
        spans = {m.tenant: m.total_spans for t in blocks.tenants() for m in blocks.blocks(t)}
        assert spans == {"t": 6, "u": 3}
        [meta] = blocks.blocks("t")
        assert (meta.source_wal, meta.source_partition, meta.source_first_offset, meta.source_end_offset) == (
            wal.identity, 0, 0, 3)
        assert await store.exists(f"t/{meta.block_id}/{META}")
        assert builder.livestore.pending(0, 3) == (3, {})  # nothing left to flush
        assert await builder.flush_all() == 0


async def test_a_range_flushed_before_a_crash_reuses_its_block(tmp_path: Path) -> None:
    store = memory_store()
    async with _builder(tmp_path, store) as (builder, wal, _):
        await builder.flush_all()
        block_id = builder.block_id("t", 0, 0)
        written = await store.read(f"t/{block_id}/{META}")
        # The WAL commit was lost (a crash just after the blocks): the same range is flushed again.
        await wal.commit(BLOCKBUILDER_GROUP, 0, 0)
        for seg in builder.livestore.segments[0]:
            seg.flushed_at = None
        assert await builder.recover() == {0: 3}
        assert await builder.flush_all() == 0  # nothing rewritten...
        assert await store.read(f"t/{block_id}/{META}") == written
        assert await wal.committed(BLOCKBUILDER_GROUP, 0) == 3  # ...and the range committed this time


async def test_a_block_of_another_source_under_the_same_id_is_never_replaced(tmp_path: Path) -> None:
    store = memory_store()
    async with _builder(tmp_path, store) as (builder, wal, _):
        block_id = builder.block_id("t", 0, 0)
        foreign = BlockMeta(block_id=block_id, tenant="t", start_unix_nano=0, end_unix_nano=1, total_traces=1,
                            total_spans=1, size_bytes=1, source_wal="another-wal", source_partition=0,
                            source_first_offset=0, source_end_offset=3)
        await store.write(f"t/{block_id}/{META}", foreign.to_json())
        with pytest.raises(BlockConflict, match="another-wal"):
            await builder.flush_all()
        assert await wal.committed(BLOCKBUILDER_GROUP, 0) == 0

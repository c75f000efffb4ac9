"""The compactor merges blocks without losing or duplicating spans, hides its inputs, and expires old blocks."""

from __future__ import annotations

import os
import time

import httpx
import pytest
import trio
from conftest import Running
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from tempo_lite.block.meta import BlockMeta
from tempo_lite.compactor import plan_compactions

PB = {"Content-Type": "application/x-protobuf"}
NOW_NS = time.time_ns() // 10**9 * 10**9


def request(trace_id: bytes, span_ids: list[int], start_ns: int = NOW_NS) -> bytes:
    req = ExportTraceServiceRequest()
    ss = req.resource_spans.add().scope_spans.add()
    for i in span_ids:
        sp = ss.spans.add(trace_id=trace_id, span_id=i.to_bytes(8, "big"), name=f"s{i}")
        sp.parent_span_id = b"" if i == 1 else (1).to_bytes(8, "big")
        sp.start_time_unix_nano, sp.end_time_unix_nano = start_ns + i, start_ns + 10**9
    return req.SerializeToString()


async def push(tempo: Running, http: httpx.AsyncClient, body: bytes) -> None:
    r = await http.post(tempo.url("otlp_http") + "/v1/traces", content=body, headers=PB)
    assert r.status_code == 200
    end = await tempo.tl.wal.end_offset(0)
    with trio.fail_after(10):
        while tempo.tl.livestore.consumed[0] < end:
            await trio.sleep(0.01)


async def span_names(tempo: Running, http: httpx.AsyncClient, trace_id: bytes) -> list[str]:
    r = await http.get(f"{tempo.url()}/api/traces/{trace_id.hex()}", headers={"Accept": "application/protobuf"})
    assert r.status_code == 200
    return sorted(s.name for rs in TracesData.FromString(r.content).resource_spans
                  for ss in rs.scope_spans for s in ss.spans)


async def test_compaction_merges_split_trace_and_dedupes(tempo: Running, http: httpx.AsyncClient) -> None:
    tl = tempo.tl
    split, other = os.urandom(16), os.urandom(16)
    # One trace cut across three blocks, one span sent twice (a client retry), plus another trace.
    await push(tempo, http, request(split, [1, 2]))
    await tl.blockbuilder.flush_all()
    await push(tempo, http, request(split, [2, 3]) + b"")
    await push(tempo, http, request(other, [1]))
    await tl.blockbuilder.flush_all()
    await push(tempo, http, request(split, [4]))
    await tl.blockbuilder.flush_all()
    tl.livestore.complete_block_timeout = 0
    tl.livestore.expire()
    before = tl.blocklist.blocks("single-tenant")
    assert len(before) == 3
    assert await span_names(tempo, http, split) == ["s1", "s2", "s3", "s4"]
    now_s = NOW_NS // 10**9
    r = await http.get(tempo.url() + "/api/search", params={"q": "{ } | count() = 4", "start": now_s - 60,
                                                            "end": now_s + 60})
    assert [t["traceID"] for t in r.json()["traces"]] == [split.hex().lstrip("0")]

    assert await tl.compactor.cycle() == 1
    after = tl.blocklist.blocks("single-tenant")
    assert len(after) == 1 and after[0].compaction_level == 1
    assert after[0].total_spans == 5  # duplicate span dropped
    assert await span_names(tempo, http, split) == ["s1", "s2", "s3", "s4"]
    assert await span_names(tempo, http, other) == ["s1"]
    # Inputs are invisible to a fresh listing but still on storage until the grace period passes.
    await tl.blocklist.poll()
    assert [m.block_id for m in tl.blocklist.blocks("single-tenant")] == [after[0].block_id]
    for m in before:
        assert await tl.store.exists(f"single-tenant/{m.block_id}/data.parquet")
    tl.compactor.config = tl.compactor.config.__class__(compacted_block_retention=0.0)
    tl.compactor.wall_clock = lambda: time.time() + 10
    assert await tl.compactor.delete_expired() == 3
    for m in before:
        assert not await tl.store.exists(f"single-tenant/{m.block_id}")


async def test_retention_expires_old_blocks(tempo: Running, http: httpx.AsyncClient) -> None:
    tl = tempo.tl
    old = os.urandom(16)
    await push(tempo, http, request(old, [1], start_ns=10**18))
    await tl.blockbuilder.flush_all()
    (meta,) = tl.blocklist.blocks("single-tenant")
    tl.compactor.wall_clock = lambda: 10**9 + 15 * 86400.0  # 15 days after the span, retention is 14
    assert await tl.compactor.apply_retention("single-tenant") == 1
    assert tl.blocklist.blocks("single-tenant") == []
    assert await tl.store.exists(f"single-tenant/{meta.block_id}/meta.compacted.json")


def _meta(i: int, level: int, start_s: int, size: int) -> BlockMeta:
    return BlockMeta(block_id=f"b{i}", tenant="t", start_unix_nano=start_s * 10**9, end_unix_nano=start_s * 10**9,
                     total_traces=1, total_spans=1, size_bytes=size, compaction_level=level)


@pytest.mark.parametrize(
    ("metas", "expected"),
    [
        ([_meta(1, 0, 0, 10), _meta(2, 0, 10, 10)], [["b1", "b2"]]),
        ([_meta(1, 0, 0, 10), _meta(2, 1, 10, 10)], []),  # different levels
        ([_meta(1, 0, 0, 10), _meta(2, 0, 7200, 10)], []),  # different windows
        ([_meta(1, 0, 0, 60), _meta(2, 0, 1, 60), _meta(3, 0, 2, 60)], [["b1", "b2"]]),  # size bound 100
    ],
)
def test_plan_groups_by_level_window_and_size(metas: list[BlockMeta], expected: list[list[str]]) -> None:
    plans = plan_compactions(metas, window_ns=3600 * 10**9, max_block_bytes=130)
    assert [[m.block_id for m in p] for p in plans] == expected

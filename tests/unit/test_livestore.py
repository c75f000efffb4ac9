"""The live-store (tempo_lite/livestore/): WAL records decoded once into memory, served to queries, handed to
the block-builder, and released after their blocks are written; poison records set aside, not fatal.

A real embedded WAL in a temp directory (SQLite, no sockets); the live-store's clock is a plain function.
"""

from __future__ import annotations

from pathlib import Path

import trio
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from tempo_lite.livestore import BLOCKBUILDER_GROUP, LiveStore, decode_isolating, record_digest, unbuildable
from tempo_lite.metrics import Metrics
from tempo_lite.spantable import flatten_payloads
from tempo_lite.wal import WalEntry, WalRecord
from tempo_lite.wal.factory import WalOptions, open_wal


def _payload(trace_byte: int, spans: int = 2, start_ns: int = 1_000) -> bytes:
    data = TracesData()
    scope = data.resource_spans.add().scope_spans.add()
    for i in range(spans):
        scope.spans.add(trace_id=bytes([trace_byte]) * 16, span_id=bytes([trace_byte, i + 1]) * 4, name=f"op{i}",
                        start_time_unix_nano=start_ns + i, end_time_unix_nano=start_ns + i + 10)
    return data.SerializeToString()


def _record(offset: int, payload: bytes, tenant: str = "t") -> WalRecord:
    return WalRecord(partition=0, offset=offset, tenant=tenant, payload=payload, timestamp_ns=0)


def test_a_record_that_does_not_decode_is_set_aside_and_the_rest_kept() -> None:
    records = [_record(0, _payload(1)), _record(1, b"\xff\xff not protobuf"), _record(2, _payload(2), tenant="u")]
    tables, poison = decode_isolating(records)
    assert [(r.offset, problem.startswith("cannot decode")) for r, problem in poison] == [(1, True)]
    assert {t: table.num_spans for t, table in tables.items()} == {"t": 2, "u": 2}


def test_a_tenant_that_cannot_name_a_directory_is_set_aside() -> None:
    tables, poison = decode_isolating([_record(0, _payload(1), tenant="../x"), _record(1, _payload(2))])
    assert [r.offset for r, _ in poison] == [0]
    assert list(tables) == ["t"]


def test_spans_later_stages_cannot_take_are_named() -> None:
    assert unbuildable(flatten_payloads([_payload(1)])) is None
    too_long = TracesData()
    too_long.resource_spans.add().scope_spans.add().spans.add(
        trace_id=b"\x01" * 16, span_id=b"\x02" * 8, start_time_unix_nano=1, end_time_unix_nano=1 << 60)
    assert unbuildable(flatten_payloads([too_long.SerializeToString()])) == "a span's duration is not below 2^53 ns"


async def test_appended_spans_are_queryable_after_catch_up(tmp_path: Path) -> None:
    async with open_wal(WalOptions(path=str(tmp_path / "wal"), partitions=2)) as wal:
        await wal.append([WalEntry(0, "t", _payload(1)), WalEntry(1, "t", _payload(2, spans=3)),
                          WalEntry(1, "u", _payload(3))])
        store = LiveStore(wal, Metrics(), max_bytes=1 << 30, complete_block_timeout=60.0)
        async with trio.open_nursery() as nursery:
            await nursery.start(store.run)
            assert await store.catch_up(10.0)
            assert store.tenants() == ["t", "u"]
            assert store.snapshot("t").num_spans == 5
            found = store.find_trace("t", b"\x02" * 16)
            assert found is not None and found.num_spans == 3
            assert store.find_trace("u", b"\x02" * 16) is None  # tenants stay apart
            nursery.cancel_scope.cancel()


async def test_a_restart_replays_from_the_block_builders_offset(tmp_path: Path) -> None:
    async with open_wal(WalOptions(path=str(tmp_path / "wal"), partitions=1)) as wal:
        await wal.append([WalEntry(0, "t", _payload(i)) for i in range(1, 5)])
        await wal.commit(BLOCKBUILDER_GROUP, 0, 3)  # records 0..2 are in blocks already
        store = LiveStore(wal, Metrics(), max_bytes=1 << 30, complete_block_timeout=60.0)
        async with trio.open_nursery() as nursery:
            await nursery.start(store.run)
            await store.replayed.wait()
            assert [seg.first_offset for seg in store.segments[0]] == [3]
            assert store.find_trace("t", b"\x04" * 16) is not None
            assert store.find_trace("t", b"\x01" * 16) is None
            nursery.cancel_scope.cancel()


async def test_flushed_segments_leave_memory_after_the_recent_window(tmp_path: Path) -> None:
    now = [100.0]
    async with open_wal(WalOptions(path=str(tmp_path / "wal"), partitions=1)) as wal:
        store = LiveStore(wal, Metrics(), max_bytes=1 << 30, complete_block_timeout=60.0, clock=lambda: now[0])
        records = [_record(0, _payload(1)), _record(1, _payload(2))]
        tables, _ = decode_isolating(records)
        store.add_segment(0, 0, 2, tables, sum(record_digest(r) for r in records))
        end, pending = store.pending(0, 0)
        assert end == 2 and sum(t.num_spans for t in pending["t"]) == 4
        assert store.range_digest(0, 0, 2) == f"{sum(record_digest(r) for r in records) % 2**64:016x}"

        store.mark_flushed(0, 2)
        assert store.pending(0, 0) == (0, {})  # the block-builder does not take it again...
        assert store.find_trace("t", b"\x01" * 16) is not None  # ...but queries still see it
        now[0] += 59.0
        store.expire()
        assert store.nbytes > 0
        now[0] += 2.0
        store.expire()
        assert store.nbytes == 0 and store.find_trace("t", b"\x01" * 16) is None

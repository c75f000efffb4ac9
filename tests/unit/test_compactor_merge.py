"""The compactor's sliced merge (tempo_lite/compactor/merge.py) writes exactly the block a merge of the
whole table writes, whatever the slice size, on blocks with overlapping traces and duplicate spans."""

from __future__ import annotations

import dataclasses
import random
import threading

import pyarrow as pa
import pytest
import trio
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, TracesData

from tempo_lite import spantable
from tempo_lite.block.reader import BlockReader
from tempo_lite.block.writer import EncodedBlock, encode_block, write_block
from tempo_lite.compactor.merge import merge_in_slices, sorted_merge, trace_slices
from tempo_lite.storage.cache import ByteCache
from tempo_lite.storage.store import memory_store

START_NS = 1_700_000_000_000_000_000


def _spans(rng: random.Random, trace_id: bytes, count: int) -> list[Span]:
    spans: list[Span] = []
    for i in range(count):
        parent = rng.choice(spans).span_id if spans and rng.random() < 0.8 else b""
        start = START_NS + rng.randrange(0, 10**9)
        attrs = [KeyValue(key="http.status_code", value=AnyValue(int_value=rng.choice([200, 404, 500])))]
        if rng.random() < 0.7:
            attrs.append(KeyValue(key="http.method", value=AnyValue(string_value=rng.choice(["GET", "POST"]))))
        if rng.random() < 0.3:
            attrs.append(KeyValue(key="ratio", value=AnyValue(double_value=rng.random())))
        spans.append(Span(trace_id=trace_id, span_id=rng.randbytes(8), parent_span_id=parent, name=f"op{i % 4}",
                          kind=rng.randrange(0, 6), start_time_unix_nano=start,
                          end_time_unix_nano=start + rng.randrange(1, 10**6), attributes=attrs))
    return spans


def _traces(groups: list[tuple[str, list[Span]]]) -> TracesData:
    data = TracesData()
    for service, spans in groups:
        rs = data.resource_spans.add()
        rs.resource.attributes.add(key="service.name", value=AnyValue(string_value=service))
        rs.scope_spans.add().spans.extend(spans)
    return data


def _blocks(seed: int) -> list[TracesData]:
    """Three blocks: traces only in one block, traces spread over two, exact copies of spans (a WAL
    replay, a retried push), and a span reusing another's ID with another start (a distinct span)."""
    rng = random.Random(seed)
    ids = [rng.randbytes(16) for _ in range(12)]
    a = [s for t in ids[:8] for s in _spans(rng, t, rng.randrange(1, 7))]
    b = [s for t in ids[4:] for s in _spans(rng, t, rng.randrange(1, 5))]
    copies = rng.sample(a, len(a) // 2) + rng.sample(b, len(b) // 3)
    reused = Span()
    reused.CopyFrom(a[0])
    reused.start_time_unix_nano += 7
    return [
        _traces([("svc-a", a[: len(a) // 2]), ("svc-b", a[len(a) // 2:])]),
        _traces([("svc-b", b), ("svc-c", copies[:3])]),
        _traces([("svc-a", copies[3:] + [reused])]),
    ]


async def _read_back(data: list[TracesData]) -> list[spantable.SpanTable]:
    """The blocks as the compactor reads them: encoded (dedicated columns chosen), written, read."""
    store = memory_store()
    tables = []
    for i, d in enumerate(data):
        block = encode_block(spantable.flatten(d.resource_spans), block_id=f"in{i}", tenant="t")
        await write_block(store, block)
        tables.append(await BlockReader(store, block.meta, ByteCache(1 << 20)).read_all())
    return tables


def _comparable(block: EncodedBlock) -> tuple[object, dict[str, bytes]]:
    return dataclasses.replace(block.meta, created_unix=0.0), block.files


ENCODE = {"block_id": "merged", "tenant": "t", "row_group_spans": 4, "compaction_level": 1}


# seed -> (the blocks read back, the whole-table merge): the same for every slice size, built once.
_MERGE_INPUTS: dict[int, tuple[list[spantable.SpanTable], EncodedBlock]] = {}


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("slice_spans", [1, 3, 10, 100_000])
async def test_a_merge_in_slices_writes_the_same_block_as_a_merge_of_the_whole_table(
    seed: int, slice_spans: int
) -> None:
    if seed not in _MERGE_INPUTS:
        read = await _read_back(_blocks(seed))
        _MERGE_INPUTS[seed] = read, encode_block(spantable.concat(read), **ENCODE)  # type: ignore[arg-type]
    tables, whole = _MERGE_INPUTS[seed]
    sliced = await merge_in_slices(tables, trio.CapacityLimiter(1), slice_spans=slice_spans, **ENCODE)
    assert _comparable(sliced) == _comparable(whole)
    assert whole.meta.total_spans < sum(t.num_spans for t in tables)  # there were copies to drop
    if slice_spans < 100:
        assert len(trace_slices(sorted_merge(tables).spans.column("trace_id"), slice_spans)) > 1


def test_slices_cover_every_row_and_never_split_a_trace() -> None:
    ids = pa.chunked_array([[b"a" * 16] * 3 + [b"b" * 16], [b"b" * 16] * 4 + [b"c" * 16, b"d" * 16]],
                           type=pa.binary(16))
    assert trace_slices(ids, 2) == [(0, 3), (3, 8), (8, 10)]
    assert trace_slices(ids, 100) == [(0, 10)]
    assert trace_slices(pa.array([], pa.binary(16)), 5) == []


async def test_a_merge_of_empty_tables_writes_an_empty_block() -> None:
    empty = spantable.SpanTable(spantable.SPAN_SCHEMA.empty_table(), spantable.RESOURCE_SCHEMA.empty_table())
    block = await merge_in_slices([empty, empty], trio.CapacityLimiter(1), **ENCODE)
    assert block.meta.total_spans == 0


@pytest.mark.parametrize("step", ["sorted_merge", "prepare_slice", "encode_block"])
async def test_the_event_loop_serves_a_lookup_while_a_merge_step_is_held(monkeypatch: pytest.MonkeyPatch,
                                                                        step: str) -> None:
    from tempo_lite.compactor import merge

    started, release = threading.Event(), threading.Event()
    real = getattr(merge, step)

    def held(*args: object, **kwargs: object) -> object:
        if not started.is_set():
            started.set()
            assert release.wait(30), "the test never released the merge step"
        return real(*args, **kwargs)

    monkeypatch.setattr(merge, step, held)
    store = memory_store()
    data = _blocks(1)
    block = encode_block(spantable.flatten(data[0].resource_spans), block_id="query", tenant="t")
    await write_block(store, block)
    reader = BlockReader(store, block.meta, ByteCache(1 << 20))
    trace_id = data[0].resource_spans[0].scope_spans[0].spans[0].trace_id
    tables = await _read_back(data)
    result: dict[str, EncodedBlock] = {}

    async def compaction() -> None:
        result["block"] = await merge_in_slices(tables, trio.CapacityLimiter(1), slice_spans=3, **ENCODE)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(compaction)
        await trio.to_thread.run_sync(started.wait)  # the step is running in a worker thread, and stays so
        found = await reader.find_trace(trace_id)  # a query on the same event loop meanwhile
        assert found is not None and found.num_spans > 0
        assert "block" not in result
        release.set()
    whole = encode_block(spantable.concat(tables), **ENCODE)  # type: ignore[arg-type]
    assert _comparable(result["block"]) == _comparable(whole)

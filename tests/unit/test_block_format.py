"""The block formats (`tl1`, `tl2`): encode, write, list and read back through a real local store."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData
from otlp_helpers import encoded, normalize, sdk_spans

from tempo_lite import spantable
from tempo_lite.block import paths
from tempo_lite.block.blocklist import BlockList
from tempo_lite.block.bloom import BloomFilter
from tempo_lite.block.meta import FORMAT_VERSION, FORMATS, BlockMeta
from tempo_lite.block.paths import BLOOM, DATA, META, RESOURCES, TRACES, VALUES
from tempo_lite.block.reader import BlockReader, BlockReadError, Footer, open_block
from tempo_lite.block.versions import VERSIONS, UnsupportedFormat, version
from tempo_lite.block.writer import encode_block, write_block
from tempo_lite.storage.cache import ByteCache
from tempo_lite.storage.store import local_store


def _many_traces(traces: int = 300, spans_per_trace: int = 7) -> TracesData:
    rng = np.random.default_rng(3)
    data = TracesData()
    ss = data.resource_spans.add()
    ss.resource.attributes.add(key="service.name", value=AnyValue(string_value="svc"))
    scope = ss.scope_spans.add()
    for t in range(traces):
        trace_id = rng.bytes(16)
        ids = [rng.bytes(8) for _ in range(spans_per_trace)]
        for i, sid in enumerate(ids):
            scope.spans.add(
                trace_id=trace_id, span_id=sid, parent_span_id=ids[0] if i else b"", name=f"op{i}", kind=2,
                start_time_unix_nano=1_000_000 * t + i, end_time_unix_nano=1_000_000 * t + i + 500,
                attributes=[KeyValue(key="http.method", value=AnyValue(string_value="GET")),
                            KeyValue(key="n", value=AnyValue(int_value=i))],
            )
    return data


@pytest.fixture(params=FORMATS)
def fmt(request: pytest.FixtureRequest) -> str:
    """Every block format this tempo-lite reads: each test runs over blocks written in each."""
    return str(request.param)


async def _written(tmp_path: Path, data: TracesData, **kwargs: object) -> tuple[BlockMeta, object]:
    store = local_store(str(tmp_path / "blocks"))
    block = encode_block(spantable.flatten(data.resource_spans), block_id="b1", tenant="t", **kwargs)  # type: ignore[arg-type]
    await write_block(store, block)
    return block.meta, store


async def test_round_trip_through_a_local_store(tmp_path: Path, fmt: str) -> None:
    request = encoded(sdk_spans(traces=4))
    data = TracesData(resource_spans=request.resource_spans)
    meta, store = await _written(tmp_path, data, format=fmt)
    assert meta.format == fmt
    files = sorted(os.listdir(tmp_path / "blocks" / "t" / "b1"))
    assert files == sorted([DATA, RESOURCES, TRACES, BLOOM, VALUES, META])
    blocks = BlockList(store)
    await blocks.poll()
    [listed] = blocks.blocks("t")
    assert listed == meta and meta.total_traces == 4 and meta.total_spans == 20
    assert "http.method" in meta.dedicated_columns
    reader = BlockReader(store, listed, ByteCache(1 << 20))
    found = {}
    for rs in data.resource_spans:
        for ss in rs.scope_spans:
            for sp in ss.spans:
                found.setdefault(sp.trace_id, None)
    rebuilt = TracesData()
    for trace_id in found:
        table = await reader.find_trace(trace_id)
        assert table is not None and set(table.spans.column("trace_id").to_pylist()) == {trace_id}
        rebuilt.MergeFromString(spantable.encode_traces_data(table))
    assert normalize(rebuilt) == normalize(data)
    assert await reader.find_trace(b"\xee" * 16) is None
    everything = await reader.read_all(["trace_id", "nested_set_left"])
    assert everything.num_spans == 20 and everything.spans.column_names == ["trace_id", "nested_set_left"]


async def test_row_group_ranges_cover_sorted_ids_and_find_straddling_traces(tmp_path: Path, fmt: str) -> None:
    data = _many_traces()
    meta, store = await _written(tmp_path, data, row_group_spans=50, format=fmt)
    assert sum(rg.rows for rg in meta.row_groups) == meta.total_spans == 2100
    assert all(a.max_trace_id <= b.min_trace_id for a, b in zip(meta.row_groups, meta.row_groups[1:], strict=False))
    footer = pq.ParquetFile(tmp_path / "blocks" / "t" / "b1" / DATA).metadata
    assert footer.num_row_groups == len(meta.row_groups)
    reader = BlockReader(store, meta, ByteCache(1 << 20))
    ids = (await reader.read_columns(None, ["trace_id"])).column("trace_id")
    assert ids.to_pylist() == sorted(ids.to_pylist())
    straddling = [bytes.fromhex(rg.max_trace_id) for rg in meta.row_groups[:-1]]
    assert any(len(meta.row_groups_for(t)) == 2 for t in straddling)
    for trace_id in straddling:
        table = await reader.find_trace(trace_id)
        assert table is not None and table.num_spans == 7


def test_bloom_filter_has_no_false_negatives_and_few_false_positives() -> None:
    rng = np.random.default_rng(1)
    present = np.frombuffer(rng.bytes(16 * 20_000), np.uint8).reshape(-1, 16)
    bloom = BloomFilter.from_bytes(BloomFilter.build(present, 0.01).to_bytes())
    assert all(bloom.may_contain(row.tobytes()) for row in present)
    absent = np.frombuffer(rng.bytes(16 * 5_000), np.uint8).reshape(-1, 16)
    false_positives = sum(bloom.may_contain(row.tobytes()) for row in absent)
    assert false_positives < 5_000 * 0.03
    zipkin = [bytes(8) + i.to_bytes(8, "big") for i in range(1, 2_000)]  # 64-bit IDs, high half zero
    zbloom = BloomFilter.build(np.frombuffer(b"".join(zipkin), np.uint8).reshape(-1, 16))
    assert all(zbloom.may_contain(t) for t in zipkin)


def test_bloom_filter_rejects_foreign_bytes() -> None:
    with pytest.raises(ValueError):
        BloomFilter.from_bytes(b"not a bloom")


async def test_block_without_meta_json_is_invisible(tmp_path: Path) -> None:
    meta, store = await _written(tmp_path, _many_traces(20))
    (tmp_path / "blocks" / "t" / "b1" / META).unlink()
    blocks = BlockList(store)
    await blocks.poll()
    assert blocks.blocks("t") == []
    await store.write(f"t/b1/{META}", meta.to_json())
    await blocks.poll()
    assert [m.block_id for m in blocks.blocks("t")] == ["b1"]


async def test_corrupt_data_parquet_raises_block_read_error_naming_the_block(tmp_path: Path, fmt: str) -> None:
    data = _many_traces(20)
    meta, store = await _written(tmp_path, data, format=fmt)
    path = tmp_path / "blocks" / "t" / "b1" / DATA
    path.write_bytes(b"garbage" * 100)
    reader = BlockReader(store, meta, ByteCache(1 << 20))
    trace_id = data.resource_spans[0].scope_spans[0].spans[0].trace_id
    with pytest.raises(BlockReadError, match="block t/b1"):
        await reader.find_trace(trace_id)
    path.unlink()
    with pytest.raises(BlockReadError, match="block t/b1"):
        await BlockReader(store, meta, ByteCache(1 << 20)).read_all()


def test_meta_json_round_trip_and_version_check() -> None:
    block = encode_block(spantable.flatten(_many_traces(10).resource_spans), block_id="b", tenant="t")
    assert block.meta.format == FORMAT_VERSION == "tl2"
    assert BlockMeta.from_json(block.meta.to_json()) == block.meta
    assert block.meta.start_unix_nano == 0 and block.meta.end_unix_nano == 9_000_006 + 500
    for known in FORMATS:
        assert BlockMeta.from_json(block.meta.to_json().replace(b'"tl2"', f'"{known}"'.encode())).format == known
    for unknown in (b'"tl0"', b'"tl3"', b'"vparquet4"'):
        with pytest.raises(ValueError, match="unsupported block format"):
            BlockMeta.from_json(block.meta.to_json().replace(b'"tl2"', unknown))


def test_every_readable_format_has_a_version_and_unknown_ones_are_refused(tmp_path: Path) -> None:
    assert tuple(VERSIONS) == FORMATS and FORMAT_VERSION in FORMATS
    assert version("tl1").trace_id_in_data and not version("tl2").trace_id_in_data
    with pytest.raises(UnsupportedFormat, match="tl9"):
        version("tl9")
    with pytest.raises(UnsupportedFormat):
        encode_block(spantable.flatten(_many_traces(2).resource_spans), block_id="b", tenant="t", format="tl9")
    meta = dataclasses.replace(
        encode_block(spantable.flatten(_many_traces(2).resource_spans), block_id="b", tenant="t").meta, format="tl9")
    with pytest.raises(BlockReadError, match="block t/b: meta.json: unsupported block format 'tl9'"):
        open_block(local_store(str(tmp_path)), meta, ByteCache(1 << 20))


def test_tl2_leaves_trace_id_out_of_data_parquet_and_is_smaller() -> None:
    table = spantable.flatten(_many_traces(200).resource_spans)
    tl1 = encode_block(table, block_id="b", tenant="t", format="tl1")
    tl2 = encode_block(table, block_id="b", tenant="t", format="tl2")
    assert "trace_id" in pq.read_schema(pa.BufferReader(tl1.files[DATA])).names
    assert "trace_id" not in pq.read_schema(pa.BufferReader(tl2.files[DATA])).names
    assert tl2.meta.row_groups == tl1.meta.row_groups and tl2.files[TRACES] == tl1.files[TRACES]
    assert tl2.meta.size_bytes < tl1.meta.size_bytes - 200 * 16


async def test_both_formats_read_the_same_rows_for_any_row_groups_and_columns(tmp_path: Path) -> None:
    table = spantable.flatten(_many_traces(60).resource_spans)
    store = local_store(str(tmp_path))
    readers = {}
    for fmt in FORMATS:
        block = encode_block(table, block_id=fmt, tenant="t", row_group_spans=32, format=fmt)
        await write_block(store, block)
        readers[fmt] = BlockReader(store, block.meta, ByteCache(1 << 20))
    for groups, columns in ((None, None), ([0, 3, 4], None), ([2], ["trace_id", "name"]), ([1, 5], ["name"]),
                            (None, ["trace_id"]), ([], ["trace_id", "kind"])):
        got = {fmt: await r.read_columns(groups, columns) for fmt, r in readers.items()}
        assert got["tl1"].equals(got["tl2"]), (groups, columns)
    assert (await readers["tl2"].read_all()).spans.equals((await readers["tl1"].read_all()).spans)


async def test_trace_index_names_each_traces_rows(tmp_path: Path, fmt: str) -> None:
    meta, store = await _written(tmp_path, _many_traces(40), row_group_spans=16, format=fmt)
    reader = BlockReader(store, meta, ByteCache(1 << 20))
    index = await reader.trace_index()
    assert index is not None and index.num_rows == meta.total_spans == 280
    ids = (await reader.read_columns(None, ["trace_id"])).column("trace_id").to_pylist()
    for trace_id in set(ids):
        lo, hi = index.rows_of(trace_id) or (0, 0)
        assert ids[lo:hi] == [trace_id] * 7 and trace_id not in ids[:lo] + ids[hi:]
    assert index.rows_of(b"\x00" * 16) is None and index.rows_of(b"\xff" * 16) is None
    zero_tail = min(ids)[:15] + b"\x00"  # numpy drops trailing zero bytes: must still not match
    assert index.rows_of(zero_tail) is None or zero_tail in ids


async def test_tl1_block_with_an_inconsistent_trace_table_falls_back_to_the_id_column(tmp_path: Path) -> None:
    data = _many_traces(30)
    meta, store = await _written(tmp_path, data, row_group_spans=50, format="tl1")
    traces_path = tmp_path / "blocks" / "t" / "b1" / TRACES
    traces = pq.read_table(traces_path)
    pq.write_table(traces.slice(1), traces_path)  # one trace missing: the counts no longer add up
    reader = BlockReader(store, meta, ByteCache(1 << 20))
    assert await reader.trace_index() is None
    trace_id = data.resource_spans[0].scope_spans[0].spans[0].trace_id
    found = await reader.find_trace(trace_id)
    assert found is not None and found.num_spans == 7
    assert set(found.spans.column("trace_id").to_pylist()) == {trace_id}


async def test_tl2_block_with_an_inconsistent_trace_table_is_unreadable(tmp_path: Path) -> None:
    data = _many_traces(30)
    meta, store = await _written(tmp_path, data, format="tl2")
    traces_path = tmp_path / "blocks" / "t" / "b1" / TRACES
    pq.write_table(pq.read_table(traces_path).slice(1), traces_path)
    reader = BlockReader(store, meta, ByteCache(1 << 20))
    with pytest.raises(BlockReadError, match="block t/b1: decoding traces.parquet: traces.parquet counts 203"):
        await reader.find_trace(data.resource_spans[0].scope_spans[0].spans[0].trace_id)


def test_block_paths_are_built_in_one_place() -> None:
    assert paths.block_file("tenant-a", "b1", paths.META) == "tenant-a/b1/meta.json"
    assert paths.block_dir("tenant-a", "b1") == "tenant-a/b1" and paths.tenant_dir("tenant-a") == "tenant-a"
    assert {paths.DATA, paths.RESOURCES, paths.TRACES, paths.BLOOM} == {DATA, RESOURCES, TRACES, BLOOM}


async def test_encoding_dedupes_and_sorts_spans(tmp_path: Path, fmt: str) -> None:
    table = spantable.flatten(_many_traces(30).resource_spans)
    block = encode_block(spantable.concat([table, table]), block_id="b", tenant="t", format=fmt)
    assert block.meta.total_spans == table.num_spans
    store = local_store(str(tmp_path))
    await write_block(store, block)
    spans = (await BlockReader(store, block.meta, ByteCache(1 << 20)).read_all()).spans
    keys = list(zip(spans.column("trace_id").to_pylist(), spans.column("start_unix_nano").to_pylist(), strict=True))
    assert keys == sorted(keys)


def test_meta_lists_attribute_keys_and_types_per_scope() -> None:
    data = TracesData()
    rs = data.resource_spans.add()
    rs.resource.attributes.add(key="service.name", value=AnyValue(string_value="svc"))
    ss = rs.scope_spans.add()
    ss.scope.attributes.add(key="lib.flag", value=AnyValue(bool_value=True))
    for i, value in enumerate([AnyValue(int_value=200), AnyValue(string_value="ok")]):
        span = ss.spans.add(trace_id=b"\x01" * 16, span_id=bytes([i + 1]) * 8, name="s",
                            start_time_unix_nano=1000, end_time_unix_nano=2000)
        span.attributes.add(key="code", value=value)
        span.attributes.add(key="http.method", value=AnyValue(string_value="GET"))
        span.events.add(name="e", attributes=[KeyValue(key="ev.n", value=AnyValue(double_value=1.5))])
    block = encode_block(spantable.flatten(data.resource_spans), block_id="b", tenant="t")
    keys = block.meta.attribute_keys
    assert keys["span"] == {"code": [spantable.STRING, spantable.INT], "http.method": [spantable.STRING]}
    assert keys["resource"] == {"service.name": [spantable.STRING]}
    assert keys["scope"] == {"lib.flag": [spantable.BOOL]}
    assert keys["event"] == {"ev.n": [spantable.DOUBLE]} and keys["link"] == {}
    assert BlockMeta.from_json(block.meta.to_json()).attribute_keys == keys


def test_footer_counts_the_compressed_chunks_of_the_columns_and_row_groups_read() -> None:
    block = encode_block(spantable.flatten(encoded(sdk_spans(traces=30)).resource_spans), block_id="b", tenant="t",
                         row_group_spans=16)
    md = pq.ParquetFile(pa.BufferReader(block.files[DATA])).metadata
    footer = Footer.of(md)

    def walk(groups: list[int], prefixes: list[str] | None) -> int:
        return sum(
            md.row_group(g).column(j).total_compressed_size
            for g in groups for j in range(md.num_columns)
            if prefixes is None or any(md.row_group(g).column(j).path_in_schema == p
                                       or md.row_group(g).column(j).path_in_schema.startswith(p + ".")
                                       for p in prefixes)
        )

    every = list(range(md.num_row_groups))
    assert md.num_row_groups > 2
    assert footer.read_bytes(None, None) == walk(every, None)
    assert footer.read_bytes([0, 2], ["attrs", "name"]) == walk([0, 2], ["attrs", "name"])
    assert footer.read_bytes([1], ["attrs.list.element.key"]) == walk([1], ["attrs.list.element.key"])
    assert footer.group_first[-1] == md.num_rows


async def test_a_block_added_while_a_poll_lists_storage_stays_visible(tmp_path: Path) -> None:
    data = TracesData(resource_spans=encoded(sdk_spans(traces=2)).resource_spans)
    meta, store = await _written(tmp_path, data)
    blocks = BlockList(store)
    late = dataclasses.replace(meta, block_id="b2")
    listing = store.list

    async def list_and_add(prefix: str) -> list[str]:
        names = await listing(prefix)
        if prefix == "t":
            blocks.add(late)  # the block-builder publishing a block in the middle of the poll
            blocks.remove("t", "gone")
        return names

    store.list = list_and_add  # type: ignore[method-assign]
    await blocks.poll()
    assert sorted(m.block_id for m in blocks.blocks("t")) == ["b1", "b2"]


async def test_identical_resources_are_stored_once_and_spans_still_point_at_theirs(tmp_path: Path) -> None:
    first = encoded(sdk_spans(traces=3))
    second = encoded(sdk_spans(traces=3))  # same resources and scopes again, as every request brings them
    parts = [spantable.flatten(first.resource_spans), spantable.flatten(second.resource_spans)]
    table = spantable.concat(parts)
    block = encode_block(table, block_id="b", tenant="t")
    resources = pq.read_table(pa.BufferReader(block.files[RESOURCES]))
    assert resources.num_rows < table.resources.num_rows
    assert resources.num_rows == len({repr(r) for r in table.resources.to_pylist()})
    store = local_store(str(tmp_path / "blocks"))
    await write_block(store, block)
    reader = BlockReader(store, block.meta, ByteCache(1 << 20))
    rebuilt = TracesData()
    both = [*first.resource_spans, *second.resource_spans]
    for trace_id in {sp.trace_id for rs in both for ss in rs.scope_spans for sp in ss.spans}:
        found = await reader.find_trace(trace_id)
        assert found is not None
        rebuilt.MergeFromString(spantable.encode_traces_data(found))
    assert normalize(rebuilt) == normalize(TracesData(resource_spans=both))

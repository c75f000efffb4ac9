"""Encode a span table into block files (pure: returns bytes) and write them, `meta.json` last."""

from __future__ import annotations

import io
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tempo_lite import spantable
from tempo_lite.block import paths
from tempo_lite.block.bloom import BloomFilter
from tempo_lite.block.catalogue import MAX_BYTES_PER_KEY, encode_catalogue
from tempo_lite.block.meta import FORMAT_VERSION, BlockMeta, RowGroupRange
from tempo_lite.block.versions import version
from tempo_lite.storage.store import ObjectStore
from tempo_lite.traceql.engine_summary import trace_summaries


@dataclass(frozen=True)
class EncodedBlock:
    meta: BlockMeta
    files: dict[str, bytes]  # name -> content, without meta.json


# Columns whose row-group min/max are worth keeping: trace-ID ranges and the intrinsics TraceQL pushes
# down. Statistics on every nested attribute leaf cost ~0.6 B/span of footer for nothing.
STATISTICS_COLUMNS = ["trace_id", "start_unix_nano", "duration_nano", "end_unix_nano", "kind", "status_code", "name",
                      "service_name"]
# Random IDs and nanosecond times never repeat within a row group: a dictionary page only adds bytes
# (measured 51.0 -> 45.2 B/span), and byte-stream-split lets zstd see the slowly varying high bytes
# of the times (45.2 -> 44.6 B/span). Figures: docs/block-format.md.
NO_DICTIONARY = ("span_id", "parent_span_id", "start_unix_nano", "duration_nano")
BYTE_STREAM_SPLIT = ("start_unix_nano", "duration_nano")
# traces.parquet is sorted by trace ID, so nothing in it repeats (3.5 -> 2.7 B/span with these).
TRACE_NO_DICTIONARY = ("trace_id", "start_unix_nano", "end_unix_nano")
TRACE_BYTE_STREAM_SPLIT = ("start_unix_nano", "end_unix_nano")


def _parquet_bytes(
    table: pa.Table,
    row_group_size: int,
    no_dictionary: tuple[str, ...] = NO_DICTIONARY,
    byte_stream_split: tuple[str, ...] = BYTE_STREAM_SPLIT,
) -> bytes:
    sink = io.BytesIO()
    names = table.column_names
    pq.write_table(
        table,
        sink,
        row_group_size=row_group_size,
        compression="zstd",
        compression_level=3,
        use_dictionary=[c for c in names if c not in no_dictionary],
        use_byte_stream_split=[c for c in byte_stream_split if c in names],
        write_statistics=[c for c in STATISTICS_COLUMNS if c in names],
    )
    return sink.getvalue()


def trace_table(spans: pa.Table) -> pa.Table:
    """One row per trace: ID, first start, last end, span count, and the root span's service and name
    (null without a root span), sorted by trace ID (spans sorted by trace ID)."""
    ends = pc.add(spans.column("start_unix_nano"), spans.column("duration_nano"))
    t = pa.table({"trace_id": spans.column("trace_id"), "start": spans.column("start_unix_nano"), "end": ends})
    g = t.group_by("trace_id", use_threads=False).aggregate([("start", "min"), ("end", "max"), ("start", "count")])
    g = g.rename_columns(["trace_id", "start_unix_nano", "end_unix_nano", "span_count"])
    g = g.take(pc.sort_indices(g, [("trace_id", "ascending")]))
    # The root as trace summaries define it: the first span in row order without a parent.
    summary = trace_summaries(spantable.SpanTable(spans, spantable.RESOURCE_SCHEMA.empty_table()))
    roots = pa.table({"trace_id": summary.traces.column("trace_id"),
                      "root_service_name": summary.traces.column("root_service_name"),
                      "root_span_name": summary.traces.column("root_span_name")})
    pos = pc.index_in(g.column("trace_id"), roots.column("trace_id"))
    for name in ("root_service_name", "root_span_name"):
        g = g.append_column(pa.field(name, pa.string()), roots.column(name).take(pos))
    return g


def _dedupe_resources(table: spantable.SpanTable) -> spantable.SpanTable:
    """One resources row per distinct (resource, scope): every ingest request brings its own copies,
    which made `resource_index` a poorly compressible int per span (3.3 of 46 B/span on the benchmark)
    and the resources table thousands of rows long."""
    res = table.resources
    if res.num_rows < 2:
        return table
    first: dict[str, int] = {}
    remap = np.fromiter((first.setdefault(repr(row), len(first)) for row in res.to_pylist()), np.int32, res.num_rows)
    if len(first) == res.num_rows:
        return table
    keep = np.zeros(len(first), dtype=np.int64)
    keep[remap[::-1]] = np.arange(res.num_rows - 1, -1, -1)  # first row of each distinct value
    spans = table.spans
    i = spans.schema.get_field_index("resource_index")
    index = remap[spans.column(i).to_numpy()]
    spans = spans.set_column(i, spans.schema.field(i), pa.array(index, pa.int32()))
    return spantable.SpanTable(spans, res.take(pa.array(keep)), dict(table.dedicated))


def _keys_and_types(lists: pa.Array | pa.ChunkedArray) -> dict[str, list[int]]:
    flat = pc.list_flatten(lists)
    if len(flat) == 0:
        return {}
    pairs = pa.table({"k": pc.struct_field(flat, "key"), "t": pc.struct_field(flat, "type")})
    out: dict[str, list[int]] = {}
    for row in pairs.group_by(["k", "t"], use_threads=False).aggregate([]).to_pylist():
        out.setdefault(row["k"], []).append(int(row["t"]))
    return {k: sorted(v) for k, v in sorted(out.items())}


def attribute_keys(table: spantable.SpanTable) -> dict[str, dict[str, list[int]]]:
    """The block's catalogue: attribute keys and their types per scope (before dedicated columns)."""
    spans = table.spans
    out = {
        "span": _keys_and_types(spans.column("attrs")),
        "resource": _keys_and_types(table.resources.column("attrs")),
        "scope": _keys_and_types(table.resources.column("scope_attrs")),
    }
    for scope, column in (("event", "events"), ("link", "links")):
        flat = pc.list_flatten(spans.column(column))
        out[scope] = _keys_and_types(pc.struct_field(flat, "attrs")) if len(flat) else {}
    return out


def encode_block(
    table: spantable.SpanTable,
    *,
    block_id: str,
    tenant: str,
    row_group_spans: int = 2_000,
    max_dedicated_columns: int = 10,
    bloom_false_positive: float = 0.01,
    compaction_level: int = 0,
    source: tuple[int, int, int] = (-1, -1, -1),
    source_wal: str = "",
    source_digest: str = "",
    format: str = FORMAT_VERSION,
    prepared_spans: bool = False,
    max_catalogue_bytes_per_key: int = MAX_BYTES_PER_KEY,
) -> EncodedBlock:
    """Sort, number nested sets, choose dedicated columns and encode in block format `format` (default:
    the current one; `block.versions`), with the key catalogue and the tag-value catalogue (`values.parquet`,
    keys over `max_catalogue_bytes_per_key` left out). CPU-bound: run in a thread. With `prepared_spans`, the table is
    already deduplicated, sorted by trace and numbered (as the compactor's sliced merge leaves it)."""
    layout = version(format)
    if not prepared_spans:
        table = spantable.dedupe_spans(spantable.concat([table]))
        table = spantable.with_nested_sets(spantable.sort_by_trace(table))
    strings = spantable.choose_dedicated_keys(table, max_dedicated_columns)
    typed = spantable.choose_typed_dedicated(table, exclude=strings)
    catalogue = attribute_keys(table)
    values_file, values_info = encode_catalogue(table, catalogue, max_catalogue_bytes_per_key)
    table = _dedupe_resources(spantable.dedicate(table, {**{k: spantable.STRING for k in strings}, **typed}))
    spans = table.spans
    # tl2 rebuilds trace_id from traces.parquet (same order, span counts): the column is not stored.
    data = _parquet_bytes(spans if layout.trace_id_in_data else spans.drop_columns(["trace_id"]), row_group_spans)
    traces = trace_table(spans)
    ids = spans.column("trace_id").combine_chunks()
    row_groups = []
    for start in range(0, spans.num_rows, row_group_spans):
        chunk = ids.slice(start, min(row_group_spans, spans.num_rows - start))
        row_groups.append(RowGroupRange(chunk[0].as_py().hex(), chunk[len(chunk) - 1].as_py().hex(), len(chunk)))
    trace_ids = np.frombuffer(traces.column("trace_id").combine_chunks().buffers()[1], dtype=np.uint8)
    trace_ids = trace_ids[: traces.num_rows * 16].reshape(-1, 16)
    files = {
        paths.DATA: data,
        paths.RESOURCES: _parquet_bytes(table.resources, 100_000),
        paths.TRACES: _parquet_bytes(traces, 100_000, TRACE_NO_DICTIONARY, TRACE_BYTE_STREAM_SPLIT),
        paths.BLOOM: BloomFilter.build(trace_ids, bloom_false_positive).to_bytes(),
        paths.VALUES: values_file,
    }
    meta = BlockMeta(
        block_id=block_id,
        tenant=tenant,
        start_unix_nano=int(pc.min(traces.column("start_unix_nano")).as_py() or 0),
        end_unix_nano=int(pc.max(traces.column("end_unix_nano")).as_py() or 0),
        total_traces=traces.num_rows,
        total_spans=spans.num_rows,
        size_bytes=sum(len(v) for v in files.values()),
        compaction_level=compaction_level,
        dedicated_columns=dict(table.dedicated),
        row_groups=row_groups,
        source_wal=source_wal,
        source_partition=source[0],
        source_first_offset=source[1],
        source_end_offset=source[2],
        source_digest=source_digest,
        created_unix=time.time(),
        attribute_keys=catalogue,
        value_catalogue=values_info,
        format=layout.name,
    )
    return EncodedBlock(meta, files)


async def write_block(store: ObjectStore, block: EncodedBlock) -> None:
    """Write every file, then `meta.json`: a crash before the last write leaves an invisible block."""
    tenant, block_id = block.meta.tenant, block.meta.block_id
    for name, content in block.files.items():
        await store.write(paths.block_file(tenant, block_id, name), content)
    await store.write(paths.block_file(tenant, block_id, paths.META), block.meta.to_json())

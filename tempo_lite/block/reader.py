"""Read blocks of every format version (`block.versions`): meta, bloom filter, trace index, Parquet
footer and tag-value catalogue come from a bounded cache (`warm` loads them when the block list first sees
a block); span rows are read by row group."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import trio
from pyarrow._parquet import ParquetReader

from tempo_lite import spantable
from tempo_lite.block import paths
from tempo_lite.block.bloom import BloomFilter
from tempo_lite.block.catalogue import ValueCatalogue
from tempo_lite.block.footer import Footer
from tempo_lite.block.meta import BlockMeta
from tempo_lite.block.traceindex import TraceIndex, id_array
from tempo_lite.block.versions import UnsupportedFormat, version
from tempo_lite.errors import StorageError
from tempo_lite.storage.cache import ByteCache
from tempo_lite.storage.store import ObjectStore

__all__ = ["BlockReadError", "BlockReader", "Footer", "TraceIndex"]

T = TypeVar("T")
_TRACE_ID = spantable.SPAN_SCHEMA.field("trace_id")  # as stored in tl1 (not null)


def _search_sorted(ids: pa.ChunkedArray, trace_id: bytes, side: str) -> int:
    """Index of the first row whose ID is >= (left) or > (right) `trace_id`; IDs sorted ascending."""
    return int(np.searchsorted(id_array(ids), np.bytes_(trace_id), side=side))  # type: ignore[call-overload]


class BlockReadError(StorageError):
    """A block could not be read (missing file, corrupt Parquet); the message names the block."""


class BlockReader:
    def __init__(self, store: ObjectStore, meta: BlockMeta, cache: ByteCache) -> None:
        self.store = store
        self.meta = meta
        self.cache = cache
        self.prefix = paths.block_dir(meta.tenant, meta.block_id)
        try:
            self.version = version(meta.format)
        except UnsupportedFormat as exc:
            raise self._fail("meta.json", exc) from exc

    def _path(self, name: str) -> str:
        return paths.block_file(self.meta.tenant, self.meta.block_id, name)

    def _fail(self, what: str, exc: Exception) -> BlockReadError:
        return BlockReadError(f"block {self.meta.tenant}/{self.meta.block_id}: {what}: {exc}")

    def cache_key(self, name: str) -> str:
        """The cache key of something derived from one of this block's files (`name`, e.g. `traces.parquet#x`)."""
        return f"{self.store.name}:{self.prefix}/{name}"

    async def _cached(self, name: str, loader: Callable[[], Awaitable[T]], size_of: Callable[[T], int]) -> T:
        try:
            value: T = await self.cache.get_or_load(self.cache_key(name), loader, size_of)
        except StorageError as exc:
            raise self._fail(f"reading {name.split('#')[0]}", exc) from exc
        except (OSError, ValueError, KeyError, pa.ArrowException) as exc:
            raise self._fail(f"decoding {name.split('#')[0]}", exc) from exc
        return value

    def _cached_now(self, name: str) -> Any:
        """What the cache holds for `name` now (None: not loaded), without loading or waiting."""
        return self.cache.get(self.cache_key(name))

    async def warm(self) -> None:
        """Load what a trace-by-ID lookup needs (bloom filter, trace index, footer, resources) into the
        cache, so that the first query touching the block does not pay for it."""
        await self.bloom()
        await self.trace_index()
        await self.footer_info()
        await self.resources()
        await self.value_catalogue()

    async def bloom(self) -> BloomFilter:
        async def load() -> BloomFilter:
            return BloomFilter.from_bytes(await self.store.read(self._path(paths.BLOOM)))

        return await self._cached(paths.BLOOM, load, lambda b: len(b.bits) + 64)

    def bloom_rejects(self, trace_id: bytes) -> bool:
        """True when the cached bloom filter proves the block lacks the trace (False if not cached)."""
        bloom = self._cached_now(paths.BLOOM)
        return bloom is not None and not bloom.may_contain(trace_id)

    async def value_catalogue(self) -> ValueCatalogue | None:
        """The block's tag-value catalogue (cached); None for blocks written without one."""
        if not self.meta.value_catalogue:
            return None

        async def load() -> ValueCatalogue:
            data = await self.store.read(self._path(paths.VALUES))
            return await trio.to_thread.run_sync(ValueCatalogue.decode, data, self.meta.value_catalogue)

        return await self._cached(paths.VALUES, load, lambda c: c.nbytes)

    async def resources(self) -> pa.Table:
        async def load() -> pa.Table:
            data = await self.store.read(self._path(paths.RESOURCES))
            return pq.read_table(pa.BufferReader(data))

        return await self._cached(paths.RESOURCES, load, lambda t: t.nbytes + 64)

    async def trace_table(self, columns: list[str] | None = None) -> pa.Table:
        """traces.parquet (one row per trace, sorted by ID), decoded on a worker thread; not cached."""
        data = await self.store.read(self._path(paths.TRACES))
        return await trio.to_thread.run_sync(lambda: pq.read_table(pa.BufferReader(data), columns=columns))

    async def trace_index(self) -> TraceIndex | None:
        """Each trace's rows in data.parquet (cached). None for a tl1 block whose trace table does not
        add up to its spans (then lookups fall back to reading the trace_id column)."""

        async def load() -> TraceIndex | None:
            index = TraceIndex.from_table(await self.trace_table(["trace_id", "span_count"]))
            if index.num_rows != self.meta.total_spans:
                if not self.version.trace_id_in_data:
                    raise ValueError(f"traces.parquet counts {index.num_rows} spans, meta.json {self.meta.total_spans}")
                return None
            return index

        return await self._cached(paths.TRACES + "#index", load, lambda i: 64 if i is None else i.nbytes)

    @property
    def _native(self) -> bool:
        protocol = self.store.fs.protocol
        return "file" in (protocol if isinstance(protocol, tuple) else (protocol,))

    def _open_data(self) -> Any:
        """data.parquet as a file pyarrow can read: a native OS file for the local backend (reads
        release the GIL and skip fsspec's Python-level buffering), else fsspec's range-reading file
        (which counts the bytes it fetches; native reads are counted by `_count_native_read`)."""
        if self._native:
            return pa.OSFile(self.store.full_path(self._path(paths.DATA)), "rb")
        return self.store.open_sync(self._path(paths.DATA))

    def _count_native_read(self, footer: Footer, row_groups: list[int] | None, columns: list[str] | None) -> None:
        """Bytes a native read fetched: the compressed column chunks of the row groups read."""
        if self._native:
            self.store.count_read(footer.read_bytes(row_groups, columns))

    async def footer_info(self) -> Footer:
        """The data.parquet footer and what is derived from it (cached)."""

        def read_footer() -> Footer:
            with self._open_data() as f:
                metadata = pq.ParquetFile(f).metadata
            if self._native:
                self.store.count_read(metadata.serialized_size + 8)
            return Footer.of(metadata)

        async def load() -> Footer:
            return await trio.to_thread.run_sync(read_footer, limiter=self.store.limiter)

        return await self._cached(paths.DATA + "#footer", load, lambda f: f.nbytes)

    async def footer(self) -> pq.FileMetaData:
        return (await self.footer_info()).metadata

    def _stored_columns(self, columns: list[str] | None) -> tuple[list[str] | None, bool]:
        """(the columns to read from data.parquet, whether to add a rebuilt `trace_id`)."""
        if self.version.trace_id_in_data:
            return columns, False
        if columns is None:
            return None, True
        return [c for c in columns if c != "trace_id"], "trace_id" in columns

    async def _read_rows(
        self,
        row_groups: list[int] | None,
        columns: list[str] | None = None,
        *,
        use_threads: bool = True,
        rows: tuple[int, int] | None = None,
    ) -> pa.Table:
        """Span rows of some row groups (None: all), only `columns` (None: all), optionally cut to the
        file rows [lo, hi) (which must lie in `row_groups`). `trace_id` comes from the trace index in
        formats that do not store it."""
        footer = await self.footer_info()
        stored, rebuild = self._stored_columns(columns)
        index = await self.trace_index() if rebuild or (rows is not None and columns is None) else None
        if rows is not None and columns is None and index is not None:
            # One trace: its ID is known, do not decode the column (tl1 stores it).
            stored, rebuild = [c for c in footer.names if c != "trace_id"], True

        def read() -> pa.Table:
            with self._open_data() as f:
                # The reader under pq.ParquetFile, opened with the cached footer and leaf indices.
                reader = ParquetReader()
                reader.open(f, metadata=footer.metadata)
                indices = footer.column_indices(stored)
                if row_groups is None:
                    table = reader.read_all(column_indices=indices, use_threads=use_threads)
                else:
                    table = reader.read_row_groups(row_groups, column_indices=indices, use_threads=use_threads)
            self._count_native_read(footer, row_groups, stored)
            first = 0 if not row_groups else int(footer.group_first[row_groups[0]])
            if rows is not None:
                table = table.slice(rows[0] - first, rows[1] - rows[0])
            if rebuild:
                assert index is not None
                table = table.add_column(0, _TRACE_ID, self._ids_for(index, footer, row_groups, rows))
            return table

        try:
            return await trio.to_thread.run_sync(read, limiter=self.store.limiter)
        except FileNotFoundError as exc:
            raise self._fail("data.parquet missing", exc) from exc
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise self._fail("reading data.parquet", exc) from exc

    @staticmethod
    def _ids_for(index: TraceIndex, footer: Footer, row_groups: list[int] | None,
                 rows: tuple[int, int] | None) -> pa.Array:
        if rows is not None:
            numbers = np.arange(rows[0], rows[1], dtype=np.int64)
        elif row_groups is None:
            numbers = np.arange(footer.num_rows, dtype=np.int64)
        else:
            firsts = footer.group_first
            numbers = np.concatenate([np.arange(firsts[g], firsts[g + 1], dtype=np.int64) for g in row_groups]
                                     or [np.zeros(0, dtype=np.int64)])
        return index.ids_of_rows(numbers)

    async def read_columns(self, row_groups: list[int] | None, columns: list[str] | None) -> pa.Table:
        """Raw span rows of some row groups (None: all) and columns (None: all), bytes counted."""
        return await self._read_rows(row_groups, columns)

    def distinct_values(self, footer: Footer, column: str) -> pa.Array:
        """Distinct non-null values of a top-level column of data.parquet (call from a worker thread).
        String columns are read dictionary-encoded, so this is the union of the row groups' (used)
        dictionary entries: tag values without decoding every row."""
        typ = footer.metadata.schema.to_arrow_schema().field(column).type
        as_dict = [column] if pa.types.is_string(typ) or pa.types.is_binary(typ) else None
        with self._open_data() as f:
            table = pq.ParquetFile(f, metadata=footer.metadata, read_dictionary=as_dict).read(
                columns=[column], use_threads=False)
        self._count_native_read(footer, None, [column])
        col = table.column(0)
        if as_dict is None:
            return pc.unique(col.combine_chunks()).drop_null()
        # A chunk's dictionary may hold entries no row uses (after a filtered write): take the used ones.
        parts = [ch.dictionary.take(pc.unique(ch.indices).drop_null()) for ch in col.chunks if len(ch)]
        if not parts:
            return pa.array([], typ)
        return pc.unique(pa.concat_arrays(parts))

    def _table(self, spans: pa.Table, resources: pa.Table) -> spantable.SpanTable:
        return spantable.SpanTable(spans, resources, dict(self.meta.dedicated_columns))

    async def find_trace(self, trace_id: bytes) -> spantable.SpanTable | None:
        """The spans of one trace: the trace-ID ranges in meta.json and the bloom filter rule most blocks
        out, the trace index names the trace's rows, and only their 1-2 row groups are decoded."""
        if not self.meta.row_groups_for(trace_id) or not (await self.bloom()).may_contain(trace_id):
            return None
        index = await self.trace_index()
        if index is None:
            return await self._find_by_scan(trace_id)
        rows = index.rows_of(trace_id)
        if rows is None:
            return None
        footer = await self.footer_info()
        # One small row group (2k spans): decoding it on the calling thread beats fanning columns out
        # to Arrow's pool on a busy 2-core machine.
        spans = await self._read_rows(footer.groups_of_rows(*rows), use_threads=False, rows=rows)
        return self._table(spans, await self.resources())

    async def _find_by_scan(self, trace_id: bytes) -> spantable.SpanTable | None:
        """tl1 blocks without a usable trace index: binary search of the row groups' trace_id column."""
        spans = await self._read_rows(self.meta.row_groups_for(trace_id), use_threads=False)
        ids = spans.column("trace_id")
        lo = _search_sorted(ids, trace_id, "left")
        hi = _search_sorted(ids, trace_id, "right")
        if hi <= lo:
            return None
        return self._table(spans.slice(lo, hi - lo), await self.resources())

    async def read_all(self, columns: list[str] | None = None) -> spantable.SpanTable:
        """Every span of the block (search, compaction), optionally only some columns."""
        return self._table(await self._read_rows(None, columns), await self.resources())

    async def read_traces(self, trace_ids: pa.Array) -> spantable.SpanTable:
        """The spans of the given traces (all row groups whose range may hold one of them)."""
        hexes = sorted(t.hex() for t in trace_ids.to_pylist())
        groups = [
            i for i, rg in enumerate(self.meta.row_groups)
            if any(rg.min_trace_id <= h <= rg.max_trace_id for h in hexes)
        ]
        if not groups:
            return self._table(spantable.SPAN_SCHEMA.empty_table(), await self.resources())
        spans = await self._read_rows(groups)
        spans = spans.filter(pc.is_in(spans.column("trace_id"), trace_ids.cast(pa.binary(16))))
        return self._table(spans, await self.resources())


def open_block(store: ObjectStore, meta: BlockMeta, cache: ByteCache) -> BlockReader:
    """A reader for the block, whatever its format version (raises BlockReadError for an unknown one)."""
    return BlockReader(store, meta, cache)

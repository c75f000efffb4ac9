"""Read blocks: meta, bloom filter and Parquet footers come from a bounded cache; rows by range reads."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import trio
from pyarrow._parquet import ParquetReader

from tempo_lite import spantable
from tempo_lite.block.bloom import BloomFilter
from tempo_lite.block.meta import BLOOM, DATA, RESOURCES, BlockMeta
from tempo_lite.errors import StorageError
from tempo_lite.storage.cache import ByteCache
from tempo_lite.storage.store import ObjectStore


def _search_sorted(ids: pa.ChunkedArray, trace_id: bytes, side: str) -> int:
    """Index of the first row whose ID is >= (left) or > (right) `trace_id`; IDs sorted ascending."""
    arr = ids.combine_chunks()
    values = np.frombuffer(arr.buffers()[1], dtype="S16", count=len(arr), offset=arr.offset * 16)
    return int(np.searchsorted(values, np.bytes_(trace_id), side=side))


@dataclass(frozen=True)
class Footer:
    """A data.parquet footer with what readers derive from it once: per row group and leaf column the
    compressed chunk size (bytes-read accounting without walking the footer on every read), and the
    first row of each row group."""

    metadata: pq.FileMetaData
    paths: tuple[str, ...]
    chunk_sizes: np.ndarray  # (row groups, leaf columns) int64
    group_first: np.ndarray  # (row groups + 1,) int64: first row of each group, then the row count

    @classmethod
    def of(cls, md: pq.FileMetaData) -> Footer:
        n_rg, n_col = md.num_row_groups, md.num_columns
        sizes = np.zeros((n_rg, n_col), dtype=np.int64)
        rows = np.zeros(n_rg + 1, dtype=np.int64)
        for i in range(n_rg):
            rg = md.row_group(i)
            rows[i + 1] = rg.num_rows
            for j in range(n_col):
                sizes[i, j] = rg.column(j).total_compressed_size
        paths = tuple(md.schema.column(j).path for j in range(n_col))
        return cls(md, paths, sizes, np.cumsum(rows))

    @property
    def num_rows(self) -> int:
        return int(self.group_first[-1])

    @property
    def num_row_groups(self) -> int:
        return len(self.group_first) - 1

    @cached_property
    def _column_masks(self) -> dict[tuple[str, ...] | None, np.ndarray]:
        return {}

    @cached_property
    def _leaves(self) -> dict[str, list[int]]:
        """Leaf column indices under every column path prefix (what pyarrow's ParquetFile builds on
        every open; here once per footer)."""
        out: dict[str, list[int]] = {}
        for i, path in enumerate(self.paths):
            parts = path.split(".")
            for k in range(1, len(parts) + 1):
                out.setdefault(".".join(parts[:k]), []).append(i)
        return out

    @cached_property
    def _statistics(self) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray] | None]:
        return {}

    def statistics(self, column: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Row-group (min, max, known) arrays of a top-level column (None: no such column), read from
        the footer once. Groups without statistics are `known` False (their min/max are placeholders)."""
        if column not in self._statistics:
            j = self.paths.index(column) if column in self.paths else -1
            if j < 0:
                self._statistics[column] = None
                return None
            n = self.chunk_sizes.shape[0]
            lows: list[object] = [None] * n
            highs: list[object] = [None] * n
            known = np.zeros(n, dtype=bool)
            for i in range(n):
                st = self.metadata.row_group(i).column(j).statistics
                if st is not None and st.has_min_max:
                    lows[i], highs[i], known[i] = st.min, st.max, True
            fill = next((v for v in lows if v is not None), 0)
            lo = np.array([fill if v is None else v for v in lows])
            hi = np.array([fill if v is None else v for v in highs])
            self._statistics[column] = (lo, hi, known)
        return self._statistics[column]

    def column_indices(self, columns: list[str] | None) -> list[int] | None:
        if columns is None:
            return None
        return [i for c in columns for i in self._leaves.get(c, ())]

    def read_bytes(self, row_groups: list[int] | None, columns: list[str] | None) -> int:
        """Compressed bytes of the given row groups (None: all) and columns (None: all; a column
        counts all its leaves, "attrs", or just one, "attrs.list.element.key")."""
        key = None if columns is None else tuple(columns)
        mask = self._column_masks.get(key)
        if mask is None:
            mask = np.array([key is None or any(p == c or p.startswith(c + ".") for c in key) for p in self.paths],
                            dtype=bool)
            self._column_masks[key] = mask
        sizes = self.chunk_sizes if row_groups is None else self.chunk_sizes[np.asarray(row_groups, dtype=np.int64)]
        return int(sizes[:, mask].sum())

    @property
    def nbytes(self) -> int:
        return self.metadata.serialized_size * 2 + self.chunk_sizes.nbytes + 256


class BlockReadError(StorageError):
    """A block could not be read (missing file, corrupt Parquet); the message names the block."""


class BlockReader:
    def __init__(self, store: ObjectStore, meta: BlockMeta, cache: ByteCache) -> None:
        self.store = store
        self.meta = meta
        self.cache = cache
        self.prefix = f"{meta.tenant}/{meta.block_id}"

    def _fail(self, what: str, exc: Exception) -> BlockReadError:
        return BlockReadError(f"block {self.meta.tenant}/{self.meta.block_id}: {what}: {exc}")

    async def _cached(self, name: str, loader: Any, size_of: Any) -> Any:
        key = f"{self.store.name}:{self.prefix}/{name}"
        try:
            return await self.cache.get_or_load(key, loader, size_of)
        except StorageError as exc:
            raise self._fail(f"reading {name}", exc) from exc
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise self._fail(f"decoding {name}", exc) from exc

    async def bloom(self) -> BloomFilter:
        async def load() -> BloomFilter:
            return BloomFilter.from_bytes(await self.store.read(f"{self.prefix}/{BLOOM}"))

        return await self._cached(BLOOM, load, lambda b: len(b.bits) + 64)

    async def resources(self) -> pa.Table:
        async def load() -> pa.Table:
            data = await self.store.read(f"{self.prefix}/{RESOURCES}")
            return pq.read_table(pa.BufferReader(data))

        return await self._cached(RESOURCES, load, lambda t: t.nbytes + 64)

    @property
    def _native(self) -> bool:
        protocol = self.store.fs.protocol
        return "file" in (protocol if isinstance(protocol, tuple) else (protocol,))

    def open_data(self) -> Any:
        """data.parquet as a file pyarrow can read: a native OS file for the local backend (reads
        release the GIL and skip fsspec's Python-level buffering), else fsspec's range-reading file
        (which counts the bytes it fetches; native reads are counted by `_count_native_read`)."""
        if self._native:
            return pa.OSFile(self.store.full_path(f"{self.prefix}/{DATA}"), "rb")
        return self.store.open_sync(f"{self.prefix}/{DATA}")

    def _count_native_read(self, footer: Footer, row_groups: list[int] | None, columns: list[str] | None) -> None:
        """Bytes a native read fetched: the compressed column chunks of the row groups read."""
        if self._native:
            self.store.count_read(footer.read_bytes(row_groups, columns))

    async def footer_info(self) -> Footer:
        """The data.parquet footer and what is derived from it (cached)."""

        def read_footer() -> Footer:
            with self.open_data() as f:
                metadata = pq.ParquetFile(f).metadata
            if self._native:
                self.store.count_read(metadata.serialized_size + 8)
            return Footer.of(metadata)

        async def load() -> Footer:
            return await trio.to_thread.run_sync(read_footer, limiter=self.store.limiter)

        return await self._cached(DATA + "#footer", load, lambda f: f.nbytes)

    async def footer(self) -> pq.FileMetaData:
        return (await self.footer_info()).metadata

    async def _read_rows(
        self, row_groups: list[int] | None, columns: list[str] | None = None, *, use_threads: bool = True
    ) -> pa.Table:
        footer = await self.footer_info()

        def read() -> pa.Table:
            with self.open_data() as f:
                # The reader under pq.ParquetFile, opened with the cached footer and leaf indices.
                reader = ParquetReader()
                reader.open(f, metadata=footer.metadata)
                indices = footer.column_indices(columns)
                if row_groups is None:
                    table = reader.read_all(column_indices=indices, use_threads=use_threads)
                else:
                    table = reader.read_row_groups(row_groups, column_indices=indices, use_threads=use_threads)
            self._count_native_read(footer, row_groups, columns)
            return table

        try:
            return await trio.to_thread.run_sync(read, limiter=self.store.limiter)
        except FileNotFoundError as exc:
            raise self._fail("data.parquet missing", exc) from exc
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise self._fail("reading data.parquet", exc) from exc

    async def read_columns(self, row_groups: list[int] | None, columns: list[str] | None) -> pa.Table:
        """Raw span rows of some row groups (None: all) and columns (None: all), bytes counted."""
        return await self._read_rows(row_groups, columns)

    def count_native_read(self, footer: Footer, row_groups: list[int] | None, columns: list[str]) -> None:
        """Account bytes of a read done through `open_data()` by another module (no-op off local disk)."""
        self._count_native_read(footer, row_groups, columns)

    def _table(self, spans: pa.Table, resources: pa.Table) -> spantable.SpanTable:
        return spantable.SpanTable(spans, resources, dict(self.meta.dedicated_columns))

    async def find_trace(self, trace_id: bytes) -> spantable.SpanTable | None:
        """The spans of one trace, reading only the row groups whose ID range holds it."""
        groups = self.meta.row_groups_for(trace_id)
        if not groups or not (await self.bloom()).may_contain(trace_id):
            return None
        # One small row group (2k spans): decoding it on the calling thread beats fanning columns out
        # to Arrow's pool on a busy 2-core machine.
        spans = await self._read_rows(groups, use_threads=False)
        ids = spans.column("trace_id")
        # Rows are sorted by trace ID: the trace is one contiguous run, found by binary search.
        lo = _search_sorted(ids, trace_id, "left")
        hi = _search_sorted(ids, trace_id, "right")
        if hi <= lo:
            return None
        return self._table(spans.slice(lo, hi - lo), await self.resources())

    async def read_all(self, columns: list[str] | None = None) -> spantable.SpanTable:
        """Every span of the block (search), optionally only some columns."""
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

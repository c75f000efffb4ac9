"""Tag names and tag values over the live-store and the blocks (Grafana's autocomplete), block by block.

Blocks never change, so what a block answers without a `q` filter is computed once and cached:

* tag values come from the block's value catalogue (`values.parquet`, loaded with the block's other
  metadata when the block list first sees it) for every attribute key and for `name` / `statusMessage`;
  blocks written without one, keys it left out for size (capped), and unscoped keys that both spans and
  resources hold take the paths below;
* tag names come from the block's key catalogue (`meta.json` `attribute_keys`), without reading spans;
* values of a span attribute kept in a dedicated column, and of `name` / `statusMessage`, are the distinct
  values of that column, read dictionary-encoded (a string column's distinct values are the union of its
  row groups' dictionaries, no per-span strings are built); a resource attribute's values come from the
  block's resources table, restricted to the rows its spans use; a key the catalogue does not list gives
  nothing without any read.

Everything else (a `q` filter, generic attributes, events, links) reads just the fields' columns of a few
row groups at a time and evaluates them with `querier.tags` (so memory stays bounded), and the live-store
is evaluated as it is. Answers are the same as evaluating every span (tests/unit/test_tags.py).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pyarrow as pa
import trio

from tempo_lite import spantable
from tempo_lite.block.meta import BlockMeta
from tempo_lite.block.paths import DATA
from tempo_lite.block.reader import BlockReader
from tempo_lite.errors import StorageError
from tempo_lite.querier import pushdown
from tempo_lite.querier.metrics_source import CHUNK_ROWS
from tempo_lite.querier.search import Searcher, SearchStats
from tempo_lite.querier.tags import (
    ATTRIBUTE_SCOPES,
    constant_tag_values,
    distinct_values,
    merge_tag_names,
    tag_names,
    tag_values_v2,
    typed_value,
    typed_values,
    values_table,
)
from tempo_lite.traceql.ast import Attribute, Intrinsic, Scope, SpansetFilter, render
from tempo_lite.traceql.engine_context import SpanContext
from tempo_lite.traceql.engine_query import referenced_fields
from tempo_lite.traceql.tag_values import CATALOGUE_INTRINSICS, CATALOGUE_SCOPES

log = logging.getLogger(__name__)

TypedValues = set[tuple[str, str]]
# Block catalogue scopes -> tag-name scopes.
_CATALOGUE_SCOPES = {"span": "span", "resource": "resource", "scope": "instrumentation", "event": "event",
                     "link": "link"}
_INTRINSIC_COLUMNS = {Intrinsic.NAME: "name", Intrinsic.STATUS_MESSAGE: "status_message"}
_CATALOGUED_INTRINSICS = {it: key for key, it in CATALOGUE_INTRINSICS.items()}
_SCOPE_NAMES = {scope: name for name, scope in CATALOGUE_SCOPES.items()}


def _values_size(values: frozenset[tuple[str, str]]) -> int:
    return 64 + sum(len(t) + len(v) + 100 for t, v in values)


def _slot_of(typ: pa.DataType) -> str | None:
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return "str"
    if pa.types.is_integer(typ):
        return "int"
    if pa.types.is_floating(typ):
        return "float"
    if pa.types.is_boolean(typ):
        return "bool"
    return None


def _catalogue_name(meta: BlockMeta, ref: Attribute | Intrinsic) -> tuple[str, str] | None:
    """The (scope, key) under which a block's value catalogue holds `ref`'s values, if it does."""
    if not meta.value_catalogue:
        return None
    if isinstance(ref, Intrinsic):
        key = _CATALOGUED_INTRINSICS.get(ref)
        return None if key is None else ("intrinsic", key)
    if ref.parent:
        return None
    if ref.scope is Scope.NONE:
        # Unscoped: a span's value, else its resource's. Held by one of the two only, that one answers.
        in_span = ref.name in meta.attribute_keys.get("span", {})
        in_resource = ref.name in meta.attribute_keys.get("resource", {})
        if in_span and in_resource:
            return None
        return ("span" if in_span else "resource", ref.name)
    return (_SCOPE_NAMES[ref.scope], ref.name)


class TagSource:
    """Tag names and values of one tenant's live-store and blocks overlapping a time range."""

    def __init__(self, searcher: Searcher, *, chunk_rows: int | None = None) -> None:
        self.searcher = searcher
        self.querier = searcher.querier
        self.chunk_rows = CHUNK_ROWS if chunk_rows is None else chunk_rows

    # --- shared --------------------------------------------------------------------------------

    async def _each_block(
        self, tenant: str, start_ns: int, end_ns: int, stats: SearchStats,
        job: Callable[[BlockMeta], Awaitable[Any]],
    ) -> list[Any]:
        blocks = self.querier.blocklist.blocks(tenant, start_ns, end_ns)
        stats.total_blocks += len(blocks)
        stats.total_jobs += 1 + len(blocks)
        stats.completed_jobs += 1
        stats.total_block_bytes += sum(m.size_bytes for m in blocks)
        out: list[Any] = []

        async def run(meta: BlockMeta) -> None:
            try:
                async with self.searcher.limiter:
                    out.append(await job(meta))
                stats.completed_jobs += 1
            except StorageError as exc:
                self.querier.metrics.blocks_unreadable.inc()
                log.warning("tags: %s", exc.message)
                stats.failed_blocks.append(exc.message)

        async with trio.open_nursery() as nursery:
            for meta in blocks:
                nursery.start_soon(run, meta)
        return out

    async def _cached(
        self, meta: BlockMeta, what: str, load: Callable[[], Awaitable[Any]], size_of: Callable[[Any], int]
    ) -> Any:
        key = f"{self.querier.store.name}:{meta.tenant}/{meta.block_id}/{DATA}#{what}"
        return await self.querier.cache.get_or_load(key, load, size_of)

    async def _slices(
        self, meta: BlockMeta, fields: list[Any] | None, stats: SearchStats,
        each: Callable[[spantable.SpanTable], Any],
    ) -> list[Any]:
        """`each` over the block read a few row groups at a time, only the columns giving `fields`
        (None: every column)."""
        columns = None
        if fields is not None:
            generic: frozenset[str] = frozenset()
            if any(isinstance(f, Attribute) and f.name in meta.dedicated_columns for f in fields):
                generic = await self.searcher.generic_keys(meta)
            columns = pushdown.field_columns(fields, meta.dedicated_columns, generic)
        reader = self.querier.reader(meta)
        footer = await reader.footer_info()
        resources = await reader.resources()
        dedicated = {k: c for k, c in meta.dedicated_columns.items() if columns is None or c in columns}
        out = []
        run: list[int] = []
        rows = 0
        groups = list(range(footer.num_row_groups))
        for g in groups:
            run.append(g)
            rows += int(footer.group_first[g + 1] - footer.group_first[g])
            if rows < self.chunk_rows and g != groups[-1]:
                continue
            spans = await reader.read_columns(run, columns)
            stats.inspected_bytes += spans.nbytes
            table = spantable.SpanTable(spans, resources, dict(dedicated))
            table = table if columns is None else spantable.with_empty_lists(table)
            out.append(await trio.to_thread.run_sync(each, table))
            run, rows = [], 0
        return out

    # --- tag names -----------------------------------------------------------------------------

    async def names(
        self, tenant: str, start_ns: int, end_ns: int, q: SpansetFilter | None, stats: SearchStats
    ) -> dict[str, set[str]]:
        live = await self.querier.live.snapshot(tenant)
        parts = []
        if live.num_spans:
            stats.inspected_bytes += live.nbytes
            parts.append(await trio.to_thread.run_sync(tag_names, live, q))

        async def block(meta: BlockMeta) -> dict[str, set[str]]:
            if q is None and meta.attribute_keys:
                # The catalogue lists every key a span of the block holds (before dedicated columns).
                out: dict[str, set[str]] = {s: set() for s in ATTRIBUTE_SCOPES}
                for scope, keys in meta.attribute_keys.items():
                    if scope in _CATALOGUE_SCOPES:
                        out[_CATALOGUE_SCOPES[scope]].update(keys)
                return out

            def each(table: spantable.SpanTable) -> dict[str, set[str]]:
                return tag_names(table, q)

            return merge_tag_names(*await self._slices(meta, None, stats, each))

        parts += await self._each_block(tenant, start_ns, end_ns, stats, block)
        return merge_tag_names(*parts)

    # --- tag values ----------------------------------------------------------------------------

    async def values(
        self, tenant: str, start_ns: int, end_ns: int, ref: Attribute | Intrinsic, q: SpansetFilter | None,
        stats: SearchStats,
    ) -> TypedValues:
        """Distinct typed values of `ref` on the spans matching `q` (every span without `q`)."""
        table = await self.values_table(tenant, start_ns, end_ns, ref, q, stats)
        return set(zip(table.column("type").to_pylist(), table.column("value").to_pylist(), strict=True))

    async def values_table(
        self, tenant: str, start_ns: int, end_ns: int, ref: Attribute | Intrinsic, q: SpansetFilter | None,
        stats: SearchStats,
    ) -> pa.Table:
        """`values` as a table of distinct (type, value) rows, unsorted: blocks with a value catalogue answer
        from it when there is no `q`, without reading spans."""
        fixed = constant_tag_values(ref, q)
        if fixed is not None:
            return values_table(fixed)
        live = await self.querier.live.snapshot(tenant)
        parts: list[pa.Table] = []
        if live.num_spans:
            stats.inspected_bytes += live.nbytes
            parts.append(values_table(await trio.to_thread.run_sync(tag_values_v2, live, ref, q)))
        fields = [ref, *(referenced_fields(q) if q is not None else [])]

        async def block(meta: BlockMeta) -> pa.Table:
            if q is None:
                catalogued = await self._catalogue_values(meta, ref)
                if catalogued is not None:
                    return catalogued

            def each(table: spantable.SpanTable) -> TypedValues:
                return tag_values_v2(table, ref, q)

            async def load() -> frozenset[tuple[str, str]]:
                fast = await self._block_values(meta, ref, stats) if q is None else None
                if fast is None:
                    fast = set().union(*await self._slices(meta, fields, stats, each))
                return frozenset(fast)

            if q is not None:
                return values_table(await load())
            # Without q the block's answer never changes: cached whole.
            return values_table(await self._cached(meta, f"tag-values:{render(ref)}", load, _values_size))

        parts += await self._each_block(tenant, start_ns, end_ns, stats, block)
        return await trio.to_thread.run_sync(distinct_values, parts)

    async def _catalogue_values(self, meta: BlockMeta, ref: Attribute | Intrinsic) -> pa.Table | None:
        """The values of `ref` from the block's value catalogue; None when it has none for `ref` (no
        catalogue, a capped key, a field it does not cover, or an unscoped key held by spans and resources)."""
        name = _catalogue_name(meta, ref)
        if name is None:
            return None
        catalogue = await self.querier.reader(meta).value_catalogue()
        return None if catalogue is None else catalogue.values(*name)

    async def _block_values(
        self, meta: BlockMeta, ref: Attribute | Intrinsic, stats: SearchStats
    ) -> TypedValues | None:
        """The values of `ref` in a block from its catalogue, column dictionaries and resources table;
        None when they need the spans (generic attributes, events, links, other intrinsics)."""
        catalogue = meta.attribute_keys
        if not catalogue:
            return None
        if isinstance(ref, Intrinsic):
            column = _INTRINSIC_COLUMNS.get(ref)
            return None if column is None else await self._column_values(meta, column, "str", stats)
        if ref.parent or ref.scope not in (Scope.SPAN, Scope.RESOURCE, Scope.NONE):
            return None
        out: TypedValues = set()
        if ref.scope in (Scope.SPAN, Scope.NONE) and ref.name in catalogue.get("span", {}):
            column = meta.dedicated_columns.get(ref.name)
            if column is None or len(catalogue["span"][ref.name]) > 1:
                return None  # held in the generic attribute lists (too)
            values = await self._column_values(meta, column, None, stats)
            if values is None:
                return None
            out |= values
        if ref.scope in (Scope.RESOURCE, Scope.NONE) and ref.name in catalogue.get("resource", {}):
            out |= await self._resource_values(meta, ref.name, stats)
        return out

    async def _column_values(
        self, meta: BlockMeta, column: str, slot: str | None, stats: SearchStats
    ) -> TypedValues | None:
        reader = self.querier.reader(meta)
        footer = await reader.footer_info()
        if column not in footer.paths:
            return None
        slot = slot or _slot_of(footer.metadata.schema.to_arrow_schema().field(column).type)
        if slot is None:
            return None

        def read() -> frozenset[tuple[str, str]]:
            return frozenset(typed_value(slot, x) for x in reader.distinct_values(footer, column))

        async def load() -> frozenset[tuple[str, str]]:
            return await trio.to_thread.run_sync(read, limiter=self.querier.store.limiter)

        stats.inspected_bytes += footer.read_bytes(None, [column])
        try:
            return set(await self._cached(meta, f"distinct:{column}", load, _values_size))
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise StorageError(f"block {meta.tenant}/{meta.block_id}: reading {column}: {exc}") from exc

    async def _resource_values(self, meta: BlockMeta, key: str, stats: SearchStats) -> TypedValues:
        """Values of a resource attribute on the resources rows the block's spans use."""
        reader = self.querier.reader(meta)
        resources = await reader.resources()
        used = await self._used_resources(meta, reader, stats)
        ctx = SpanContext(spantable.SpanTable(spantable.SPAN_SCHEMA.empty_table(), resources, {}))
        col = ctx.per_resource("resource", key)
        return typed_values(col if len(used) == resources.num_rows else col.take(used))

    async def _used_resources(self, meta: BlockMeta, reader: BlockReader, stats: SearchStats) -> np.ndarray:
        footer = await reader.footer_info()

        def read() -> np.ndarray:
            index = reader.distinct_values(footer, "resource_index")
            return np.asarray(index.to_numpy(zero_copy_only=False), dtype=np.int64)

        async def load() -> np.ndarray:
            return await trio.to_thread.run_sync(read, limiter=self.querier.store.limiter)

        stats.inspected_bytes += footer.read_bytes(None, ["resource_index"])
        try:
            return await self._cached(meta, "distinct:resource_index", load, lambda a: a.nbytes + 64)
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise StorageError(f"block {meta.tenant}/{meta.block_id}: reading resource_index: {exc}") from exc

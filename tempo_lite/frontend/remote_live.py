"""Recent spans from live-store processes (split deployments): `RemoteLiveStores`, a `querier.live.LiveSource`.

The querier's configuration lists the live-stores and the WAL partitions each consumes
(`querier.live_stores`); every query asks each of them over their internal API (`api/live.py`) and the
querier merges the answers with the blocks exactly as it merges its own live-store's. A live-store that
does not answer fails the query with 503 naming it: an answer without its partitions' recent spans would
silently miss acknowledged data. Snapshots are cached per live-store and tenant and revalidated with
their ETag, so an unchanged live-store costs one small round trip.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx
import trio

from tempo_lite import spantable
from tempo_lite.config import LiveStoreInstance
from tempo_lite.errors import Unavailable

log = logging.getLogger(__name__)


@dataclass
class _Cached:
    etag: str
    table: spantable.SpanTable


def serving(instances: Sequence[LiveStoreInstance], readable: frozenset[int] | None,
            partitions: int) -> tuple[LiveStoreInstance, ...]:
    """The live-stores that serve a partition the ring says is readable (all of them without a ring): a
    live-store whose partitions were all drained (their data is in blocks) is not asked."""
    if readable is None:
        return tuple(instances)
    return tuple(i for i in instances if readable.intersection(i.partitions or range(partitions)))


class RemoteLiveStores:
    def __init__(self, instances: tuple[LiveStoreInstance, ...], *, timeout: float, wait: float,
                 readable: Callable[[], frozenset[int] | None] = lambda: None, partitions: int = 0) -> None:
        self.instances = instances
        self.readable = readable  # the partition ring's readable partitions (wal/ring.py), None: no ring
        self.partitions = partitions
        self.timeout = timeout
        self.wait = wait  # read after write: how long each live-store may wait to consume what it holds
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(timeout + wait))
        self._cache: dict[tuple[str, str], _Cached] = {}

    async def aclose(self) -> None:
        await self._client.aclose()

    async def snapshot(self, tenant: str) -> spantable.SpanTable:
        tables = await self._ask_all("snapshot", {"tenant": tenant}, cache_key=tenant)
        return self._merge(tables)

    async def find_trace(self, tenant: str, trace_id: bytes) -> spantable.SpanTable | None:
        tables = await self._ask_all("trace", {"tenant": tenant, "id": trace_id.hex()}, cache_key=None)
        if not tables:
            return None
        return self._merge(tables)

    def _merge(self, tables: list[spantable.SpanTable]) -> spantable.SpanTable:
        tables = [t for t in tables if t.num_spans]
        if not tables:
            return spantable.empty_span_table()
        if len(tables) == 1:
            return tables[0]
        # Disjoint partitions hold disjoint records; a partition configured twice (or a record replayed)
        # yields copies, dropped as the in-process path drops them.
        return spantable.dedupe_spans(spantable.concat(tables))

    async def _ask_all(self, what: str, params: dict[str, str], cache_key: str | None) -> list[spantable.SpanTable]:
        found: list[spantable.SpanTable] = []

        async def ask(instance: LiveStoreInstance) -> None:
            table = await self._ask(instance, what, params, cache_key)
            if table is not None:
                found.append(table)

        async with trio.open_nursery() as nursery:
            for instance in serving(self.instances, self.readable(), self.partitions):
                nursery.start_soon(ask, instance)
        return found

    async def _ask(
        self, instance: LiveStoreInstance, what: str, params: dict[str, str], cache_key: str | None
    ) -> spantable.SpanTable | None:
        url = f"{instance.url.rstrip('/')}/internal/live/{what}"
        key = (instance.url, cache_key) if cache_key is not None else None
        cached = self._cache.get(key) if key is not None else None
        headers = {"If-None-Match": cached.etag} if cached is not None else {}
        try:
            response = await self._client.get(url, params={**params, "wait": str(self.wait)}, headers=headers)
        except httpx.HTTPError as exc:
            raise Unavailable(self._problem(instance, f"{type(exc).__name__}: {exc}")) from exc
        if response.status_code == 304 and cached is not None:
            return cached.table
        if response.status_code == 404 and what == "trace":
            return None
        if response.status_code != 200:
            raise Unavailable(self._problem(instance, f"HTTP {response.status_code}: {response.text.strip()[:200]}"))
        try:
            table = await trio.to_thread.run_sync(spantable.from_ipc, response.content)
        except ValueError as exc:
            raise Unavailable(self._problem(instance, str(exc))) from exc
        etag = response.headers.get("ETag")
        if key is not None and etag:
            self._cache[key] = _Cached(etag, table)
        return table

    @staticmethod
    def _problem(instance: LiveStoreInstance, detail: str) -> str:
        parts = ",".join(str(p) for p in instance.partitions) or "all"
        return f"live-store {instance.url} (partitions {parts}) did not answer: {detail}"

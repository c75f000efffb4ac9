"""Recent spans from live-store processes (split deployments): `RemoteLiveStores`, a `querier.live.LiveSource`.

The querier's configuration lists the live-stores, the WAL partitions each consumes and its zone
(`querier.live_stores`); every query needs an answer for each readable partition from one live-store that
serves it (read quorum 1), asked over their internal API (`api/live.py`), and the querier merges the
answers with the blocks exactly as it merges its own live-store's. Of two live-stores of a partition (zone
twins) the one in the querier's own zone (`querier.zone`) is asked first, then the others in their listed
order; one that fails or does not answer within `querier.live_store_timeout` is replaced by its twin, and
is asked last for `FAILED_BACKOFF_S`. Only when no live-store of a partition answers does the query fail,
with 503 naming the partition and why each of its live-stores failed: an answer without its recent spans
would silently miss acknowledged data. Snapshots are cached per live-store and tenant and revalidated with
their ETag, so an unchanged live-store costs one small round trip.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import httpx
import trio

from tempo_lite import spantable
from tempo_lite.config import LiveStoreInstance
from tempo_lite.errors import Unavailable

log = logging.getLogger(__name__)

FAILED_BACKOFF_S = 5.0
# The partition ring's readable live-store instances, (partition, zone) pairs; None: no ring (ask all).
Readable = frozenset[tuple[int, str]] | None


@dataclass
class _Cached:
    etag: str
    table: spantable.SpanTable


def serving(instances: Sequence[LiveStoreInstance], readable: Readable,
            partitions: int) -> tuple[LiveStoreInstance, ...]:
    """The live-stores to ask, each narrowed to the partitions the ring has its instance of (all of them,
    unchanged, without a ring): a live-store whose instances were all drained (their data is in blocks)
    is not asked."""
    if readable is None:
        return tuple(instances)
    out = []
    for i in instances:
        mine = tuple(p for p in (i.partitions or range(partitions)) if (p, i.zone) in readable)
        if mine:
            out.append(replace(i, partitions=mine))
    return tuple(out)


def replicas(instances: Sequence[LiveStoreInstance], partitions: int,
             zone: str) -> dict[int, list[LiveStoreInstance]]:
    """Partition -> the live-stores serving it, those of `zone` first, then in the listed order."""
    by_partition: dict[int, list[LiveStoreInstance]] = {}
    ordered = sorted(instances, key=lambda i: bool(zone) and i.zone != zone)
    for i in ordered:
        for p in i.partitions or range(partitions):
            by_partition.setdefault(p, []).append(i)
    return by_partition


class RemoteLiveStores:
    def __init__(self, instances: tuple[LiveStoreInstance, ...], *, timeout: float, wait: float,
                 readable: Callable[[], Readable] = lambda: None, partitions: int = 0, zone: str = "") -> None:
        self.instances = instances
        self.readable = readable  # the partition ring's readable instances (wal/ring.py), None: no ring
        self.partitions = partitions
        self.zone = zone  # this querier's zone: its twins are asked first
        self._failed_at: dict[str, float] = {}  # live-store URL -> trio time of its last failure
        self.timeout = timeout
        self.wait = wait  # read after write: how long each live-store may wait to consume what it holds
        # The bound is `_ask`'s deadline (timeout + wait for the whole answer); the client's own per-read
        # timeout only backs it up.
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(timeout + wait + 1.0))
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
        """One answer per readable partition: each round asks, at once, the first untried live-store of
        each partition still unanswered; a failure leaves its partitions to their next live-store."""
        live = serving(self.instances, self.readable(), self.partitions)
        now = trio.current_time()
        recently_failed = {url for url, at in self._failed_at.items() if now - at < FAILED_BACKOFF_S}
        candidates = {p: sorted(c, key=lambda i: i.url in recently_failed)
                      for p, c in replicas(live, self.partitions, self.zone).items()}
        found: list[spantable.SpanTable] = []
        problems: dict[str, str] = {}  # url -> why it failed
        needed = set(candidates)
        while needed:
            chosen: list[LiveStoreInstance] = []
            for p in sorted(needed):
                if any(p in (i.partitions or range(self.partitions)) for i in chosen):
                    continue
                untried = [i for i in candidates[p] if i.url not in problems]
                if not untried:
                    raise Unavailable(self._no_answer(p, candidates[p], problems))
                chosen.append(untried[0])

            async def ask(instance: LiveStoreInstance) -> None:
                try:
                    table = await self._ask(instance, what, params, cache_key)
                except Unavailable as exc:
                    problems[instance.url] = exc.message
                    self._failed_at[instance.url] = trio.current_time()
                    log.warning("%s; asking its zone twin if it has one", exc.message)
                    return
                self._failed_at.pop(instance.url, None)
                needed.difference_update(instance.partitions or range(self.partitions))
                if table is not None:
                    found.append(table)

            async with trio.open_nursery() as nursery:
                for instance in chosen:
                    nursery.start_soon(ask, instance)
        return found

    def _no_answer(self, partition: int, asked: list[LiveStoreInstance], problems: dict[str, str]) -> str:
        why = "; ".join(problems.get(i.url, f"{i.url}: not asked") for i in asked)
        return f"no live-store of WAL partition {partition} answered ({len(asked)} serve it): {why}"

    async def _ask(
        self, instance: LiveStoreInstance, what: str, params: dict[str, str], cache_key: str | None
    ) -> spantable.SpanTable | None:
        url = f"{instance.url.rstrip('/')}/internal/live/{what}"
        key = (instance.url, cache_key) if cache_key is not None else None
        cached = self._cache.get(key) if key is not None else None
        headers = {"If-None-Match": cached.etag} if cached is not None else {}
        try:
            with trio.fail_after(self.timeout + self.wait):
                response = await self._client.get(url, params={**params, "wait": str(self.wait)}, headers=headers)
        except trio.TooSlowError as exc:
            raise Unavailable(self._problem(instance, f"no answer within {self.timeout + self.wait:g}s")) from exc
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
        zone = f", zone {instance.zone}" if instance.zone else ""
        return f"live-store {instance.url} (partitions {parts}{zone}) did not answer: {detail}"

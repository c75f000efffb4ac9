"""`ByteCache`: a bounded in-memory LRU cache evicted by total size in bytes, for small hot objects
read from storage again and again (meta.json, bloom filters, Parquet footers).

Concurrent `get_or_load` calls for one key share a single load, so a burst of queries touching the
same block costs one storage read.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any

import trio


@dataclass(frozen=True)
class CacheStatistics:
    entries: int
    bytes: int
    max_bytes: int
    hits: int
    misses: int
    evictions: int
    loads_in_flight: int


class _Load:
    """One in-flight load that later callers of the same key wait for."""

    def __init__(self) -> None:
        self.done = trio.Event()
        self.value: Any = None
        self.error: BaseException | None = None


class ByteCache:
    """LRU by bytes: `put` evicts least recently used entries until the total fits `max_bytes`.

    A value larger than `max_bytes` is never stored. `get`/`put` are thread-safe (pyarrow readers
    run in worker threads); `get_or_load` is for trio tasks.
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._loads: dict[Hashable, _Load] = {}
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    @property
    def total_bytes(self) -> int:
        return self._bytes

    def get(self, key: Hashable) -> Any | None:
        """The cached value (marked most recently used), or None; counts a hit or a miss."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry[0]

    def put(self, key: Hashable, value: Any, size: int) -> bool:
        """Store `value` costing `size` bytes; False if it alone exceeds the bound (not stored)."""
        if size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            if size > self.max_bytes:
                return False
            self._entries[key] = (value, size)
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, (_, evicted_size) = self._entries.popitem(last=False)
                self._bytes -= evicted_size
                self.evictions += 1
            return True

    def discard(self, key: Hashable) -> None:
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[1]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    async def get_or_load(
        self, key: Hashable, loader: Callable[[], Awaitable[Any]], size_of: Callable[[Any], int]
    ) -> Any:
        """The cached value, else `await loader()` once for all concurrent callers of `key`.

        A failed load is not cached: every waiter gets the error and the next call loads again.
        """
        value = self.get(key)
        if value is not None:
            return value
        pending = self._loads.get(key)
        if pending is not None:
            await pending.done.wait()
            if pending.error is not None:
                raise pending.error
            return pending.value
        load = _Load()
        self._loads[key] = load
        try:
            value = await loader()
            self.put(key, value, size_of(value))
            load.value = value
            return value
        except BaseException as exc:
            load.error = exc
            raise
        finally:
            del self._loads[key]
            load.done.set()

    def statistics(self) -> CacheStatistics:
        return CacheStatistics(
            entries=len(self._entries),
            bytes=self._bytes,
            max_bytes=self.max_bytes,
            hits=self.hits,
            misses=self.misses,
            evictions=self.evictions,
            loads_in_flight=len(self._loads),
        )

"""`ByteCache`: a bounded in-memory LRU evicted by total size, for meta.json, bloom filters and footers."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import trio


class ByteCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._items: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self._loading: dict[str, trio.Event] = {}

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str) -> Any | None:
        item = self._items.get(key)
        if item is None:
            return None
        self._items.move_to_end(key)
        return item[0]

    def put(self, key: str, value: Any, size: int) -> None:
        if key in self._items:
            self.bytes -= self._items.pop(key)[1]
        if size > self.max_bytes:
            return  # larger than the whole cache: not worth evicting everything else
        self._items[key] = (value, size)
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, (_, evicted) = self._items.popitem(last=False)
            self.bytes -= evicted

    def discard(self, key: str) -> None:
        if key in self._items:
            self.bytes -= self._items.pop(key)[1]

    async def get_or_load(
        self, key: str, loader: Callable[[], Awaitable[Any]], size_of: Callable[[Any], int]
    ) -> Any:
        """The cached value, or `loader()`'s; concurrent callers of one key share a single load."""
        while True:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return item[0]
            pending = self._loading.get(key)
            if pending is None:
                break
            await pending.wait()
        self.misses += 1
        done = self._loading[key] = trio.Event()
        try:
            value = await loader()
            self.put(key, value, size_of(value))
            return value
        finally:
            del self._loading[key]
            done.set()

"""The object store layer (tempo_lite/storage/) without emulators: the store API on the local and memory
backends, the byte cache, and the retry with backoff (trio's MockClock stands in for the waits). The same
API on S3, GCS and Azure emulators: tests/e2e/test_storage_contract.py.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import trio
import trio.testing

from tempo_lite.errors import StorageError
from tempo_lite.storage.cache import ByteCache
from tempo_lite.storage.retry import backoff_delay, with_backoff
from tempo_lite.storage.store import ObjectNotFound, ObjectStore, local_store, memory_store


@pytest.fixture(params=["local", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    return local_store(str(tmp_path / "objects")) if request.param == "local" else memory_store()


async def test_objects_are_written_read_listed_and_deleted(store: ObjectStore) -> None:
    await store.write("t/b1/data.parquet", b"0123456789")
    await store.write("t/b1/meta.json", b"{}")
    await store.write("t/b2/meta.json", b"{}")
    assert await store.read("t/b1/data.parquet") == b"0123456789"
    assert await store.read_range("t/b1/data.parquet", 2, 3) == b"234"
    assert await store.size("t/b1/data.parquet") == 10
    assert await store.list("") == ["t"]
    assert await store.list("t") == ["b1", "b2"]
    assert await store.list("absent") == []
    await store.delete("t/b1")  # a prefix: everything under it
    assert await store.list("t") == ["b2"]
    assert not await store.exists("t/b1/meta.json")
    await store.delete("t/b1")  # absent: not an error


async def test_reading_a_missing_object_names_it(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFound, match="t/none.json"):
        await store.read("t/none.json")


async def test_a_rewrite_replaces_the_whole_object(store: ObjectStore) -> None:
    await store.write("k", b"long first version")
    await store.write("k", b"short")
    assert await store.read("k") == b"short"


def test_the_cache_evicts_least_recently_used_bytes_first() -> None:
    cache = ByteCache(10)
    cache.put("a", "A", 4)
    cache.put("b", "B", 4)
    assert cache.get("a") == "A"  # "a" is now the most recently used
    cache.put("c", "C", 4)
    assert ("a" in cache, "b" in cache, "c" in cache) == (True, False, True)
    assert cache.total_bytes == 8 and cache.evictions == 1
    assert not cache.put("huge", "H", 11)  # larger than the whole cache: never stored
    assert (cache.hits, cache.misses) == (1, 0)


async def test_concurrent_loads_of_one_key_run_the_loader_once() -> None:
    cache = ByteCache(100)
    calls = 0

    async def load() -> str:
        nonlocal calls
        calls += 1
        await trio.sleep(0.01)
        return "value"

    results: list[str] = []

    async def one() -> None:
        results.append(await cache.get_or_load("k", load, len))

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(one)
    assert results == ["value"] * 5 and calls == 1


def test_backoff_delays_double_up_to_the_cap_with_jitter() -> None:
    rng = random.Random(1)
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (10, 30.0)]:
        assert ceiling / 2 <= backoff_delay(attempt, base=0.5, cap=30.0, rng=rng) <= ceiling


async def test_storage_errors_are_retried_until_the_store_answers(autojump_clock: trio.testing.MockClock) -> None:
    failures = [StorageError("down"), StorageError("still down")]
    seen: list[int] = []

    async def call() -> str:
        if failures:
            raise failures.pop(0)
        return "ok"

    result = await with_backoff(call, what="write", on_error=lambda what, exc, attempt, delay: seen.append(attempt))
    assert result == "ok" and seen == [1, 2]


async def test_retries_give_up_after_the_attempts_and_other_errors_pass_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def down() -> None:
        raise StorageError("down")

    with pytest.raises(StorageError, match="down"):
        await with_backoff(down, what="write", attempts=3)

    async def broken() -> None:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        await with_backoff(broken, what="write")

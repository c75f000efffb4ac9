"""Open the configured WAL backend: the one place that maps `WalConfig` onto a `WriteAheadLog`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from tempo_lite.errors import ConfigError
from tempo_lite.wal import WriteAheadLog

if TYPE_CHECKING:
    from tempo_lite import config as tempo_config

BACKENDS = ("embedded", "kafka", "managed", "redpanda")
# Backends where tempo-lite runs the broker itself (tempo_lite/wal/managed.py), then uses it as `kafka`.
MANAGED_BACKENDS = ("managed", "redpanda")


@dataclass(frozen=True, slots=True)
class ManagedConfig:
    """How tempo-lite runs and supervises its own broker (`managed` and `redpanda` backends; docs/wal.md).

    `command`, `env` values and `files` contents may use the placeholders {host}, {port}, {rpc_port},
    {admin_port} and {data_dir}; `files` are written under the data directory before every start.
    """

    command: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    files: Mapping[str, str] = field(default_factory=dict)
    host: str = "127.0.0.1"
    port: int = 0  # the Kafka listener; 0 picks a free port once and keeps it (data_dir/ports.json)
    start_timeout: float = 60.0
    restart_backoff: float = 1.0
    max_restart_backoff: float = 30.0
    stop_timeout: float = 30.0
    redpanda_path: str = ""  # the redpanda binary; "" looks for `redpanda` on PATH
    redpanda_smp: int = 1
    redpanda_memory: str = "1G"
    redpanda_args: tuple[str, ...] = ()


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
    managed: ManagedConfig = field(default_factory=ManagedConfig)


def wal_config(section: tempo_config.WalConfig) -> WalConfig:
    """The `storage.trace.wal` section of the configuration (`tempo_lite.config.WalConfig`) as a `WalConfig`."""
    managed, redpanda = section.managed, section.redpanda
    return WalConfig(
        backend=section.backend,
        path=section.path,
        partitions=section.partitions,
        bytes_limit=section.max_retained_bytes,
        kafka_brokers=section.kafka.brokers,
        kafka_topic=section.kafka.topic,
        managed=ManagedConfig(
            command=tuple(str(arg) for arg in managed.command),
            env={str(k): "" if v is None else str(v) for k, v in managed.env.items()},
            files={str(k): "" if v is None else str(v) for k, v in managed.files.items()},
            host=managed.host,
            port=managed.port,
            start_timeout=float(managed.start_timeout),
            restart_backoff=float(managed.restart_backoff),
            max_restart_backoff=float(managed.max_restart_backoff),
            stop_timeout=float(managed.stop_timeout),
            redpanda_path=redpanda.path,
            redpanda_smp=redpanda.smp,
            redpanda_memory=redpanda.memory,
            redpanda_args=tuple(str(arg) for arg in redpanda.args),
        ),
    )


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
    if config.backend in MANAGED_BACKENDS:
        raise ConfigError(
            f"wal.backend {config.backend!r} runs its own broker and is opened with open_wal, not open_backend"
        )
    raise ConfigError(f"wal.backend must be one of {list(BACKENDS)}, got {config.backend!r}")


@asynccontextmanager
async def open_wal(config: WalConfig) -> AsyncIterator[WriteAheadLog]:
    """The open WAL with its background loop running in a nursery owned here; closed (drained) on exit."""
    if config.backend in MANAGED_BACKENDS:
        from tempo_lite.wal.managed import open_managed_wal

        async with open_managed_wal(config) as managed:
            yield managed
        return
    wal = await open_backend(config)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(wal.run)
        try:
            yield wal
        finally:
            with trio.CancelScope(shield=True):
                await wal.aclose()

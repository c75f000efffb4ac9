"""Open the configured WAL backend: the one place that maps `WalOptions` onto a `WriteAheadLog`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import TYPE_CHECKING

import trio

from tempo_lite.errors import ConfigError
from tempo_lite.wal import WriteAheadLog
from tempo_lite.wal.options import ManagedOptions, WalOptions

if TYPE_CHECKING:
    from tempo_lite import config as tempo_config
    from tempo_lite.wal.broker_supervisor import BrokerSupervisor

BACKENDS = ("embedded", "kafka", "managed", "redpanda")
# Backends where tempo-lite runs the broker itself (wal/broker_supervisor.py), then uses it as `kafka` (wal/managed.py).
MANAGED_BACKENDS = ("managed", "redpanda")


def wal_config(section: tempo_config.WalConfig) -> WalOptions:
    """The `storage.trace.wal` section of the configuration (`tempo_lite.config.WalOptions`) as a `WalOptions`."""
    managed, redpanda = section.managed, section.redpanda
    return WalOptions(
        backend=section.backend,
        path=section.path,
        partitions=section.partitions,
        bytes_limit=section.max_retained_bytes,
        kafka_brokers=section.kafka.brokers,
        kafka_topic=section.kafka.topic,
        managed=ManagedOptions(
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


async def open_backend(config: WalOptions, supervisor: BrokerSupervisor | None = None) -> WriteAheadLog:
    """Open the backend `config.backend` names, without starting its background loop (see `open_wal`).

    A managed backend's WAL is the kafka backend on the broker `supervisor` runs (`open_wal` starts it and
    passes `config` as a kafka WAL on the broker's address), wrapped in `ManagedWal`."""
    if config.bytes_limit <= 0:
        raise ConfigError(f"wal.bytes_limit must be positive, got {config.bytes_limit}")
    if supervisor is not None:
        # The plain Kafka client under the supervisor: ManagedWal waits out the broker's restarts itself (not
        # kafka_outage.py, which serves brokers tempo-lite does not run). Imported here so the embedded
        # default works without confluent-kafka installed.
        from tempo_lite.wal.kafka import open_kafka_wal
        from tempo_lite.wal.managed import ManagedWal

        kafka = await open_kafka_wal(
            config.kafka_brokers, config.kafka_topic, config.partitions, config.groups, config.bytes_limit
        )
        return ManagedWal(kafka, supervisor, outage_timeout=config.managed.start_timeout)
    if config.backend == "embedded":
        from tempo_lite.wal.embedded import open_embedded_wal

        return await open_embedded_wal(config.path, config.partitions, config.groups, config.bytes_limit)
    if config.backend == "kafka":
        # The plain backend waits out broker outages itself (kafka_outage.py).
        from tempo_lite.wal.kafka_outage import open_waiting_kafka_wal

        return await open_waiting_kafka_wal(
            config.kafka_brokers, config.kafka_topic, config.partitions, config.groups, config.bytes_limit
        )
    if config.backend in MANAGED_BACKENDS:
        raise ConfigError(
            f"wal.backend {config.backend!r} runs its own broker and is opened with open_wal, not open_backend"
        )
    raise ConfigError(f"wal.backend must be one of {list(BACKENDS)}, got {config.backend!r}")


@asynccontextmanager
async def open_wal(config: WalOptions) -> AsyncIterator[WriteAheadLog]:
    """The open WAL with its background loop running in a nursery owned here; closed (drained) on exit.

    The one way to open a WAL. For the managed backends (`managed`, `redpanda`) the same nursery first runs
    the broker's supervisor (wal/broker_supervisor.py), then `open_backend` opens the WAL on it; on exit the
    WAL is closed before the broker is stopped.
    """
    supervisor: BrokerSupervisor | None = None
    failure: Exception | None = None
    async with trio.open_nursery() as nursery:
        try:
            if config.backend in MANAGED_BACKENDS:
                supervisor, config = await _start_broker(config, nursery)
            wal = await open_backend(config, supervisor)
        except Exception as exc:
            # Raised after the nursery, unwrapped: start-up errors (ConfigError) reach the CLI as they are.
            failure = exc
            if supervisor is not None:
                with trio.CancelScope(shield=True):
                    await supervisor.stop()
            nursery.cancel_scope.cancel()
        else:
            nursery.start_soon(wal.run)
            try:
                yield wal
            finally:
                with trio.CancelScope(shield=True):
                    await wal.aclose()
                    if supervisor is not None:
                        await supervisor.stop()
    if failure is not None:
        raise failure


async def _start_broker(config: WalOptions, nursery: trio.Nursery) -> tuple[BrokerSupervisor, WalOptions]:
    """Start the managed broker under `nursery`; returns its supervisor and `config` as a kafka WAL on it."""
    # Imported here so the embedded default works without confluent-kafka installed.
    from tempo_lite.wal.broker_command import broker_command
    from tempo_lite.wal.broker_supervisor import BrokerSupervisor

    supervisor = BrokerSupervisor(broker_command(config), config.managed)
    address = await nursery.start(supervisor.run)
    return supervisor, replace(config, backend="kafka", kafka_brokers=address)

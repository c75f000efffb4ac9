"""What opening a WAL needs, already validated for types: the backend and its settings.

Built from the `storage.trace.wal` section of the configuration by `factory.wal_config`; kept apart from
the factory so that backends (e.g. `broker_command.py`) can use it without importing the factory.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ManagedOptions:
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
class WalOptions:
    """The `wal` section of the configuration, already validated for types."""

    backend: str = "embedded"
    path: str = "./tempo-data/wal"
    partitions: int = 4
    bytes_limit: int = 1 << 30
    groups: tuple[str, ...] = ("livestore", "blockbuilder")
    kafka_brokers: str = ""
    kafka_topic: str = "tempo-lite-wal"
    managed: ManagedOptions = field(default_factory=ManagedOptions)

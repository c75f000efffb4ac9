"""The write-ahead log: a durable, partitioned, Kafka-shaped log of OTLP payloads.

Every backend (embedded SQLite, a Kafka-protocol broker) implements `WriteAheadLog`. Producers
append and are told an offset only once the record is durable; each consumer group (live-store,
block-builder, metrics-generator) reads from its own committed offset, so a restart replays exactly
what that group had not finished.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from tempo_lite.errors import Unavailable


@dataclass(frozen=True, slots=True)
class WalEntry:
    """What a producer appends: one OTLP `TracesData` payload for one tenant and partition."""

    partition: int
    tenant: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class WalRecord:
    """What a consumer reads back."""

    partition: int
    offset: int
    tenant: str
    payload: bytes
    timestamp_ns: int


@dataclass(frozen=True, slots=True)
class WalStatistics:
    """Introspection for /metrics and back-pressure (bytes not yet committed by every group)."""

    partitions: int
    records_retained: int
    bytes_retained: int
    bytes_limit: int


class WriteAheadLog(Protocol):
    """One interface for every WAL backend; see tests/e2e/test_wal_contract.py for the contract."""

    @property
    def partitions(self) -> int: ...

    @property
    def identity(self) -> str:
        """An ID created with this log and kept with it (embedded: stored in the database; Kafka: the
        topic's ID). Block IDs include it, so another log's blocks are never overwritten."""
        ...

    async def append(self, entries: Sequence[WalEntry]) -> list[int]:
        """Append entries and return their offsets once all of them are durable.

        Concurrent callers share one fsync / broker round-trip (group commit). Raises
        `tempo_lite.errors.Unavailable` when retained bytes exceed the configured bound.
        """
        ...

    async def read(self, partition: int, start_offset: int, max_records: int) -> list[WalRecord]:
        """Records with offset >= start_offset, in offset order, at most max_records; [] if none yet."""
        ...

    async def wait_for_records(self, partition: int, offset: int, timeout: float) -> bool:
        """Wait until a record with offset >= `offset` exists (True) or `timeout` seconds pass (False)."""
        ...

    async def commit(self, group: str, partition: int, next_offset: int) -> None:
        """Durably record that `group` has processed every record below `next_offset`."""
        ...

    async def committed(self, group: str, partition: int) -> int:
        """The next offset `group` must read (0 when it never committed)."""
        ...

    async def end_offset(self, partition: int) -> int:
        """The offset the next appended record of `partition` will get."""
        ...

    def statistics(self) -> WalStatistics: ...

    async def run(self) -> None:
        """The backend's background loop (the embedded writer, the Kafka delivery poller).

        `factory.open_wal` runs it in a nursery it owns; it returns once `aclose()` has drained it.
        """
        ...

    async def aclose(self) -> None: ...


class BackendChecks:
    """The argument checks every backend makes, as its base class. The backend sets `_partitions`, `_groups`
    and `_closed`, and names itself in `_what` (for the error a call on a closed WAL gets)."""

    _partitions: int
    _groups: tuple[str, ...]
    _closed: bool
    _what: str

    def _check_partition(self, partition: int) -> None:
        if not 0 <= partition < self._partitions:
            raise ValueError(f"partition {partition} out of range: the WAL has {self._partitions} partitions")

    def _check_group(self, group: str) -> None:
        if group not in self._groups:
            raise ValueError(f"unknown consumer group {group!r}: the WAL was opened with {list(self._groups)}")

    def _check_open(self) -> None:
        if self._closed:
            raise Unavailable(f"{self._what} is closed")

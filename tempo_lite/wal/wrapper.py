"""`WalWrapper`: a `WriteAheadLog` that forwards every call to the WAL it wraps.

The one forwarding layer for the WALs that add behaviour around another (the outage-waiting kafka backend,
kafka_outage.py; the managed broker's WAL, managed.py): a subclass overrides only the calls it changes.
`closing` is set once `aclose` starts, so a subclass's retry loops stop retrying then.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, TypeVar

from tempo_lite.wal import WalEntry, WalRecord, WalStatistics, WriteAheadLog

W = TypeVar("W", bound=WriteAheadLog)


class WalWrapper(Generic[W]):
    """Forwards the whole `WriteAheadLog` interface to `inner`."""

    def __init__(self, inner: W) -> None:
        self.inner = inner
        self.closing = False

    @property
    def partitions(self) -> int:
        return self.inner.partitions

    @property
    def identity(self) -> str:
        return self.inner.identity

    def statistics(self) -> WalStatistics:
        return self.inner.statistics()

    async def append(self, entries: Sequence[WalEntry]) -> list[int]:
        return await self.inner.append(entries)

    async def read(self, partition: int, start_offset: int, max_records: int) -> list[WalRecord]:
        return await self.inner.read(partition, start_offset, max_records)

    async def wait_for_records(self, partition: int, offset: int, timeout: float) -> bool:
        return await self.inner.wait_for_records(partition, offset, timeout)

    async def commit(self, group: str, partition: int, next_offset: int) -> None:
        await self.inner.commit(group, partition, next_offset)

    async def committed(self, group: str, partition: int) -> int:
        return await self.inner.committed(group, partition)

    async def end_offset(self, partition: int) -> int:
        return await self.inner.end_offset(partition)

    async def run(self) -> None:
        await self.inner.run()

    async def aclose(self) -> None:
        self.closing = True
        await self.inner.aclose()

"""What the Kafka WAL knows of its partitions without asking the broker: bookkeeping, no I/O.

Per partition: the highest end offset seen, the retention point (the lowest offset some consumer group still
needs), and the sizes of the records this process appended above it, from which `statistics()` (and so the
append bound) is computed. Records appended before a restart, or by another process, have unknown sizes,
estimated by the mean of the known ones. Waiters for new records are woken here when an append lands.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

import trio

from tempo_lite.wal import WalStatistics


class PartitionLedger:
    """Shared by the producer side (kafka_append.py) and the consumer side (kafka_read.py); trio thread only."""

    def __init__(self, partitions: int, groups: tuple[str, ...], committed: dict[tuple[str, int], int]) -> None:
        self.partitions = partitions
        self.groups = groups
        self.end = [0] * partitions
        self.committed = committed  # (group, partition) -> the group's committed offset, as last seen
        self.low = [min(committed[(g, p)] for g in groups) for p in range(partitions)]
        self.inflight_bytes = 0  # handed to the producer, not yet acknowledged
        # Sizes of the records this process appended and no group set has committed past yet, kept sorted by
        # offset (deliveries of different appends may complete out of order).
        self._sizes: list[list[tuple[int, int]]] = [[] for _ in range(partitions)]
        self._known_bytes = 0
        self._appended = [trio.Event() for _ in range(partitions)]

    def statistics(self, bytes_limit: int) -> WalStatistics:
        """Best effort: exact record counts; bytes exact for this process's appends, estimated otherwise."""
        records = sum(max(e - lo, 0) for e, lo in zip(self.end, self.low, strict=True))
        known_records = sum(len(d) for d in self._sizes)
        mean = self._known_bytes / known_records if known_records else 0.0
        estimated = self._known_bytes + int(mean * max(records - known_records, 0))
        return WalStatistics(
            partitions=self.partitions,
            records_retained=records,
            bytes_retained=estimated + self.inflight_bytes,
            bytes_limit=bytes_limit,
        )

    def saw_end(self, partition: int, end: int) -> int:
        """Note an end offset the broker reported; returns the highest seen."""
        self.end[partition] = max(self.end[partition], end)
        return self.end[partition]

    def appended(self, records: Iterable[tuple[int, int, int]]) -> None:
        """Records (partition, offset, size) the broker acknowledged: move the ends, wake their waiters."""
        touched = set()
        for partition, offset, size in records:
            self.end[partition] = max(self.end[partition], offset + 1)
            bisect.insort(self._sizes[partition], (offset, size))
            self._known_bytes += size
            touched.add(partition)
        for partition in touched:
            event, self._appended[partition] = self._appended[partition], trio.Event()
            event.set()

    async def wait_appended(self, partition: int) -> None:
        """Until this process's next append to `partition` is acknowledged."""
        await self._appended[partition].wait()

    def advance_low(self, partition: int) -> bool:
        """Move the retention point to the lowest committed offset of every group; True when it moved."""
        new_low = min(self.committed[(g, partition)] for g in self.groups)
        if new_low <= self.low[partition]:
            return False
        self.low[partition] = new_low
        sizes = self._sizes[partition]
        released = bisect.bisect_left(sizes, (new_low, -1))
        self._known_bytes -= sum(size for _, size in sizes[:released])
        del sizes[:released]
        return True

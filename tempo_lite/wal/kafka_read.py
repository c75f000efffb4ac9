"""The Kafka WAL's consumer side: reads, end offsets, and consumer-group commits.

Consumer groups keep their committed offsets with the broker, committed through `assign()`-style simple
consumers so no rebalance is ever waited for. Once every group has committed past records they are freed
with DeleteRecords where the broker supports it. Blocking librdkafka calls run in worker threads, one at a
time per consumer.
"""

from __future__ import annotations

import logging
import time

import trio
from confluent_kafka import OFFSET_INVALID, KafkaError, KafkaException, TopicPartition

from tempo_lite.errors import Unavailable
from tempo_lite.wal import WalRecord
from tempo_lite.wal.kafka_ledger import PartitionLedger
from tempo_lite.wal.kafka_setup import BROKER_TIMEOUT_S, KafkaClients

# The module of these log lines when the Kafka WAL was one module, so logging configurations naming it still apply.
log = logging.getLogger("tempo_lite.wal.kafka")

# How often `wait_for_records` asks the broker for the high watermark when no local append wakes it.
WATERMARK_POLL_S = 0.1


class KafkaReader:
    """Reads and commits on `topic` through the consumers in `clients`; arguments are checked by the caller."""

    def __init__(self, topic: str, clients: KafkaClients, ledger: PartitionLedger) -> None:
        self._topic = topic
        self._clients = clients
        self._ledger = ledger
        self._deleted_below = list(ledger.low)
        self._delete_records_supported = True
        self._reader_lock = trio.Lock()
        self._prober_lock = trio.Lock()
        self._group_locks = {g: trio.Lock() for g in ledger.groups}
        self._admin_lock = trio.Lock()

    # -- records -------------------------------------------------------------------------------

    async def read(self, partition: int, start_offset: int, max_records: int) -> list[WalRecord]:
        if max_records <= 0:
            return []
        start = max(start_offset, self._ledger.low[partition])
        end = await self.end_offset(partition)
        if start >= end:
            return []
        async with self._reader_lock:
            return await trio.to_thread.run_sync(
                self._read_sync, partition, start, min(max_records, end - start), end
            )

    def _read_sync(self, partition: int, start: int, count: int, end: int) -> list[WalRecord]:
        reader = self._clients.reader
        reader.assign([TopicPartition(self._topic, partition, start)])
        records: list[WalRecord] = []
        deadline = time.monotonic() + BROKER_TIMEOUT_S
        while len(records) < count and time.monotonic() < deadline:
            for msg in reader.consume(count - len(records), timeout=0.5):
                error = msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise Unavailable(f"Kafka WAL read of {self._topic}[{partition}] failed: {error}")
                # Skip anything left over from an earlier assignment of this consumer.
                last = records[-1].offset if records else start - 1
                offset = msg.offset()
                if msg.partition() != partition or offset is None or not last < offset < end:
                    continue
                key = msg.key()
                _, timestamp_ms = msg.timestamp()
                records.append(
                    WalRecord(
                        partition=partition,
                        offset=offset,
                        tenant=key.decode() if key else "",
                        payload=msg.value() or b"",
                        timestamp_ns=max(timestamp_ms, 0) * 1_000_000,
                    )
                )
            if records and records[-1].offset + 1 >= end:
                break
        if len(records) < count and not (records and records[-1].offset + 1 >= end):
            raise Unavailable(
                f"Kafka WAL read of {self._topic}[{partition}] from {start} returned {len(records)} of "
                f"{count} records within {BROKER_TIMEOUT_S}s"
            )
        return records

    async def wait_for_records(self, partition: int, offset: int, timeout: float) -> bool:
        end = self._ledger.end
        with trio.move_on_after(timeout):
            while True:
                if end[partition] > offset or await self.end_offset(partition) > offset:
                    return True
                # Appends from this process wake us at once; other producers are seen by polling.
                with trio.move_on_after(WATERMARK_POLL_S):
                    await self._ledger.wait_appended(partition)
        return end[partition] > offset

    # -- end offsets ---------------------------------------------------------------------------

    async def end_offset(self, partition: int) -> int:
        async with self._prober_lock:
            end = await trio.to_thread.run_sync(self._high_watermark_sync, partition)
        return self._ledger.saw_end(partition, end)

    def _high_watermark_sync(self, partition: int) -> int:
        """The partition's high watermark as a fetch reports it.

        ListOffsets alone is not trusted: tansu answers it with the base offset of the last batch
        plus one. A fetch of the record just below that offset returns the last batch and the true
        high watermark on every broker, for one round trip (< 1 ms locally).
        """
        prober = self._clients.prober
        tp = TopicPartition(self._topic, partition)
        low, high = prober.get_watermark_offsets(tp, timeout=BROKER_TIMEOUT_S, cached=False)
        if high <= low:
            return high
        prober.assign([TopicPartition(self._topic, partition, high - 1)])
        deadline = time.monotonic() + BROKER_TIMEOUT_S
        fetched = OFFSET_INVALID
        while time.monotonic() < deadline:
            prober.consume(1, timeout=0.05)
            _, fetched = prober.get_watermark_offsets(tp, cached=True)
            if fetched >= high:
                break
        return max(high, fetched)

    # -- consumer groups -----------------------------------------------------------------------

    async def commit(self, group: str, partition: int, next_offset: int) -> None:
        end = self._ledger.end[partition]
        if next_offset > end:
            end = await self.end_offset(partition)
        if not 0 <= next_offset <= end:
            raise ValueError(
                f"cannot commit offset {next_offset} for group {group!r} on partition {partition}: "
                f"the partition ends at {end}"
            )
        tp = TopicPartition(self._topic, partition, next_offset)
        async with self._group_locks[group]:
            await trio.to_thread.run_sync(self._commit_sync, group, tp)
        self._ledger.committed[(group, partition)] = next_offset
        if self._ledger.advance_low(partition):
            await self._delete_records(partition, self._ledger.low[partition])

    def _commit_sync(self, group: str, tp: TopicPartition) -> None:
        for result in self._clients.group_consumers[group].commit(offsets=[tp], asynchronous=False) or []:
            if result.error is not None:
                raise Unavailable(f"Kafka WAL commit to {self._topic}[{tp.partition}] failed: {result.error}")

    async def committed(self, group: str, partition: int) -> int:
        """Read from the broker each time: in a split deployment another process commits (a live-store
        follows the block-builder's offsets), so this process's own record of it would go stale."""
        tp = TopicPartition(self._topic, partition)
        consumer = self._clients.group_consumers[group]
        async with self._group_locks[group]:
            (found,) = await trio.to_thread.run_sync(lambda: consumer.committed([tp], timeout=BROKER_TIMEOUT_S))
        committed = self._ledger.committed
        committed[(group, partition)] = max(committed[(group, partition)], max(found.offset, 0))
        # Other processes' commits free retained bytes too (a distributor never commits itself); the
        # records are deleted by a process that commits, never from here.
        self._ledger.advance_low(partition)
        return committed[(group, partition)]

    async def _delete_records(self, partition: int, below: int) -> None:
        """Free broker storage below the retention point, where the broker supports DeleteRecords.

        Readers never see those records anyway (`read` starts at the retention point); brokers without
        DeleteRecords (tansu) fall back on the topic's own retention.ms / retention.bytes.
        """
        if not self._delete_records_supported or below <= self._deleted_below[partition]:
            return
        async with self._admin_lock:
            try:
                await trio.to_thread.run_sync(
                    self._delete_records_sync, TopicPartition(self._topic, partition, below)
                )
            except (KafkaException, Unavailable) as exc:
                self._delete_records_supported = False
                log.warning(
                    "Kafka WAL: DeleteRecords on topic %s failed (%s); relying on the topic's retention "
                    "settings from now on",
                    self._topic,
                    exc,
                )
                return
        self._deleted_below[partition] = below

    def _delete_records_sync(self, tp: TopicPartition) -> None:
        futures = self._clients.admin.delete_records([tp], request_timeout=BROKER_TIMEOUT_S)
        for future in futures.values():
            future.result()

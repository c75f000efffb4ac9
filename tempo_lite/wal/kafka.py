"""The Kafka write-ahead log: one topic on any Kafka-protocol broker, through confluent-kafka (librdkafka).

A record is one Kafka message: key = tenant, value = the OTLP payload, partition and offset as Kafka's.
`KafkaWal` checks the arguments of every call and hands it to one of its parts:

- `kafka_setup.py`: opening: client settings, the topic (created if missing), committed offsets;
- `kafka_append.py`: the producer side: `append` (acks=all, idempotent; librdkafka's batching is the
  group commit) and the delivery-report loop `run`;
- `kafka_read.py`: the consumer side: `read`, end offsets, consumer-group commits;
- `kafka_ledger.py`: what both sides know of the partitions without asking the broker (`statistics`).

All blocking librdkafka calls run in worker threads. See docs/wal.md.
"""

from __future__ import annotations

from collections.abc import Sequence

import trio
from confluent_kafka import KafkaException

from tempo_lite.errors import ConfigError
from tempo_lite.wal import BackendChecks, WalEntry, WalRecord, WalStatistics
from tempo_lite.wal.kafka_append import KafkaAppender
from tempo_lite.wal.kafka_ledger import PartitionLedger
from tempo_lite.wal.kafka_read import KafkaReader
from tempo_lite.wal.kafka_setup import ErrorCallback, KafkaClients, open_clients


class KafkaWal(BackendChecks):
    """`WriteAheadLog` over a Kafka topic; create it with `open_kafka_wal`."""

    def __init__(self, topic: str, partitions: int, groups: tuple[str, ...], bytes_limit: int,
                 clients: KafkaClients) -> None:
        self._topic = topic
        self._partitions = partitions
        self._groups = groups
        self._bytes_limit = bytes_limit
        self._clients = clients
        self._ledger = PartitionLedger(partitions, groups, clients.committed)
        self._appender = KafkaAppender(topic, clients.producer, self._ledger, bytes_limit)
        self._reader = KafkaReader(topic, clients, self._ledger)
        self._closed = False
        self._what = f"Kafka WAL on topic {topic!r}"

    # -- introspection -------------------------------------------------------------------------

    @property
    def partitions(self) -> int:
        return self._partitions

    @property
    def identity(self) -> str:
        """The topic's ID (Kafka >= 2.8): a topic deleted and created again under the same name is
        another WAL, and its blocks never overwrite the old topic's."""
        return self._clients.identity

    def statistics(self) -> WalStatistics:
        """Best effort: exact record counts; bytes exact for this process's appends, estimated otherwise."""
        return self._ledger.statistics(self._bytes_limit)

    def known_end(self, partition: int) -> int:
        """The highest end offset of `partition` this process has seen, without asking the broker."""
        self._check_partition(partition)
        return self._ledger.end[partition]

    async def answers(self, timeout: float = 1.0) -> bool:
        """Whether the brokers answer a metadata request naming a leader for every partition of the topic."""
        return await trio.to_thread.run_sync(self._answers_sync, timeout)

    def _answers_sync(self, timeout: float) -> bool:
        try:
            metadata = self._clients.producer.list_topics(self._topic, timeout=timeout)
        except KafkaException:
            return False
        topic = metadata.topics.get(self._topic)
        if topic is None or topic.error is not None or len(topic.partitions) != self._partitions:
            return False
        return all(p.leader >= 0 for p in topic.partitions.values())

    # -- producer side (kafka_append.py) -------------------------------------------------------

    async def append(self, entries: Sequence[WalEntry]) -> list[int]:
        if not entries:
            return []
        for entry in entries:
            self._check_partition(entry.partition)
        self._check_open()
        return await self._appender.append(entries)

    async def run(self) -> None:
        """Serve delivery reports until the WAL closes; the producer's one background loop."""
        await self._appender.run()

    # -- consumer side (kafka_read.py) ---------------------------------------------------------

    async def read(self, partition: int, start_offset: int, max_records: int) -> list[WalRecord]:
        self._check_partition(partition)
        return await self._reader.read(partition, start_offset, max_records)

    async def wait_for_records(self, partition: int, offset: int, timeout: float) -> bool:
        self._check_partition(partition)
        return await self._reader.wait_for_records(partition, offset, timeout)

    async def commit(self, group: str, partition: int, next_offset: int) -> None:
        self._check_group(group)
        self._check_partition(partition)
        self._check_open()
        await self._reader.commit(group, partition, next_offset)

    async def committed(self, group: str, partition: int) -> int:
        """Read from the broker each time (another process may commit for the group)."""
        self._check_group(group)
        self._check_partition(partition)
        self._check_open()
        return await self._reader.committed(group, partition)

    async def end_offset(self, partition: int) -> int:
        self._check_partition(partition)
        return await self._reader.end_offset(partition)

    # -- closing -------------------------------------------------------------------------------

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._appender.aclose()
        await trio.to_thread.run_sync(self._clients.close_consumers)


async def open_kafka_wal(
    brokers: str, topic: str, partitions: int, groups: Sequence[str], bytes_limit: int,
    on_error: ErrorCallback | None = None, delivery_timeout: float | None = None,
) -> KafkaWal:
    """Connect to `brokers`, create `topic` if missing, load committed offsets and the end offsets.

    `on_error` receives librdkafka's client-level errors (every client's; called in worker threads);
    an append the broker has not acknowledged within `delivery_timeout` seconds fails (`Unavailable`)."""
    if not brokers:
        raise ConfigError("wal.kafka_brokers must name at least one broker for the kafka WAL backend")
    if partitions <= 0:
        raise ConfigError(f"wal.partitions must be positive, got {partitions}")
    if not groups:
        raise ConfigError("wal.groups must name at least one consumer group")
    group_tuple = tuple(groups)
    clients = await trio.to_thread.run_sync(
        open_clients, brokers, topic, partitions, group_tuple, on_error, delivery_timeout
    )
    wal = KafkaWal(topic, partitions, group_tuple, bytes_limit, clients)
    for partition in range(partitions):
        await wal.end_offset(partition)
    return wal

"""The Kafka write-ahead log: one topic on any Kafka-protocol broker, through confluent-kafka (librdkafka).

A record is one Kafka message: key = tenant, value = the OTLP payload, partition and offset as Kafka's.
`append` resolves once the broker acknowledged with acks=all (idempotent producer; librdkafka batches
concurrent appends into one produce request, which is the group commit here). Consumer groups keep
their committed offsets with the broker, committed through `assign()`-style simple consumers so no
rebalance is ever waited for. All blocking librdkafka calls run in worker threads. See docs/wal.md.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import trio
from confluent_kafka import (
    OFFSET_INVALID,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

from tempo_lite.errors import ConfigError, PayloadTooLarge, Unavailable
from tempo_lite.wal import WalEntry, WalRecord, WalStatistics, check_group, check_partition

log = logging.getLogger(__name__)


class _ConnectFailureThrottle(logging.Filter):
    """While a broker is down librdkafka logs every reconnect attempt of every client (about 20 lines a
    second here): keep one `Connect to ... failed` line per client every `interval` seconds."""

    def __init__(self, interval: float = 30.0) -> None:
        super().__init__()
        self.interval = interval
        self._last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if "Connect to " not in text or " failed" not in text:
            return True
        client = text.split("]", 1)[0]  # "FAIL [rdkafka#consumer-5"
        now = time.monotonic()
        if now - self._last.get(client, -self.interval) < self.interval:
            return False
        self._last[client] = now
        return True


# librdkafka's own log lines (every client's), through the throttle above.
client_log = logging.getLogger(__name__ + ".librdkafka")
client_log.addFilter(_ConnectFailureThrottle())

T = TypeVar("T")

BROKER_TIMEOUT_S = 10.0
# How often `wait_for_records` asks the broker for the high watermark when no local append wakes it.
WATERMARK_POLL_S = 0.1
PRODUCER_POLL_S = 0.05


@dataclass(eq=False)
class _Delivery:
    """One `append` call waiting for the delivery reports of its messages.

    `remaining` is decremented by librdkafka's poller thread, hence the lock; everything else is
    read on the trio thread only after `done` is set.
    """

    partitions: list[int]
    nbytes: int
    remaining: int
    offsets: list[int]
    sizes: list[int]
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: trio.Event = field(default_factory=trio.Event)
    error: KafkaError | None = None


ErrorCallback = Callable[[KafkaError], None]


def _client_config(brokers: str, on_error: ErrorCallback | None = None) -> dict[str, Any]:
    # librdkafka's own log lines go to this module's logger instead of raw stderr.
    config: dict[str, Any] = {"bootstrap.servers": brokers, "socket.connection.setup.timeout.ms": 10000,
                              "logger": client_log}
    if on_error is not None:
        # Client-level errors (all brokers down, ...), called from poll/consume in a worker thread.
        config["error_cb"] = on_error
    return config


def _consumer(brokers: str, group: str, on_error: ErrorCallback | None = None) -> Consumer:
    return Consumer(
        {
            **_client_config(brokers, on_error),
            "group.id": group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            # Answer a fetch at the log end quickly; reads never wait for more data.
            "fetch.wait.max.ms": 20,
            # The default prefetch (64 MB per partition) would pin memory the live-store should own.
            "queued.max.messages.kbytes": 16384,
        }
    )


class KafkaWal:
    """`WriteAheadLog` over a Kafka topic; create it with `open_kafka_wal`."""

    def __init__(
        self,
        brokers: str,
        topic: str,
        identity: str,
        partitions: int,
        groups: tuple[str, ...],
        bytes_limit: int,
        admin: AdminClient,
        producer: Producer,
        group_consumers: dict[str, Consumer],
        reader: Consumer,
        prober: Consumer,
        end: list[int],
        committed: dict[tuple[str, int], int],
    ) -> None:
        self._brokers = brokers
        self._topic = topic
        self._identity = identity
        self._partitions = partitions
        self._groups = groups
        self._bytes_limit = bytes_limit
        self._admin = admin
        self._producer = producer
        self._group_consumers = group_consumers
        self._reader = reader
        self._prober = prober
        self._end = end
        self._committed = committed
        self._low = [min(committed[(g, p)] for g in groups) for p in range(partitions)]
        self._deleted_below = list(self._low)
        self._delete_records_supported = True
        # Sizes of the records this process appended and no group set has committed past yet; records
        # appended before a restart (or by another process) have unknown sizes, estimated by the mean.
        # Kept sorted by offset (deliveries of different appends may complete out of order).
        self._sizes: list[list[tuple[int, int]]] = [[] for _ in range(partitions)]
        self._known_bytes = 0
        self._inflight_bytes = 0
        self._appended = [trio.Event() for _ in range(partitions)]
        self._token = trio.lowlevel.current_trio_token()
        self._reader_lock = trio.Lock()
        self._prober_lock = trio.Lock()
        self._group_locks = {g: trio.Lock() for g in groups}
        self._admin_lock = trio.Lock()
        self._closing = False
        self._closed = False
        self._poller_exited = trio.Event()

    # -- introspection -------------------------------------------------------------------------

    @property
    def partitions(self) -> int:
        return self._partitions

    @property
    def identity(self) -> str:
        """The topic's ID (Kafka >= 2.8): a topic deleted and created again under the same name is
        another WAL, and its blocks never overwrite the old topic's."""
        return self._identity

    def statistics(self) -> WalStatistics:
        """Best effort: exact record counts; bytes exact for this process's appends, estimated otherwise."""
        records = sum(max(e - lo, 0) for e, lo in zip(self._end, self._low, strict=True))
        known_records = sum(len(d) for d in self._sizes)
        mean = self._known_bytes / known_records if known_records else 0.0
        estimated = self._known_bytes + int(mean * max(records - known_records, 0))
        return WalStatistics(
            partitions=self._partitions,
            records_retained=records,
            bytes_retained=estimated + self._inflight_bytes,
            bytes_limit=self._bytes_limit,
        )

    # -- producer side -------------------------------------------------------------------------

    async def append(self, entries: Sequence[WalEntry]) -> list[int]:
        if not entries:
            return []
        for entry in entries:
            self._check_partition(entry.partition)
        self._check_open()
        nbytes = sum(len(e.payload) for e in entries)
        retained = self.statistics().bytes_retained
        if retained + nbytes > self._bytes_limit:
            raise Unavailable(
                f"Kafka WAL topic {self._topic!r} holds about {retained} bytes not yet committed by every "
                f"consumer group {list(self._groups)}; appending {nbytes} more would pass "
                f"bytes_limit={self._bytes_limit}"
            )
        delivery = _Delivery(
            partitions=[e.partition for e in entries],
            nbytes=nbytes,
            remaining=len(entries),
            offsets=[-1] * len(entries),
            sizes=[0] * len(entries),
        )
        timestamp_ms = time.time_ns() // 1_000_000
        self._inflight_bytes += nbytes
        produced = 0
        try:
            for index, entry in enumerate(entries):
                self._producer.produce(
                    self._topic,
                    value=entry.payload,
                    key=entry.tenant.encode(),
                    partition=entry.partition,
                    timestamp=timestamp_ms,
                    on_delivery=partial(self._on_delivery, delivery, index),
                )
                produced += 1
        except BufferError as exc:
            # The messages already queued are still delivered; the caller retries the whole request.
            unproduced = sum(len(e.payload) for e in entries[produced:])
            delivery.nbytes -= unproduced
            self._inflight_bytes -= unproduced
            self._settle(delivery, len(entries) - produced)
            raise Unavailable(f"Kafka WAL producer queue is full ({exc}); retry later") from exc
        # A caller cancelled here still gets its records delivered; it only misses the offsets.
        await delivery.done.wait()
        if delivery.error is not None:
            raise _delivery_error(self._topic, delivery.error)
        return delivery.offsets

    def _on_delivery(self, delivery: _Delivery, index: int, err: KafkaError | None, msg: Any) -> None:
        """librdkafka delivery report, called in the poller thread."""
        if err is not None:
            delivery.error = err
        elif msg.offset() is None:
            # librdkafka reports a retried produce the broker answered with DUPLICATE_SEQUENCE_NUMBER as
            # delivered, without an offset. tansu answers so after a restart for records it did not keep
            # (measured: tests/e2e/test_wal_managed.py), so it is not taken as durable: the caller retries
            # (at-least-once; a real duplicate is removed when spans are read, spantable.dedupe_spans).
            delivery.error = KafkaError(
                KafkaError.DUPLICATE_SEQUENCE_NUMBER, "the broker acknowledged the record without an offset"
            )
        else:
            delivery.offsets[index] = msg.offset()
            delivery.sizes[index] = len(msg.value())
        self._settle(delivery, 1)

    def _settle(self, delivery: _Delivery, count: int) -> None:
        with delivery.lock:
            delivery.remaining -= count
            finished = delivery.remaining == 0
        if finished:
            self._token.run_sync_soon(self._delivered, delivery)

    def _delivered(self, delivery: _Delivery) -> None:
        """Back on the trio thread: publish the new end offsets and wake waiters."""
        self._inflight_bytes -= delivery.nbytes
        touched = set()
        reports = zip(delivery.offsets, delivery.sizes, delivery.partitions, strict=True)
        for offset, size, partition in reports:
            if offset < 0:
                continue
            self._end[partition] = max(self._end[partition], offset + 1)
            bisect.insort(self._sizes[partition], (offset, size))
            self._known_bytes += size
            touched.add(partition)
        for partition in touched:
            event, self._appended[partition] = self._appended[partition], trio.Event()
            event.set()
        delivery.done.set()

    async def run(self) -> None:
        """Serve delivery reports until the WAL closes; the producer's one background loop."""
        limiter = trio.CapacityLimiter(1)
        try:
            while not self._closing:
                await trio.to_thread.run_sync(self._producer.poll, PRODUCER_POLL_S, limiter=limiter)
        finally:
            self._poller_exited.set()

    # -- consumer side -------------------------------------------------------------------------

    async def read(self, partition: int, start_offset: int, max_records: int) -> list[WalRecord]:
        self._check_partition(partition)
        if max_records <= 0:
            return []
        start = max(start_offset, self._low[partition])
        end = await self.end_offset(partition)
        if start >= end:
            return []
        async with self._reader_lock:
            return await self._run(self._read_sync, partition, start, min(max_records, end - start), end)

    def _read_sync(self, partition: int, start: int, count: int, end: int) -> list[WalRecord]:
        self._reader.assign([TopicPartition(self._topic, partition, start)])
        records: list[WalRecord] = []
        deadline = time.monotonic() + BROKER_TIMEOUT_S
        while len(records) < count and time.monotonic() < deadline:
            for msg in self._reader.consume(count - len(records), timeout=0.5):
                error = msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise Unavailable(f"Kafka WAL read of {self._topic}[{partition}] failed: {error}")
                # Skip anything left over from an earlier assignment of this consumer.
                last = records[-1].offset if records else start - 1
                if msg.partition() != partition or not last < msg.offset() < end:
                    continue
                key = msg.key()
                _, timestamp_ms = msg.timestamp()
                records.append(
                    WalRecord(
                        partition=partition,
                        offset=msg.offset(),
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
        self._check_partition(partition)
        with trio.move_on_after(timeout):
            while True:
                if self._end[partition] > offset or await self.end_offset(partition) > offset:
                    return True
                # Appends from this process wake us at once; other producers are seen by polling.
                with trio.move_on_after(WATERMARK_POLL_S):
                    await self._appended[partition].wait()
        return self._end[partition] > offset

    async def commit(self, group: str, partition: int, next_offset: int) -> None:
        self._check_group(group)
        self._check_partition(partition)
        self._check_open()
        end = self._end[partition]
        if next_offset > end:
            end = await self.end_offset(partition)
        if not 0 <= next_offset <= end:
            raise ValueError(
                f"cannot commit offset {next_offset} for group {group!r} on partition {partition}: "
                f"the partition ends at {end}"
            )
        tp = TopicPartition(self._topic, partition, next_offset)
        async with self._group_locks[group]:
            await self._run(self._commit_sync, self._group_consumers[group], tp)
        self._committed[(group, partition)] = next_offset
        if self._advance_low(partition):
            await self._delete_records(partition, self._low[partition])

    def _advance_low(self, partition: int) -> bool:
        """Move the retention point to the lowest committed offset of every group; True when it moved."""
        new_low = min(self._committed[(g, partition)] for g in self._groups)
        if new_low <= self._low[partition]:
            return False
        self._low[partition] = new_low
        sizes = self._sizes[partition]
        released = bisect.bisect_left(sizes, (new_low, -1))
        self._known_bytes -= sum(size for _, size in sizes[:released])
        del sizes[:released]
        return True

    def _commit_sync(self, consumer: Consumer, tp: TopicPartition) -> None:
        for result in consumer.commit(offsets=[tp], asynchronous=False) or []:
            if result.error is not None:
                raise Unavailable(f"Kafka WAL commit to {self._topic}[{tp.partition}] failed: {result.error}")

    async def _delete_records(self, partition: int, below: int) -> None:
        """Free broker storage below the retention point, where the broker supports DeleteRecords.

        Readers never see those records anyway (`read` starts at the retention point); brokers without
        DeleteRecords (tansu) fall back on the topic's own retention.ms / retention.bytes.
        """
        if not self._delete_records_supported or below <= self._deleted_below[partition]:
            return
        async with self._admin_lock:
            try:
                await self._run(self._delete_records_sync, TopicPartition(self._topic, partition, below))
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
        futures = self._admin.delete_records([tp], request_timeout=BROKER_TIMEOUT_S)
        for future in futures.values():
            future.result()

    async def committed(self, group: str, partition: int) -> int:
        """Read from the broker each time: in a split deployment another process commits (a live-store
        follows the block-builder's offsets), so this process's own record of it would go stale."""
        self._check_group(group)
        self._check_partition(partition)
        self._check_open()
        tp = TopicPartition(self._topic, partition)
        async with self._group_locks[group]:
            (found,) = await self._run(
                lambda: self._group_consumers[group].committed([tp], timeout=BROKER_TIMEOUT_S)
            )
        offset = max(found.offset, 0)
        self._committed[(group, partition)] = max(self._committed[(group, partition)], offset)
        # Other processes' commits free retained bytes too (a distributor never commits itself); the
        # records are deleted by a process that commits, never from here.
        self._advance_low(partition)
        return self._committed[(group, partition)]

    def known_end(self, partition: int) -> int:
        """The highest end offset of `partition` this process has seen, without asking the broker."""
        self._check_partition(partition)
        return self._end[partition]

    async def end_offset(self, partition: int) -> int:
        self._check_partition(partition)
        async with self._prober_lock:
            end = await self._run(self._high_watermark_sync, partition)
        self._end[partition] = max(self._end[partition], end)
        return self._end[partition]

    def _high_watermark_sync(self, partition: int) -> int:
        """The partition's high watermark as a fetch reports it.

        ListOffsets alone is not trusted: tansu answers it with the base offset of the last batch
        plus one. A fetch of the record just below that offset returns the last batch and the true
        high watermark on every broker, for one round trip (< 1 ms locally).
        """
        tp = TopicPartition(self._topic, partition)
        low, high = self._prober.get_watermark_offsets(tp, timeout=BROKER_TIMEOUT_S, cached=False)
        if high <= low:
            return high
        self._prober.assign([TopicPartition(self._topic, partition, high - 1)])
        deadline = time.monotonic() + BROKER_TIMEOUT_S
        fetched = OFFSET_INVALID
        while time.monotonic() < deadline:
            self._prober.consume(1, timeout=0.05)
            _, fetched = self._prober.get_watermark_offsets(tp, cached=True)
            if fetched >= high:
                break
        return max(high, fetched)

    async def answers(self, timeout: float = 1.0) -> bool:
        """Whether the brokers answer a metadata request naming a leader for every partition of the topic."""
        return await self._run(self._answers_sync, timeout)

    def _answers_sync(self, timeout: float) -> bool:
        try:
            metadata = self._producer.list_topics(self._topic, timeout=timeout)
        except KafkaException:
            return False
        topic = metadata.topics.get(self._topic)
        if topic is None or topic.error is not None or len(topic.partitions) != self._partitions:
            return False
        return all(p.leader >= 0 for p in topic.partitions.values())

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._run(self._producer.flush, BROKER_TIMEOUT_S)
        self._closing = True
        await self._poller_exited.wait()
        consumers = [self._reader, self._prober, *self._group_consumers.values()]
        await self._run(lambda: [c.close() for c in consumers])

    # -- helpers -------------------------------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await trio.to_thread.run_sync(fn, *args)

    def _check_partition(self, partition: int) -> None:
        check_partition(partition, self._partitions)

    def _check_group(self, group: str) -> None:
        check_group(group, self._groups)

    def _check_open(self) -> None:
        if self._closed:
            raise Unavailable(f"Kafka WAL on topic {self._topic!r} is closed")


def _delivery_error(topic: str, error: KafkaError) -> Exception:
    if error.code() == KafkaError.MSG_SIZE_TOO_LARGE:
        return PayloadTooLarge(f"record larger than the Kafka WAL topic {topic!r} accepts: {error.str()}")
    return Unavailable(f"Kafka WAL append to topic {topic!r} failed: {error.str()}")


def _ensure_topic(admin: AdminClient, topic: str, partitions: int) -> int:
    """Create the topic with `partitions` partitions if missing; return its partition count."""
    metadata = admin.list_topics(timeout=BROKER_TIMEOUT_S)
    if topic not in metadata.topics or metadata.topics[topic].error is not None:
        futures = admin.create_topics(
            [NewTopic(topic, num_partitions=partitions, replication_factor=-1)],
            request_timeout=BROKER_TIMEOUT_S,
        )
        for future in futures.values():
            try:
                future.result()
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
        deadline = time.monotonic() + BROKER_TIMEOUT_S
        while time.monotonic() < deadline:
            metadata = admin.list_topics(topic, timeout=BROKER_TIMEOUT_S)
            if topic in metadata.topics and metadata.topics[topic].partitions:
                break
            time.sleep(0.05)
    return len(metadata.topics[topic].partitions)


_NO_TOPIC_ID = "AAAAAAAAAAAAAAAAAAAAAA"  # the all-zero UUID, base64: a broker without topic IDs


def _topic_id(admin: AdminClient, topic: str) -> str:
    """The topic's ID as the broker reports it (Metadata v10+, Kafka >= 2.8)."""
    futures = admin.describe_topics(TopicCollection([topic]), request_timeout=BROKER_TIMEOUT_S)
    description = futures[topic].result()
    topic_id = str(description.topic_id) if description.topic_id is not None else ""
    if not topic_id or topic_id == _NO_TOPIC_ID:
        raise ConfigError(
            f"Kafka WAL topic {topic!r}: the broker reports no topic ID (Kafka before 2.8?); tempo-lite needs it "
            "to name blocks after the WAL they came from (docs/wal.md)"
        )
    return topic_id


def _open_sync(
    brokers: str, topic: str, partitions: int, groups: tuple[str, ...], on_error: ErrorCallback | None = None,
    delivery_timeout: float | None = None,
) -> tuple[str, AdminClient, Producer, dict[str, Consumer], Consumer, Consumer, dict[tuple[str, int], int]]:
    admin = AdminClient(_client_config(brokers, on_error))
    try:
        existing = _ensure_topic(admin, topic, partitions)
        identity = _topic_id(admin, topic)
    except KafkaException as exc:
        raise Unavailable(f"Kafka WAL: cannot reach brokers {brokers!r} for topic {topic!r}: {exc}") from exc
    if existing != partitions:
        raise ConfigError(
            f"Kafka WAL topic {topic!r} has {existing} partitions but wal.partitions={partitions}"
        )
    producer = Producer(
        {
            **_client_config(brokers, on_error),
            "acks": "all",
            "enable.idempotence": True,
            # Appends arriving within 2 ms share one produce request: the broker-side group commit.
            "linger.ms": 2,
            "message.max.bytes": 16 << 20,
            # Without it librdkafka retries an unacknowledged record for 5 minutes (its default), and the
            # append waits as long.
            **({"message.timeout.ms": int(delivery_timeout * 1000)} if delivery_timeout else {}),
        }
    )
    consumers: list[Consumer] = []
    try:
        # Connecting now (and learning the topic's leaders) saves the first append ~1 s of idempotent
        # producer start-up, measured against tansu.
        producer.list_topics(topic, timeout=BROKER_TIMEOUT_S)
        group_consumers = {g: _consumer(brokers, g, on_error) for g in groups}
        consumers += group_consumers.values()
        committed: dict[tuple[str, int], int] = {}
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        for group, consumer in group_consumers.items():
            for tp in consumer.committed(tps, timeout=BROKER_TIMEOUT_S):
                committed[(group, tp.partition)] = max(tp.offset, 0)
        reader = _consumer(brokers, f"{topic}.tempo-lite-reader", on_error)
        consumers.append(reader)
        prober = _consumer(brokers, f"{topic}.tempo-lite-reader", on_error)
    except KafkaException as exc:
        # The brokers went away half way: release what was opened (a caller may try again).
        for consumer in consumers:
            consumer.close()
        raise Unavailable(f"Kafka WAL: brokers {brokers!r} stopped answering while opening topic {topic!r}: "
                          f"{exc}") from exc
    return identity, admin, producer, group_consumers, reader, prober, committed


async def open_kafka_wal(
    brokers: str, topic: str, partitions: int, groups: Sequence[str], bytes_limit: int,
    on_error: ErrorCallback | None = None, delivery_timeout: float | None = None,
) -> KafkaWal:
    """Connect to `brokers`, create `topic` if missing, load committed offsets, start delivery polling.

    `on_error` receives librdkafka's client-level errors (every client's; called in worker threads);
    an append the broker has not acknowledged within `delivery_timeout` seconds fails (`Unavailable`)."""
    if not brokers:
        raise ConfigError("wal.kafka_brokers must name at least one broker for the kafka WAL backend")
    if partitions <= 0:
        raise ConfigError(f"wal.partitions must be positive, got {partitions}")
    if not groups:
        raise ConfigError("wal.groups must name at least one consumer group")
    group_tuple = tuple(groups)
    identity, admin, producer, group_consumers, reader, prober, committed = await trio.to_thread.run_sync(
        _open_sync, brokers, topic, partitions, group_tuple, on_error, delivery_timeout
    )
    wal = KafkaWal(
        brokers, topic, identity, partitions, group_tuple, bytes_limit, admin, producer, group_consumers, reader,
        prober, [0] * partitions, committed,
    )
    for partition in range(partitions):
        await wal.end_offset(partition)
    return wal


"""Opening the Kafka WAL's clients: their settings, the topic (created if missing, checked, its ID), and the
committed offsets the broker keeps. Blocking calls, run in a worker thread by `kafka.open_kafka_wal`.

Also the one place librdkafka clients get their connection settings and their logger (`client_config`) and
topics are created (`create_topic`), for the ring topic (ring.py) too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicCollection, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tempo_lite.errors import ConfigError, Unavailable

BROKER_TIMEOUT_S = 10.0

ErrorCallback = Callable[[KafkaError], None]


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


# librdkafka's own log lines (every client's), through the throttle above. The logger keeps the name it had
# when the Kafka WAL was one module, so logging configurations naming it still apply.
client_log = logging.getLogger("tempo_lite.wal.kafka.librdkafka")
client_log.addFilter(_ConnectFailureThrottle())


def client_config(brokers: str, on_error: ErrorCallback | None = None) -> dict[str, Any]:
    """Settings every librdkafka client of tempo-lite starts from."""
    # librdkafka's own log lines go to `client_log` instead of raw stderr.
    config: dict[str, Any] = {"bootstrap.servers": brokers, "socket.connection.setup.timeout.ms": 10000,
                              "logger": client_log}
    if on_error is not None:
        # Client-level errors (all brokers down, ...), called from poll/consume in a worker thread.
        config["error_cb"] = on_error
    return config


def _consumer(brokers: str, group: str, on_error: ErrorCallback | None = None) -> Consumer:
    return Consumer(
        {
            **client_config(brokers, on_error),
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


def _producer(brokers: str, on_error: ErrorCallback | None, delivery_timeout: float | None) -> Producer:
    return Producer(
        {
            **client_config(brokers, on_error),
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


def create_topic(admin: AdminClient, topic: str, partitions: int, config: dict[str, str] | None = None) -> None:
    """Create `topic` (with topic-level `config`); one another process has just created is as good."""
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=-1, config=config or {})],
        request_timeout=BROKER_TIMEOUT_S,
    )
    for future in futures.values():
        try:
            future.result()
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise


def ensure_topic(admin: AdminClient, topic: str, partitions: int) -> int:
    """Create the topic with `partitions` partitions if missing; return its partition count."""
    metadata = admin.list_topics(timeout=BROKER_TIMEOUT_S)
    if topic not in metadata.topics or metadata.topics[topic].error is not None:
        create_topic(admin, topic, partitions)
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


@dataclass
class KafkaClients:
    """Everything `open_clients` connected, for one `KafkaWal`."""

    identity: str  # the topic's ID
    admin: AdminClient
    producer: Producer
    group_consumers: dict[str, Consumer]  # one per consumer group: its commits and committed offsets
    reader: Consumer  # reads records
    prober: Consumer  # asks for high watermarks
    committed: dict[tuple[str, int], int]  # (group, partition) -> committed offset at opening

    def close_consumers(self) -> None:
        for consumer in [self.reader, self.prober, *self.group_consumers.values()]:
            consumer.close()


def open_clients(
    brokers: str, topic: str, partitions: int, groups: tuple[str, ...], on_error: ErrorCallback | None = None,
    delivery_timeout: float | None = None,
) -> KafkaClients:
    """Create `topic` if missing (refusing one with another partition count), connect the producer and the
    consumers, and load every group's committed offsets. Blocking."""
    admin = AdminClient(client_config(brokers, on_error))
    try:
        existing = ensure_topic(admin, topic, partitions)
        identity = _topic_id(admin, topic)
    except KafkaException as exc:
        raise Unavailable(f"Kafka WAL: cannot reach brokers {brokers!r} for topic {topic!r}: {exc}") from exc
    if existing != partitions:
        raise ConfigError(
            f"Kafka WAL topic {topic!r} has {existing} partitions but wal.partitions={partitions}"
        )
    producer = _producer(brokers, on_error, delivery_timeout)
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
    return KafkaClients(identity, admin, producer, group_consumers, reader, prober, committed)

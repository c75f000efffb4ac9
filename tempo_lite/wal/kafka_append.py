"""The Kafka WAL's producer side: `append` and the delivery-report loop.

A record is one Kafka message: key = tenant, value = the OTLP payload, partition and offset as Kafka's.
`append` resolves once the broker acknowledged every message with acks=all (idempotent producer;
librdkafka batches concurrent appends into one produce request, which is the group commit here).
Delivery reports arrive in the poller thread `run` drives and are settled back on the trio thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import trio
from confluent_kafka import KafkaError, Producer

from tempo_lite.errors import PayloadTooLarge, Unavailable
from tempo_lite.wal import WalEntry
from tempo_lite.wal.kafka_ledger import PartitionLedger
from tempo_lite.wal.kafka_setup import BROKER_TIMEOUT_S

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


class KafkaAppender:
    """Appends to `topic` through `producer`, refusing what would pass `bytes_limit` retained bytes."""

    def __init__(self, topic: str, producer: Producer, ledger: PartitionLedger, bytes_limit: int) -> None:
        self._topic = topic
        self._producer = producer
        self._ledger = ledger
        self._bytes_limit = bytes_limit
        self._token = trio.lowlevel.current_trio_token()
        self._closing = False
        self._poller_exited = trio.Event()

    async def append(self, entries: Sequence[WalEntry]) -> list[int]:
        """Entries already checked (non-empty, partitions in range) on an open WAL."""
        nbytes = sum(len(e.payload) for e in entries)
        retained = self._ledger.statistics(self._bytes_limit).bytes_retained
        if retained + nbytes > self._bytes_limit:
            raise Unavailable(
                f"Kafka WAL topic {self._topic!r} holds about {retained} bytes not yet committed by every "
                f"consumer group {list(self._ledger.groups)}; appending {nbytes} more would pass "
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
        self._ledger.inflight_bytes += nbytes
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
            self._ledger.inflight_bytes -= unproduced
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
        self._ledger.inflight_bytes -= delivery.nbytes
        reports = zip(delivery.partitions, delivery.offsets, delivery.sizes, strict=True)
        self._ledger.appended((p, offset, size) for p, offset, size in reports if offset >= 0)
        delivery.done.set()

    async def run(self) -> None:
        """Serve delivery reports until `aclose`; the producer's one background loop."""
        limiter = trio.CapacityLimiter(1)
        try:
            while not self._closing:
                await trio.to_thread.run_sync(self._producer.poll, PRODUCER_POLL_S, limiter=limiter)
        finally:
            self._poller_exited.set()

    async def aclose(self) -> None:
        """Deliver what is queued (for up to BROKER_TIMEOUT_S), then stop the delivery loop."""
        await trio.to_thread.run_sync(self._producer.flush, BROKER_TIMEOUT_S)
        self._closing = True
        await self._poller_exited.wait()


def _delivery_error(topic: str, error: KafkaError) -> Exception:
    if error.code() == KafkaError.MSG_SIZE_TOO_LARGE:
        return PayloadTooLarge(f"record larger than the Kafka WAL topic {topic!r} accepts: {error.str()}")
    return Unavailable(f"Kafka WAL append to topic {topic!r} failed: {error.str()}")

"""The plain `kafka` WAL backend through broker outages: `WaitingKafkaWal` around `KafkaWal`.

The broker is another system, and it can be down (restarted, upgraded, unreachable). While no broker
answers:

- `append` is refused at once with `Unavailable` (HTTP 503 with Retry-After, gRPC UNAVAILABLE at the
  receivers), and so is an append the broker has not acknowledged within `APPEND_TIMEOUT_S` (librdkafka's
  delivery timeout). Nothing is acknowledged that the broker has not acknowledged (acks=all); a record
  whose delivery timed out may still have reached the broker, so a client that retried can have sent it
  twice (at-least-once; the copies are dropped when spans are read, `spantable.dedupe_spans`).
- `read`, `commit` and `committed` wait (retrying with backoff) until the broker answers again, so a
  live-store, block-builder or metrics-generator resumes exactly where it was, and a process restarted
  meanwhile resumes from the committed offsets the broker keeps.
- `end_offset` answers the last end it knew (queries on a live-store keep answering from memory) and
  `wait_for_records` waits.
- Opening waits until the broker answers (logging every `OPEN_LOG_INTERVAL_S`): a process started
  before its broker comes up when the broker does.

Whether the broker is down comes from librdkafka's client errors (all brokers down), from failed calls,
and, while down, from a metadata request every `PROBE_INTERVAL_S` (`KafkaWal.answers`). The managed
backend (managed.py) knows the same from its supervisor instead. See docs/wal.md and docs/scaling.md.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import trio
from confluent_kafka import KafkaError, KafkaException

from tempo_lite.errors import Unavailable
from tempo_lite.wal import WalEntry, WalRecord
from tempo_lite.wal.kafka import KafkaWal, open_kafka_wal
from tempo_lite.wal.wrapper import WalWrapper

log = logging.getLogger(__name__)

T = TypeVar("T")

APPEND_TIMEOUT_S = 5.0
PROBE_INTERVAL_S = 0.5
OPEN_RETRY_S = 1.0
OPEN_LOG_INTERVAL_S = 10.0
MAX_RETRY_DELAY_S = 1.0
RETRY_AFTER_S = 2.0

# librdkafka client errors that mean no broker can be reached.
_DOWN_CODES = frozenset({KafkaError._ALL_BROKERS_DOWN})


class BrokerHealth:
    """Up or down, as this process last saw the brokers; written from librdkafka's threads too."""

    def __init__(self, brokers: str) -> None:
        self.brokers = brokers
        self.up = True
        self.problem = ""
        self.outages = 0

    def on_client_error(self, error: KafkaError) -> None:
        """librdkafka's error_cb (a worker thread): only plain attribute writes."""
        if error.code() in _DOWN_CODES:
            self.up = False
            self.problem = error.str()

    def mark_down(self, problem: str) -> None:
        self.up = False
        self.problem = problem

    def mark_up(self) -> None:
        self.up = True


class WaitingKafkaWal(WalWrapper[KafkaWal]):
    """`WriteAheadLog` over `KafkaWal` that waits out broker outages (module docstring)."""

    def __init__(self, kafka: KafkaWal, health: BrokerHealth) -> None:
        super().__init__(kafka)
        self.health = health
        self._down_at: float | None = None

    @property
    def broker_up(self) -> bool:
        return self.health.up

    async def append(self, entries: Sequence[WalEntry]) -> list[int]:
        if not entries:
            return []
        if not self.health.up:
            self._note_down()
            raise Unavailable(
                f"the Kafka WAL brokers {self.health.brokers} do not answer ({self.health.problem}); "
                "nothing was written, retry later", retry_after=RETRY_AFTER_S,
            )
        # Records the broker does not acknowledge within APPEND_TIMEOUT_S fail their delivery (librdkafka's
        # message.timeout.ms): Unavailable, nothing acknowledged.
        return await self.inner.append(entries)

    async def read(self, partition: int, start_offset: int, max_records: int) -> list[WalRecord]:
        return await self._waiting(lambda: self.inner.read(partition, start_offset, max_records))

    async def wait_for_records(self, partition: int, offset: int, timeout: float) -> bool:
        with trio.move_on_after(timeout):
            return await self._waiting(lambda: self.inner.wait_for_records(partition, offset, timeout))
        return False

    async def commit(self, group: str, partition: int, next_offset: int) -> None:
        await self._waiting(lambda: self.inner.commit(group, partition, next_offset))

    async def committed(self, group: str, partition: int) -> int:
        return await self._waiting(lambda: self.inner.committed(group, partition))

    async def end_offset(self, partition: int) -> int:
        try:
            end = await self.inner.end_offset(partition)
        except (Unavailable, KafkaException) as exc:
            if self.closing:
                raise
            self._failed(exc)
            return self.inner.known_end(partition)
        self._answered()
        return end

    async def run(self) -> None:
        """The delivery loop, and while the broker is down, the probe that notices it is back."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._probe)
            await self.inner.run()
            nursery.cancel_scope.cancel()

    # -- outage handling -----------------------------------------------------------------------

    async def _probe(self) -> None:
        while True:
            await trio.sleep(PROBE_INTERVAL_S)
            if not self.health.up and not self.closing and await self.inner.answers():
                self._answered()

    async def _waiting(self, call: Callable[[], Awaitable[T]]) -> T:
        """`call`, retried with backoff until the broker answers (or the WAL closes)."""
        delay = 0.05
        while True:
            try:
                result = await call()
            except (Unavailable, KafkaException) as exc:
                if self.closing:
                    raise
                self._failed(exc)
                await trio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY_DELAY_S)
                continue
            self._answered()
            return result

    def _failed(self, exc: BaseException) -> None:
        self.health.mark_down(str(exc))
        self._note_down()

    def _note_down(self) -> None:
        if self._down_at is None:
            self._down_at = trio.current_time()
            self.health.outages += 1
            log.warning(
                "Kafka WAL: brokers %s do not answer (%s); appends are refused (503) and consumers wait until "
                "they do", self.health.brokers, self.health.problem,
            )

    def _answered(self) -> None:
        self.health.mark_up()
        if self._down_at is not None:
            log.warning("Kafka WAL: brokers %s answer again after %.1fs", self.health.brokers,
                        trio.current_time() - self._down_at)
            self._down_at = None


async def open_waiting_kafka_wal(
    brokers: str, topic: str, partitions: int, groups: Sequence[str], bytes_limit: int
) -> WaitingKafkaWal:
    """`open_kafka_wal`, waiting (as long as it takes) for brokers that do not answer yet."""
    health = BrokerHealth(brokers)
    started = trio.current_time()
    logged = -math.inf
    while True:
        try:
            kafka = await open_kafka_wal(brokers, topic, partitions, groups, bytes_limit,
                                         on_error=health.on_client_error, delivery_timeout=APPEND_TIMEOUT_S)
        except (Unavailable, KafkaException) as exc:
            now = trio.current_time()
            if now - logged >= OPEN_LOG_INTERVAL_S:
                logged = now
                log.warning("Kafka WAL: waiting for brokers %s (topic %s) for %.0fs: %s", brokers, topic,
                            now - started, exc)
            await trio.sleep(OPEN_RETRY_S)
            continue
        health.mark_up()
        if math.isfinite(logged):
            log.warning("Kafka WAL: brokers %s answer; topic %s open", brokers, topic)
        return WaitingKafkaWal(kafka, health)

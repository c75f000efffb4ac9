"""The partition ring, as Tempo 3.0's: the state of each WAL partition, kept in a Kafka topic.

States: `PENDING` (a live-store created the partition and is getting ready: no writes yet), `ACTIVE`
(distributors write to it, queries read it), `INACTIVE` (being drained: no new writes, still read until
the block-builders have committed everything in it; then its entry is deleted). A partition with no entry
takes no writes and is not read (its data, if any, is in blocks).

The ring is the compacted topic `<wal topic>.ring` on the WAL's brokers, one record per partition (key: the
partition number, value: JSON; a tombstone deletes it); only the live-store owning a partition writes its
record, so no consensus is needed beyond the broker's log. Every process that cares (distributors, live-
stores, queriers, query-frontends) reads the whole topic every `POLL_S`. An empty ring (no live-store has
joined: single-process and older deployments) means every partition is active. docs/scaling.md,
"Partition ring".
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import trio
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from tempo_lite.errors import Unavailable
from tempo_lite.wal import WriteAheadLog
from tempo_lite.wal.kafka_setup import client_config, create_topic

log = logging.getLogger(__name__)

POLL_S = 2.0
READ_TIMEOUT_S = 10.0


class State(StrEnum):
    PENDING = "PENDING"
    ACTIVE = "ACTIVE"
    INACTIVE = "INACTIVE"


@dataclass(frozen=True)
class Entry:
    partition: int
    state: State
    owner: str  # the live-store that owns it (its URL)
    changed_unix: float

    def to_bytes(self) -> bytes:
        return json.dumps({"state": self.state.value, "owner": self.owner, "changed_unix": self.changed_unix}).encode()

    @classmethod
    def from_record(cls, partition: int, value: bytes) -> Entry:
        raw = json.loads(value)
        return cls(partition, State(raw["state"]), str(raw.get("owner", "")), float(raw.get("changed_unix", 0.0)))


Ring = Mapping[int, Entry]

# Allowed changes of a partition's state (Tempo's partition ring lifecycle).
_NEXT = {
    None: {State.PENDING, State.ACTIVE},
    State.PENDING: {State.ACTIVE, State.INACTIVE},
    State.ACTIVE: {State.INACTIVE},
    State.INACTIVE: {State.ACTIVE},
}


def check_transition(current: State | None, new: State) -> None:
    if new not in _NEXT[current]:
        raise ValueError(f"partition ring: {current.value if current else 'absent'} -> {new.value} is not allowed")


def writable(ring: Ring, partitions: int) -> tuple[int, ...]:
    """The partitions distributors write to: the active ones, or all of them while the ring is empty."""
    if not ring:
        return tuple(range(partitions))
    return tuple(sorted(p for p, e in ring.items() if e.state is State.ACTIVE and 0 <= p < partitions))


def readable(ring: Ring, partitions: int) -> frozenset[int]:
    """The partitions queries read recent data of: every partition in the ring, or all while it is empty."""
    if not ring:
        return frozenset(range(partitions))
    return frozenset(p for p in ring if 0 <= p < partitions)


def status_lines(ring: Ring) -> list[tuple[str, str]]:
    """/api/status/services lines: `partition-<n>: <STATE> (<owner>)`."""
    return [(f"partition-{p}", f"{e.state.value} ({e.owner})") for p, e in sorted(ring.items())]


def ring_topic(wal_topic: str) -> str:
    return f"{wal_topic}.ring"


class KafkaRing:
    """Reads and writes the ring topic. `ring` is the last ring read; `poll` keeps it fresh."""

    def __init__(self, brokers: str, wal_topic: str) -> None:
        self.brokers = brokers
        self.topic = ring_topic(wal_topic)
        self.ring: dict[int, Entry] = {}
        self.changed = trio.Event()  # set (and replaced) whenever a read finds a different ring
        self._producer: Producer | None = None
        self._lock = trio.Lock()
        self.loaded = False  # a read has succeeded
        self._topic_exists = False

    def _config(self) -> dict[str, Any]:
        return client_config(self.brokers)

    def _ensure_topic_sync(self) -> None:
        admin = AdminClient(self._config())
        metadata = admin.list_topics(timeout=READ_TIMEOUT_S)
        if self.topic in metadata.topics and metadata.topics[self.topic].error is None:
            return
        create_topic(admin, self.topic, 1, {"cleanup.policy": "compact"})

    def _read_sync(self) -> dict[int, Entry]:
        consumer = Consumer({**self._config(), "group.id": f"{self.topic}.reader", "enable.auto.commit": False,
                             "enable.partition.eof": True, "auto.offset.reset": "earliest",
                             "fetch.wait.max.ms": 20})
        try:
            ring: dict[int, Entry] = {}
            # Read to the end the fetch reports (tansu's ListOffsets answer cannot be trusted: docs/wal.md).
            consumer.assign([TopicPartition(self.topic, 0, OFFSET_BEGINNING)])
            deadline = time.monotonic() + READ_TIMEOUT_S
            while time.monotonic() < deadline:
                msg = consumer.poll(0.5)
                if msg is None:
                    continue
                error = msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        return ring
                    raise KafkaException(error)
                key, value = msg.key(), msg.value()
                if key is None:
                    continue
                partition = int(key)
                if value:
                    ring[partition] = Entry.from_record(partition, value)
                else:
                    ring.pop(partition, None)
            raise Unavailable(f"partition ring topic {self.topic}: not read to its end within {READ_TIMEOUT_S}s")
        finally:
            consumer.close()

    def _write_sync(self, records: dict[int, bytes | None]) -> None:
        if self._producer is None:
            self._producer = Producer({**self._config(), "acks": "all", "enable.idempotence": True})
        errors: list[KafkaError] = []
        for partition, value in records.items():
            self._producer.produce(self.topic, key=str(partition).encode(), value=value, partition=0,
                                   on_delivery=lambda err, _msg: errors.append(err) if err is not None else None)
        remaining = self._producer.flush(READ_TIMEOUT_S)
        if remaining or errors:
            raise Unavailable(f"partition ring topic {self.topic}: write not acknowledged "
                              f"({errors[0].str() if errors else 'timed out'})")

    async def read(self) -> dict[int, Entry]:
        async with self._lock:
            if not self._topic_exists:
                await trio.to_thread.run_sync(self._ensure_topic_sync)
                self._topic_exists = True
            ring = await trio.to_thread.run_sync(self._read_sync)
        if ring != self.ring:
            self.ring = ring
            self.changed.set()
            self.changed = trio.Event()
        return ring

    async def set_states(self, partitions: Sequence[int], state: State, owner: str) -> None:
        """Write the partitions' new state (each checked against its current one, read first)."""
        ring = await self.read()
        records: dict[int, bytes | None] = {}
        for p in partitions:
            current = ring.get(p)
            check_transition(current.state if current else None, state)
            records[p] = Entry(p, state, owner, time.time()).to_bytes()
        if not records:
            return
        async with self._lock:
            await trio.to_thread.run_sync(self._write_sync, records)
        await self.read()
        for p in partitions:
            current = ring.get(p)
            log.info("partition ring: partition %d %s -> %s (%s)", p,
                     current.state.value if current else "absent", state.value, owner)

    async def delete(self, partitions: Sequence[int]) -> None:
        """Remove drained partitions' entries."""
        async with self._lock:
            await trio.to_thread.run_sync(self._write_sync, dict.fromkeys(partitions))
        await self.read()
        log.info("partition ring: partitions %s deleted (drained)", ", ".join(map(str, partitions)))

    async def poll(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Read the ring every POLL_S (started once a first read succeeded); a failed read keeps the last."""
        started = False
        while True:
            try:
                await self.read()
                self.loaded = True
            except (KafkaException, Unavailable) as exc:
                log.warning("partition ring: reading %s failed (%s); keeping the last ring read", self.topic, exc)
            if self.loaded and not started:
                started = True
                task_status.started()
            await trio.sleep(POLL_S)

    def readable_partitions(self, partitions: int) -> frozenset[int] | None:
        """`readable` of the last ring read; None before a first read (ask every live-store)."""
        return readable(self.ring, partitions) if self.loaded else None


class LiveStoreMember:
    """A live-store's part in the ring: it creates its partitions (PENDING, then ACTIVE once it has replayed
    them), drains them on request (INACTIVE; the entry is deleted once the block-builders' committed offset
    reaches the partition's end and every distributor has had `2 * POLL_S` to stop writing), or makes
    them ACTIVE again."""

    def __init__(self, ring: KafkaRing, wal: WriteAheadLog, partitions: tuple[int, ...], owner: str,
                 flushed_group: str) -> None:
        self.ring = ring
        self.wal = wal
        self.partitions = partitions
        self.owner = owner
        self.flushed_group = flushed_group

    async def join(self) -> None:
        """Create the partitions this live-store owns that the ring lacks; the others keep their state
        (a restarted live-store does not reactivate a partition it was draining)."""
        ring = await self.ring.read()
        await self.ring.set_states([p for p in self.partitions if p not in ring], State.PENDING, self.owner)
        pending = [p for p in self.partitions if self.ring.ring[p].state is State.PENDING]
        await self.ring.set_states(pending, State.ACTIVE, self.owner)

    async def drain(self) -> None:
        ring = await self.ring.read()
        await self.ring.set_states([p for p in self.partitions if p in ring and ring[p].state is not State.INACTIVE],
                                   State.INACTIVE, self.owner)

    async def activate(self) -> None:
        ring = await self.ring.read()
        await self.ring.set_states([p for p in self.partitions if p not in ring or ring[p].state is not State.ACTIVE],
                                   State.ACTIVE, self.owner)

    def drained(self) -> bool:
        """Every partition of this live-store has left the ring (its data is in blocks)."""
        return not any(p in self.ring.ring for p in self.partitions)

    async def watch_drains(self) -> None:
        """Delete the entries of inactive partitions once everything written to them is in blocks."""
        while True:
            await trio.sleep(POLL_S)
            done = []
            for p in self.partitions:
                entry = self.ring.ring.get(p)
                if entry is None or entry.state is not State.INACTIVE:
                    continue
                if time.time() - entry.changed_unix < 2 * POLL_S:
                    continue  # a distributor may not have seen the change yet
                end = await self.wal.end_offset(p)
                if await self.wal.committed(self.flushed_group, p) >= end:
                    done.append(p)
            if done:
                await self.ring.delete(done)

"""The partition ring, as Tempo 3.0's: the state of each WAL partition, kept in a Kafka topic.

States: `PENDING` (a live-store created the partition and is getting ready: no writes yet), `ACTIVE`
(distributors write to it, queries read it), `INACTIVE` (being drained: no new writes, still read until
the block-builders have committed everything in it; then its entry is deleted). A partition with no entry
takes no writes and is not read (its data, if any, is in blocks).

The ring is the compacted topic `<wal topic>.ring` on the WAL's brokers, one record per live-store instance
of a partition (key: the partition number, or `<partition>/<zone>` for a live-store with `live_store.zone`;
value: JSON; a tombstone deletes it). Two live-stores in different zones may own one partition (both
consume it; queriers ask one and fall back to the other): the partition is ACTIVE while any of its instances
is, else INACTIVE while any is, else PENDING (`combine`). Each live-store writes its own records only
(`tempo-lite ring drain` marks every record of a partition INACTIVE), so no consensus is needed beyond the
broker's log. Every process that cares (distributors, live-
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
    owner: str  # the live-store that owns it (its URL); a combined entry: every owner, with its zone
    changed_unix: float
    zone: str = ""  # the owner's `live_store.zone` ("" : no zones)

    def to_bytes(self) -> bytes:
        return json.dumps({"state": self.state.value, "owner": self.owner, "changed_unix": self.changed_unix,
                           "zone": self.zone}).encode()

    @classmethod
    def from_record(cls, partition: int, value: bytes) -> Entry:
        raw = json.loads(value)
        return cls(partition, State(raw["state"]), str(raw.get("owner", "")), float(raw.get("changed_unix", 0.0)),
                   str(raw.get("zone", "")))

    @property
    def key(self) -> tuple[int, str]:
        return (self.partition, self.zone)


Ring = Mapping[int, Entry]
# (partition, zone) -> that live-store instance's entry.
Instances = Mapping[tuple[int, str], Entry]


def record_key(partition: int, zone: str) -> bytes:
    return (f"{partition}/{zone}" if zone else str(partition)).encode()


def parse_record_key(key: bytes) -> tuple[int, str]:
    partition, _, zone = key.decode().partition("/")
    return int(partition), zone


def combine(entries: Sequence[Entry]) -> Entry:
    """A partition's entry from its instances' entries: ACTIVE while any instance is (it takes writes),
    else INACTIVE while any is (draining), else PENDING; the owners listed with their zones."""
    states = {e.state for e in entries}
    state = next(s for s in (State.ACTIVE, State.INACTIVE, State.PENDING) if s in states)
    if len(entries) == 1 and not entries[0].zone:
        return entries[0]
    owners = ", ".join(f"{e.owner} zone {e.zone}" if e.zone else e.owner for e in sorted(entries, key=lambda e: e.zone))
    return Entry(entries[0].partition, state, owners, max(e.changed_unix for e in entries))


def partitions_of(instances: Instances) -> dict[int, Entry]:
    """The ring by partition (`combine` of each partition's instances)."""
    grouped: dict[int, list[Entry]] = {}
    for (p, _zone), e in sorted(instances.items()):
        grouped.setdefault(p, []).append(e)
    return {p: combine(entries) for p, entries in grouped.items()}

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


def readable_instances(instances: Instances, partitions: int) -> frozenset[tuple[int, str]]:
    """The (partition, zone) live-store instances queries may ask: every instance in the ring."""
    return frozenset(k for k in instances if 0 <= k[0] < partitions)


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
        self.instances: dict[tuple[int, str], Entry] = {}  # every live-store instance's record
        self.ring: dict[int, Entry] = {}  # by partition (`partitions_of(self.instances)`)
        self.changed = trio.Event()  # set (and replaced) whenever a read finds a different ring
        self._producer: Producer | None = None
        self._lock = trio.Lock()
        self.loaded = False  # a read has succeeded
        # Partitions whose every instance was deleted (drained), as the ring topic's tombstones show until
        # the broker compacts them away.
        self.drained: frozenset[int] = frozenset()
        self._topic_exists = False

    def _config(self) -> dict[str, Any]:
        return client_config(self.brokers)

    def _ensure_topic_sync(self) -> None:
        admin = AdminClient(self._config())
        metadata = admin.list_topics(timeout=READ_TIMEOUT_S)
        if self.topic in metadata.topics and metadata.topics[self.topic].error is None:
            return
        create_topic(admin, self.topic, 1, {"cleanup.policy": "compact"})

    def _read_sync(self) -> tuple[dict[tuple[int, str], Entry], frozenset[int]]:
        consumer = Consumer({**self._config(), "group.id": f"{self.topic}.reader", "enable.auto.commit": False,
                             "enable.partition.eof": True, "auto.offset.reset": "earliest",
                             "fetch.wait.max.ms": 20})
        try:
            ring: dict[tuple[int, str], Entry] = {}
            deleted: set[int] = set()
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
                        return ring, frozenset(deleted - {p for p, _zone in ring})
                    raise KafkaException(error)
                key, value = msg.key(), msg.value()
                if key is None:
                    continue
                partition, zone = parse_record_key(key)
                if value:
                    entry = Entry.from_record(partition, value)
                    ring[(partition, zone)] = Entry(partition, entry.state, entry.owner, entry.changed_unix, zone)
                else:
                    ring.pop((partition, zone), None)
                    deleted.add(partition)
            raise Unavailable(f"partition ring topic {self.topic}: not read to its end within {READ_TIMEOUT_S}s")
        finally:
            consumer.close()

    def _write_sync(self, records: dict[tuple[int, str], bytes | None]) -> None:
        if self._producer is None:
            self._producer = Producer({**self._config(), "acks": "all", "enable.idempotence": True})
        errors: list[KafkaError] = []
        for (partition, zone), value in records.items():
            self._producer.produce(self.topic, key=record_key(partition, zone), value=value, partition=0,
                                   on_delivery=lambda err, _msg: errors.append(err) if err is not None else None)
        remaining = self._producer.flush(READ_TIMEOUT_S)
        if remaining or errors:
            raise Unavailable(f"partition ring topic {self.topic}: write not acknowledged "
                              f"({errors[0].str() if errors else 'timed out'})")

    async def read(self) -> dict[tuple[int, str], Entry]:
        """Read every instance's record; `ring` is their `partitions_of`."""
        async with self._lock:
            if not self._topic_exists:
                await trio.to_thread.run_sync(self._ensure_topic_sync)
                self._topic_exists = True
            instances, self.drained = await trio.to_thread.run_sync(self._read_sync)
        if instances != self.instances:
            self.instances = instances
            self.ring = partitions_of(instances)
            self.changed.set()
            self.changed = trio.Event()
        return instances

    async def set_states(self, partitions: Sequence[int], state: State, owner: str, zone: str = "", *,
                         checked: bool = True) -> None:
        """Write the new state of this owner's instance of each partition (checked against its current
        one, read first, unless `checked` is False: a zone twin joining a partition already draining)."""
        instances = await self.read()
        records: dict[tuple[int, str], bytes | None] = {}
        for p in partitions:
            current = instances.get((p, zone))
            if checked:
                check_transition(current.state if current else None, state)
            records[(p, zone)] = Entry(p, state, owner, time.time(), zone).to_bytes()
        await self._write(records)
        for p in partitions:
            current = instances.get((p, zone))
            log.info("partition ring: partition %d%s %s -> %s (%s)", p, f" zone {zone}" if zone else "",
                     current.state.value if current else "absent", state.value, owner)

    async def set_partition_state(self, partition: int, state: State) -> list[Entry]:
        """Write `state` for every instance of `partition` (`tempo-lite ring drain` / `activate`); the
        instances changed. ValueError: the partition is not in the ring, or a change is not allowed."""
        instances = await self.read()
        mine = [e for k, e in sorted(instances.items()) if k[0] == partition]
        if not mine:
            raise ValueError(f"partition {partition} is not in the ring {self.topic} (no live-store owns it, or "
                             "it was drained)")
        changed = [Entry(e.partition, state, e.owner, time.time(), e.zone) for e in mine if e.state is not state]
        for e in mine:
            if e.state is not state:
                check_transition(e.state, state)
        await self._write({e.key: e.to_bytes() for e in changed})
        for e in changed:
            log.info("partition ring: partition %d%s -> %s (%s)", partition, f" zone {e.zone}" if e.zone else "",
                     state.value, e.owner)
        return changed

    async def _write(self, records: dict[tuple[int, str], bytes | None]) -> None:
        if not records:
            return
        async with self._lock:
            await trio.to_thread.run_sync(self._write_sync, records)
        await self.read()

    async def delete(self, partitions: Sequence[int], zone: str = "") -> None:
        """Remove drained partitions' entries of the instances in `zone`."""
        await self._write(dict.fromkeys((p, zone) for p in partitions))
        log.info("partition ring: partitions %s%s deleted (drained)", ", ".join(map(str, partitions)),
                 f" zone {zone}" if zone else "")

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

    def readable_partitions(self, partitions: int) -> frozenset[tuple[int, str]] | None:
        """`readable_instances` of the last ring read: the (partition, zone) instances to ask; None before a
        first read, or while no live-store has joined (ask every configured live-store)."""
        return readable_instances(self.instances, partitions) if self.loaded and self.instances else None


class LiveStoreMember:
    """A live-store's part in the ring: it creates its instance of each of its partitions (PENDING, then
    ACTIVE once it has replayed them; INACTIVE at once when its zone twin's is draining), drains them on
    request (INACTIVE; the entry is deleted once the block-builders' committed offset reaches the
    partition's end and every distributor has had `2 * POLL_S` to stop writing), or makes them ACTIVE
    again. `zone` is its `live_store.zone`: two live-stores of one partition must be in different zones."""

    def __init__(self, ring: KafkaRing, wal: WriteAheadLog, partitions: tuple[int, ...], owner: str,
                 flushed_group: str, zone: str = "") -> None:
        self.ring = ring
        self.wal = wal
        self.partitions = partitions
        self.owner = owner
        self.flushed_group = flushed_group
        self.zone = zone

    def mine(self) -> dict[int, Entry]:
        """This live-store's own entries, by partition."""
        return {p: e for (p, z), e in self.ring.instances.items() if z == self.zone and p in self.partitions}

    async def join(self) -> None:
        """Create the instances this live-store owns that the ring lacks; the others keep their state
        (a restarted live-store does not reactivate a partition it was draining, nor does a zone twin
        joining a partition whose every instance is draining)."""
        instances = await self.ring.read()
        for (p, zone), e in instances.items():
            if p in self.partitions and zone == self.zone and e.owner != self.owner:
                log.warning("partition ring: partition %d zone %r was owned by %s; %s takes it over", p, zone,
                            e.owner, self.owner)
        new = [p for p in self.partitions if (p, self.zone) not in instances]
        draining = [p for p in new if self._twins_all_inactive(instances, p)]
        await self.ring.set_states(draining, State.INACTIVE, self.owner, self.zone, checked=False)
        await self.ring.set_states([p for p in new if p not in draining], State.PENDING, self.owner, self.zone)
        pending = [p for p, e in self.mine().items() if e.state is State.PENDING]
        await self.ring.set_states(sorted(pending), State.ACTIVE, self.owner, self.zone)

    def _twins_all_inactive(self, instances: Instances, partition: int) -> bool:
        twins = [e for (p, z), e in instances.items() if p == partition and z != self.zone]
        return bool(twins) and all(e.state is State.INACTIVE for e in twins)

    async def drain(self) -> None:
        await self.ring.read()
        await self.ring.set_states(sorted(p for p, e in self.mine().items() if e.state is not State.INACTIVE),
                                   State.INACTIVE, self.owner, self.zone)

    async def activate(self) -> None:
        await self.ring.read()
        mine = self.mine()
        await self.ring.set_states([p for p in self.partitions if p not in mine or mine[p].state is not State.ACTIVE],
                                   State.ACTIVE, self.owner, self.zone)

    def drained(self) -> bool:
        """Every partition of this live-store has left the ring (its data is in blocks)."""
        return not self.mine()

    async def watch_drains(self) -> None:
        """Delete this live-store's inactive entries once everything written to them is in blocks."""
        while True:
            await trio.sleep(POLL_S)
            done = []
            for p, entry in sorted(self.mine().items()):
                if entry.state is not State.INACTIVE:
                    continue
                if time.time() - entry.changed_unix < 2 * POLL_S:
                    continue  # a distributor may not have seen the change yet
                end = await self.wal.end_offset(p)
                if await self.wal.committed(self.flushed_group, p) >= end:
                    done.append(p)
            if done:
                await self.ring.delete(done, self.zone)

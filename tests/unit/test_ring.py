"""The partition ring's rules (wal/ring.py) and how queries and writes follow it (pure parts)."""

from __future__ import annotations

import pytest

from tempo_lite.config import LiveStoreInstance
from tempo_lite.frontend.remote_live import replicas, serving
from tempo_lite.wal.ring import (
    Entry,
    State,
    check_transition,
    parse_record_key,
    partitions_of,
    readable,
    readable_instances,
    record_key,
    ring_topic,
    status_lines,
    writable,
)


def entry(p: int, state: State) -> Entry:
    return Entry(p, state, f"http://live-{p}:3200", 1.5)


def test_partitions_go_pending_active_inactive_and_back_as_in_tempo() -> None:
    for current, new in [(None, State.PENDING), (None, State.ACTIVE), (State.PENDING, State.ACTIVE),
                         (State.ACTIVE, State.INACTIVE), (State.INACTIVE, State.ACTIVE),
                         (State.PENDING, State.INACTIVE)]:
        check_transition(current, new)
    for current, new in [(None, State.INACTIVE), (State.ACTIVE, State.PENDING), (State.INACTIVE, State.PENDING),
                         (State.ACTIVE, State.ACTIVE)]:
        with pytest.raises(ValueError, match="not allowed"):
            check_transition(current, new)


def test_writes_go_to_active_partitions_and_reads_to_every_partition_in_the_ring() -> None:
    ring = {0: entry(0, State.ACTIVE), 1: entry(1, State.PENDING), 2: entry(2, State.INACTIVE),
            3: entry(3, State.ACTIVE)}
    assert writable(ring, 4) == (0, 3)
    assert readable(ring, 4) == {0, 1, 2, 3}
    del ring[2]  # drained: its data is in blocks
    assert readable(ring, 4) == {0, 1, 3}
    # No live-store joined yet (one process, or before the first one): every partition.
    assert writable({}, 4) == (0, 1, 2, 3) and readable({}, 4) == {0, 1, 2, 3}


def test_entries_cross_the_ring_topic_unchanged_and_show_in_the_status() -> None:
    e = entry(2, State.INACTIVE)
    assert Entry.from_record(2, e.to_bytes()) == e
    assert status_lines({2: e, 0: entry(0, State.ACTIVE)}) == [
        ("partition-0", "ACTIVE (http://live-0:3200)"), ("partition-2", "INACTIVE (http://live-2:3200)")]
    assert ring_topic("tempo-lite-wal") == "tempo-lite-wal.ring"


def test_queries_skip_a_live_store_whose_partitions_all_left_the_ring() -> None:
    a = LiveStoreInstance("http://a:3200", (0, 1))
    b = LiveStoreInstance("http://b:3200", (2, 3))
    every = LiveStoreInstance("http://all:3200")
    assert serving([a, b], None, 4) == (a, b)  # no ring: ask every live-store
    assert serving([a, b], frozenset({(0, ""), (1, ""), (3, "")}), 4) == (a, LiveStoreInstance("http://b:3200", (3,)))
    assert serving([a, b], frozenset({(0, ""), (1, "")}), 4) == (a,)
    assert serving([every], frozenset({(3, "")}), 4) == (LiveStoreInstance("http://all:3200", (3,)),)


def zoned(p: int, state: State, zone: str) -> Entry:
    return Entry(p, state, f"http://live-{zone}:3200", 1.5, zone)


def test_zone_twins_have_their_own_records_and_the_partition_takes_writes_while_either_is_active() -> None:
    assert parse_record_key(record_key(3, "")) == (3, "") and record_key(3, "") == b"3"
    assert parse_record_key(record_key(3, "eu-1a")) == (3, "eu-1a")
    e = zoned(1, State.ACTIVE, "b")
    assert Entry.from_record(1, e.to_bytes()) == e
    instances = {(0, "a"): zoned(0, State.ACTIVE, "a"), (0, "b"): zoned(0, State.PENDING, "b"),
                 (1, "a"): zoned(1, State.INACTIVE, "a"), (1, "b"): zoned(1, State.ACTIVE, "b"),
                 (2, "a"): zoned(2, State.INACTIVE, "a"), (2, "b"): zoned(2, State.INACTIVE, "b"),
                 (3, "b"): zoned(3, State.PENDING, "b")}
    ring = partitions_of(instances)
    # A twin still joining, or one zone's live-store leaving, does not stop writes; a drained partition
    # (every instance INACTIVE) takes none but is read; one only joining takes none yet.
    assert {p: e.state for p, e in ring.items()} == {0: State.ACTIVE, 1: State.ACTIVE, 2: State.INACTIVE,
                                                      3: State.PENDING}
    assert writable(ring, 4) == (0, 1) and readable(ring, 4) == {0, 1, 2, 3}
    assert status_lines(ring)[0] == ("partition-0", "ACTIVE (http://live-a:3200 zone a, http://live-b:3200 zone b)")
    assert readable_instances(instances, 4) == set(instances)


def test_a_querier_asks_its_own_zone_first_and_skips_a_twin_whose_instance_left_the_ring() -> None:
    a = LiveStoreInstance("http://a:3200", (0, 1), "a")
    b = LiveStoreInstance("http://b:3200", (0, 1), "b")
    assert replicas([a, b], 2, "b") == {0: [b, a], 1: [b, a]}
    assert replicas([a, b], 2, "a") == {0: [a, b], 1: [a, b]}
    assert replicas([a, b], 2, "") == {0: [a, b], 1: [a, b]}  # no zone of its own: the listed order
    # Zone a's instance of partition 1 was drained out of the ring: only b is asked for it.
    live = serving([a, b], frozenset({(0, "a"), (0, "b"), (1, "b")}), 2)
    assert live == (LiveStoreInstance("http://a:3200", (0,), "a"), b)
    assert replicas(live, 2, "a") == {0: [live[0], b], 1: [b]}

"""The partition ring's rules (wal/ring.py) and how queries and writes follow it (pure parts)."""

from __future__ import annotations

import pytest

from tempo_lite.config import LiveStoreInstance
from tempo_lite.frontend.remote_live import serving
from tempo_lite.wal.ring import Entry, State, check_transition, readable, ring_topic, status_lines, writable


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
    assert serving([a, b], frozenset({0, 1, 3}), 4) == (a, b)
    assert serving([a, b], frozenset({0, 1}), 4) == (a,)
    assert serving([every], frozenset({3}), 4) == (every,)

"""What the Kafka WAL knows of its partitions without asking the broker (tempo_lite/wal/kafka_ledger.py):
end offsets, retention points once every group has committed, and the retained bytes behind `statistics()`
and the append bound. Pure bookkeeping; the Kafka WAL on a real broker: tests/e2e/test_wal_contract.py."""

from __future__ import annotations

import trio
import trio.testing

from tempo_lite.wal.kafka_ledger import PartitionLedger


def _ledger(committed: dict[tuple[str, int], int] | None = None) -> PartitionLedger:
    groups = ("livestore", "blockbuilder")
    return PartitionLedger(2, groups, committed or {(g, p): 0 for g in groups for p in range(2)})


def test_retained_bytes_are_exact_for_own_appends_and_estimated_by_their_mean_for_older_records() -> None:
    ledger = _ledger()
    ledger.saw_end(0, 10)  # ten records from before a restart: sizes unknown
    ledger.appended([(0, 10, 100), (0, 11, 300)])
    ledger.inflight_bytes = 50
    stats = ledger.statistics(bytes_limit=10_000)
    assert (stats.partitions, stats.records_retained, stats.bytes_limit) == (2, 12, 10_000)
    assert stats.bytes_retained == 400 + 10 * 200 + 50
    assert ledger.end == [12, 0]


def test_records_are_released_only_once_every_group_has_committed_past_them() -> None:
    ledger = _ledger()
    ledger.appended([(1, 0, 100), (1, 1, 200), (1, 2, 400)])
    ledger.committed[("livestore", 1)] = 3
    assert not ledger.advance_low(1)
    assert ledger.statistics(1000).bytes_retained == 700
    ledger.committed[("blockbuilder", 1)] = 2
    assert ledger.advance_low(1)
    assert ledger.low == [0, 2]
    stats = ledger.statistics(1000)
    assert (stats.records_retained, stats.bytes_retained) == (1, 400)
    assert not ledger.advance_low(1)  # nothing moved


def test_deliveries_completing_out_of_order_release_by_offset() -> None:
    ledger = _ledger()
    ledger.appended([(0, 5, 50)])
    ledger.appended([(0, 3, 30), (0, 4, 40)])
    assert ledger.end[0] == 6
    for group in ledger.groups:
        ledger.committed[(group, 0)] = 5
    assert ledger.advance_low(0)
    assert ledger.statistics(1000).bytes_retained == 50


def test_the_retention_point_starts_at_the_lowest_committed_offset_and_ends_never_go_back() -> None:
    ledger = _ledger({("livestore", 0): 7, ("blockbuilder", 0): 4, ("livestore", 1): 0, ("blockbuilder", 1): 9})
    assert ledger.low == [4, 0]
    assert ledger.saw_end(0, 12) == 12
    assert ledger.saw_end(0, 8) == 12


async def test_an_append_wakes_the_waiters_of_its_partition_only() -> None:
    ledger = _ledger()
    woken: list[int] = []

    async def wait(partition: int) -> None:
        await ledger.wait_appended(partition)
        woken.append(partition)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait, 0)
        nursery.start_soon(wait, 1)
        await trio.testing.wait_all_tasks_blocked()
        ledger.appended([(1, 0, 10)])
        await trio.testing.wait_all_tasks_blocked()
        assert woken == [1]
        ledger.appended([(0, 0, 10)])
    assert woken == [1, 0]

"""Query-frontend job planning (frontend/jobs.py): which sources each querier job covers."""

from __future__ import annotations

import pytest

from tempo_lite.block.meta import BlockMeta
from tempo_lite.config import LiveStoreInstance
from tempo_lite.errors import InvalidRequest
from tempo_lite.frontend.jobs import Job, plan_jobs

A = LiveStoreInstance(url="http://a:3200", partitions=(0, 1))
B = LiveStoreInstance(url="http://b:3200", partitions=(2, 3))


def block(block_id: str, partition: int) -> BlockMeta:
    return BlockMeta(block_id=block_id, tenant="t", start_unix_nano=0, end_unix_nano=1, total_traces=1,
                     total_spans=1, size_bytes=1, source_partition=partition)


def test_each_live_store_shares_a_job_with_the_blocks_of_its_partitions() -> None:
    blocks = [block("p0", 0), block("p3", 3), block("p1", 1), block("p2", 2)]
    jobs = plan_jobs("t", [A, B], 4, blocks)
    assert jobs == [Job("t", (A,), ("p0", "p1")), Job("t", (B,), ("p3", "p2"))]


def test_blocks_of_no_partition_are_spread_over_jobs_without_live_stores() -> None:
    blocks = [block(f"c{i}", -1) for i in range(5)] + [block("p2", 2)]
    jobs = plan_jobs("t", [A, B], 4, blocks, blocks_per_job=2)
    assert jobs[:2] == [Job("t", (A,), ()), Job("t", (B,), ("p2",))]
    assert [j.block_ids for j in jobs[2:]] == [("c0", "c1"), ("c2", "c3"), ("c4",)]
    assert all(not j.live_stores for j in jobs[2:])
    # Every block in exactly one job.
    assert sorted(b for j in jobs for b in j.block_ids) == sorted(m.block_id for m in blocks)


def test_a_live_store_listed_without_partitions_serves_all_of_them() -> None:
    every = LiveStoreInstance(url="http://all:3200")
    jobs = plan_jobs("t", [every], 4, [block("p3", 3), block("c", -1)])
    assert jobs == [Job("t", (every,), ("p3",)), Job("t", (), ("c",))]


def test_a_query_of_recent_data_is_one_job_per_live_store() -> None:
    assert plan_jobs("t", [A, B], 4, []) == [Job("t", (A,), ()), Job("t", (B,), ())]


def test_zone_twins_share_one_job_with_their_partitions_blocks() -> None:
    a1 = LiveStoreInstance(url="http://a1:3200", partitions=(0, 1), zone="a")
    a2 = LiveStoreInstance(url="http://a2:3200", partitions=(2, 3), zone="a")
    b1 = LiveStoreInstance(url="http://b1:3200", partitions=(0, 1), zone="b")
    b2 = LiveStoreInstance(url="http://b2:3200", partitions=(2, 3), zone="b")
    blocks = [block("p0", 0), block("p3", 3), block("c", -1)]
    assert plan_jobs("t", [a1, a2, b1, b2], 4, blocks) == [
        Job("t", (a1, b1), ("p0",)), Job("t", (a2, b2), ("p3",)), Job("t", (), ("c",))]
    # Zone b split differently: everything that overlaps is one job.
    every_b = LiveStoreInstance(url="http://b:3200", zone="b")
    assert plan_jobs("t", [a1, a2, every_b], 4, blocks) == [
        Job("t", (a1, a2, every_b), ("p0", "p3")), Job("t", (), ("c",))]


def test_jobs_cross_processes_as_json_and_a_malformed_one_is_a_400() -> None:
    job = Job("tenant-1", (A, B, LiveStoreInstance("http://z:3200", (0,), "zone-b")), ("x", "y"))
    assert Job.from_json(job.to_json()) == job
    for bad in (None, [], {"tenant": "t"}, {"tenant": 1, "live_stores": [], "blocks": []},
                {"tenant": "t", "live_stores": [{"url": "u"}], "blocks": []}):
        with pytest.raises(InvalidRequest, match="invalid querier job"):
            Job.from_json(bad)

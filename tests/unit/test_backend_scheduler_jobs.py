"""The backend-scheduler's job tracking (tempo_lite/backend/tracker.py) and the compactor jobs it hands out
(tempo_lite/compactor/jobs.py): assignment, reports, timeouts (trio's MockClock), and a job executed twice.
"""

from __future__ import annotations

import dataclasses

import pytest
import trio
import trio.testing
from test_compactor import NOW_NS, _compactor, _meta, _traces, _write

from tempo_lite.backend.scheduler import BackendScheduler, NotLeader
from tempo_lite.backend.tracker import JobTracker
from tempo_lite.block.blocklist import BlockList
from tempo_lite.block.meta import COMPACTED_META, META, BlockMeta
from tempo_lite.block.reader import BlockReader
from tempo_lite.compactor.jobs import CompactionJob, RetentionJob, job_from_json, job_to_json, plan_tenant
from tempo_lite.config import load_config_text
from tempo_lite.config.schema import BackendWorkerConfig
from tempo_lite.errors import ConfigError
from tempo_lite.roles import plan_for
from tempo_lite.storage.cache import ByteCache
from tempo_lite.storage.store import memory_store

HOUR_NS = 3600 * 10**9


def _job(*ids: str) -> CompactionJob:
    return CompactionJob(tuple(_meta(i, start_ns=0) for i in ids))


async def test_a_job_goes_to_one_worker_and_is_done_when_it_reports() -> None:
    tracker = JobTracker(timeout=60.0)
    assert tracker.offer([_job("a", "b"), _job("c", "d")]) == 2
    first = tracker.assign("w1")
    second = tracker.assign("w2")
    assert first is not None and second is not None and first.job_id != second.job_id
    assert tracker.assign("w3") is None
    assert tracker.finish(first.job_id, "w1", ok=True) == "done"
    assert tracker.finish(second.job_id, "w1", ok=True) == "unknown"  # not w1's job
    assert tracker.finish(second.job_id, "w2", ok=True) == "done"
    assert (tracker.counts.assigned, tracker.counts.done) == (2, 2)
    assert not tracker.pending and not tracker.running


async def test_a_job_not_reported_by_its_deadline_is_reassigned(autojump_clock: trio.testing.MockClock) -> None:
    tracker = JobTracker(timeout=30.0)
    tracker.offer([_job("a", "b")])
    job = tracker.assign("w1")
    assert job is not None
    await trio.sleep(29.0)
    assert tracker.assign("w2") is None  # still w1's
    await trio.sleep(2.0)
    again = tracker.assign("w2")
    assert again is not None and again.job_id == job.job_id
    assert tracker.counts.timed_out == 1
    # the late report of the dead worker changes nothing; the new owner's report completes the job
    assert tracker.finish(job.job_id, "w1", ok=True) == "unknown"
    assert tracker.finish(job.job_id, "w2", ok=True) == "done"


async def test_a_failed_job_is_retried_then_dropped_after_max_attempts() -> None:
    tracker = JobTracker(timeout=30.0, max_attempts=2)
    tracker.offer([_job("a", "b")])
    job = tracker.assign("w1")
    assert job is not None
    assert tracker.finish(job.job_id, "w1", ok=False, error="store down") == "failed"
    retry = tracker.assign("w2")
    assert retry is not None and retry.job_id == job.job_id
    assert tracker.finish(job.job_id, "w2", ok=False, error="store down") == "failed"
    assert tracker.assign("w1") is None
    assert tracker.counts.dropped == 1


async def test_jobs_sharing_a_block_are_not_held_together() -> None:
    tracker = JobTracker(timeout=30.0)
    assert tracker.offer([_job("a", "b")]) == 1
    assert tracker.offer([_job("b", "c"), _job("a", "b")]) == 0  # overlaps; already held
    assert tracker.busy() == frozenset({"a", "b"})
    assert tracker.offer([_job("c", "d")]) == 1


def test_planning_leaves_out_busy_blocks_and_expired_blocks_go_to_retention() -> None:
    old = BlockMeta(block_id="old", tenant="t", start_unix_nano=0, end_unix_nano=10, total_traces=1, total_spans=1,
                    size_bytes=10)
    blocks = [old, *(_meta(i, start_ns=NOW_NS) for i in "abcd")]
    jobs = plan_tenant("t", blocks, now=NOW_NS / 1e9, block_retention=86400.0, window_ns=HOUR_NS,
                       max_block_bytes=1 << 20, busy=frozenset({"a"}))
    retention, compaction = jobs
    assert isinstance(retention, RetentionJob) and retention.block_ids == {"old"}
    assert isinstance(compaction, CompactionJob) and compaction.block_ids == {"b", "c", "d"}
    for job in jobs:
        assert job_from_json(job_to_json(job)) == job


async def test_a_compaction_executed_twice_writes_one_block() -> None:
    """A worker that wrote the merged block and died before marking its inputs (or reporting): the job runs
    again elsewhere, finds the block (its ID derives from the inputs) and only marks the inputs."""
    store = memory_store()
    start = NOW_NS - 60 * 10**9
    one = await _write(store, "one", _traces(1, start))
    two = await _write(store, "two", _traces(2, start))
    job = CompactionJob((one, two))
    first, _ = await _compactor(store)
    out = await first._merge([one, two], job.output_id)
    # crash here: output written, inputs not marked; both visible (the duplicate a query sees until rerun)
    await store.delete(f"t/one/{COMPACTED_META}")
    await store.delete(f"t/two/{COMPACTED_META}")
    await store.write(f"t/one/{META}", one.to_json())
    await store.write(f"t/two/{META}", two.to_json())
    second, blocks = await _compactor(store)
    again = await second.execute(job)
    assert again is not None and again.block_id == out.block_id
    assert [m.block_id for m in blocks.blocks("t")] == [job.output_id]
    assert not await store.exists(f"t/one/{META}") and not await store.exists(f"t/two/{META}")
    # a third run after everything finished (a stale report, a reassigned job) changes nothing
    third, blocks3 = await _compactor(store)
    assert (await third.execute(job)) is not None
    assert [m.block_id for m in blocks3.blocks("t")] == [job.output_id]
    reader = BlockReader(store, again, ByteCache(1 << 20))
    assert (await reader.read_all()).spans.num_rows == 6


async def test_a_compaction_whose_inputs_were_taken_writes_nothing() -> None:
    store = memory_store()
    start = NOW_NS - 60 * 10**9
    one = await _write(store, "one", _traces(1, start))
    two = await _write(store, "two", _traces(2, start))
    three = await _write(store, "three", _traces(3, start))
    compactor, _ = await _compactor(store)
    await compactor.execute(CompactionJob((one, two, three)))
    stale = CompactionJob((one, two))  # planned from an older block list
    assert await compactor.execute(stale) is None
    assert not await store.exists(f"t/{stale.output_id}/{META}")


async def test_tracker_hands_out_what_the_block_list_plans() -> None:
    store = memory_store()
    start = NOW_NS - 60 * 10**9
    for i, name in enumerate(["p", "q", "r"]):
        await _write(store, name, _traces(i + 1, start))
    compactor, _ = await _compactor(store)
    blocks = BlockList(store)
    await blocks.poll()
    tracker = JobTracker(timeout=30.0)
    tracker.offer(compactor.plan("t", tracker.busy()))
    kinds = []
    while (job := tracker.assign("w")) is not None:
        kinds.append(type(job).__name__)
        await compactor.execute(job)
        tracker.finish(job.job_id, "w", ok=True)
    assert kinds == ["RetentionJob", "CompactionJob"]
    assert tracker.offer(compactor.plan("t", tracker.busy())) == 1  # only retention: one block left


class _Election:
    leading = False


async def test_a_scheduler_hands_out_jobs_only_while_it_leads(autojump_clock: trio.testing.MockClock) -> None:
    store = memory_store()
    start = NOW_NS - 60 * 10**9
    for i, name in enumerate(["p", "q"]):
        await _write(store, name, _traces(i + 1, start))
    compactor, _ = await _compactor(store)
    election = _Election()
    scheduler = BackendScheduler(compactor, election, job_timeout=20.0, max_attempts=3, cycle=30.0)
    await scheduler.tick()
    with pytest.raises(NotLeader):
        scheduler.next_job("w")
    election.leading = True
    await scheduler.tick()
    with pytest.raises(NotLeader, match="waiting out"):  # the old leader's jobs may still run
        scheduler.next_job("w")
    await trio.sleep(20.0)
    await scheduler.tick()
    retention = scheduler.next_job("w")
    compaction = scheduler.next_job("w")
    assert isinstance(retention, RetentionJob) and isinstance(compaction, CompactionJob)
    out = await compactor.execute(compaction)
    assert scheduler.report(compaction.job_id, "w", ok=True, output=out) == "done"
    assert [m.block_id for m in compactor.blocklist.blocks("t")] == [compaction.output_id]
    election.leading = False
    await scheduler.tick()
    assert not scheduler.tracker.running and scheduler.state() == "standby"
    assert scheduler.report(retention.job_id, "w", ok=True) == "unknown"


def test_backend_roles_refuse_a_configuration_they_cannot_work_with() -> None:
    shared = load_config_text("storage: {trace: {backend: local, local: {path: /tmp/x, shared: true}}}")
    with pytest.raises(ConfigError, match="Kafka consumer group"):
        plan_for(shared, "backend-scheduler")
    with pytest.raises(ConfigError, match="backend_worker.schedulers"):
        plan_for(shared, "backend-worker")
    plan = plan_for(dataclasses.replace(shared, backend_worker=BackendWorkerConfig(schedulers=("http://s",))),
                    "backend-worker")
    assert plan.backend_worker and not plan.compactor and not plan.backend_scheduler

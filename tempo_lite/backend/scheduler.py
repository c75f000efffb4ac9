"""The backend-scheduler role: while it leads (`leader.py`), it plans the compactor's jobs from the block list
every `compaction_cycle`, hands them out to workers one at a time (`next_job`) and tracks them (`tracker.py`).

A scheduler that becomes leader waits `backend_scheduler.job_timeout` before handing out jobs: jobs the old
leader gave out have then finished or been abandoned by their workers' deadline, so no two jobs with
overlapping inputs run at once across a takeover (jobs with the same inputs are harmless: see
compactor/jobs.py). A report for a job this scheduler does not track (one given by the old leader) is
accepted and ignored.
"""

from __future__ import annotations

import logging
from typing import Protocol

import trio

from tempo_lite.backend.tracker import JobTracker
from tempo_lite.block.meta import BlockMeta
from tempo_lite.compactor import CompactionJob, Compactor, Job
from tempo_lite.errors import StorageError

log = logging.getLogger(__name__)

TICK_S = 0.5


class Election(Protocol):
    leading: bool


class NotLeader(Exception):
    """This scheduler does not lead (or has just taken over and is waiting out the old leader's jobs)."""


class BackendScheduler:
    def __init__(self, compactor: Compactor, election: Election, *, job_timeout: float, max_attempts: int,
                 cycle: float) -> None:
        self.compactor = compactor
        self.election = election
        self.tracker = JobTracker(timeout=job_timeout, max_attempts=max_attempts)
        self.job_timeout = job_timeout
        self.cycle = cycle
        self.leading = False
        self.acting_from = float("inf")  # trio time from which this leader hands out jobs
        self._next_plan = 0.0

    @property
    def acting(self) -> bool:
        return self.leading and trio.current_time() >= self.acting_from

    def state(self) -> str:
        if not self.leading:
            return "standby"
        return "leader" if self.acting else "leader (waiting out the previous leader's jobs)"

    def counts(self) -> str:
        c = self.tracker.counts
        return (f"assigned={c.assigned} done={c.done} failed={c.failed} timed_out={c.timed_out} "
                f"dropped={c.dropped} pending={len(self.tracker.pending)} running={len(self.tracker.running)}")

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await self.tick()
            await trio.sleep(TICK_S)

    async def tick(self) -> None:
        now = trio.current_time()
        leading = self.election.leading
        if leading != self.leading:
            self.tracker.clear()
            self.leading = leading
            self.acting_from = now + self.job_timeout if leading else float("inf")
            self._next_plan = self.acting_from
            if leading:
                log.info("backend-scheduler took the lead; hands out jobs in %ss", self.job_timeout)
            else:
                log.info("backend-scheduler lost the lead")
        if not self.acting:
            return
        self.tracker.expire()
        if now >= self._next_plan:
            self._next_plan = now + self.cycle
            try:
                await self.plan()
            except StorageError as exc:
                log.warning("planning failed, retrying next cycle: %s", exc.message)

    async def plan(self) -> int:
        added = 0
        for tenant in await self.compactor.tenants():
            added += self.tracker.offer(self.compactor.plan(tenant, self.tracker.busy()))
        if added:
            log.info("planned %d job(s); %d pending, %d running", added, len(self.tracker.pending),
                     len(self.tracker.running))
        return added

    def next_job(self, worker: str) -> Job | None:
        if not self.acting:
            raise NotLeader(self.state())
        return self.tracker.assign(worker)

    def report(self, job_id: str, worker: str, *, ok: bool, error: str = "", output: BlockMeta | None = None) -> str:
        """A worker's result. A finished compaction updates this scheduler's block list at once (inputs out,
        output in), so the next plan does not offer the inputs again before the list is polled."""
        job = self.tracker.running.get(job_id)
        outcome = self.tracker.finish(job_id, worker, ok=ok, error=error)
        if outcome == "done" and job is not None and isinstance(job.job, CompactionJob):
            for m in job.job.inputs:
                self.compactor.blocklist.remove(m.tenant, m.block_id)
            if output is not None:
                self.compactor.blocklist.add(output)
        return outcome

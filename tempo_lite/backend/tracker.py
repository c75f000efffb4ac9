"""The scheduler's record of jobs: pending (planned, not handed out), running (with one worker, until a
deadline), done or failed. A job whose worker does not report by its deadline (the worker died, or hangs) goes
back to pending and is handed to the next worker that asks; so does a failed job, up to `max_attempts`.

No two jobs the tracker holds share a block: `offer` drops a planned job that names a block of a job already
pending or running, so two workers never merge overlapping inputs into different outputs. Pure: no I/O, time
from `clock` (trio's, so tests drive it with MockClock).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import trio

from tempo_lite.compactor.jobs import Job

log = logging.getLogger(__name__)


@dataclass
class Assignment:
    job: Job
    worker: str = ""
    deadline: float = 0.0
    attempts: int = 0


@dataclass
class Counts:
    assigned: int = 0
    done: int = 0
    failed: int = 0
    timed_out: int = 0
    dropped: int = 0
    history: list[tuple[str, str, str]] = field(default_factory=list)  # (job_id, worker, outcome), newest last


class JobTracker:
    def __init__(self, *, timeout: float, max_attempts: int = 3,
                 clock: Callable[[], float] = trio.current_time) -> None:
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.clock = clock
        self.pending: dict[str, Assignment] = {}
        self.running: dict[str, Assignment] = {}
        self.counts = Counts()

    def busy(self) -> frozenset[str]:
        """Block IDs named by pending or running jobs (left out of the next plan)."""
        return frozenset(b for a in (*self.pending.values(), *self.running.values()) for b in a.job.block_ids)

    def offer(self, jobs: Iterable[Job]) -> int:
        """Add planned jobs not already held and not sharing a block with one held; returns how many."""
        added = 0
        for job in jobs:
            if job.job_id in self.pending or job.job_id in self.running:
                continue
            if job.block_ids & self.busy():
                continue
            self.pending[job.job_id] = Assignment(job)
            added += 1
        return added

    def expire(self) -> list[str]:
        """Jobs past their deadline go back to pending (first in line); returns their IDs."""
        now = self.clock()
        late = [job_id for job_id, a in self.running.items() if a.deadline <= now]
        for job_id in late:
            a = self.running.pop(job_id)
            log.warning("job %s timed out on worker %s after %ss: reassigning", job_id, a.worker, self.timeout)
            self.counts.timed_out += 1
            self.counts.history.append((job_id, a.worker, "timed out"))
            self._requeue(job_id, a, front=True)
        return late

    def assign(self, worker: str) -> Job | None:
        """The next pending job for `worker` (None: nothing to do), running until now + timeout."""
        self.expire()
        if not self.pending:
            return None
        job_id = next(iter(self.pending))
        a = self.pending.pop(job_id)
        a.worker, a.deadline, a.attempts = worker, self.clock() + self.timeout, a.attempts + 1
        self.running[job_id] = a
        self.counts.assigned += 1
        self.counts.history.append((job_id, worker, "assigned"))
        return a.job

    def finish(self, job_id: str, worker: str, *, ok: bool, error: str = "") -> str:
        """A worker's report. Returns what it meant: `done`, `failed` (requeued or dropped), or `unknown` (a
        job this tracker does not run with that worker: a report after a timeout, or to a new leader;
        harmless, as executing a job twice is)."""
        a = self.running.get(job_id)
        if a is None or a.worker != worker:
            return "unknown"
        del self.running[job_id]
        if ok:
            self.counts.done += 1
            self.counts.history.append((job_id, worker, "done"))
            return "done"
        log.warning("job %s failed on worker %s: %s", job_id, worker, error)
        self.counts.failed += 1
        self.counts.history.append((job_id, worker, "failed"))
        self._requeue(job_id, a, front=False)
        return "failed"

    def _requeue(self, job_id: str, a: Assignment, *, front: bool) -> None:
        if a.attempts >= self.max_attempts:
            log.error("job %s dropped after %d attempts (it is planned again next cycle if still due)",
                      job_id, a.attempts)
            self.counts.dropped += 1
            return
        a.worker, a.deadline = "", 0.0
        if front:
            self.pending = {job_id: a, **self.pending}
        else:
            self.pending[job_id] = a

    def clear(self) -> None:
        """Forget every job (this scheduler lost the lead)."""
        self.pending.clear()
        self.running.clear()

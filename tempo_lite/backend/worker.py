"""The backend-worker role: asks the schedulers (`backend_worker.schedulers`, the leader answers) for a job,
executes it with the compactor, and reports the result. Its block list is the compactor's: polled from the
store every `blocklist_poll` and updated by every job it executes.

A worker that dies mid-job reports nothing: the scheduler hands the job to another worker after
`backend_scheduler.job_timeout`, and executing it again is harmless (compactor/jobs.py).
"""

from __future__ import annotations

import json
import logging
import os
import socket

import httpx
import trio

from tempo_lite.compactor import CompactionJob, Compactor, Job
from tempo_lite.compactor.jobs import job_from_json
from tempo_lite.errors import TempoLiteError

log = logging.getLogger(__name__)

NEXT_PATH = "/internal/backend/jobs/next"


def result_path(job_id: str) -> str:
    return f"/internal/backend/jobs/{job_id}/result"


class BackendWorker:
    def __init__(self, compactor: Compactor, schedulers: tuple[str, ...], *, poll_interval: float,
                 name: str = "") -> None:
        self.compactor = compactor
        self.schedulers = tuple(u.rstrip("/") for u in schedulers)
        self.poll_interval = poll_interval
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.executed = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async with httpx.AsyncClient(timeout=httpx.Timeout(30.0)) as client:
            while True:
                fetched = await self.fetch(client)
                if fetched is None:
                    await trio.sleep(self.poll_interval)
                    continue
                scheduler, job_id, job = fetched
                await self.report(client, scheduler, job_id, *await self.execute(job))

    async def fetch(self, client: httpx.AsyncClient) -> tuple[str, str, Job] | None:
        """A job from the leading scheduler: (its URL, job ID, job), or None when there is none."""
        for url in self.schedulers:
            try:
                r = await client.post(url + NEXT_PATH, params={"worker": self.name})
            except httpx.HTTPError as exc:
                log.debug("scheduler %s unreachable: %s", url, exc)
                continue
            if r.status_code == 204:
                return None
            if r.status_code == 200:
                try:
                    return url, r.headers["X-Job-Id"], job_from_json(r.content)
                except (KeyError, ValueError) as exc:
                    log.error("scheduler %s sent an unreadable job: %s", url, exc)
                    return None
            # 503: not the leader (or waiting out the previous leader's jobs): ask the next one
        return None

    async def execute(self, job: Job) -> tuple[bool, str, bytes | None]:
        """(ok, error, output meta JSON)."""
        try:
            out = await self.compactor.execute(job)
        except TempoLiteError as exc:
            log.warning("job %s failed: %s", job.job_id, exc.message)
            return False, exc.message, None
        except Exception as exc:  # a bad block, a bug: report it and take the next job, do not die
            log.exception("job %s failed", job.job_id)
            return False, f"{type(exc).__name__}: {exc}", None
        self.executed += 1
        return True, "", out.to_json() if out is not None and isinstance(job, CompactionJob) else None

    async def report(self, client: httpx.AsyncClient, scheduler: str, job_id: str, ok: bool, error: str,
                     output: bytes | None) -> None:
        body = json.dumps({"ok": ok, "error": error, "output": json.loads(output) if output else None})
        for url in (scheduler, *(u for u in self.schedulers if u != scheduler)):
            try:
                r = await client.post(url + result_path(job_id), params={"worker": self.name}, content=body,
                                      headers={"Content-Type": "application/json"})
            except httpx.HTTPError:
                continue
            if r.status_code == 200:
                return
        log.warning("no scheduler took the result of %s (it times out there and runs again, harmlessly)", job_id)

"""The backend-scheduler's internal HTTP API (tempo_lite/api/backend.py) through Quart's test client (no
sockets): what a worker is told when the scheduler does not lead, has no job, or has one, and its reports."""

from __future__ import annotations

import json

import trio
import trio.testing
from quart_trio import QuartTrio
from test_compactor import NOW_NS, _compactor, _traces, _write

from tempo_lite.api.backend import register_backend_scheduler_routes
from tempo_lite.backend.scheduler import BackendScheduler
from tempo_lite.compactor.jobs import CompactionJob, job_from_json
from tempo_lite.storage.store import memory_store


class _Election:
    leading = False


async def test_workers_get_503_from_a_standby_then_jobs_from_the_leader(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = memory_store()
    for i, name in enumerate(["a", "b"]):
        await _write(store, name, _traces(i + 1, NOW_NS - 60 * 10**9))
    compactor, _ = await _compactor(store)
    election = _Election()
    scheduler = BackendScheduler(compactor, election, job_timeout=10.0, max_attempts=3, cycle=30.0)
    app = QuartTrio(__name__)
    register_backend_scheduler_routes(app, scheduler)
    client = app.test_client()

    r = await client.post("/internal/backend/jobs/next?worker=w1")
    assert r.status_code == 503 and "standby" in (await r.get_data(as_text=True))
    election.leading = True
    await scheduler.tick()
    await trio.sleep(10.0)
    await scheduler.tick()
    got = []
    while (r := await client.post("/internal/backend/jobs/next?worker=w1")).status_code == 200:
        got.append((r.headers["X-Job-Id"], job_from_json(await r.get_data())))
    assert r.status_code == 204
    job_id, job = got[-1]
    assert isinstance(job, CompactionJob) and job.job_id == job_id
    out = await compactor.execute(job)
    assert out is not None
    body = json.dumps({"ok": True, "error": "", "output": json.loads(out.to_json())})
    r = await client.post(f"/internal/backend/jobs/{job_id}/result?worker=w1", data=body)
    assert (await r.get_data(as_text=True)).strip() == "done"
    r = await client.post(f"/internal/backend/jobs/{job_id}/result?worker=w1", data=body)
    assert (await r.get_data(as_text=True)).strip() == "unknown"  # reported twice: harmless

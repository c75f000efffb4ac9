"""The backend-scheduler's internal HTTP API (split deployments): what backend-workers ask it.

`POST /internal/backend/jobs/next?worker=W` -> 200 with the job's JSON (compactor/jobs.py) and its ID in
`X-Job-Id`, 204 when there is nothing to do, 503 when this scheduler does not lead.
`POST /internal/backend/jobs/<id>/result?worker=W` with `{"ok": bool, "error": str, "output": meta|null}`
-> 200 with what the report meant (`done`, `failed`, `unknown`). Internal: not part of Tempo's API.
"""

from __future__ import annotations

import json

from quart import Response, request
from quart_trio import QuartTrio

from tempo_lite.api.http import text
from tempo_lite.backend.scheduler import BackendScheduler, NotLeader
from tempo_lite.block.meta import BlockMeta
from tempo_lite.compactor.jobs import job_to_json
from tempo_lite.errors import InvalidRequest


def _worker() -> str:
    worker = request.args.get("worker", "")
    if not worker:
        raise InvalidRequest("missing worker: name the asking worker in ?worker=")
    return worker


def register_backend_scheduler_routes(app: QuartTrio, scheduler: BackendScheduler) -> None:
    @app.route("/internal/backend/jobs/next", methods=["POST"])
    async def next_job() -> Response:
        worker = _worker()
        try:
            job = scheduler.next_job(worker)
        except NotLeader as exc:
            return text(f"not the leading backend-scheduler: {exc}\n", 503)
        if job is None:
            return Response(b"", status=204)
        return Response(job_to_json(job), content_type="application/json", headers={"X-Job-Id": job.job_id})

    @app.route("/internal/backend/jobs/<job_id>/result", methods=["POST"])
    async def result(job_id: str) -> Response:
        worker = _worker()
        try:
            body = json.loads(await request.get_data())
            ok = bool(body["ok"])
            error = str(body.get("error", ""))
            output = BlockMeta.from_json(json.dumps(body["output"]).encode()) if body.get("output") else None
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidRequest(f"invalid job result: {exc}") from None
        return text(scheduler.report(job_id, worker, ok=ok, error=error, output=output) + "\n")

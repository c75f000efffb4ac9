"""Acknowledged means queryable: a query right after a 200 on /v1/traces sees the spans (real server, HTTP)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest
import trio
from server_process import ServerProcess
from test_block_identity import otlp_request

from tempo_lite.livestore.freshness import needs_fresh_data, read_after_write


def test_queries_wait_and_probes_do_not() -> None:
    for path in ("/api/traces/00", "/api/v2/traces/00", "/api/search", "/api/search/tags",
                 "/api/v2/search/tag/x/values", "/api/metrics/query_range", "/tempopb.StreamingQuerier/Search"):
        assert needs_fresh_data(path), path
    for path in ("/ready", "/metrics", "/api/echo", "/api/status/buildinfo"):
        assert not needs_fresh_data(path), path


async def test_query_waits_at_most_the_timeout_then_answers(autojump_clock: trio.abc.Clock) -> None:
    answered: list[str] = []
    waited: list[float] = []

    async def app(scope: dict, receive: object, send: object) -> None:
        answered.append(scope["path"])

    async def never_caught_up(timeout: float) -> bool:
        waited.append(timeout)
        await trio.sleep(timeout)
        return False

    wrapped = read_after_write(app, never_caught_up, timeout=1.0)
    start = trio.current_time()
    await wrapped({"type": "http", "path": "/api/search"}, None, None)
    assert answered == ["/api/search"] and waited == [1.0]
    assert trio.current_time() - start == pytest.approx(1.0)
    await wrapped({"type": "http", "path": "/ready"}, None, None)
    assert waited == [1.0]  # probes never wait


@pytest.mark.slow
def test_post_then_get_never_answers_404(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, cycle="1s")
    server.start()
    misses = []
    try:
        with httpx.Client(timeout=10) as client:
            for i in range(1000):
                tid = os.urandom(16)
                r = client.post(server.otlp, content=otlp_request([tid]),
                                headers={"Content-Type": "application/x-protobuf"})
                assert r.status_code == 200, r.text
                got = client.get(f"{server.api}/api/traces/{tid.hex()}")
                if got.status_code != 200:
                    misses.append((i, got.status_code))
                if i % 100 == 0:  # search and tag values are covered by the same wait
                    now = int(time.time())
                    s = client.get(f"{server.api}/api/search", params={
                        "q": "{}", "start": now - 600, "end": now + 600, "limit": 5000})
                    assert s.status_code == 200 and tid.hex().lstrip("0") in {
                        t["traceID"].lstrip("0") for t in s.json()["traces"]}, f"search missed {tid.hex()}"
        assert not misses, f"{len(misses)} of 1000 reads right after a 200 failed, e.g. {misses[:5]}"
        assert server.terminate() == 0
    finally:
        server.close()

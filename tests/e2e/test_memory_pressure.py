"""Under memory pressure the block-builder flushes early, in smaller blocks, and flushed spans leave memory at
once, so ingest keeps flowing instead of answering 503 until the recent window expires."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
import trio
from conftest import start_tempo, tempo_config_text
from test_block_identity import otlp_request


@pytest.mark.slow
async def test_pressure_flushes_before_the_cycle_and_frees_memory(
    nursery: trio.Nursery, tmp_path: Path, http: httpx.AsyncClient
) -> None:
    # 1 h cycle and 256 MiB blocks: only memory pressure (an eighth of 4 MiB: `pressure_bytes`) can cut a block here.
    tempo = await start_tempo(nursery, tempo_config_text(tmp_path, "live_store: {max_bytes: 4194304}", cycle="1h"))
    tl = tempo.tl
    url = tempo.url("otlp_http") + "/v1/traces"
    sent: list[bytes] = []
    try:
        with trio.fail_after(120):
            while not list((tmp_path / "blocks").glob("single-tenant/*/meta.json")):
                ids = [os.urandom(16) for _ in range(200)]
                r = await http.post(url, content=otlp_request(ids), headers={"Content-Type": "application/x-protobuf"})
                assert r.status_code == 200, r.text  # never saturated: flushed early instead
                sent += ids
                await trio.sleep(0.01)
            while tl.livestore.under_pressure:
                await trio.sleep(0.05)
        assert tl.livestore.nbytes < tl.livestore.pressure_bytes
        metas = list((tmp_path / "blocks").glob("single-tenant/*/meta.json"))
        assert metas
        for tid in sent[:: max(1, len(sent) // 50)]:
            r = await http.get(f"{tempo.url()}/api/traces/{tid.hex()}")
            assert r.status_code == 200, tid.hex()
    finally:
        await tempo.stop()

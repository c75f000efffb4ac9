"""Hostile bodies against a real `tempo-lite serve` process: no body stalls the other ports.

The server runs in its own process, so a decoder spinning on the event loop would show here as the
query port not answering (an in-process server would hang the test's own event loop instead).
"""

from __future__ import annotations

import random
from pathlib import Path

import httpx
import pytest
import trio
from server_process import ServerProcess, free_port
from test_fuzz_jaeger import VALID

THRIFT = {"Content-Type": "application/x-thrift"}
HOSTILE_JAEGER = bytes.fromhex("0f0001de7fffffff")  # a list header claiming 2^31 elements of type 0xde


def with_receivers(server: ServerProcess, tmp_path: Path) -> tuple[str, str]:
    jaeger, zipkin = free_port(), free_port()
    server.config.write_text(
        f"""
server: {{http_listen_address: 127.0.0.1, http_listen_port: {server.http_port}, log_level: warn}}
distributor:
  receivers:
    otlp:
      protocols:
        http: {{endpoint: "127.0.0.1:{server.otlp_port}"}}
    zipkin: {{endpoint: "127.0.0.1:{zipkin}"}}
    jaeger:
      protocols:
        thrift_http: {{endpoint: "127.0.0.1:{jaeger}"}}
storage:
  trace:
    local: {{path: {tmp_path / "blocks"}}}
    wal: {{path: {tmp_path / "wal"}}}
"""
    )
    return f"http://127.0.0.1:{jaeger}/api/traces", f"http://127.0.0.1:{zipkin}/api/v2/spans"


def bit_flipped(body: bytes, rng: random.Random) -> bytes:
    out = bytearray(body)
    for _ in range(rng.randint(1, 8)):
        bit = rng.randrange(len(out) * 8)
        out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


@pytest.mark.slow
async def test_hostile_jaeger_bodies_are_refused_while_every_port_keeps_answering(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path)
    jaeger_url, zipkin_url = with_receivers(server, tmp_path)
    rng = random.Random(14)
    statuses: list[int] = []
    echoes: list[int] = []
    try:
        await trio.to_thread.run_sync(server.start)
        # A client timeout, not a timing assertion: a stalled event loop answers nothing at all.
        async with httpx.AsyncClient(timeout=20) as http:
            r = await http.post(jaeger_url, content=HOSTILE_JAEGER, headers=THRIFT)
            assert r.status_code == 400 and "unknown element type" in r.text

            async def hostile(n: int) -> None:
                for _ in range(n):
                    body = HOSTILE_JAEGER if rng.random() < 0.2 else bit_flipped(VALID["http"], rng)
                    statuses.append((await http.post(jaeger_url, content=body, headers=THRIFT)).status_code)

            async def echo(n: int) -> None:
                for _ in range(n):
                    echoes.append((await http.get(server.api + "/api/echo")).status_code)
                    await trio.sleep(0.01)

            async with trio.open_nursery() as nursery:
                for _ in range(4):
                    nursery.start_soon(hostile, 50)
                nursery.start_soon(echo, 50)
            # Every port still answers after the storm, with the right answer.
            assert (await http.post(jaeger_url, content=VALID["http"], headers=THRIFT)).status_code == 202
            assert (await http.post(zipkin_url, content=b"[" * 5000, headers={"Content-Type": "application/json"})
                    ).status_code == 400
            assert (await http.get(server.api + "/ready")).status_code == 200
    finally:
        server.close()
    assert len(statuses) == 200 and set(statuses) <= {202, 400}, sorted(set(statuses))
    assert echoes == [200] * 50

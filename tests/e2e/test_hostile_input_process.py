"""Hostile bodies against a real `tempo-lite serve` process: no body stalls the other ports.

The server runs in its own process, so a decoder spinning on the event loop would show here as the
query port not answering (an in-process server would hang the test's own event loop instead).
"""

from __future__ import annotations

import random
import socket
import time
from pathlib import Path

import httpx
import pytest
import trio
from server_process import ServerProcess, free_port
from test_fuzz_jaeger import VALID

THRIFT = {"Content-Type": "application/x-thrift"}
HOSTILE_JAEGER = bytes.fromhex("0f0001de7fffffff")  # a list header claiming 2^31 elements of type 0xde


def with_receivers(server: ServerProcess, tmp_path: Path, server_extra: str = "") -> tuple[str, str]:
    jaeger, zipkin = free_port(), free_port()
    server.config.write_text(
        f"""
server: {{http_listen_address: 127.0.0.1, http_listen_port: {server.http_port}, log_level: warn{server_extra}}}
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


def _closed_by_server(sock: socket.socket, guard_s: float = 20.0) -> bool:
    """Read until the server closes the connection (True) or `guard_s` passes (False); a hang guard only."""
    sock.settimeout(guard_s)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return True


def _port(url: str) -> int:
    return int(url.split(":")[2].split("/")[0])


@pytest.mark.slow
def test_connection_close_is_honoured_on_every_port(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path)
    jaeger_url, zipkin_url = with_receivers(server, tmp_path)
    try:
        server.start()
        for port, path in [(server.http_port, "/api/echo"), (server.http_port, "/ready"),
                           (server.http_port, "/api/search?q=%7B%7D"), (server.otlp_port, "/v1/traces"),
                           (_port(zipkin_url), "/api/v2/spans"), (_port(jaeger_url), "/api/traces")]:
            with socket.create_connection(("127.0.0.1", port)) as sock:
                sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
                assert _closed_by_server(sock), f"port {port} {path} kept the connection open"
    finally:
        server.close()


@pytest.mark.slow
def test_idle_slow_header_and_stalled_body_connections_are_closed(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path)
    with_receivers(server, tmp_path, ", http_server_idle_timeout: 1s, http_server_read_timeout: 1s")
    try:
        server.start()
        for port in (server.http_port, server.otlp_port):
            idle = socket.create_connection(("127.0.0.1", port))
            idle.sendall(b"GET /api/echo HTTP/1.1\r\nHost: t\r\n\r\n")  # one request, then nothing
            slow = socket.create_connection(("127.0.0.1", port))
            stalled = socket.create_connection(("127.0.0.1", port))
            stalled.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-protobuf\r\n"
                            b"Content-Length: 1000\r\n\r\n" + b"\x00" * 10)
            # Headers trickled a byte at a time, each well inside the read timeout: only the idle
            # timeout (no request has started) can close this one.
            deadline = time.monotonic() + 20
            closed = False
            for byte in b"GET /api/echo HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"x" * 1000:
                try:
                    slow.sendall(bytes([byte]))
                except (BrokenPipeError, ConnectionResetError):
                    closed = True
                    break
                if time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert closed or _closed_by_server(slow, 1.0), f"port {port}: slow-header connection left open"
            for sock in (idle, stalled):
                assert _closed_by_server(sock), f"port {port}: connection left open"
            for sock in (idle, slow, stalled):
                sock.close()
        assert httpx.get(server.api + "/ready").status_code == 200
    finally:
        server.close()

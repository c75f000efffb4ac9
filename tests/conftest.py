"""Shared fixtures: an in-process tempo-lite on free ports, and the path to ../shared test data."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trio

from tempo_lite.app import TempoLite
from tempo_lite.config import load_config_text

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def tempo_config_text(
    tmp_path: Path, extra: str = "", *, cycle: str = "1h", max_request_bytes: int = 32 << 20
) -> str:
    """A config on free ports under tmp_path; `extra` YAML is appended (top-level keys not used here)."""
    return textwrap.dedent(
        f"""
        server: {{http_listen_address: 127.0.0.1, http_listen_port: 0, log_level: warn}}
        distributor:
          max_request_bytes: {max_request_bytes}
          receivers:
            otlp:
              protocols:
                http: {{endpoint: "127.0.0.1:0"}}
                grpc: {{endpoint: "127.0.0.1:0"}}
            zipkin: {{endpoint: "127.0.0.1:0"}}
            jaeger:
              protocols:
                thrift_http: {{endpoint: "127.0.0.1:0"}}
                thrift_compact: {{endpoint: "127.0.0.1:0"}}
                thrift_binary: {{endpoint: "127.0.0.1:0"}}
        storage:
          trace:
            backend: local
            local: {{path: {tmp_path / "blocks"}}}
            wal: {{path: {tmp_path / "wal"}}}
        block_builder: {{consume_cycle_duration: {cycle}}}
        """
    ) + textwrap.dedent(extra)


@dataclass
class Running:
    tl: TempoLite
    done: trio.Event

    def url(self, name: str = "http") -> str:
        return self.tl.listeners.url(name)

    async def stop(self) -> None:
        self.tl.stop()
        await self.done.wait()


async def start_tempo(nursery: trio.Nursery, config_text: str) -> Running:
    tl = TempoLite(load_config_text(config_text, "test-config"))
    done = trio.Event()

    async def run(task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await tl.run(task_status=task_status)
        finally:
            done.set()

    await nursery.start(run)
    return Running(tl, done)


@pytest.fixture
async def tempo(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[Running]:
    running = await start_tempo(nursery, tempo_config_text(tmp_path))
    yield running
    await running.stop()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client

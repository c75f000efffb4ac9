"""Shared fixtures: an in-process tempo-lite on free ports."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trio
import yaml
from fuzzing import QUICK
from hypothesis import settings

from tempo_lite.app import TempoLite
from tempo_lite.config import load_config_text

# Emulator fixtures (moto, gcp-storage-emulator, azurite) for every test module.
pytest_plugins = ["storage_emulators"]

# Hypothesis profiles: the default (every property test tries its full example count) and `quick`
# (`scripts/test --quick` passes --hypothesis-profile=quick; tests/fuzzing.py gives a tenth of each count).
# Registered here, before the hypothesis plugin loads the profile named on the command line.
settings.register_profile(QUICK)



def _merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for k, v in top.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def tempo_config_text(
    tmp_path: Path, extra: str = "", *, cycle: str = "1h", max_request_bytes: int = 32 << 20,
    storage: dict | None = None,
) -> str:
    """A config on free ports under tmp_path. `extra` is YAML merged on top; `storage` replaces the
    `storage.trace` backend settings (e.g. {"backend": "s3", "s3": {...}})."""
    endpoint = {"endpoint": "127.0.0.1:0"}
    config = {
        "server": {"http_listen_address": "127.0.0.1", "http_listen_port": 0, "log_level": "warn"},
        "distributor": {
            "max_request_bytes": max_request_bytes,
            "receivers": {
                "otlp": {"protocols": {"http": endpoint, "grpc": endpoint}},
                "zipkin": endpoint,
                "jaeger": {"protocols": {"thrift_http": endpoint, "thrift_compact": endpoint,
                                         "thrift_binary": endpoint}},
            },
        },
        "storage": {"trace": {
            **(storage or {"backend": "local", "local": {"path": str(tmp_path / "blocks")}}),
            "wal": {"path": str(tmp_path / "wal")},
        }},
        "block_builder": {"consume_cycle_duration": cycle},
    }
    if extra.strip():
        config = _merge(config, yaml.safe_load(textwrap.dedent(extra)))
    return yaml.safe_dump(config)


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


def pytest_report_header(config: pytest.Config) -> str | None:
    from conformance import ROOT, missing_reason

    return None if ROOT.exists() else missing_reason(ROOT) + "; the tests that read it skip"

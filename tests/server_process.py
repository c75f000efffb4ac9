"""Run `tempo-lite serve` as a real child process on free ports (for crash and CLI tests)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    def __init__(self, tmp_path: Path, *, cycle: str = "2s", extra: str = "") -> None:
        self.http_port, self.otlp_port = free_port(), free_port()
        self.config = tmp_path / "tempo.yaml"
        self.config.write_text(
            f"""
server: {{http_listen_address: 127.0.0.1, http_listen_port: {self.http_port}, log_level: info}}
distributor:
  receivers:
    otlp:
      protocols:
        http: {{endpoint: "127.0.0.1:{self.otlp_port}"}}
storage:
  trace:
    local: {{path: {tmp_path / "blocks"}}}
    wal: {{path: {tmp_path / "wal"}}}
block_builder: {{consume_cycle_duration: {cycle}}}
{extra}
"""
        )
        self.log = tmp_path / "server.log"
        self.proc: subprocess.Popen | None = None
        self.args: list[str] = []  # more `serve` arguments (e.g. -target=live-store)
        self.env: dict[str, str] = {}  # more environment (e.g. TEMPO_LITE_FAULT)

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def otlp(self) -> str:
        return f"http://127.0.0.1:{self.otlp_port}/v1/traces"

    def start(self, timeout: float = 30.0) -> None:
        self.spawn()
        self.wait_ready(timeout)

    def spawn(self) -> None:
        """Start the process without waiting for it to be ready (see `wait_ready`)."""
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tempo_lite", "serve", "--config", str(self.config), *self.args],
                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
            )

    def wait_ready(self, timeout: float = 30.0) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                if httpx.get(self.api + "/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server not ready after {timeout}s:\n{self.log.read_text()}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def terminate(self, timeout: float = 60.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


def kafka_role(tmp_path: Path, broker: str, topic: str, name: str, target: str, body: str = "",
               partitions: int = 4) -> ServerProcess:
    """A `-target=<target>` process in tmp_path/name on the kafka WAL `topic` (`partitions` partitions) with
    blocks shared in tmp_path/blocks (1 s block list poll and block-builder cycle); `body` is appended to its
    config."""
    home = tmp_path / name
    home.mkdir()
    proc = ServerProcess(home)
    proc.config.write_text(f"""
server: {{http_listen_address: 127.0.0.1, http_listen_port: {proc.http_port}, log_level: info}}
distributor: {{receivers: {{otlp: {{protocols: {{http: {{endpoint: "127.0.0.1:{proc.otlp_port}"}}}}}}}}}}
storage:
  trace:
    backend: local
    local: {{path: {tmp_path / "blocks"}, shared: true}}
    blocklist_poll: 1s
    wal: {{backend: kafka, partitions: {partitions}, path: {home / "wal"},
           kafka: {{brokers: '{broker}', topic: {topic}}}}}
block_builder: {{consume_cycle_duration: 1s}}
{body}""")
    proc.args = [f"-target={target}"]
    return proc

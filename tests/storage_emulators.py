"""Pytest fixtures that run real object-store emulators as separate processes on 127.0.0.1.

- `s3_emulator`: moto server (`python -m moto.server`). Keeps all state in process memory, so
  `stop()` + `start()` comes back EMPTY: `start()` re-creates the bucket, objects are gone.
- `gcs_emulator`: gcp-storage-emulator with on-disk storage in a temp folder: data survives restarts.
- `azure_emulator`: azurite 3.35 (npm, installed by `scripts/install-test-services`) with `--location`
  in a temp folder: data survives restarts.

Each fixture is session-scoped and yields an `Emulator` with `.config` (the backend config a
deployment would use), `.store()` (a fresh `ObjectStore` on the bucket) and `stop()`/`start()` that
kill the process and bring it back on the same port. A missing emulator fails the test (never skips).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tempo_lite.storage.backends import (
    AzureConfig,
    BackendConfig,
    GcsConfig,
    S3Config,
    _open_azure,
    _open_gcs,
    _open_s3,
)
from tempo_lite.storage.store import ObjectStore

REPO = Path(__file__).resolve().parent.parent
AZURITE_BIN = REPO / ".test-services" / "node_modules" / ".bin" / "azurite-blob"
# Azurite's documented development account (public, not a secret).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
BUCKET = "tempo-test"
START_TIMEOUT = 30.0

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


class Emulator:
    """One emulator process: `start()` runs it and waits until it accepts connections and the
    bucket exists, `stop()` kills it (the port then refuses connections)."""

    def __init__(
        self,
        name: str,
        backend: str,
        command: Callable[[int], list[str]],
        config: BackendConfig,
        port: int,
        workdir: Path,
        create_bucket: Callable[[Emulator], None],
        open_fs: Callable[[Any], tuple[Any, str, str]],
        keeps_data: bool,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.backend = backend
        self.command = command
        self.config = config
        self.port = port
        self.workdir = workdir
        self.keeps_data = keeps_data
        self._create_bucket = create_bucket
        self._open_fs = open_fs
        self._env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = workdir / f"{name}.log"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        if self.running:
            return
        env = {**os.environ, **self._env}
        with open(self._log, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(self.port), cwd=self.workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not _listening(self.port):
            if self.proc.poll() is not None:
                pytest.fail(f"{self.name} exited with {self.proc.returncode} at start:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"{self.name} did not listen on 127.0.0.1:{self.port} in {START_TIMEOUT}s")
            time.sleep(0.05)
        self._create_bucket(self)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        deadline = time.monotonic() + 5
        while _listening(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self._log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def store(self, prefix: str = "") -> ObjectStore:
        """A fresh ObjectStore on the bucket (optionally under `prefix`)."""
        fs, root, bucket = self._open_fs(self.config)
        if prefix:
            root = f"{root}/{prefix.strip('/')}"
        return ObjectStore(fs, root, name=f"{self.backend}:{bucket}")


def _require(path: str | Path, what: str) -> str:
    found = shutil.which(str(path)) if not Path(path).is_absolute() else (str(path) if Path(path).exists() else None)
    if not found:
        pytest.fail(f"{what} is not installed ({path}); run scripts/install-test-services and `pip install .[test]`")
    return found


# --- S3: moto ---------------------------------------------------------------------------------


def _create_s3_bucket(emu: Emulator) -> None:
    import boto3

    cfg = emu.config
    assert isinstance(cfg, S3Config)
    # No region_name: moto rejects a LocationConstraint for us-east-1 (docs/architecture.md, known traps).
    client = boto3.client(
        "s3", endpoint_url=f"http://127.0.0.1:{emu.port}", aws_access_key_id=cfg.access_key,
        aws_secret_access_key=cfg.secret_key, region_name="us-east-1",
    )
    existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    if cfg.bucket not in existing:
        client.create_bucket(Bucket=cfg.bucket)


def make_s3_emulator(workdir: Path, env: dict[str, str] | None = None, create: bool = True) -> Emulator:
    try:
        import moto.server  # noqa: F401
    except ImportError as exc:
        pytest.fail(f"moto[server] is not installed: {exc}")
    port = free_port()
    cfg = S3Config(
        bucket=BUCKET, endpoint=f"127.0.0.1:{port}", access_key="test-access", secret_key="test-secret",
        insecure=True, forcepathstyle=True,
    )
    return Emulator(
        "moto", "s3", lambda p: [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(p)],
        cfg, port, workdir, _create_s3_bucket if create else (lambda emu: None), _open_s3, keeps_data=False,
        env=env,
    )


# --- GCS: gcp-storage-emulator -------------------------------------------------------------------


def make_gcs_emulator(workdir: Path) -> Emulator:
    exe = _require(Path(sys.executable).parent / "gcp-storage-emulator", "gcp-storage-emulator")
    port = free_port()
    cfg = GcsConfig(bucket_name=BUCKET, endpoint=f"http://127.0.0.1:{port}")
    data = workdir / "gcs-data"
    data.mkdir(exist_ok=True)

    def create(emu: Emulator) -> None:
        # --default-bucket creates it; wait until the HTTP API answers.
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                _open_gcs(emu.config)
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    return Emulator(
        "gcp-storage-emulator", "gcs",
        lambda p: [exe, "start", "-H", "127.0.0.1", "--port", str(p), "--default-bucket", BUCKET, "-q"],
        cfg, port, workdir, create, _open_gcs, keeps_data=True, env={"STORAGE_BASE": str(data)},
    )


# --- Azure: azurite -----------------------------------------------------------------------------


def make_azure_emulator(workdir: Path) -> Emulator:
    exe = _require(AZURITE_BIN, "azurite")
    if not shutil.which("node"):
        pytest.fail("node is not installed (azurite needs Node 20); run scripts/install-test-services")
    port = free_port()
    cfg = AzureConfig(
        container_name=BUCKET, storage_account_name=AZURITE_ACCOUNT, storage_account_key=AZURITE_KEY,
        endpoint_suffix=f"127.0.0.1:{port}",
    )
    data = workdir / "azurite-data"
    data.mkdir(exist_ok=True)

    def create(emu: Emulator) -> None:
        from azure.core.exceptions import ResourceExistsError
        from azure.storage.blob import BlobServiceClient

        client = BlobServiceClient(f"http://127.0.0.1:{emu.port}/{AZURITE_ACCOUNT}", credential=AZURITE_KEY)
        try:
            client.create_container(BUCKET)
        except ResourceExistsError:
            pass

    return Emulator(
        "azurite", "azure",
        lambda p: [exe, "--blobHost", "127.0.0.1", "--blobPort", str(p), "--disableTelemetry",
                   "--skipApiVersionCheck", "--silent", "--location", str(data)],
        cfg, port, workdir, create, _open_azure, keeps_data=True,
    )


def _run(factory: Callable[[Path], Emulator]) -> Iterator[Emulator]:
    workdir = Path(tempfile.mkdtemp(prefix="tempo-lite-emu-"))
    emu = factory(workdir)
    try:
        emu.start()
        yield emu
    finally:
        emu.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def s3_emulator() -> Iterator[Emulator]:
    yield from _run(make_s3_emulator)


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[Emulator]:
    yield from _run(make_gcs_emulator)


@pytest.fixture(scope="session")
def azure_emulator() -> Iterator[Emulator]:
    yield from _run(make_azure_emulator)


EMULATOR_FIXTURES = {"s3": "s3_emulator", "gcs": "gcs_emulator", "azure": "azure_emulator"}

"""The managed WAL: tempo-lite runs a Kafka-protocol broker as its own child process and uses it as `kafka`.

`wal.backend: managed` runs any broker from a command template; `wal.backend: redpanda` is a preset of
it (the `redpanda` binary with a generated `redpanda.yaml`). The broker keeps its data under
`<wal.path>/broker`. `open_managed_wal` owns one nursery holding the `BrokerSupervisor` (start, wait
until the broker answers, restart with backoff when it dies, its output forwarded to the log, stop at
shutdown) and the kafka backend's delivery loop. While the broker restarts, `ManagedWal` makes the
consumers (live-store, block-builder) wait instead of failing, and appends answer `Unavailable` (503).
See docs/wal.md, section "Managed broker".
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

import trio
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from tempo_lite.errors import ConfigError, Unavailable
from tempo_lite.wal import WalEntry, WalRecord, WalStatistics
from tempo_lite.wal.kafka import KafkaWal, open_kafka_wal
from tempo_lite.wal.options import ManagedOptions, WalOptions

log = logging.getLogger(__name__)
broker_log = logging.getLogger("tempo_lite.wal.broker")

T = TypeVar("T")

PLACEHOLDER = re.compile(r"\{(host|port|rpc_port|admin_port|data_dir)\}")
PORT_NAMES = ("port", "rpc_port", "admin_port")
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
READY_POLL_S = 0.1
LOG_TAIL_LINES = 20
PID_FILE = "broker.pid"
PORTS_FILE = "ports.json"

REDPANDA_INSTALL = (
    "install Redpanda (https://docs.redpanda.com/current/get-started/quick-start/; Debian/Ubuntu: the "
    "`redpanda` package from Redpanda's apt repository), or use the tempo-lite Docker image, which ships it"
)

# Written to <data_dir>/redpanda.yaml before every start: one node, listeners on {host} only.
REDPANDA_YAML = """\
# Written by tempo-lite before every start of its managed Redpanda broker: edits are overwritten.
redpanda:
  data_directory: {data_dir}/data
  node_id: 0
  seed_servers: []
  empty_seed_starts_cluster: true
  developer_mode: true
  rpc_server:
    address: {host}
    port: {rpc_port}
  advertised_rpc_api:
    address: {host}
    port: {rpc_port}
  kafka_api:
    - address: {host}
      port: {port}
  advertised_kafka_api:
    - address: {host}
      port: {port}
  admin:
    - address: {host}
      port: {admin_port}
rpk:
  overprovisioned: true
"""

# Cluster properties Redpanda applies when it first forms the cluster (read next to redpanda.yaml):
# acknowledge a produce only once it is fsynced, whatever the mode's default.
REDPANDA_BOOTSTRAP_YAML = """write_caching_default: "false"
"""


# --------------------------------------------------------------------------------------------- command


@dataclass(frozen=True, slots=True)
class BrokerCommand:
    """Everything needed to start the broker, placeholders already filled in."""

    name: str
    argv: list[str]
    env: dict[str, str]
    files: dict[str, str]
    data_dir: Path
    host: str
    port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def redpanda_preset(config: WalOptions) -> ManagedOptions:
    """The `redpanda` backend as a `managed` command; a missing binary is a one-line ConfigError."""
    managed = config.managed
    if managed.command:
        raise ConfigError(
            "storage.trace.wal.managed.command is set, but wal.backend: redpanda builds its own command; "
            "use wal.backend: managed to run a command of your own"
        )
    binary = managed.redpanda_path or "redpanda"
    found = shutil.which(binary)
    if found is None:
        key = "storage.trace.wal.redpanda.path"
        where = f"{binary!r} does not exist or is not executable" if managed.redpanda_path else (
            "no `redpanda` binary on PATH"
        )
        raise ConfigError(f"{key}: {where}; {REDPANDA_INSTALL}, or set {key} to the binary")
    if managed.redpanda_smp <= 0:
        raise ConfigError(f"storage.trace.wal.redpanda.smp must be positive, got {managed.redpanda_smp}")
    command = (
        found, "--redpanda-cfg", "{data_dir}/redpanda.yaml", "--smp", str(managed.redpanda_smp),
        "--memory", managed.redpanda_memory, "--reserve-memory", "0M", "--overprovisioned",
        "--lock-memory=false", "--default-log-level=info", *managed.redpanda_args,
    )
    files = {"redpanda.yaml": REDPANDA_YAML, ".bootstrap.yaml": REDPANDA_BOOTSTRAP_YAML, **managed.files}
    return replace(managed, command=command, files=files)


def broker_command(config: WalOptions) -> BrokerCommand:
    """The broker's command for `config` (backend `managed` or `redpanda`), ports chosen and kept.

    Free ports are picked once and remembered in `<data_dir>/ports.json`, so a restarted tempo-lite
    finds its broker's data under the same addresses.
    """
    managed = redpanda_preset(config) if config.backend == "redpanda" else config.managed
    if not managed.command:
        raise ConfigError(
            "storage.trace.wal.managed.command must give the broker's command line (a list) for "
            "wal.backend: managed, e.g. [redpanda, --redpanda-cfg, '{data_dir}/redpanda.yaml']"
        )
    for key, value in (("start_timeout", managed.start_timeout), ("restart_backoff", managed.restart_backoff),
                       ("max_restart_backoff", managed.max_restart_backoff), ("stop_timeout", managed.stop_timeout)):
        if value <= 0:
            raise ConfigError(f"storage.trace.wal.managed.{key} must be positive, got {value}")
    if not 0 <= managed.port < 65536:
        raise ConfigError(f"storage.trace.wal.managed.port must be a TCP port (0: a free one), got {managed.port}")
    data_dir = Path(config.path).resolve() / "broker"
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"storage.trace.wal.path: cannot create the broker directory {data_dir}: {exc}") from exc
    ports = _ports(data_dir, managed)
    values = {"host": managed.host, "data_dir": str(data_dir), **{k: str(v) for k, v in ports.items()}}

    def fill(text: str) -> str:
        return PLACEHOLDER.sub(lambda m: values[m.group(1)], text)

    for name in managed.files:
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise ConfigError(f"storage.trace.wal.managed.files: {name!r} must be a relative name under the data "
                              "directory")
    return BrokerCommand(
        name=Path(managed.command[0]).name,
        argv=[fill(arg) for arg in managed.command],
        env={str(k): fill(str(v)) for k, v in managed.env.items()},
        files={name: fill(str(text)) for name, text in managed.files.items()},
        data_dir=data_dir,
        host=managed.host,
        port=ports["port"],
    )


def _ports(data_dir: Path, managed: ManagedOptions) -> dict[str, int]:
    path = data_dir / PORTS_FILE
    try:
        remembered = {k: int(v) for k, v in json.loads(path.read_text()).items() if k in PORT_NAMES}
    except (OSError, ValueError, AttributeError):
        remembered = {}
    ports = {name: remembered.get(name) or _free_port(managed.host) for name in PORT_NAMES}
    if managed.port:
        ports["port"] = managed.port
    if ports != remembered:
        path.write_text(json.dumps(ports) + "\n")
    return ports


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------------------------- supervisor


class BrokerSupervisor:
    """Runs the broker process: start, wait until it answers, restart with backoff, stop.

    `run` is the supervising task (started with `nursery.start`, it reports the broker's address once
    the broker first answers); `stop` ends it. While the broker is down `up` is False and `wait_up`
    blocks.
    """

    def __init__(self, command: BrokerCommand, managed: ManagedOptions) -> None:
        self.command = command
        self.managed = managed
        self.process: trio.Process | None = None
        self.restarts = 0
        self.up = False
        self._up_event = trio.Event()
        self._stopping = False
        self._stop_requested = trio.Event()
        self._finished = trio.Event()
        self._tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)
        self._output_nursery: trio.Nursery
        self._output_done = trio.Event()

    async def wait_up(self) -> None:
        await self._up_event.wait()

    async def run(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as self._output_nursery:
                try:
                    failure = await self._supervise(task_status)
                finally:
                    # Cancelled (tempo-lite failing) rather than stopped: the broker must not outlive us.
                    await self._end_process()
                # Every broker process has exited: its output ends; a grandchild holding the pipe does not
                # keep the supervisor alive.
                self._output_nursery.cancel_scope.deadline = trio.current_time() + 2.0
        finally:
            self._finished.set()
        if failure is not None:
            raise failure

    async def _supervise(self, task_status: trio.TaskStatus[str]) -> ConfigError | None:
        """Supervise until stopped; a first start that fails is returned (raised by `run`)."""
        await trio.to_thread.run_sync(_kill_orphan, self.command)
        # The first start must succeed: a broker that cannot start stops tempo-lite's start-up.
        try:
            process = await self._spawn()
        except ConfigError as exc:
            return exc
        try:
            await self._wait_answering(process)
        except _NotAnswering as exc:
            await self._kill(process)
            with trio.move_on_after(2.0):
                await self._output_done.wait()  # its last words explain why
            return ConfigError(
                f"storage.trace.wal.backend: the managed broker ({self.command.name}) {exc}; its last output:\n"
                + ("\n".join(f"  {line}" for line in self._tail) or "  (none)")
            )
        log.info("managed broker %s answers on %s (pid %d, data in %s)", self.command.name,
                 self.command.address, process.pid, self.command.data_dir)
        self._set_up(True)
        task_status.started(self.command.address)
        delay = self.managed.restart_backoff
        while True:
            started = trio.current_time()
            code = await process.wait()
            self._set_up(False)
            if self._stopping:
                return None
            if trio.current_time() - started > self.managed.max_restart_backoff:
                delay = self.managed.restart_backoff
            log.warning("managed broker %s (pid %d) exited with status %s; restarting in %.1fs",
                        self.command.name, process.pid, code, delay)
            with trio.move_on_after(delay):
                await self._stop_requested.wait()
            delay = min(delay * 2, self.managed.max_restart_backoff)
            if self._stopping:
                return None
            try:
                process = await self._spawn()
            except ConfigError as exc:
                log.error("cannot restart the managed broker: %s; trying again", exc.message)
                continue
            self.restarts += 1
            try:
                await self._wait_answering(process)
            except _NotAnswering as exc:
                if self._stopping:
                    return None
                log.error("restarted broker %s %s; trying again", self.command.name, exc)
                await self._kill(process)
                continue
            log.info("managed broker %s is back on %s (pid %d, restart %d)", self.command.name,
                     self.command.address, process.pid, self.restarts)
            self._set_up(True)

    async def stop(self) -> None:
        """SIGTERM the broker, SIGKILL it after `stop_timeout`; returns once `run` has finished."""
        self._stopping = True
        self._stop_requested.set()
        await self._end_process()
        await self._finished.wait()

    async def _end_process(self) -> None:
        process = self.process
        if process is None or process.returncode is not None:
            return
        with trio.CancelScope(shield=True):
            log.info("stopping managed broker %s (pid %d)", self.command.name, process.pid)
            process.terminate()
            with trio.move_on_after(self.managed.stop_timeout):
                await process.wait()
            if process.returncode is None:
                log.warning("managed broker %s did not stop within %.0fs; killing it", self.command.name,
                            self.managed.stop_timeout)
                await self._kill(process)

    def _set_up(self, up: bool) -> None:
        self.up = up
        if up:
            self._up_event.set()
        elif self._up_event.is_set():
            self._up_event = trio.Event()

    async def _spawn(self) -> trio.Process:
        command = self.command
        for name, text in command.files.items():
            target = command.data_dir / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        try:
            process = await trio.lowlevel.open_process(
                command.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd=command.data_dir,
                env={**os.environ, **command.env},
                # Its own session: a Ctrl-C at the terminal reaches tempo-lite, which flushes through
                # the broker before stopping it.
                start_new_session=True,
            )
        except OSError as exc:
            raise ConfigError(f"storage.trace.wal.managed.command: cannot run {command.argv[0]!r}: "
                              f"{exc.strerror or exc}") from exc
        self.process = process
        (command.data_dir / PID_FILE).write_text(f"{process.pid}\n")
        # The process's output is forwarded until it closes; the task ends with the process.
        self._output_done = trio.Event()
        self._output_nursery.start_soon(self._forward_output, process, self._output_done)
        return process

    async def _forward_output(self, process: trio.Process, done: trio.Event) -> None:
        try:
            await self._forward_lines(process)
        finally:
            done.set()

    async def _forward_lines(self, process: trio.Process) -> None:
        assert process.stdout is not None
        pending = b""
        with contextlib.suppress(trio.ClosedResourceError, trio.BrokenResourceError, OSError):
            async with process.stdout:
                while chunk := await process.stdout.receive_some(65536):
                    *lines, pending = (pending + chunk).split(b"\n")
                    for line in lines:
                        self._log_line(line)
        if pending:
            self._log_line(pending)

    def _log_line(self, raw: bytes) -> None:
        line = ANSI.sub("", raw.decode(errors="replace")).rstrip()
        if not line:
            return
        self._tail.append(line)
        upper = line.upper()
        level = logging.ERROR if "ERROR" in upper else logging.WARNING if " WARN" in upper else logging.INFO
        broker_log.log(level, "%s: %s", self.command.name, line)

    async def _wait_answering(self, process: trio.Process) -> None:
        """Until the broker answers a Kafka metadata request; raises _NotAnswering if it exits or times out."""
        with trio.move_on_after(self.managed.start_timeout):
            while True:
                if process.returncode is not None:
                    raise _NotAnswering(f"exited with status {process.returncode} before answering on "
                                        f"{self.command.address}")
                if await self._answers():
                    return
                await trio.sleep(READY_POLL_S)
        raise _NotAnswering(f"did not answer on {self.command.address} within {self.managed.start_timeout:.0f}s")

    async def _answers(self) -> bool:
        try:
            stream = await trio.open_tcp_stream(self.command.host, self.command.port)
        except OSError:
            return False
        await stream.aclose()
        return await trio.to_thread.run_sync(_metadata_answers, self.command.address)

    async def _kill(self, process: trio.Process) -> None:
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                process.kill()
            await process.wait()


class _NotAnswering(Exception):
    pass


def _metadata_answers(address: str) -> bool:
    admin = AdminClient({"bootstrap.servers": address, "socket.connection.setup.timeout.ms": 1000,
                         "logger": log})
    try:
        return bool(admin.list_topics(timeout=1.0).brokers)
    except KafkaException:
        return False


def _kill_orphan(command: BrokerCommand) -> None:
    """A broker left running by a tempo-lite that was SIGKILLed holds the data directory: end it."""
    pid_file = command.data_dir / PID_FILE
    try:
        pid = int(pid_file.read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return
    if not cmdline or os.path.basename(cmdline[0].decode(errors="replace")) != command.name:
        return
    log.warning("killing managed broker %s (pid %d) left running by an earlier tempo-lite", command.name, pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10.0
    while Path(f"/proc/{pid}").exists() and not _is_zombie(pid) and time.monotonic() < deadline:
        time.sleep(0.01)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return True


# --------------------------------------------------------------------------------------------- the WAL


class ManagedWal:
    """The kafka backend on the supervised broker; consumers wait out broker restarts instead of failing."""

    def __init__(self, kafka: KafkaWal, supervisor: BrokerSupervisor, outage_timeout: float) -> None:
        self.kafka = kafka
        self.supervisor = supervisor
        self.outage_timeout = outage_timeout
        self._closing = False

    @property
    def partitions(self) -> int:
        return self.kafka.partitions

    @property
    def identity(self) -> str:
        return self.kafka.identity

    def statistics(self) -> WalStatistics:
        return self.kafka.statistics()

    async def append(self, entries: Sequence[WalEntry]) -> list[int]:
        if not self.supervisor.up and entries:
            raise Unavailable(f"the managed WAL broker ({self.supervisor.command.name}) is restarting; retry later")
        # Records already handed to the producer are retried by librdkafka until the broker is back.
        return await self.kafka.append(entries)

    async def read(self, partition: int, start_offset: int, max_records: int) -> list[WalRecord]:
        return await self._retrying(lambda: self.kafka.read(partition, start_offset, max_records))

    async def wait_for_records(self, partition: int, offset: int, timeout: float) -> bool:
        with trio.move_on_after(timeout):
            try:
                return await self.kafka.wait_for_records(partition, offset, timeout)
            except (Unavailable, KafkaException):
                if self._closing:
                    raise
                await self.supervisor.wait_up()
        return False

    async def commit(self, group: str, partition: int, next_offset: int) -> None:
        await self._retrying(lambda: self.kafka.commit(group, partition, next_offset))

    async def committed(self, group: str, partition: int) -> int:
        return await self.kafka.committed(group, partition)

    async def end_offset(self, partition: int) -> int:
        return await self._retrying(lambda: self.kafka.end_offset(partition))

    async def run(self) -> None:
        await self.kafka.run()

    async def aclose(self) -> None:
        self._closing = True
        await self.kafka.aclose()

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        """`call`, retried while the broker is down and for up to `outage_timeout` once it is back."""
        deadline: float | None = None
        delay = 0.05
        while True:
            try:
                return await call()
            except (Unavailable, KafkaException) as exc:
                if self._closing:
                    raise
                if not self.supervisor.up:
                    log.info("managed WAL: waiting for the broker to come back (%s)", exc)
                    await self.supervisor.wait_up()
                    deadline = None
                    continue
                now = trio.current_time()
                deadline = now + self.outage_timeout if deadline is None else deadline
                if now >= deadline:
                    raise
                await trio.sleep(delay)
                delay = min(delay * 2, 1.0)


@asynccontextmanager
async def open_managed_wal(config: WalOptions) -> AsyncIterator[ManagedWal]:
    """Start and supervise the broker, open the kafka backend on it; on exit close the WAL, stop the broker."""
    command = broker_command(config)
    managed = config.managed
    supervisor = BrokerSupervisor(command, managed)
    failure: Exception | None = None
    async with trio.open_nursery() as nursery:
        try:
            address = await nursery.start(supervisor.run)
            kafka = await open_kafka_wal(address, config.kafka_topic, config.partitions, config.groups,
                                         config.bytes_limit)
        except Exception as exc:
            # Raised after the nursery, unwrapped: start-up errors (ConfigError) reach the CLI as they are.
            failure = exc
            with trio.CancelScope(shield=True):
                await supervisor.stop()
        else:
            wal = ManagedWal(kafka, supervisor, outage_timeout=managed.start_timeout)
            nursery.start_soon(wal.run)
            try:
                yield wal
            finally:
                with trio.CancelScope(shield=True):
                    await wal.aclose()
                    await supervisor.stop()
    if failure is not None:
        raise failure

"""Runs the managed WAL's broker as tempo-lite's child process: start it, wait until it answers, restart it
with backoff when it dies, forward its output to the log, stop it at shutdown; a broker left running by an
earlier tempo-lite (its pid file) is killed first. See docs/wal.md, section "Managed broker".
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import trio
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from tempo_lite.errors import ConfigError
from tempo_lite.wal.broker_command import PID_FILE, BrokerCommand
from tempo_lite.wal.options import ManagedOptions

log = logging.getLogger("tempo_lite.wal.managed")
broker_log = logging.getLogger("tempo_lite.wal.broker")

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
READY_POLL_S = 0.1
LOG_TAIL_LINES = 20


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
    settings: dict[str, Any] = {"bootstrap.servers": address, "socket.connection.setup.timeout.ms": 1000,
                                "logger": log}
    admin = AdminClient(settings)
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

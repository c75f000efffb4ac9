"""`tempo-lite capture -- <command>`: the run itself. Starts an in-process tempo-lite (temp dir storage, free
ports), runs the command with its instrumentation pointed at it, waits until every received span is queryable,
evaluates the assertions with the same search the API answers, and writes the reports. See docs/capture.md.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import trio
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from tempo_lite import spantable
from tempo_lite.cli.capture.assertions import Assertion
from tempo_lite.cli.capture.environment import (
    QUERY_TENANT,
    SEARCH_END_S,
    SEARCH_LIMIT,
    SEARCH_START_S,
    CaptureOptions,
    Endpoints,
    capture_config,
    child_environment,
)
from tempo_lite.cli.capture.report import (
    AssertionResult,
    CaptureOutcome,
    TraceSummary,
    check,
    junit_xml,
    render_report,
    summaries,
)
from tempo_lite.receivers.otlp_json import encode_otlp_json

log = logging.getLogger("tempo_lite.capture")

KILL_AFTER_SECONDS = 10.0  # after forwarding a signal, SIGKILL the command if it is still running
CATCH_UP_TIMEOUT_SECONDS = 60.0



async def search(tl: Any, query: str) -> list[TraceSummary]:
    from tempo_lite.frontend.search import run_search

    params = {"q": query, "start": str(SEARCH_START_S), "end": str(SEARCH_END_S), "limit": str(SEARCH_LIMIT)}
    return summaries(await run_search(tl, [QUERY_TENANT], params))


async def evaluate(tl: Any, assertions: Sequence[Assertion]) -> tuple[list[TraceSummary], list[AssertionResult]]:
    captured = await search(tl, "{}")
    results = []
    for a in assertions:
        started = time.perf_counter()
        matched = await search(tl, a.query)
        results.append(check(a, matched, captured, time.perf_counter() - started))
    return captured, results


async def export_traces(tl: Any, traces: Sequence[TraceSummary], path: str) -> int:
    """Write every captured trace into one OTLP/JSON TracesData document; returns the span count."""
    merged = TracesData()
    for t in sorted(traces, key=lambda s: s.start_ns):
        found, _, _ = await tl.frontend.find_trace([QUERY_TENANT], bytes.fromhex(t.trace_id))
        if found is not None:
            merged.MergeFromString(spantable.encode_traces_data(found))
    body = json.dumps(encode_otlp_json(merged), indent=1).encode() + b"\n"
    await trio.Path(path).write_bytes(body)
    return sum(len(ss.spans) for rs in merged.resource_spans for ss in rs.scope_spans)


def _stdin_is_foreground_tty() -> bool:
    """True when a terminal's Ctrl-C already reaches the command (same foreground process group)."""
    try:
        return os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp()
    except OSError:
        return False


class ChildRun:
    """Runs the command, forwarding SIGINT/SIGTERM to it and killing it if it ignores them."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self.command = command
        self.env = env
        self.process: trio.Process | None = None
        self.interrupted = ""
        self.signals_seen = 0

    async def run(self) -> int:
        """The command's exit status (negative: killed by that signal). OSError if it cannot start."""
        process = self.process = await trio.lowlevel.open_process(self.command, env=self.env)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._forward_signals, nursery)
                code = await process.wait()
                nursery.cancel_scope.cancel()
        finally:
            if process.returncode is None:  # cancelled or failed while the command runs: do not orphan it
                process.kill()
                with trio.CancelScope(shield=True):
                    await process.wait()
        return code

    async def _forward_signals(self, nursery: trio.Nursery) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                sig = signal.Signals(signum)
                self.interrupted = sig.name
                self.signals_seen += 1
                # Ctrl-C in a terminal already reached the command (same process group): forwarding it
                # would deliver it twice. A second SIGINT, or one sent from elsewhere, is forwarded.
                terminal_sent = sig == signal.SIGINT and self.signals_seen == 1 and _stdin_is_foreground_tty()
                assert self.process is not None
                if not terminal_sent and self.process.returncode is None:
                    log.warning("forwarding %s to the command", sig.name)
                    self.process.send_signal(sig)
                if self.signals_seen == 1:
                    nursery.start_soon(self._kill_later)

    async def _kill_later(self) -> None:
        await trio.sleep(KILL_AFTER_SECONDS)
        if self.process is not None and self.process.returncode is None:
            log.warning("command still running %.0fs after %s: killing it", KILL_AFTER_SECONDS, self.interrupted)
            self.process.kill()


def _say(options: CaptureOptions, text: str) -> None:
    if not options.quiet:
        sys.stderr.write(text if text.endswith("\n") else text + "\n")
        sys.stderr.flush()


async def run_capture(options: CaptureOptions, environ: Mapping[str, str] | None = None) -> CaptureOutcome:
    """Start tempo-lite, run the command against it, evaluate the assertions, write the reports."""
    from tempo_lite.app import TempoLite

    started = time.perf_counter()
    if options.keep:
        data_dir = Path(options.keep)
        data_dir.mkdir(parents=True, exist_ok=True)
        cleanup = None
    else:
        data_dir = Path(tempfile.mkdtemp(prefix="tempo-lite-capture-"))
        cleanup = data_dir
    outcome = CaptureOutcome(command=list(options.command), returncode=None)
    try:
        tl = TempoLite(capture_config(options, data_dir))
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(tl.run)
            try:
                env, notes = child_environment(
                    os.environ if environ is None else environ, Endpoints(listeners.addresses),
                    override=options.override_env,
                )
                for note in notes:
                    _say(options, f"tempo-lite capture: {note}")
                child = ChildRun(options.command, env)
                try:
                    outcome.returncode = await child.run()
                except FileNotFoundError as exc:
                    outcome.start_error = f"{options.command[0]}: command not found ({exc.strerror})"
                except PermissionError as exc:
                    outcome.start_error = f"{options.command[0]}: cannot execute ({exc.strerror})"
                outcome.interrupted = child.interrupted
                # Every span the command got a 200 for is in the WAL; wait until the live-store has it.
                await tl.livestore.catch_up(CATCH_UP_TIMEOUT_SECONDS)
                outcome.traces, outcome.results = await evaluate(tl, options.assertions)
                if options.export:
                    await export_traces(tl, outcome.traces, options.export)
            finally:
                tl.stop()
        outcome.seconds = time.perf_counter() - started
        if options.junit:
            Path(options.junit).write_bytes(junit_xml(outcome))
        _say(options, render_report(outcome))
        return outcome
    finally:
        if cleanup is not None:
            shutil.rmtree(cleanup, ignore_errors=True)

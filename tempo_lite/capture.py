"""`tempo-lite capture -- <command>`: collect the traces of a CI run in a throw-away tempo-lite, assert on them.

An in-process tempo-lite (temp dir storage, free ports) receives what the command's instrumentation sends
(the OpenTelemetry SDK environment variables point at it); once the command exits and every received span
is queryable, TraceQL assertions (`--expect`, `--expect-none`, `--expect-count`, `--assertions FILE`) are
evaluated with the search engine in-process. Reports: text on stderr, JUnit XML, OTLP/JSON export.

The pure parts (assertion parsing and checking, the child's environment, report rendering, OTLP/JSON)
come first; the process orchestration (`run_capture`) is at the end. See docs/capture.md.
"""

from __future__ import annotations

import base64
import json
import logging
import operator
import os
import re
import shutil
import signal
import sys
import tempfile
import textwrap
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
import yaml
from google.protobuf import json_format
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from tempo_lite import spantable
from tempo_lite._gen import tempopb_pb2 as pb
from tempo_lite.config import Config, load_config_text
from tempo_lite.errors import InvalidRequest
from tempo_lite.querier.search import parse_search_query

log = logging.getLogger("tempo_lite.capture")

EXIT_ASSERTIONS = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 127  # the shell's convention for "command not found"
EXIT_NOT_EXECUTABLE = 126

QUERY_TENANT = "single-tenant"
# The widest range the search API accepts (unix seconds, uint32): spans with old or skewed timestamps
# are still found, and blocks already cut during a long run are searched as well as the live-store.
SEARCH_START_S = 1
SEARCH_END_S = 0xFFFFFFFF
SEARCH_LIMIT = 262_144  # Tempo's max_result_limit default: the ceiling of traces one assertion counts
SAMPLES_ON_FAILURE = 3
KILL_AFTER_SECONDS = 10.0  # after forwarding a signal, SIGKILL the command if it is still running
CATCH_UP_TIMEOUT_SECONDS = 60.0


class CaptureError(Exception):
    """A usage error found before the command runs (bad assertion, unreadable file): exit code 2."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --------------------------------------------------------------------------------------------- assertions

_COUNT = re.compile(r"^\s*(>=|<=|==|!=|=|>|<)?\s*(\d+)\s*$")
_COUNT_OPS: dict[str, Callable[[int, int], bool]] = {
    ">=": operator.ge, "<=": operator.le, "==": operator.eq, "=": operator.eq, "!=": operator.ne,
    ">": operator.gt, "<": operator.lt,
}


@dataclass(frozen=True)
class CountCheck:
    """How many traces must match: `3` (exactly), `>=3`, `<5`, `!=0`..."""

    op: str
    value: int

    def holds(self, count: int) -> bool:
        return _COUNT_OPS[self.op](count, self.value)

    def __str__(self) -> str:
        return f"{'==' if self.op == '=' else self.op}{self.value}"


def parse_count(text: object) -> CountCheck:
    if isinstance(text, bool):
        raise ValueError(f"invalid count {text!r} (use e.g. 3, >=3, <5)")
    m = _COUNT.match(str(text))
    if not m:
        raise ValueError(f"invalid count {text!r} (use e.g. 3, >=3, <5)")
    return CountCheck(m.group(1) or "==", int(m.group(2)))


EXPECT = "expect"
EXPECT_NONE = "expect_none"


@dataclass(frozen=True)
class Assertion:
    """One check over the captured traces. `source` says where it was written (`--expect`, `file:line`)."""

    kind: str  # EXPECT | EXPECT_NONE
    query: str
    source: str
    name: str = ""
    count: CountCheck | None = None

    @property
    def title(self) -> str:
        if self.name:
            return self.name
        if self.kind == EXPECT_NONE:
            return f"none: {self.query}"
        if self.count is not None:
            return f"count {self.count}: {self.query}"
        return self.query

    def expectation(self) -> str:
        if self.kind == EXPECT_NONE:
            return "no trace matches"
        if self.count is not None:
            return f"matching traces {self.count}"
        return "at least one trace matches"

    def holds(self, matched: int) -> bool:
        if self.kind == EXPECT_NONE:
            return matched == 0
        if self.count is not None:
            return self.count.holds(matched)
        return matched > 0


def check_query(query: str, where: str, *, first_line: int | None = None) -> None:
    """Raise CaptureError if `query` cannot be searched; the position is file:line when `first_line` is known."""
    try:
        parse_search_query(query)
    except InvalidRequest as exc:
        line = getattr(exc, "line", None)
        col = getattr(exc, "col", None)
        detail = getattr(exc, "detail", exc.message)
        if first_line is not None:
            at = f"{where}:{first_line + (line or 1) - 1}"
            if line is None:
                raise CaptureError(f"{at}: invalid TraceQL {query.strip()!r}: {detail}") from exc
            text = query.splitlines()[line - 1] if line <= len(query.splitlines()) else query
            raise CaptureError(f"{at}: invalid TraceQL at col {col} of {text.strip()!r}: {detail}") from exc
        raise CaptureError(f"{where} {query!r}: {exc.message}") from exc


def cli_assertion(kind: str, query: str, count: str | None, index: int) -> Assertion:
    option = {EXPECT: "--expect", EXPECT_NONE: "--expect-none"}[kind] if count is None else "--expect-count"
    where = f"{option} #{index}"
    check_query(query, where)
    try:
        parsed = parse_count(count) if count is not None else None
    except ValueError as exc:
        raise CaptureError(f"{where}: {exc}") from exc
    return Assertion(kind, query, option, count=parsed)


_ENTRY_KEYS = {"name", EXPECT, EXPECT_NONE, "count"}


def _scalar(node: yaml.Node, path: str, key: str) -> str:
    if not isinstance(node, yaml.ScalarNode):
        raise CaptureError(f"{path}:{node.start_mark.line + 1}: {key!r} must be a string")
    return str(node.value)


def _content_line(node: yaml.ScalarNode) -> int:
    """1-based file line of the first line of a scalar's text (block scalars start on the next line)."""
    return node.start_mark.line + (2 if node.style in ("|", ">") else 1)


def load_assertions(text: str, path: str) -> list[Assertion]:
    """Parse an assertions file: a YAML list of {name?, expect | expect_none, count?}; errors name file:line."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else path
        raise CaptureError(f"{where}: invalid YAML: {getattr(exc, 'problem', None) or exc}") from exc
    if root is None:
        return []
    if not isinstance(root, yaml.SequenceNode):
        raise CaptureError(f"{path}:{root.start_mark.line + 1}: expected a list of assertions")
    out: list[Assertion] = []
    for item in root.value:
        line = item.start_mark.line + 1
        if not isinstance(item, yaml.MappingNode):
            raise CaptureError(f"{path}:{line}: an assertion must be a mapping with 'expect' or 'expect_none'")
        entry: dict[str, yaml.Node] = {}
        for key_node, value_node in item.value:
            key = str(key_node.value)
            if key not in _ENTRY_KEYS:
                raise CaptureError(
                    f"{path}:{key_node.start_mark.line + 1}: unknown key {key!r} "
                    f"(expected name, expect, expect_none, count)"
                )
            entry[key] = value_node
        kinds = [k for k in (EXPECT, EXPECT_NONE) if k in entry]
        if len(kinds) != 1:
            raise CaptureError(f"{path}:{line}: an assertion needs exactly one of 'expect' or 'expect_none'")
        kind = kinds[0]
        query_node = entry[kind]
        query = _scalar(query_node, path, kind)
        assert isinstance(query_node, yaml.ScalarNode)
        check_query(query, path, first_line=_content_line(query_node))
        count = None
        if "count" in entry:
            count_node = entry["count"]
            if kind == EXPECT_NONE:
                raise CaptureError(f"{path}:{count_node.start_mark.line + 1}: 'count' only goes with 'expect'")
            try:
                count = parse_count(_scalar(count_node, path, "count"))
            except ValueError as exc:
                raise CaptureError(f"{path}:{count_node.start_mark.line + 1}: {exc}") from exc
        name = _scalar(entry["name"], path, "name") if "name" in entry else ""
        out.append(Assertion(kind, query, f"{path}:{line}", name=name, count=count))
    return out


# --------------------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class TraceSummary:
    trace_id: str
    root_service: str
    root_name: str
    duration_ms: int
    start_ns: int
    spans: int

    def render(self) -> str:
        service = self.root_service or "<root span not yet received>"
        duration = f"{self.duration_ms}ms" if self.duration_ms else "<1ms"
        return f"{self.trace_id:<32}  {service}  {self.root_name!r}  {duration}"


def summaries(response: pb.SearchResponse) -> list[TraceSummary]:
    out = []
    for t in response.traces:
        sets = list(t.spanSets) or ([t.spanSet] if t.HasField("spanSet") else [])
        out.append(TraceSummary(
            # Search responses drop leading zeros as Tempo does; people read and paste the full 32 digits.
            trace_id=t.traceID.rjust(32, "0"), root_service=t.rootServiceName, root_name=t.rootTraceName,
            duration_ms=t.durationMs, start_ns=t.startTimeUnixNano, spans=sum(s.matched for s in sets),
        ))
    return out


@dataclass(frozen=True)
class AssertionResult:
    assertion: Assertion
    matched: list[TraceSummary]
    others: list[TraceSummary]  # captured traces that did not match
    seconds: float

    @property
    def passed(self) -> bool:
        return self.assertion.holds(len(self.matched))

    def failure_message(self) -> str:
        n = len(self.matched)
        return f"expected {self.assertion.expectation()}, {n} trace{'' if n == 1 else 's'} matched"

    def detail_lines(self) -> list[str]:
        """A few matching and non-matching traces: what a reader needs to see why the assertion failed."""
        lines = []
        for label, group in (("matching", self.matched), ("not matching", self.others)):
            if not group:
                continue
            more = f" (first {SAMPLES_ON_FAILURE} of {len(group)})" if len(group) > SAMPLES_ON_FAILURE else ""
            lines.append(f"{label}{more}:")
            lines += [f"  {s.render()}" for s in group[:SAMPLES_ON_FAILURE]]
        return lines


def check(
    assertion: Assertion, matched: list[TraceSummary], captured: list[TraceSummary], seconds: float
) -> AssertionResult:
    ids = {s.trace_id for s in matched}
    return AssertionResult(assertion, matched, [s for s in captured if s.trace_id not in ids], seconds)


@dataclass
class CaptureOutcome:
    command: list[str]
    returncode: int | None  # None: the command could not be started
    start_error: str = ""
    interrupted: str = ""  # name of the signal that interrupted the run
    traces: list[TraceSummary] = field(default_factory=list)
    results: list[AssertionResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        """The command's own failure first, then the assertions, then success."""
        if self.returncode is None:
            return EXIT_NOT_FOUND if "not found" in self.start_error else EXIT_NOT_EXECUTABLE
        if self.returncode < 0:  # killed by a signal: the shell's 128+N
            return 128 - self.returncode
        if self.returncode:
            return self.returncode
        if self.interrupted:
            return 128 + signal.Signals[self.interrupted].value
        return EXIT_ASSERTIONS if any(not r.passed for r in self.results) else 0


def render_report(outcome: CaptureOutcome) -> str:
    spans = sum(t.spans for t in outcome.traces)
    n_traces = len(outcome.traces)
    lines = [f"tempo-lite capture: {n_traces} trace{'' if n_traces == 1 else 's'}, "
             f"{spans} span{'' if spans == 1 else 's'} captured"]
    if outcome.returncode is None:
        lines.append(f"command could not be started: {outcome.start_error}")
    elif outcome.returncode < 0:
        lines.append(f"command killed by {signal.Signals(-outcome.returncode).name}")
    elif outcome.returncode:
        lines.append(f"command failed with exit code {outcome.returncode}")
    if outcome.interrupted:
        lines.append(f"interrupted by {outcome.interrupted}")
    for r in outcome.results:
        n = len(r.matched)
        status = "PASS" if r.passed else "FAIL"
        lines.append(f"{status}  {r.assertion.title}  ({n} matching trace{'' if n == 1 else 's'})")
        if r.assertion.name:
            lines.append(f"      query: {r.assertion.query}")
        if not r.passed:
            lines.append(f"      {r.failure_message()}")
            lines += [f"      {line}" for line in r.detail_lines()]
    failed = sum(not r.passed for r in outcome.results)
    if outcome.results:
        lines.append(f"{len(outcome.results) - failed} passed, {failed} failed")
    return "\n".join(lines) + "\n"


def junit_xml(outcome: CaptureOutcome, suite_name: str = "tempo-lite capture") -> bytes:
    """JUnit XML (the Ant/Surefire dialect GitHub, GitLab and Jenkins read): one testcase per assertion."""
    failed = [r for r in outcome.results if not r.passed]
    suites = ET.Element("testsuites", name=suite_name, tests=str(len(outcome.results)),
                        failures=str(len(failed)), errors="0", time=f"{outcome.seconds:.3f}")
    suite = ET.SubElement(suites, "testsuite", name=suite_name, tests=str(len(outcome.results)),
                          failures=str(len(failed)), errors="0", skipped="0", time=f"{outcome.seconds:.3f}",
                          timestamp=time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()))
    props = ET.SubElement(suite, "properties")
    for key, value in (
        ("command", " ".join(outcome.command)),
        ("command.exit_code", "" if outcome.returncode is None else str(outcome.returncode)),
        ("traces", str(len(outcome.traces))),
        ("spans", str(sum(t.spans for t in outcome.traces))),
    ):
        ET.SubElement(props, "property", name=key, value=value)
    for r in outcome.results:
        case = ET.SubElement(suite, "testcase", classname="tempo-lite.capture", name=r.assertion.title,
                             file=r.assertion.source, time=f"{r.seconds:.3f}")
        out = ET.SubElement(case, "system-out")
        out.text = f"query: {r.assertion.query}\nmatching traces: {len(r.matched)}\n"
        if not r.passed:
            failure = ET.SubElement(case, "failure", message=r.failure_message(), type="AssertionError")
            failure.text = "\n".join([f"query: {r.assertion.query}", *r.detail_lines()]) + "\n"
    ET.indent(suites)
    return ET.tostring(suites, encoding="utf-8", xml_declaration=True) + b"\n"


# --------------------------------------------------------------------------------------------- OTLP/JSON

_ID_KEYS = ("traceId", "spanId", "parentSpanId")


def _ids_to_hex(obj: dict[str, Any]) -> None:
    for key in _ID_KEYS:
        if key in obj:
            obj[key] = base64.b64decode(obj[key]).hex()


def otlp_json(traces: TracesData) -> dict[str, Any]:
    """TracesData as the OTLP/JSON spec writes it: lowerCamelCase, hex IDs, enums as integers."""
    doc = json_format.MessageToDict(traces, use_integers_for_enums=True)
    for rs in doc.get("resourceSpans", []):
        for ss in rs.get("scopeSpans", []):
            for span in ss.get("spans", []):
                _ids_to_hex(span)
                for link in span.get("links", []):
                    _ids_to_hex(link)
    return doc


# --------------------------------------------------------------------------------------------- child env


@dataclass(frozen=True)
class Endpoints:
    """Bound listeners: name -> (host, port), as `TempoLite.listeners.addresses`."""

    addresses: Mapping[str, tuple[str, int]]

    def url(self, name: str, path: str = "") -> str:
        host, port = self.addresses[name]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}{path}"


def child_environment(
    base: Mapping[str, str], endpoints: Endpoints, *, override: bool
) -> tuple[dict[str, str], list[str]]:
    """The command's environment and notes about user-set variables that were kept.

    A variable the user already set wins (unless `override`): a CI job may point its SDK elsewhere on
    purpose. The traces endpoint follows the same rule as a group: if the user set the generic
    `OTEL_EXPORTER_OTLP_ENDPOINT`, setting the more specific traces variable would silently override it.
    """
    env = dict(base)
    notes: list[str] = []
    protocol = (env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "")
    if override:
        protocol = ""
    grpc = protocol.strip() == "grpc" and "otlp_grpc" in endpoints.addresses
    otlp_base = endpoints.url("otlp_grpc" if grpc else "otlp_http")
    wanted: dict[str, str] = {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_base,
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": otlp_base if grpc else otlp_base + "/v1/traces",
    }
    if "zipkin" in endpoints.addresses:
        wanted["OTEL_EXPORTER_ZIPKIN_ENDPOINT"] = endpoints.url("zipkin", "/api/v2/spans")
    if "jaeger_thrift_http" in endpoints.addresses:
        wanted["OTEL_EXPORTER_JAEGER_ENDPOINT"] = endpoints.url("jaeger_thrift_http", "/api/traces")
        wanted["JAEGER_ENDPOINT"] = endpoints.url("jaeger_thrift_http", "/api/traces")
    if "jaeger_thrift_compact" in endpoints.addresses:
        host, port = endpoints.addresses["jaeger_thrift_compact"]
        wanted["JAEGER_AGENT_HOST"] = host
        wanted["JAEGER_AGENT_PORT"] = str(port)
    user_set_generic = "OTEL_EXPORTER_OTLP_ENDPOINT" in base and not override
    for key, value in wanted.items():
        kept = key in base and not override
        if key == "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" and user_set_generic and key not in base:
            notes.append(f"not setting {key}: OTEL_EXPORTER_OTLP_ENDPOINT is set (use --override-env)")
            continue
        if kept:
            if base[key] != value:
                notes.append(f"keeping {key}={base[key]} from the environment (use --override-env)")
            continue
        env[key] = value
    # Always ours: these name tempo-lite's own listeners and cannot collide with an SDK's settings.
    env["TEMPO_LITE_URL"] = endpoints.url("http")
    for name in sorted(endpoints.addresses):
        host, port = endpoints.addresses[name]
        env[f"TEMPO_LITE_{name.upper()}_ENDPOINT"] = f"{host}:{port}"
    return env, notes


# --------------------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class CaptureOptions:
    command: list[str]
    assertions: list[Assertion]
    http_port: int = 0
    otlp_http_port: int = 0
    otlp_grpc_port: int = 0
    zipkin_port: int = 0
    jaeger_port: int = 0
    override_env: bool = False
    junit: str | None = None
    export: str | None = None
    keep: str | None = None
    log_level: str = "warn"
    quiet: bool = False


def capture_config(options: CaptureOptions, data_dir: Path) -> Config:
    """Ephemeral tempo-lite: everything on 127.0.0.1, storage under data_dir, limits sized for one CI job."""
    text = textwrap.dedent(
        f"""
        server: {{http_listen_address: 127.0.0.1, http_listen_port: {options.http_port},
                  log_level: {options.log_level}}}
        distributor:
          receivers:
            otlp:
              protocols:
                http: {{endpoint: "127.0.0.1:{options.otlp_http_port}"}}
                grpc: {{endpoint: "127.0.0.1:{options.otlp_grpc_port}"}}
            zipkin: {{endpoint: "127.0.0.1:{options.zipkin_port}"}}
            jaeger:
              protocols:
                thrift_http: {{endpoint: "127.0.0.1:{options.jaeger_port}"}}
                thrift_compact: {{endpoint: "127.0.0.1:0"}}
        storage:
          trace:
            backend: local
            local: {{path: {json.dumps(str(data_dir / "blocks"))}}}
            wal: {{path: {json.dumps(str(data_dir / "wal"))}}}
        query_frontend:
          search: {{max_duration: 2000000h, max_result_limit: {SEARCH_LIMIT}}}
        overrides:
          defaults:
            ingestion: {{rate_limit_bytes: 1GB, burst_size_bytes: 1GB}}
        """
    )
    return load_config_text(text, "tempo-lite capture")


# --------------------------------------------------------------------------------------------- orchestration


async def search(tl: Any, query: str) -> list[TraceSummary]:
    from tempo_lite.api.search import run_search

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
    body = json.dumps(otlp_json(merged), indent=1).encode() + b"\n"
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

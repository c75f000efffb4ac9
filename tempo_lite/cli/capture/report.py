"""What `tempo-lite capture` found: the traces each assertion matched, the run's outcome and its exit code, and
the reports (text on stderr, JUnit XML). Pure: no I/O.
"""

from __future__ import annotations

import signal
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from tempo_lite._gen import tempopb_pb2 as pb
from tempo_lite.cli.capture.assertions import Assertion

EXIT_ASSERTIONS = 1
EXIT_NOT_FOUND = 127  # the shell's convention for "command not found"
EXIT_NOT_EXECUTABLE = 126
SAMPLES_ON_FAILURE = 3



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



"""`tempo-lite capture`: real `python -m tempo_lite capture ... -- python child.py` runs, where the child uses
the OpenTelemetry SDK configured only through the environment capture sets; exit codes, the report,
JUnit XML, OTLP/JSON export, assertion-file errors, signal forwarding. Pure parts: tests/unit/test_cli_capture.py."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tempo_lite.receivers.otlp_json import decode_otlp_json

REPO = Path(__file__).resolve().parents[2]

# Three traces "POST /pay" -> "db.query" from service checkout; the third db.query is an error.
CHILD = textwrap.dedent(
    """
    import os, signal, sys, time
    from pathlib import Path

    if os.environ.get("CHILD_MARKER"):
        Path(os.environ["CHILD_MARKER"]).write_text("ran")

    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace import Status, StatusCode

    provider = TracerProvider(resource=Resource.create({"service.name": "checkout"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    tracer = provider.get_tracer("ci")

    def emit(name):
        for i in range(3):
            with tracer.start_as_current_span(name) as root:
                root.set_attribute("order.id", i)
                with tracer.start_as_current_span("db.query") as db:
                    if i == 2:
                        db.set_status(Status(StatusCode.ERROR, "boom"))

    if os.environ.get("CHILD_READY"):  # wait for SIGTERM, then emit and exit cleanly
        got = []
        signal.signal(signal.SIGTERM, lambda *a: got.append(1))
        Path(os.environ["CHILD_READY"]).write_text("ready")
        deadline = time.monotonic() + 20
        while not got and time.monotonic() < deadline:
            time.sleep(0.05)
        emit("on SIGTERM")
    else:
        emit("POST /pay")
    provider.shutdown()
    sys.exit(int(os.environ.get("CHILD_EXIT", "0")))
    """
)


@pytest.fixture
def child(tmp_path: Path) -> Path:
    path = tmp_path / "child.py"
    path.write_text(CHILD)
    return path


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "JAEGER_"))}
    env.update(extra)
    return env


def capture_args(child: Path, *options: str) -> list[str]:
    return [sys.executable, "-m", "tempo_lite", "capture", *options, "--", sys.executable, str(child)]


def run_capture(child: Path, *options: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        capture_args(child, *options), cwd=REPO, env=clean_env(**env), capture_output=True, text=True, timeout=60
    )


def test_all_assertions_pass_exit_0_with_junit_and_otlp_json_export(child: Path, tmp_path: Path) -> None:
    assertions = tmp_path / "assertions.yaml"
    assertions.write_text(textwrap.dedent(
        """
        - name: checkout handles payments
          expect: '{resource.service.name = "checkout" && name = "POST /pay"}'
          count: ">=3"
        - expect_none: '{resource.service.name = "fraud"}'
        """
    ))
    junit, export = tmp_path / "report.xml", tmp_path / "traces.json"
    proc = run_capture(
        child, "--expect", '{} >> {name = "db.query"}', "--expect", '{name="POST /pay"} > {name="db.query"}',
        "--expect-count", "1", "{status = error}", "-f", str(assertions),
        "--junit", str(junit), "--export", str(export),
    )
    assert proc.returncode == 0, proc.stderr
    assert "3 traces, 6 spans captured" in proc.stderr
    assert "FAIL" not in proc.stderr
    assert proc.stderr.count("PASS") == 5

    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures")) == ("5", "0")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases][3] == "checkout handles payments"
    assert cases[3].get("file") == f"{assertions}:2"
    assert not any(c.find("failure") is not None for c in cases)

    doc = json.loads(export.read_text())
    spans = [s for rs in doc["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"]]
    assert len(spans) == 6
    assert all(len(s["traceId"]) == 32 and len(s["spanId"]) == 16 for s in spans)
    int(spans[0]["traceId"], 16)  # hex, as the OTLP/JSON spec says (not base64)
    by_id = {s["spanId"]: s for s in spans}
    children = [s for s in spans if s["name"] == "db.query"]
    assert len(children) == 3
    assert all(by_id[c["parentSpanId"]]["name"] == "POST /pay" for c in children)
    assert all(by_id[c["parentSpanId"]]["traceId"] == c["traceId"] for c in children)
    services = {a["value"]["stringValue"] for rs in doc["resourceSpans"] for a in rs["resource"]["attributes"]
                if a["key"] == "service.name"}
    assert services == {"checkout"}
    # Our own OTLP/JSON receiver reads it back to the same IDs: the export can be replayed.
    again = decode_otlp_json(export.read_bytes())
    replayed = {s.span_id.hex() for rs in again.resource_spans for ss in rs.scope_spans for s in ss.spans}
    assert replayed == set(by_id)


def test_failing_assertion_exits_1_and_shows_matching_traces(child: Path, tmp_path: Path) -> None:
    junit = tmp_path / "report.xml"
    proc = run_capture(child, "--expect", "{}", "--expect-none", "{status = error}",
                       "--expect-count", "<3", '{name = "POST /pay"}', "--junit", str(junit))
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.splitlines()
    assert any(line.startswith("PASS  {}") for line in lines)
    assert any(line.startswith("FAIL  none: {status = error}  (1 matching trace)") for line in lines)
    assert any(line.startswith("FAIL  count <3") and "(3 matching traces)" in line for line in lines)
    assert "expected no trace matches, 1 trace matched" in proc.stderr
    assert "checkout  'POST /pay'" in proc.stderr  # root service and root span name of a matching trace
    assert "1 passed, 2 failed" in proc.stderr
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("failures") == "2"
    failures = [c.find("failure") for c in suite.findall("testcase")]
    assert failures[0] is None
    assert failures[1] is not None and "matched" in (failures[1].get("message") or "")


def test_command_failure_exit_code_wins_over_assertions(child: Path) -> None:
    proc = run_capture(child, "--expect", '{name = "absent"}', CHILD_EXIT="5")
    assert proc.returncode == 5, proc.stderr
    assert "command failed with exit code 5" in proc.stderr
    assert "FAIL" in proc.stderr  # assertions are still evaluated and reported


def test_invalid_traceql_is_rejected_before_the_command_runs(child: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    proc = run_capture(child, "--expect", "{}", "--expect", "{ .a = }", CHILD_MARKER=str(marker))
    assert proc.returncode == 2
    assert "--expect #2 '{ .a = }'" in proc.stderr
    assert "line 1, col 8" in proc.stderr
    assert not marker.exists()


def test_a_port_in_use_is_one_line_and_exit_1_before_the_command_runs(child: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        proc = run_capture(child, "--http-port", str(busy.getsockname()[1]), CHILD_MARKER=str(marker))
    assert proc.returncode == 1, proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith("tempo-lite capture: ") and "Address already in use" in line, line
    assert not marker.exists()


def test_assertions_file_bad_entry_names_file_and_line(child: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    bad_query = tmp_path / "bad-query.yaml"
    bad_query.write_text(textwrap.dedent(
        """\
        - name: fine
          expect: '{}'
        - name: broken
          expect: |
            {name = "POST /pay"}
            && {status = }
        """
    ))
    proc = run_capture(child, "-f", str(bad_query), CHILD_MARKER=str(marker))
    assert proc.returncode == 2
    assert f"{bad_query}:6: invalid TraceQL at col 14" in proc.stderr
    assert not marker.exists()

    bad_key = tmp_path / "bad-key.yaml"
    bad_key.write_text("- expect: '{}'\n\n- expect_none: '{}'\n  cuont: 3\n")
    proc = run_capture(child, "-f", str(bad_key), CHILD_MARKER=str(marker))
    assert proc.returncode == 2
    assert f"{bad_key}:4: unknown key 'cuont'" in proc.stderr
    assert not marker.exists()


def test_sigterm_is_forwarded_and_spans_sent_on_shutdown_are_checked(child: Path, tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    proc = subprocess.Popen(
        capture_args(child, "--expect-count", "3", '{name = "on SIGTERM"}'),
        cwd=REPO, env=clean_env(CHILD_READY=str(ready)), stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "child never became ready"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "interrupted by SIGTERM" in stderr
    assert "PASS  count ==3: {name = \"on SIGTERM\"}" in stderr

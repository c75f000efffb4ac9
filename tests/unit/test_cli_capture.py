"""`tempo-lite capture`'s pure parts (tempo_lite/cli/capture/): assertion parsing and checking, the command's
environment, the outcome's exit code and the reports. The real runs: tests/e2e/test_capture.py."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from tempo_lite._gen import tempopb_pb2 as pb
from tempo_lite.cli.capture.assertions import EXPECT, EXPECT_NONE, Assertion, CaptureError, load_assertions, parse_count
from tempo_lite.cli.capture.environment import Endpoints, child_environment
from tempo_lite.cli.capture.report import CaptureOutcome, TraceSummary, check, junit_xml, render_report, summaries


def test_count_forms() -> None:
    assert parse_count("3").holds(3) and not parse_count("3").holds(4)
    assert parse_count(">=2").holds(2) and not parse_count(">2").holds(2)
    assert parse_count("< 5").holds(4) and parse_count("!=0").holds(1)
    for bad in ("", "many", ">=-1", "3.5"):
        with pytest.raises(ValueError):
            parse_count(bad)


def test_assertion_kinds() -> None:
    assert Assertion(EXPECT, "{}", "x").holds(1) and not Assertion(EXPECT, "{}", "x").holds(0)
    assert Assertion(EXPECT_NONE, "{}", "x").holds(0) and not Assertion(EXPECT_NONE, "{}", "x").holds(2)


def test_assertions_file_shape_errors() -> None:
    with pytest.raises(CaptureError, match=r"^a.yaml:1: expected a list"):
        load_assertions("expect: '{}'\n", "a.yaml")
    with pytest.raises(CaptureError, match=r"^a.yaml:2: an assertion needs exactly one"):
        load_assertions("- expect: '{}'\n- expect: '{}'\n  expect_none: '{}'\n", "a.yaml")
    with pytest.raises(CaptureError, match=r"^a.yaml:2: 'count' only goes with 'expect'"):
        load_assertions("- expect_none: '{}'\n  count: 2\n", "a.yaml")
    with pytest.raises(CaptureError, match=r"^a.yaml:1: invalid count"):
        load_assertions("- {expect: '{}', count: lots}\n", "a.yaml")
    with pytest.raises(CaptureError, match=r"^a.yaml:2: invalid YAML"):
        load_assertions("- expect: '{}'\n\t- b\n", "a.yaml")
    loaded = load_assertions("- {name: n, expect: '{}', count: '>=2'}\n", "a.yaml")
    assert loaded[0].name == "n" and str(loaded[0].count) == ">=2" and loaded[0].source == "a.yaml:1"


ENDPOINTS = Endpoints({"http": ("127.0.0.1", 3200), "otlp_http": ("127.0.0.1", 4318),
                       "otlp_grpc": ("127.0.0.1", 4317), "zipkin": ("127.0.0.1", 9411)})


def test_child_environment_sets_otel_variables() -> None:
    env, notes = child_environment({"PATH": "/bin"}, ENDPOINTS, override=False)
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://127.0.0.1:4318"
    assert env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] == "http://127.0.0.1:4318/v1/traces"
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    assert env["OTEL_TRACES_EXPORTER"] == "otlp"
    assert env["OTEL_EXPORTER_ZIPKIN_ENDPOINT"] == "http://127.0.0.1:9411/api/v2/spans"
    assert env["TEMPO_LITE_URL"] == "http://127.0.0.1:3200"
    assert env["PATH"] == "/bin" and notes == []


def test_child_environment_keeps_user_settings_unless_override() -> None:
    user = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_TRACES_EXPORTER": "console"}
    env, notes = child_environment(user, ENDPOINTS, override=False)
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://collector:4318"
    assert env["OTEL_TRACES_EXPORTER"] == "console"
    # The traces endpoint would silently win over the user's generic endpoint: left unset.
    assert "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" not in env
    assert len(notes) == 3
    env, notes = child_environment(user, ENDPOINTS, override=True)
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://127.0.0.1:4318"
    assert env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] == "http://127.0.0.1:4318/v1/traces"
    assert notes == []


def test_child_environment_grpc_protocol_points_at_grpc_listener() -> None:
    env, _ = child_environment({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, ENDPOINTS, override=False)
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc"
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://127.0.0.1:4317"
    assert env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] == "http://127.0.0.1:4317"


def test_trace_ids_people_read_have_all_32_digits() -> None:
    # Search responses drop leading zeros (Tempo's format); reports and JUnit files show the full ID.
    short = pb.TraceSearchMetadata(traceID="fe0d0c0b0a090807060504030201", rootServiceName="a")
    response = pb.SearchResponse(traces=[short])
    (summary,) = summaries(response)
    assert summary.trace_id == "0000fe0d0c0b0a090807060504030201"
    assert summary.render().startswith("0000fe0d0c0b0a090807060504030201  a")


TRACE = TraceSummary(trace_id="ab" * 16, root_service="checkout", root_name="POST /pay", duration_ms=12,
                     start_ns=1, spans=2)


def test_the_commands_own_failure_wins_then_the_assertions_then_success() -> None:
    failing = check(Assertion(EXPECT_NONE, "{}", "x"), [TRACE], [TRACE], 0.0)
    passing = check(Assertion(EXPECT, "{}", "y"), [TRACE], [TRACE], 0.0)
    assert CaptureOutcome(["cmd"], returncode=5, results=[failing]).exit_code == 5
    assert CaptureOutcome(["cmd"], returncode=-15).exit_code == 143  # killed by SIGTERM: the shell's 128+N
    assert CaptureOutcome(["cmd"], returncode=None, start_error="cmd: command not found").exit_code == 127
    assert CaptureOutcome(["cmd"], returncode=0, results=[passing, failing]).exit_code == 1
    assert CaptureOutcome(["cmd"], returncode=0, results=[passing]).exit_code == 0


def test_reports_show_each_assertion_and_the_failures_in_junit() -> None:
    failing = check(Assertion(EXPECT_NONE, "{ status = error }", "cli #1"), [TRACE], [TRACE], 0.01)
    outcome = CaptureOutcome(["pytest"], returncode=0, traces=[TRACE], results=[failing])
    text = render_report(outcome)
    assert "FAIL  none: { status = error }" in text and "checkout  'POST /pay'" in text
    suite = ET.fromstring(junit_xml(outcome)).find("testsuite")
    assert suite is not None and suite.get("failures") == "1" and suite.get("tests") == "1"

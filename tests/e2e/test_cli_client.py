"""`tempo-lite query | trace | import | export` as a shell user runs them, against real `tempo-lite serve`
processes fed by the OpenTelemetry SDK: output, exit codes, error messages, and export -> import ->
export giving the same document."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from server_process import ServerProcess, free_port
from ui_traces import send_shop_traces

from tempo_lite.receivers.otlp_json import decode_otlp_json

pytestmark = pytest.mark.slow


def cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tempo_lite", *args], capture_output=True, input=stdin,
                          timeout=120, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def wait_searchable(srv: ServerProcess, count: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        r = httpx.get(srv.api + "/api/search", params={"q": "{ }", "limit": 1000})
        if len(r.json().get("traces", [])) >= count:
            return
        time.sleep(0.2)
    raise AssertionError(f"fewer than {count} traces searchable")


@pytest.fixture(scope="module")
def source(tmp_path_factory):  # noqa: ANN001, ANN201
    srv = ServerProcess(tmp_path_factory.mktemp("cli-a"), cycle="1h")
    srv.start()
    sent = send_shop_traces(srv.otlp, checkouts=3, fail_every=2)
    wait_searchable(srv, 4)
    yield srv, sent
    srv.terminate()


@pytest.fixture
def target(tmp_path):  # noqa: ANN001, ANN201
    srv = ServerProcess(tmp_path, cycle="1h")
    srv.start()
    yield srv
    srv.terminate()


def otlp_url(srv: ServerProcess) -> str:
    return srv.otlp


def test_query_prints_a_table_of_matching_traces(source) -> None:
    srv, sent = source
    r = cli("query", "{ status = error }", "--since", "1h", "--url", srv.api)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().splitlines()
    assert lines[0].split()[:2] == ["TRACE", "ID"]
    assert {line.split()[0] for line in lines[1:]} == {t.lstrip("0") for t in sent.error_ids}
    assert b"1 trace(s)" in r.stderr


def test_query_json_output_is_the_search_answer(source) -> None:
    srv, sent = source
    r = cli("query", '{ resource.service.name = "frontend" }', "--limit", "2", "-o", "json", "--url", srv.api)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert len(doc["traces"]) == 2 and all(t["rootServiceName"] == "frontend" for t in doc["traces"])


def test_query_errors_have_shell_exit_codes(source) -> None:
    srv, _ = source
    r = cli("query", "{ status = }", "--url", srv.api)
    assert r.returncode == 2 and b"invalid TraceQL" in r.stderr and r.stdout == b""
    r = cli("query", "{ }", "--url", f"http://127.0.0.1:{free_port()}")
    assert r.returncode == 1 and b"cannot reach" in r.stderr
    r = cli("query", "{ }", "--since", "1h", "--start", "1700000000", "--url", srv.api)
    assert r.returncode == 2 and b"either --since or --start" in r.stderr
    r = cli("query")
    assert r.returncode == 2 and b"TRACEQL" in r.stderr


def test_trace_draws_the_span_tree_in_the_terminal(source) -> None:
    srv, sent = source
    r = cli("trace", sent.error_ids[0], "--url", srv.api)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().splitlines()
    assert len(lines) == sent.spans_per_checkout
    assert lines[0].startswith("frontend: GET /checkout")
    charge = next(line for line in lines if "payment: Charge" in line)
    assert charge.endswith("!") and "█" in charge
    assert "\x1b[" not in r.stdout.decode()  # no colour when stdout is not a terminal


def test_trace_otlp_output_reads_back_and_unknown_trace_exits_1(source) -> None:
    srv, sent = source
    r = cli("trace", sent.checkout_ids[0], "-o", "otlp", "--url", srv.api)
    req = decode_otlp_json(r.stdout)
    assert sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans) == sent.spans_per_checkout
    r = cli("trace", sent.checkout_ids[0], "-o", "json", "--url", srv.api)
    assert json.loads(r.stdout)["trace"]["resourceSpans"]
    r = cli("trace", "ab" * 16, "--url", srv.api)
    assert r.returncode == 1 and b"not found" in r.stderr
    r = cli("trace", "not-hex", "--url", srv.api)
    assert r.returncode == 2 and b"invalid trace id" in r.stderr


def test_export_then_import_then_export_gives_the_same_document(source, target, tmp_path: Path) -> None:
    srv, sent = source
    first = tmp_path / "export.json"
    r = cli("export", "{ }", "--since", "1h", "-o", str(first), "--url", srv.api)
    assert r.returncode == 0, r.stderr
    assert f"exported {len(sent.checkout_ids) + 1} trace(s)".encode() in r.stderr
    r = cli("import", str(first), "--otlp-url", otlp_url(target), "--url", target.api, "--batch-spans", "5",
            "--progress", "always")
    assert r.returncode == 0, r.stderr
    spans = len(sent.checkout_ids) * sent.spans_per_checkout + 1
    assert f"100% {spans}/{spans} spans".encode() in r.stderr  # the progress bar, pushed in batches of 5
    assert f"imported {spans} spans (OTLP/JSON)".encode() in r.stderr
    wait_searchable(target, len(sent.checkout_ids) + 1)
    r = cli("export", "{ }", "--since", "1h", "--url", target.api)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == json.loads(first.read_text())


def test_import_refuses_a_bad_file_naming_the_line_and_imports_nothing_of_it(source, target,
                                                                              tmp_path: Path) -> None:
    srv, sent = source
    good = cli("trace", sent.checkout_ids[0], "-o", "otlp", "--url", srv.api).stdout
    doc = json.loads(good)
    other = json.loads(cli("trace", sent.checkout_ids[1], "-o", "otlp", "--url", srv.api).stdout)
    bad_text = json.dumps(other, indent=1).replace('"name": "Charge"', '"name": "Charge",,', 1)
    bad_line = next(i for i, line in enumerate(bad_text.splitlines(), start=1) if '"Charge",,' in line)
    bad = tmp_path / "bad.json"
    bad.write_text(bad_text)
    ok = tmp_path / "ok.json"
    ok.write_text(json.dumps(doc))
    r = cli("import", str(bad), str(ok), "--otlp-url", otlp_url(target), "--url", target.api)
    assert r.returncode == 1
    err = r.stderr.decode()
    assert f"{bad}: line {bad_line} column" in err and "nothing of this file was imported" in err
    assert f"{ok}: imported {sent.spans_per_checkout} spans" in err
    wait_searchable(target, 1)
    assert httpx.get(f"{target.api}/api/v2/traces/{sent.checkout_ids[1]}").status_code == 404
    assert httpx.get(f"{target.api}/api/v2/traces/{sent.checkout_ids[0]}").status_code == 200


def test_import_reads_jaeger_and_zipkin_json_and_stdin(target, tmp_path: Path) -> None:
    tid = "7a" * 16
    jaeger = {"data": [{"traceID": tid, "processes": {"p1": {"serviceName": "jaeger-svc", "tags": []}},
                        "spans": [{"traceID": tid, "spanID": "00000000000000a1", "operationName": "from jaeger",
                                   "startTime": time.time_ns() // 1000, "duration": 1000, "processID": "p1",
                                   "references": [], "tags": [], "logs": []}]}]}
    ztid = "7b" * 16
    zipkin = [{"traceId": ztid, "id": "00000000000000b1", "name": "from zipkin", "timestamp": time.time_ns() // 1000,
               "duration": 1000, "localEndpoint": {"serviceName": "zipkin-svc"}}]
    (tmp_path / "jaeger.json").write_text(json.dumps(jaeger))
    r = cli("import", str(tmp_path / "jaeger.json"), "-", "--otlp-url", otlp_url(target),
            stdin=json.dumps(zipkin).encode())
    assert r.returncode == 0, r.stderr
    assert b"(Jaeger JSON)" in r.stderr and b"<stdin>: imported 1 spans (Zipkin JSON v2)" in r.stderr
    r = cli("trace", tid, "--url", target.api)
    assert r.returncode == 0 and "jaeger-svc: from jaeger" in r.stdout.decode()
    r = cli("trace", ztid, "--url", target.api)
    assert r.returncode == 0 and "zipkin-svc: from zipkin" in r.stdout.decode()


def test_import_check_validates_without_sending(tmp_path: Path) -> None:
    f = tmp_path / "x.json"
    f.write_text('{"resourceSpans": []}')
    r = cli("import", "--check", str(f), "--otlp-url", f"http://127.0.0.1:{free_port()}/v1/traces")
    assert r.returncode == 0 and b"OTLP/JSON, 0 spans: ok" in r.stderr
    r = cli("import", str(tmp_path / "missing.json"))
    assert r.returncode == 1 and b"cannot read" in r.stderr


@pytest.mark.parametrize("command", ["query", "trace", "import", "export"])
def test_every_command_has_help_with_an_example(command: str) -> None:
    r = cli(command, "--help")
    assert r.returncode == 0
    assert b"examples:" in r.stdout and f"tempo-lite {command} ".encode() in r.stdout

"""Kill -9 a real server while a client sends; after restart every acknowledged span is there, once."""

from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData
from server_process import ServerProcess

SPANS_PER_TRACE = 4


def make_request(trace_ids: list[bytes]) -> bytes:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.add(key="service.name").value.string_value = "crash-test"
    ss = rs.scope_spans.add()
    for tid in trace_ids:
        for i in range(SPANS_PER_TRACE):
            sp = ss.spans.add(trace_id=tid, span_id=tid[:4] + i.to_bytes(4, "big"), name=f"op{i}")
            now = time.time_ns()
            sp.start_time_unix_nano, sp.end_time_unix_nano = now + i, now + 1_000_000_000
            sp.attributes.add(key="i").value.int_value = i
    return req.SerializeToString()


class Sender(threading.Thread):
    """Sends continuously from several connections; remembers what was acknowledged with a 200."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.acked: list[bytes] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self.stop.is_set():
                ids = [os.urandom(16) for _ in range(5)]
                try:
                    r = client.post(self.url, content=make_request(ids),
                                    headers={"Content-Type": "application/x-protobuf"})
                except httpx.HTTPError:
                    time.sleep(0.01)
                    continue
                if r.status_code == 200:
                    with self.lock:
                        self.acked.extend(ids)


def check_all_present(server: ServerProcess, trace_ids: list[bytes], sample: int = 300) -> None:
    """Every trace is found by search with exactly its spans; a sample is also checked by trace by ID."""
    now = int(time.time())
    with httpx.Client(timeout=120) as client:
        r = client.get(f"{server.api}/api/search", params={
            "q": f'{{ resource.service.name = "crash-test" }} | count() = {SPANS_PER_TRACE}',
            "start": now - 3600, "end": now + 3600, "limit": 262_144, "spss": 1})
        assert r.status_code == 200, r.text
        found = {t["traceID"].rjust(32, "0") for t in r.json().get("traces", [])}
        missing = {tid.hex() for tid in trace_ids} - found
        assert not missing, f"{len(missing)} acknowledged traces lost or incomplete, e.g. {sorted(missing)[:3]}"
        for tid in random.sample(trace_ids, min(sample, len(trace_ids))):
            r = client.get(f"{server.api}/api/traces/{tid.hex()}", headers={"Accept": "application/protobuf"})
            assert r.status_code == 200, f"acknowledged trace {tid.hex()} lost: {r.status_code}"
            spans = [s for rs in TracesData.FromString(r.content).resource_spans
                     for ss in rs.scope_spans for s in ss.spans]
            assert sorted(s.name for s in spans) == [f"op{i}" for i in range(SPANS_PER_TRACE)], tid.hex()


@pytest.mark.slow
def test_sigkill_loses_no_acknowledged_span(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, cycle="1s")
    acked: list[bytes] = []
    try:
        for _round in range(2):
            server.start()
            senders = [Sender(server.otlp) for _ in range(3)]
            for s in senders:
                s.start()
            # Long enough for blocks to be cut (1 s cycle) while more spans arrive.
            deadline = time.monotonic() + 2.5
            while time.monotonic() < deadline or sum(len(s.acked) for s in senders) < 50:
                time.sleep(0.05)
            server.kill()
            for s in senders:
                s.stop.set()
                s.join(timeout=10)
                acked.extend(s.acked)
        server.start()
        assert len(acked) >= 100
        check_all_present(server, acked)
        assert server.terminate() == 0
    finally:
        server.close()


@pytest.mark.slow
def test_sigterm_flushes_blocks_and_exits_zero(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, cycle="1h")
    try:
        server.start()
        ids = [os.urandom(16) for _ in range(3)]
        r = httpx.post(server.otlp, content=make_request(ids), headers={"Content-Type": "application/x-protobuf"})
        assert r.status_code == 200
        assert server.terminate() == 0
        metas = list((tmp_path / "blocks" / "single-tenant").glob("*/meta.json"))
        assert len(metas) == 1
        log = server.log.read_text()
        assert "listener http on http://127.0.0.1" in log and "stopped" in log
        server.start()
        check_all_present(server, ids)
    finally:
        server.close()

"""Poison records: refused at the door with 400 naming the field; any that still reach the WAL are set
aside (kept, counted, listed by `tempo-lite wal quarantine`) and every consumer moves on."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import trio
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from server_process import ServerProcess
from test_block_identity import assert_found, otlp_request

from tempo_lite.distributor import wire
from tempo_lite.errors import InvalidRequest
from tempo_lite.livestore import decode_isolating
from tempo_lite.wal import WalEntry, WalRecord
from tempo_lite.wal.factory import WalOptions, open_wal

NOW = time.time_ns()


def poison_request(*, start: int = NOW, end: int = NOW + 1000, event: int | None = None) -> bytes:
    req = ExportTraceServiceRequest()
    sp = req.resource_spans.add().scope_spans.add().spans.add(
        trace_id=os.urandom(16), span_id=os.urandom(8), name="poison",
        start_time_unix_nano=start, end_time_unix_nano=end)
    if event is not None:
        sp.events.add(time_unix_nano=event, name="e")
    return req.SerializeToString()


CASES = {
    "events[0].time_unix_nano": dict(event=1 << 63),
    "start_time_unix_nano": dict(start=(1 << 63) + 5, end=(1 << 63) + 10),
    "end_time_unix_nano": dict(end=(1 << 64) - 1),
    "2^53 ns": dict(start=NOW - 200 * 86400 * 10**9),  # a span 200 days long
}


@pytest.mark.parametrize("field", list(CASES))
def test_distributor_refuses_times_later_stages_cannot_hold(field: str) -> None:
    body = poison_request(**CASES[field])
    with pytest.raises(InvalidRequest, match=field.replace("[", r"\[").replace("^", r"\^")):
        wire.check_times(wire.scan(body))


def test_distributor_accepts_ordinary_and_zero_times() -> None:
    wire.check_times(wire.scan(otlp_request([os.urandom(16) for _ in range(3)])))
    wire.check_times(wire.scan(poison_request(start=0, end=0, event=0)))
    wire.check_times(wire.scan(poison_request(start=NOW, end=NOW - 5)))  # end before start: kept, as Tempo


def test_consumer_decode_sets_aside_only_the_poison_records() -> None:
    good = [WalRecord(0, i, "t", otlp_request([os.urandom(16)]), 0) for i in range(3)]
    bad = [WalRecord(0, 3, "t", poison_request(event=1 << 63), 0),
           WalRecord(0, 4, "t", b"\xff\xff not protobuf", 0),
           WalRecord(0, 5, "t", poison_request(start=NOW - 200 * 86400 * 10**9), 0)]
    tables, poison = decode_isolating(good + bad)
    assert [r.offset for r, _ in poison] == [3, 4, 5]
    assert tables["t"].num_spans == 3 * 2


async def _inject(wal_dir: Path, payloads: list[bytes]) -> None:
    async with open_wal(WalOptions(path=str(wal_dir), partitions=1)) as wal:
        await wal.append([WalEntry(0, "single-tenant", p) for p in payloads])


def cli(server: ServerProcess, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tempo_lite", "wal", "quarantine", *args, "--config",
                           str(server.config)], capture_output=True, text=True, timeout=60)


@pytest.mark.slow
def test_poison_at_the_door_and_in_the_wal_never_stops_the_server(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, cycle="1s", extra="metrics_generator: {enabled: true}")
    try:
        server.start()
        for field, kwargs in CASES.items():
            r = httpx.post(server.otlp, content=poison_request(**kwargs),
                           headers={"Content-Type": "application/x-protobuf"})
            assert r.status_code == 400 and field in r.text, (field, r.status_code, r.text)
        assert server.terminate() == 0
        # Records the door would refuse, written to the WAL directly (an older version, another writer).
        before, after = [os.urandom(16)], [os.urandom(16)]
        trio.run(_inject, tmp_path / "wal", [
            otlp_request(before), poison_request(event=1 << 63), b"\x0a\xff garbage",
            poison_request(start=NOW - 200 * 86400 * 10**9), otlp_request(after)])
        server.start()
        time.sleep(3)  # a few block-builder cycles (1 s)
        assert httpx.get(server.api + "/ready").status_code == 200
        assert_found(server, before + after)
        metrics = httpx.get(server.api + "/metrics").text
        assert 'tempo_lite_wal_records_set_aside_total{stage="livestore-decode"} 3.0' in metrics
        listed = cli(server, "list")
        assert listed.returncode == 0, listed.stderr
        keys = [line.split("\t")[0] for line in listed.stdout.splitlines()]
        assert keys == ["p0-o1", "p0-o2", "p0-o3"], listed.stdout
        shown = cli(server, "show", "p0-o1")
        assert shown.returncode == 0 and "9223372036854775808" in shown.stdout and "poison" in shown.stdout
        assert server.terminate() == 0
        server.start()  # the replay does not trip over them either (they are committed past)
        assert_found(server, before + after)
        assert server.terminate() == 0
        dropped = cli(server, "drop", "p0-o2")
        assert dropped.returncode == 0, dropped.stderr
        assert [line.split("\t")[0] for line in cli(server, "list").stdout.splitlines()] == ["p0-o1", "p0-o3"]
        assert cli(server, "drop", "p0-o99").returncode == 1
        assert cli(server, "drop", "--all").returncode == 0
        assert cli(server, "list").stdout == ""
    finally:
        server.close()

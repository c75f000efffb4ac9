"""Block IDs carry the WAL's identity: a second WAL never overwrites the first one's blocks, a copy of a WAL
holding other records is stopped with an error naming both sources, and a flush interrupted between a
block's meta.json and the WAL commit is finished by reusing that block, never by rewriting it."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import httpx
import pytest
import trio
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from server_process import ServerProcess

from tempo_lite.block.meta import block_id_for
from tempo_lite.wal import WalEntry
from tempo_lite.wal.factory import WalOptions, open_wal


def otlp_request(trace_ids: list[bytes], service: str = "identity-test") -> bytes:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.add(key="service.name").value.string_value = service
    ss = rs.scope_spans.add()
    now = time.time_ns()
    for tid in trace_ids:
        for i in range(2):
            sp = ss.spans.add(trace_id=tid, span_id=tid[:4] + i.to_bytes(4, "big"), name=f"op{i}")
            sp.start_time_unix_nano, sp.end_time_unix_nano = now + i, now + 1_000_000
    return req.SerializeToString()


def post(server: ServerProcess, trace_ids: list[bytes], tenant: str | None = None) -> None:
    headers = {"Content-Type": "application/x-protobuf"}
    if tenant:
        headers["X-Scope-OrgID"] = tenant
    r = httpx.post(server.otlp, content=otlp_request(trace_ids), headers=headers, timeout=10)
    assert r.status_code == 200, r.text


def assert_found(server: ServerProcess, trace_ids: list[bytes], tenant: str | None = None) -> None:
    headers = {"X-Scope-OrgID": tenant} if tenant else {}
    with httpx.Client(timeout=30) as client:
        for tid in trace_ids:
            r = client.get(f"{server.api}/api/v2/traces/{tid.hex()}", headers=headers)
            assert r.status_code == 200, f"trace {tid.hex()} of {tenant or 'single-tenant'}: {r.status_code} {r.text}"


def share_store(server: ServerProcess, blocks: Path) -> None:
    """Point the server's config at a block directory shared with another server."""
    text = server.config.read_text()
    server.config.write_text(text.replace(str(server.config.parent / "blocks"), str(blocks)))


def block_metas(blocks: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(blocks.glob("*/*/meta.json"))]


def test_block_ids_differ_per_wal_and_repeat_per_range() -> None:
    a = block_id_for("t", 0, 10, wal_id="wal-a")
    assert a == block_id_for("t", 0, 10, wal_id="wal-a")
    assert a != block_id_for("t", 0, 10, wal_id="wal-b")
    assert a != block_id_for("t", 0, 10)
    assert a != block_id_for("t", 1, 10, wal_id="wal-a")


async def _identity(path: Path) -> str:
    async with open_wal(WalOptions(path=str(path), partitions=2, groups=("g",))) as wal:
        return wal.identity


async def test_embedded_wal_keeps_its_identity_across_reopen(tmp_path: Path) -> None:
    first = await _identity(tmp_path / "a")
    assert first == await _identity(tmp_path / "a")
    assert first != await _identity(tmp_path / "b")


@pytest.mark.slow
def test_two_wals_sharing_one_store_keep_every_trace(tmp_path: Path) -> None:
    blocks = tmp_path / "shared-blocks"
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    first = ServerProcess(tmp_path / "one", cycle="1h")
    second = ServerProcess(tmp_path / "two", cycle="1h")
    share_store(first, blocks)
    share_store(second, blocks)
    ids_one = [os.urandom(16) for _ in range(6)]
    ids_two = [os.urandom(16) for _ in range(4)]
    try:
        # The same WAL ranges ([0, 3) of each partition) in two WALs: before identities, the second
        # server's blocks replaced the first one's.
        first.start()
        for i in range(0, len(ids_one), 2):
            post(first, ids_one[i:i + 2])
        assert first.terminate() == 0
        second.start()
        for i in range(0, len(ids_two), 2):
            post(second, ids_two[i:i + 2])
        assert second.terminate() == 0
        metas = block_metas(blocks)
        assert len({m["source_wal"] for m in metas}) == 2, metas
        assert len({m["block_id"] for m in metas}) == len(metas)
        for server in (first, second):
            server.start()
            assert_found(server, ids_one + ids_two)
            assert server.terminate() == 0
    finally:
        first.close()
        second.close()


@pytest.mark.slow
def test_copy_of_a_wal_with_other_records_is_refused_naming_both_sources(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    blocks = tmp_path / "shared-blocks"
    original = ServerProcess(tmp_path / "a", cycle="1h")
    copy = ServerProcess(tmp_path / "b", cycle="1h")
    share_store(original, blocks)
    share_store(copy, blocks)
    try:
        original.start()  # creates the WAL (and its identity)
        assert original.terminate() == 0
        shutil.copytree(tmp_path / "a" / "wal", tmp_path / "b" / "wal")  # e.g. a restored backup
        kept = [os.urandom(16) for _ in range(3)]
        original.start()
        post(original, kept)
        assert original.terminate() == 0
        (data_file,) = blocks.glob("single-tenant/*/data.parquet")
        before = hashlib.sha256(data_file.read_bytes()).hexdigest()
        copy.start()
        post(copy, [os.urandom(16) for _ in range(3)])  # same offsets, other records
        assert copy.terminate() == 1
        err = copy.log.read_text()
        (meta,) = block_metas(blocks)
        assert "Refusing to overwrite stored data" in err
        assert meta["block_id"] in err and meta["source_digest"] in err and meta["source_wal"] in err
        assert hashlib.sha256(data_file.read_bytes()).hexdigest() == before
        original.start()
        assert_found(original, kept)
        assert original.terminate() == 0
    finally:
        original.close()
        copy.close()


async def _append_offline(wal_dir: Path, entries: list[WalEntry]) -> None:
    async with open_wal(WalOptions(path=str(wal_dir), partitions=1)) as wal:
        await wal.append(entries)


@pytest.mark.slow
def test_flush_killed_after_meta_json_reuses_the_block_on_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = ServerProcess(tmp_path, cycle="1h", extra="multitenancy_enabled: true")
    ids = {"a": [os.urandom(16) for _ in range(4)], "b": [os.urandom(16) for _ in range(4)]}
    try:
        # With a 1 h cycle the only flush is at shutdown: it writes tenant a's block, then the process
        # kills itself, before tenant b's block and before the WAL commit.
        monkeypatch.setenv("TEMPO_LITE_FAULT", "after-block-meta")
        server.start()
        monkeypatch.delenv("TEMPO_LITE_FAULT")
        for tenant, tids in ids.items():
            post(server, tids, tenant)
        assert server.terminate() == -9  # the SIGTERM starts the flush; the fault point ends the process
        stale = sorted((tmp_path / "blocks").glob("*/*/meta.json"))
        assert len(stale) == 1, stale
        stale_dir = stale[0].parent
        fingerprint = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in stale_dir.iterdir()}
        meta = json.loads(stale[0].read_text())
        # Records acknowledged after that flush cut its range (appended while it ran): a replay that
        # did not cut where the interrupted flush cut would rewrite the stale block with them.
        late = {tenant: [os.urandom(16) for _ in range(2)] for tenant in ids}
        trio.run(_append_offline, tmp_path / "wal", [
            WalEntry(meta["source_partition"], tenant, otlp_request(tids)) for tenant, tids in late.items()
        ])
        server.start()
        assert server.terminate() == 0
        assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in stale_dir.iterdir()} == fingerprint
        server.start()
        for tenant in ids:
            assert_found(server, ids[tenant] + late[tenant], tenant)
            now = int(time.time())
            r = httpx.get(f"{server.api}/api/search", headers={"X-Scope-OrgID": tenant}, timeout=30,
                          params={"q": "{}", "start": now - 3600, "end": now + 3600, "limit": 100})
            assert r.status_code == 200, r.text
            assert len(r.json()["traces"]) == len(ids[tenant]) + len(late[tenant])
        assert server.terminate() == 0
    finally:
        server.close()


@pytest.mark.slow
def test_flush_killed_after_wal_commit_loses_nothing_and_writes_no_duplicate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = ServerProcess(tmp_path, cycle="1h")
    ids = [os.urandom(16) for _ in range(4)]
    try:
        monkeypatch.setenv("TEMPO_LITE_FAULT", "after-wal-commit")
        server.start()
        monkeypatch.delenv("TEMPO_LITE_FAULT")
        post(server, ids)
        assert server.terminate() == -9  # killed right after the WAL commit of the shutdown flush
        server.start()
        assert_found(server, ids)
        assert server.terminate() == 0
        assert len(list((tmp_path / "blocks").glob("*/*/meta.json"))) == 1
    finally:
        server.close()

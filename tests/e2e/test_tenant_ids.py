"""Tenant IDs follow Tempo's rules and are safe directory names; one tenant's failing block writes never
hold back another tenant's, and shutdown stays bounded while they fail."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest
from server_process import ServerProcess
from test_block_identity import assert_found, otlp_request

from tempo_lite.distributor.tenant import tenant_id_problem


@pytest.mark.parametrize("tenant", ["a", "team-1", "Org_2.prod", "x" * 150, "a!b*c'(d)", "a..b", "a.."])
def test_valid_tenant_ids(tenant: str) -> None:
    assert tenant_id_problem(tenant) is None


@pytest.mark.parametrize(("tenant", "why"), [
    ("x" * 151, "151 characters"), ("x" * 10_000, "10000 characters"), (".", "not allowed"),
    ("..", "not allowed"), (".x.tmp", "must not start with '.'"), ("a/b", "'/'"), ("a b", "' '"),
    ("a|b", "'|'"), ("é", "'é'"), ("", "empty"),
])
def test_invalid_tenant_ids(tenant: str, why: str) -> None:
    problem = tenant_id_problem(tenant)
    assert problem is not None and why in problem


@pytest.mark.slow
def test_invalid_tenants_refused_at_the_door_and_failing_tenant_holds_back_no_other(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, cycle="1s", extra="multitenancy_enabled: true")
    blocks = tmp_path / "blocks"
    blocks.mkdir()
    (blocks / "a").write_text("a file where tenant a's directory belongs: every block write of a fails")
    ids = {"a": [os.urandom(16)], "b": [os.urandom(16)]}
    try:
        server.start()
        headers = {"Content-Type": "application/x-protobuf"}
        for tenant, status in (("x" * 300, 400), (".x.tmp", 400), ("..", 400), ("a/../b", 400)):
            r = httpx.post(server.otlp, content=otlp_request([os.urandom(16)]),
                           headers={**headers, "X-Scope-OrgID": tenant})
            assert r.status_code == status and "invalid tenant ID" in r.text, (tenant, r.status_code, r.text)
        assert httpx.post(server.otlp, content=otlp_request([os.urandom(16)]), headers=headers).status_code == 401
        for tenant, tids in ids.items():
            r = httpx.post(server.otlp, content=otlp_request(tids), headers={**headers, "X-Scope-OrgID": tenant})
            assert r.status_code == 200, r.text
        deadline = time.monotonic() + 60
        while not list(blocks.glob("b/*/meta.json")):
            assert time.monotonic() < deadline, "tenant b got no block while tenant a's writes fail"
            time.sleep(0.2)
        assert_found(server, ids["a"], "a")  # still answered from the live-store
        assert server.terminate(timeout=60) == 0  # bounded although a's final flush fails
        assert "blocks of tenant(s) a not written" in server.log.read_text()
        (blocks / "a").unlink()
        server.start()
        assert server.terminate() == 0
        assert len(list(blocks.glob("a/*/meta.json"))) == 1
        assert len(list(blocks.glob("b/*/meta.json"))) == 1  # reused, not written again
        server.start()
        for tenant, tids in ids.items():
            assert_found(server, tids, tenant)
        assert server.terminate() == 0
    finally:
        server.close()

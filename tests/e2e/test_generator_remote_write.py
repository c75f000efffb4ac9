"""metrics_generator.storage.remote_write: the span-metrics and service-graph series reach a real Prometheus
(Debian's `prometheus`, started here with --web.enable-remote-write-receiver) and are queried back through
its HTTP API; retries, drops and the tenant header are checked against an injected transport (faults a
real Prometheus does not produce on demand)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pytest
import trio
import trio.testing
from conftest import start_tempo, tempo_config_text
from prometheus_client import CollectorRegistry

from tempo_lite._gen import prometheus_remote_pb2 as prom
from tempo_lite.config import ConfigError, load_config_text
from tempo_lite.config.generator import RemoteWriteConfig, StorageConfig
from tempo_lite.generator.remote_write import RemoteWriter, encode_write_request
from tempo_lite.generator.series import SeriesRegistry


def _uvarint(data: bytes) -> tuple[int, int]:
    value = shift = 0
    for i, b in enumerate(data):
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i + 1
        shift += 7
    raise ValueError("truncated varint")


def decode_write_request(body: bytes) -> prom.WriteRequest:
    size, _ = _uvarint(body)  # snappy block format starts with the uncompressed length
    raw = pa.decompress(body, decompressed_size=size, codec="snappy", asbytes=True)
    return prom.WriteRequest.FromString(raw)


def _registry() -> tuple[SeriesRegistry, CollectorRegistry]:
    reg = CollectorRegistry()
    series = SeriesRegistry(reg, max_series=100, tenant_label="tenant", clock=lambda: 0.0)
    calls = series.counter("traces_spanmetrics_calls", "calls", ["service"])
    calls.inc("t1", ("cart",), 3)
    calls.inc("t2", ("pay",), 1)
    latency = series.histogram("traces_spanmetrics_latency", "latency", ["service"], [0.1, 1.0])
    latency.observe_counts("t1", ("cart",), np.array([2.0, 1.0, 0.0]), 0.5)
    return series, reg


def test_samples_are_prometheus_series_per_tenant_without_a_tenant_label() -> None:
    series, _ = _registry()
    samples = series.samples()
    assert set(samples) == {"t1", "t2"}
    t1 = {dict(labels)["__name__"] + str({k: v for k, v in labels if k == "le"}): value
          for labels, value in samples["t1"]}
    assert t1 == {"traces_spanmetrics_calls_total{}": 3, "traces_spanmetrics_latency_bucket{'le': '0.1'}": 2,
                  "traces_spanmetrics_latency_bucket{'le': '1.0'}": 3,
                  "traces_spanmetrics_latency_bucket{'le': '+Inf'}": 3,
                  "traces_spanmetrics_latency_sum{}": 0.5, "traces_spanmetrics_latency_count{}": 3}
    for labels, _ in samples["t1"]:
        assert [k for k, _ in labels] == sorted(k for k, _ in labels) and "tenant" not in dict(labels)


def test_write_request_round_trips_through_snappy() -> None:
    body = encode_write_request([((("__name__", "up"), ("job", "x")), 1.5)], 1234)
    req = decode_write_request(body)
    (ts,) = req.timeseries
    assert [(lab.name, lab.value) for lab in ts.labels] == [("__name__", "up"), ("job", "x")]
    assert [(s.value, s.timestamp) for s in ts.samples] == [(1.5, 1234)]


async def test_retries_5xx_gives_up_on_4xx_drops_oldest_and_sends_the_tenant(autojump_clock) -> None:  # noqa: ANN001
    series, reg = _registry()
    answers = iter([503, 503, 204, 204, 400])
    seen: list[tuple[str | None, str, prom.WriteRequest]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.headers.get("x-scope-orgid"), request.headers["content-encoding"],
                     decode_write_request(request.content)))
        return httpx.Response(next(answers, 204))

    storage = StorageConfig(remote_write=(RemoteWriteConfig(url="http://store/api/v1/write", name="store",
                                                            headers={"X-Extra": "1"}),))
    writer = RemoteWriter(series, storage, 60.0, reg, wall_clock=lambda: 1000.0,
                          transport=httpx.MockTransport(handler))
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        assert writer.collect() == 7
        await trio.sleep(5)
        nursery.cancel_scope.cancel()
    tenants = [t for t, _, _ in seen]
    assert tenants[:4] == ["t1", "t1", "t1", "t2"]  # 503, 503, then delivered; t2 delivered
    assert seen[0][1] == "snappy"
    assert {dict((lab.name, lab.value) for lab in ts.labels)["__name__"] for ts in seen[2][2].timeseries} >= {
        "traces_spanmetrics_calls_total", "traces_spanmetrics_latency_bucket"}
    assert all(s.timestamp == 1_000_000 for ts in seen[2][2].timeseries for s in ts.samples)
    # The shutdown flush collected once more: t1 got a 400 (not retried, dropped), t2 was delivered.
    assert tenants[4:] == ["t1", "t2"]
    value = reg.get_sample_value
    assert value("tempo_metrics_generator_remote_write_failed_requests_total",
                 {"endpoint": "store", "reason": "http_503"}) == 2
    assert value("tempo_metrics_generator_remote_write_dropped_requests_total",
                 {"endpoint": "store", "reason": "not_retryable"}) == 1
    assert value("tempo_metrics_generator_remote_write_samples_sent_total", {"endpoint": "store"}) == 7 + 1

    # A full queue drops its oldest request.
    small = StorageConfig(remote_write=(RemoteWriteConfig(url="http://store/", max_pending_requests=1),))
    stuck = RemoteWriter(series, small, 60.0, CollectorRegistry(), transport=httpx.MockTransport(handler))
    stuck.collect()
    assert [r.tenant for r in stuck.endpoints[0].queue] == ["t2"]


def test_remote_write_config_is_validated() -> None:
    cfg = load_config_text("""
metrics_generator:
  enabled: true
  registry: {collection_interval: 5s}
  storage:
    remote_write:
      - url: http://127.0.0.1:9090/api/v1/write
        headers: {Authorization: Bearer x}
    remote_write_add_org_id_header: false
""", "x")
    (rw,) = cfg.metrics_generator.storage.remote_write
    assert (rw.url, rw.headers, float(cfg.metrics_generator.registry.collection_interval)) == (
        "http://127.0.0.1:9090/api/v1/write", {"Authorization": "Bearer x"}, 5.0)
    with pytest.raises(ConfigError, match=r"remote_write\[0\].url"):
        load_config_text("metrics_generator:\n  storage:\n    remote_write: [{url: 'ftp://x'}]\n", "x")


# ------------------------------------------------------------------------------------------ real Prometheus


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("Debian package `prometheus` not installed (scripts/install-test-services)")
    port = _free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 1h\n")
    proc = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}", "--web.enable-remote-write-receiver"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"prometheus did not start: {proc.stderr.read().decode() if proc.stderr else ''}")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.slow
async def test_series_arrive_in_a_real_prometheus(prometheus: str, nursery: trio.Nursery, tmp_path: Path,
                                                  http: httpx.AsyncClient) -> None:
    from test_grafana_contract import TRACES, _export, make_spans

    config = tempo_config_text(tmp_path, f"""
        multitenancy_enabled: true
        metrics_generator:
          enabled: true
          registry: {{collection_interval: 200ms}}
          metrics_ingestion_time_range_slack: 15m
          storage:
            remote_write:
              - url: {prometheus}/api/v1/write
            remote_write_add_org_id_header: true
    """)
    tempo = await start_tempo(nursery, config)
    frontend, backend = make_spans((time.time_ns() // 10**9 - 70) * 10**9)
    for spans in (frontend, backend):
        await _export(tempo, http, spans, {"X-Scope-OrgID": "team-a"})

    async def query(q: str) -> dict[tuple, float]:
        r = await http.get(prometheus + "/api/v1/query", params={"query": q})
        assert r.status_code == 200, r.text
        return {tuple(sorted(s["metric"].items())): float(s["value"][1]) for s in r.json()["data"]["result"]}

    with trio.fail_after(30):
        while True:
            edges = await query('traces_service_graph_request_total{client="frontend",server="backend"}')
            calls = await query('sum by (service) (traces_spanmetrics_calls_total)')
            if edges and sum(edges.values()) == TRACES and len(calls) == 2:
                break
            await trio.sleep(0.2)
    assert {dict(k)["service"]: v for k, v in calls.items()} == {"frontend": 2 * TRACES, "backend": 2 * TRACES}
    buckets = await query('traces_spanmetrics_latency_bucket{service="backend",le="+Inf"}')
    assert sum(buckets.values()) == 2 * TRACES
    assert "tenant" not in dict(next(iter(edges)))  # the tenant travelled in X-Scope-OrgID, not as a label
    await tempo.stop()

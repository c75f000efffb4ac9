"""The metrics-generator in a running tempo-lite: spans sent by the OpenTelemetry SDK over OTLP/HTTP show up
as span-metrics series on /metrics."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import trio
from conftest import start_tempo, tempo_config_text
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource as SdkResource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from test_generator import sample

from tempo_lite.config import Config


@pytest.mark.skipif(not hasattr(Config(), "metrics_generator"), reason="metrics_generator not wired into Config yet")
async def test_spans_sent_over_otlp_http_show_up_on_metrics(nursery: trio.Nursery, tmp_path: Path) -> None:
    extra = "metrics_generator: {enabled: true, processors: [span-metrics, service-graphs]}"
    tempo = await start_tempo(nursery, tempo_config_text(tmp_path, extra))
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=SdkResource.create({"service.name": "shop"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("t").start_as_current_span("GET /", kind=SpanKind.SERVER):
        pass
    exporter = OTLPSpanExporter(endpoint=tempo.url("otlp_http") + "/v1/traces")
    try:
        assert await trio.to_thread.run_sync(exporter.export, list(memory.get_finished_spans())) \
            == SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
    want = sample("traces_spanmetrics_calls_total", 1, service="shop", span_name="GET /",
                  span_kind="SPAN_KIND_SERVER", status_code="STATUS_CODE_UNSET", tenant="single-tenant")
    async with httpx.AsyncClient() as http:
        with trio.fail_after(10):
            while want not in (await http.get(tempo.url() + "/metrics")).text.splitlines():
                await trio.sleep(0.02)
    await tempo.stop()

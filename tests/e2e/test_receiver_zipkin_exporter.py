"""Zipkin JSON receivers: what the real OpenTelemetry Zipkin exporter sends (to a stand-in collector on
127.0.0.1), decoded field by field."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.exporter.zipkin.encoder import Protocol
from opentelemetry.exporter.zipkin.json import ZipkinExporter
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind
from opentelemetry.trace import Status as OtelStatus
from opentelemetry.trace import StatusCode as OtelStatusCode
from test_receiver_zipkin import all_spans, attrs

from tempo_lite.receivers.zipkin import decode_zipkin_v2_json
from tempo_lite.receivers.zipkin_v1 import decode_zipkin_v1_json


@pytest.fixture
def zipkin_capture() -> Iterator[tuple[str, list[tuple[str, str, bytes]]]]:
    """A throwaway HTTP server standing in for a Zipkin collector; records (path, content type, body)."""
    received: list[tuple[str, str, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, self.headers.get("Content-Type", ""), body))
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


def run_sdk_workload(endpoint: str, version: Protocol) -> dict:
    provider = TracerProvider(
        resource=Resource.create({"service.name": "checkout", "host.name": "box-1", "service.version": "2.0"})
    )
    # An explicit tag limit: the exporter's v1 encoder crashes on the default (None).
    exporter = ZipkinExporter(version=version, endpoint=endpoint, max_tag_value_length=256)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("checkout.lib", "0.9")
    with tracer.start_as_current_span(
        "POST /pay",
        kind=SpanKind.SERVER,
        attributes={"http.method": "POST", "retries": 3, "cached": True, "ratio": 1.5, "ids": [1, 2]},
    ) as parent:
        parent.add_event("validated", {"rule": "amount"})
        with tracer.start_as_current_span("charge card", kind=SpanKind.CLIENT) as child:
            child.set_status(OtelStatus(OtelStatusCode.ERROR, "card declined"))
        parent.set_status(OtelStatus(OtelStatusCode.OK))
    provider.shutdown()
    return {"parent": parent, "child": child}


def micros_ns(ns: int) -> int:
    """The exporter rounds nanoseconds to microseconds."""
    return (ns + 500) // 1000 * 1000


def test_otel_zipkin_v2_exporter_spans_decode_field_by_field(zipkin_capture):
    endpoint, received = zipkin_capture
    sdk = run_sdk_workload(endpoint + "/api/v2/spans", Protocol.V2)
    assert [(path, ctype) for path, ctype, _ in received] == [("/api/v2/spans", "application/json")] * 2

    found = {}
    for _, _, body in received:
        request = decode_zipkin_v2_json(body)
        assert len(request.resource_spans) == 1
        for rs, ss, span in all_spans(request):
            found[span.name] = (rs, ss, span)
    rs, ss, parent = found["POST /pay"]
    sdk_parent = sdk["parent"]
    ctx = sdk_parent.get_span_context()

    resource = attrs(rs.resource.attributes)
    assert resource["service.name"] == ("string_value", "checkout")
    assert resource["host.name"] == ("string_value", "box-1")
    assert resource["service.version"] == ("string_value", "2.0")
    assert resource["telemetry.sdk.language"] == ("string_value", "python")
    assert (ss.scope.name, ss.scope.version) == ("checkout.lib", "0.9")

    assert parent.trace_id == ctx.trace_id.to_bytes(16, "big")
    assert parent.span_id == ctx.span_id.to_bytes(8, "big")
    assert parent.parent_span_id == b""
    assert parent.kind == Span.SPAN_KIND_SERVER
    assert parent.start_time_unix_nano == micros_ns(sdk_parent.start_time)
    duration_ns = micros_ns(sdk_parent.end_time - sdk_parent.start_time)
    assert parent.end_time_unix_nano == parent.start_time_unix_nano + duration_ns
    assert parent.status.code == Status.STATUS_CODE_OK
    span_attrs = attrs(parent.attributes)
    assert span_attrs == {
        "http.method": ("string_value", "POST"),
        "retries": ("string_value", "3"),  # Zipkin tags are strings; the collector keeps them so
        "cached": ("string_value", "true"),
        "ratio": ("string_value", "1.5"),
        "ids": ("string_value", '["1","2"]'),
    }
    [event] = parent.events
    assert event.name == json.dumps({"validated": {"rule": "amount"}}, sort_keys=True)
    assert event.time_unix_nano == micros_ns(sdk_parent.events[0].timestamp)

    _, _, child = found["charge card"]
    assert child.trace_id == parent.trace_id
    assert child.parent_span_id == parent.span_id
    assert child.kind == Span.SPAN_KIND_CLIENT
    assert child.status.code == Status.STATUS_CODE_ERROR
    # The exporter puts the description in the `error` tag; the collector keeps a non-"true" error tag.
    assert attrs(child.attributes) == {"error": ("string_value", "card declined")}


def test_otel_zipkin_v1_exporter_spans_decode_field_by_field(zipkin_capture):
    endpoint, received = zipkin_capture
    sdk = run_sdk_workload(endpoint + "/api/v1/spans", Protocol.V1)
    found = {}
    for _, _, body in received:
        for rs, _, span in all_spans(decode_zipkin_v1_json(body, now_ns=1)):
            found[span.name] = (rs, span)
    rs, parent = found["POST /pay"]
    sdk_parent = sdk["parent"]
    ctx = sdk_parent.get_span_context()
    assert attrs(rs.resource.attributes)["service.name"] == ("string_value", "checkout")
    assert parent.trace_id == ctx.trace_id.to_bytes(16, "big")
    assert parent.span_id == ctx.span_id.to_bytes(8, "big")
    assert parent.start_time_unix_nano == micros_ns(sdk_parent.start_time)
    assert parent.end_time_unix_nano == parent.start_time_unix_nano + micros_ns(
        sdk_parent.end_time - sdk_parent.start_time
    )
    span_attrs = attrs(parent.attributes)
    assert span_attrs["http.method"] == ("string_value", "POST")
    assert span_attrs["retries"] == ("string_value", "3")
    assert "otel.status_code" not in span_attrs
    assert [e.name for e in parent.events] == [json.dumps({"validated": {"rule": "amount"}}, sort_keys=True)]

    _, child = found["charge card"]
    assert child.parent_span_id == parent.span_id
    assert child.status.code == Status.STATUS_CODE_ERROR
    assert "error" not in attrs(child.attributes)

"""Throughput of the OTLP/gRPC receiver on hypercorn: requests/s and spans/s into a no-op push.

The server runs in this process (trio); the load comes from a grpcio client in a child process so the
two do not share a GIL. Usage:

    .venv/bin/python bench/ingest_grpc.py --spans-per-request 100 500 --concurrency 1 8 --seconds 5
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import trio


def make_request(spans: int) -> bytes:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value="bench")))
    scope = rs.scope_spans.add()
    for i in range(spans):
        span = scope.spans.add(
            trace_id=(i // 10 + 1).to_bytes(16, "big"),
            span_id=(i + 1).to_bytes(8, "big"),
            name=f"op-{i % 20}",
            start_time_unix_nano=1_700_000_000_000_000_000 + i,
            end_time_unix_nano=1_700_000_000_000_100_000 + i,
        )
        for a in range(10):
            span.attributes.append(
                KeyValue(key=f"attr.{a}", value=AnyValue(string_value=f"value-{a}-{i % 7}"))
            )
    return request.SerializeToString()


def run_client(port: int, spans: int, concurrency: int, seconds: float) -> dict[str, float]:
    import grpc

    payload = make_request(spans)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
    export(payload, timeout=10)  # warm up the connection
    deadline = time.monotonic() + seconds

    def worker() -> int:
        calls = 0
        while time.monotonic() < deadline:
            export(payload, timeout=10)
            calls += 1
        return calls

    started = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        calls = sum(pool.map(lambda _: worker(), range(concurrency)))
    elapsed = time.monotonic() - started
    return {
        "spans_per_request": spans,
        "concurrency": concurrency,
        "request_bytes": len(payload),
        "requests_per_s": round(calls / elapsed, 1),
        "spans_per_s": round(calls * spans / elapsed),
        "mb_per_s": round(calls * len(payload) / elapsed / 1e6, 2),
    }


async def serve_and_measure(args: argparse.Namespace) -> None:
    from tempo_lite.receivers.otlp_grpc import otlp_grpc_app
    from tempo_lite.server import serve_asgi

    received = 0

    async def push(tenant: str | None, request: object, size: int) -> None:
        nonlocal received
        received += 1

    app = otlp_grpc_app(push, max_message_bytes=64 << 20)
    async with trio.open_nursery() as nursery:
        _, port = await nursery.start(
            lambda task_status: serve_asgi(app, "127.0.0.1", 0, name="bench", task_status=task_status)
        )
        for spans in args.spans_per_request:
            for concurrency in args.concurrency:
                command = [
                    sys.executable,
                    __file__,
                    "--client",
                    str(port),
                    str(spans),
                    str(concurrency),
                    str(args.seconds),
                ]
                result = await trio.run_process(command, capture_stdout=True)
                print(result.stdout.decode().strip(), flush=True)
        nursery.cancel_scope.cancel()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        port, spans, concurrency, seconds = sys.argv[2:6]
        print(json.dumps(run_client(int(port), int(spans), int(concurrency), float(seconds))))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--spans-per-request", type=int, nargs="+", default=[1, 100, 1000])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--seconds", type=float, default=5.0)
    trio.run(serve_and_measure, parser.parse_args())


if __name__ == "__main__":
    main()

"""Benchmark: OTLP/gRPC beside OTLP/HTTP, same payloads, same run, each into a fresh `tempo-lite serve`.

    .venv/bin/python bench/ingest_protocols.py [--spans-per-request 100 1000] [--seconds 15] [--clients 4]

The client runs in this process (threads with one keep-alive HTTP connection or one gRPC channel each);
the server is a separate process. Prints acknowledged spans/s and p50/p99 latency per protocol.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import grpc  # noqa: E402
from ingest_http import EXTRA, Sender, drive, percentile, run_load  # noqa: E402
from payloads import request_bytes  # noqa: E402

from tempo_lite import spantable  # noqa: E402
from tests.server_process import ServerProcess, free_port  # noqa: E402

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


@contextmanager
def grpc_sender(address: str) -> Iterator[Sender]:
    with grpc.insecure_channel(address) as channel:
        export = channel.unary_unary(EXPORT, request_serializer=None, response_deserializer=None)

        def send(body: bytes) -> str | None:
            try:
                export(body, timeout=60)
            except grpc.RpcError as exc:
                return f"{exc.code().name} {exc.details()}"
            return None

        yield send


def grpc_load(address: str, payloads: list[bytes], spans_each: int, seconds: float, clients: int) -> dict:
    return drive(lambda: grpc_sender(address), payloads, spans_each, seconds, clients)


def server_with_grpc(tmp: Path) -> tuple[ServerProcess, int]:
    server = ServerProcess(tmp, cycle="1h", extra=EXTRA)
    grpc_port = free_port()
    http_line = f'        http: {{endpoint: "127.0.0.1:{server.otlp_port}"}}'
    grpc_line = f'        grpc: {{endpoint: "127.0.0.1:{grpc_port}"}}'
    text = server.config.read_text().replace(http_line, f"{http_line}\n{grpc_line}")
    server.config.write_text(text)
    return server, grpc_port


def bench(spans_per_request: int, seconds: float, clients: int) -> None:
    payloads = [request_bytes(spans_per_request, seed=i) for i in range(max(20, 20_000 // spans_per_request))]
    spans_each = spantable.flatten_bytes(payloads[0]).num_spans
    for protocol in ("http", "grpc"):
        with tempfile.TemporaryDirectory() as tmp:
            server, grpc_port = server_with_grpc(Path(tmp))
            server.start(timeout=60)
            try:
                if protocol == "http":
                    result = run_load(server.otlp, payloads, spans_each, seconds, clients)
                else:
                    result = grpc_load(f"127.0.0.1:{grpc_port}", payloads, spans_each, seconds, clients)
            finally:
                server.terminate()
        lat = result["latencies"]
        rate = result["acked"] / result["wall"]
        print(f"{spans_per_request:>5} spans/request  OTLP/{protocol:<4}  {rate:>9,.0f} spans/s acknowledged  "
              f"p50 {percentile(lat, 50) if lat else 0:6.1f} ms  p99 {percentile(lat, 99) if lat else 0:6.1f} ms  "
              f"{len(lat)} requests, {len(result['failures'])} failed {result['failures'][:1]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans-per-request", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    for n in args.spans_per_request:
        bench(n, args.seconds, args.clients)


if __name__ == "__main__":
    main()

"""Benchmark: receiver decoding and TraceQL parsing on one core, the pure CPU steps in front of every request.

    .venv/bin/python bench/decode_parse.py [--spans 1000] [--rounds 50]

Prints Jaeger Thrift (HTTP body) decode spans/s for a batch of `--spans` spans built with the Jaeger client's
own Thrift types, and TraceQL parse latency p50/p99 (ms) for a structural query with a pipeline.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jaeger_client.thrift_gen.jaeger import ttypes  # noqa: E402
from thrift.TSerialization import serialize  # noqa: E402

from tempo_lite.receivers.jaeger import decode_jaeger_thrift_http  # noqa: E402
from tempo_lite.traceql import parse  # noqa: E402

QUERY = (
    '{ resource.service.name = "frontend" && span.http.status_code >= 500 } '
    ">> { kind = server && duration > 100ms } | count() > 2"
)


def jaeger_batch(spans: int) -> bytes:
    tags = [
        ttypes.Tag(key="http.method", vType=ttypes.TagType.STRING, vStr="GET"),
        ttypes.Tag(key="http.status_code", vType=ttypes.TagType.LONG, vLong=200),
        ttypes.Tag(key="cache.hit", vType=ttypes.TagType.BOOL, vBool=True),
    ]
    batch = ttypes.Batch(
        process=ttypes.Process(
            serviceName="orders", tags=[ttypes.Tag(key="host", vType=ttypes.TagType.STRING, vStr="a")]
        ),
        spans=[
            ttypes.Span(traceIdLow=i // 8 + 1, traceIdHigh=7, spanId=i + 1, parentSpanId=0, operationName=f"op{i % 5}",
                        flags=1, startTime=1_700_000_000_000_000 + i, duration=1000 + i, tags=tags)
            for i in range(spans)
        ],
    )
    return serialize(batch)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()

    body = jaeger_batch(args.spans)
    decode_jaeger_thrift_http(body)
    took = []
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        decode_jaeger_thrift_http(body)
        took.append(time.perf_counter() - t0)
    print(f"jaeger thrift decode: {args.spans / statistics.median(took):,.0f} spans/s "
          f"({len(body) / args.spans:.0f} bytes/span, median of {args.rounds})")

    parse(QUERY)
    took = []
    for _ in range(args.rounds * 4):
        t0 = time.perf_counter()
        parse(QUERY)
        took.append((time.perf_counter() - t0) * 1000)
    p50, p99 = percentile(took, 0.5), percentile(took, 0.99)
    print(f"traceql parse: p50 {p50:.2f} ms, p99 {p99:.2f} ms ({len(took)} parses)")


if __name__ == "__main__":
    main()

"""Benchmark: OTLP decode and `spantable.flatten_bytes` throughput on one core (spans/s).

    .venv/bin/python bench/flatten.py [--spans 20000] [--per-request 100 1000] [--profile]

Prints, per payload shape, decode-only spans/s and decode+flatten spans/s (best of 3 rounds).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from opentelemetry.proto.trace.v1.trace_pb2 import TracesData  # noqa: E402
from payloads import request_bytes  # noqa: E402

from tempo_lite import spantable  # noqa: E402


def best_rate(fn, payloads: list[bytes], spans: int, rounds: int = 3) -> float:  # noqa: ANN001
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for p in payloads:
            fn(p)
        best = min(best, time.perf_counter() - t0)
    return spans / best


def decode_only(payload: bytes) -> None:
    TracesData().ParseFromString(payload)


def measure(total: int, per_request: int, rich: bool) -> tuple[float, float]:
    payloads = [request_bytes(per_request, seed=i, rich=rich) for i in range(max(1, total // per_request))]
    spans = sum(spantable.flatten_bytes(p).num_spans for p in payloads)
    return best_rate(decode_only, payloads, spans), best_rate(spantable.flatten_bytes, payloads, spans)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=20_000)
    parser.add_argument("--per-request", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--profile", action="store_true", help="print a pyinstrument profile of flatten")
    args = parser.parse_args()
    print(f"{'shape':<32} {'decode spans/s':>15} {'flatten spans/s':>16}")
    for rich in (False, True):
        for per in args.per_request:
            decode, flatten = measure(args.spans, per, rich)
            shape = f"{per}/req, " + ("12 attrs+event+link" if rich else "10 attrs")
            print(f"{shape:<32} {decode:>15,.0f} {flatten:>16,.0f}")
    # The live-store decodes WAL records in batches: one call per batch pays the fixed cost once.
    payloads = [request_bytes(100, seed=i) for i in range(256)]
    spans = spantable.flatten_payloads(payloads).num_spans
    per_record = best_rate(spantable.flatten_bytes, payloads, spans)
    batched = best_rate(lambda _p: spantable.flatten_payloads(payloads), [b""], spans)
    print(f"256 records x 100 spans: one flatten_bytes per record {per_record:,.0f} spans/s, "
          f"one flatten_payloads per batch {batched:,.0f} spans/s")
    if args.profile:
        from pyinstrument import Profiler

        payloads = [request_bytes(1000, seed=i, rich=True) for i in range(args.spans // 1000)]
        with Profiler() as prof:
            for p in payloads:
                spantable.flatten_bytes(p)
        print(prof.output_text(unicode=False, color=False))


if __name__ == "__main__":
    main()

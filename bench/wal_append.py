"""Benchmark WAL appends: appends/s, MB/s and p50/p99 latency of 46 KB records at 1, 8 and 64 appenders.

Runs the embedded backend in a temporary directory (or --dir, to measure a particular disk), and the
kafka backend too when TEMPO_LITE_BENCH_KAFKA_BROKERS names a broker (a fresh topic per run).

    .venv/bin/python bench/wal_append.py [--records 1500] [--dir /path/on/disk]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass

import trio

from tempo_lite.wal import WalEntry, WriteAheadLog
from tempo_lite.wal.factory import WalOptions, open_wal

RECORD_BYTES = 46 * 1024
CONCURRENCY = (1, 8, 64)
PARTITIONS = 4


@dataclass(frozen=True)
class Result:
    backend: str
    appenders: int
    records: int
    seconds: float
    latencies: list[float]

    def line(self) -> str:
        lat = sorted(self.latencies)
        p50 = statistics.median(lat) * 1000
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000
        rate = self.records / self.seconds
        mbps = rate * RECORD_BYTES / 1e6
        return (
            f"{self.backend:9} appenders={self.appenders:3}  {rate:8.0f} appends/s  {mbps:7.1f} MB/s  "
            f"p50={p50:7.2f} ms  p99={p99:7.2f} ms"
        )


async def run_level(wal: WriteAheadLog, backend: str, appenders: int, records: int) -> Result:
    payload = os.urandom(RECORD_BYTES)
    latencies: list[float] = []
    per_appender = max(records // appenders, 1)

    async def appender(worker: int) -> None:
        for i in range(per_appender):
            start = time.perf_counter()
            await wal.append([WalEntry((worker + i) % PARTITIONS, "bench", payload)])
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for worker in range(appenders):
            nursery.start_soon(appender, worker)
    elapsed = time.perf_counter() - start
    # Let retention run so the next level starts from an empty log.
    for partition in range(PARTITIONS):
        end = await wal.end_offset(partition)
        for group in ("livestore", "blockbuilder"):
            await wal.commit(group, partition, end)
    return Result(backend, appenders, per_appender * appenders, elapsed, latencies)


async def bench(config: WalOptions, records: int) -> list[Result]:
    async with open_wal(config) as wal:
        await run_level(wal, config.backend, 1, 20)  # warm-up: connections, page cache, producer id
        return [await run_level(wal, config.backend, n, records) for n in CONCURRENCY]


def machine() -> str:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"nproc={os.cpu_count()}  cpu={model}"


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=1500, help="records per concurrency level")
    parser.add_argument("--dir", default=None, help="directory for the embedded WAL (default: a temp dir)")
    args = parser.parse_args()
    print(machine())
    print(f"record size {RECORD_BYTES} bytes, {args.records} records per level")
    with tempfile.TemporaryDirectory(dir=args.dir) as directory:
        config = WalOptions(backend="embedded", path=os.path.join(directory, "wal"), partitions=PARTITIONS)
        for result in await bench(config, args.records):
            print(result.line())
    brokers = os.environ.get("TEMPO_LITE_BENCH_KAFKA_BROKERS")
    if brokers:
        config = WalOptions(
            backend="kafka", kafka_brokers=brokers, kafka_topic=f"wal-bench-{uuid.uuid4().hex[:8]}",
            partitions=PARTITIONS,
        )
        for result in await bench(config, args.records):
            print(result.line())


if __name__ == "__main__":
    trio.run(main)

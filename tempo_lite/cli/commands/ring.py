"""`tempo-lite ring status|drain|activate --config FILE`: the partition ring (wal/ring.py) of a split deployment.

`drain --partition N` marks every live-store instance of partition N INACTIVE: distributors stop writing to
it within the ring's poll interval, queriers keep reading it, and each live-store deletes its instance's
record once the block-builders have committed everything in the partition (its data is in blocks). The
command then waits (`--timeout`, default 10m; `--no-wait` returns at once) until the partition has left
the ring and says so; a partition still in the ring at the deadline is exit code 1, naming the instances
left. `activate --partition N` makes its instances ACTIVE again (writes resume). `status` prints one line
per partition. The file is the deployment's config: only `storage.trace.wal` (the kafka brokers and topic)
is read. docs/scaling.md, "Partition ring".
"""

from __future__ import annotations

import argparse
import sys
import time

import trio

from tempo_lite.cli.commands.common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    example_epilog,
    parse_duration,
)
from tempo_lite.config import load_config
from tempo_lite.errors import ConfigError, TempoLiteError
from tempo_lite.wal.ring import POLL_S, Entry, KafkaRing, State, status_lines

PROG = "tempo-lite ring"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ring", help="show, drain or activate partitions of the partition ring (split deployments)",
        description="The partition ring of a split deployment on the kafka WAL (docs/scaling.md): which WAL "
        "partitions take writes (ACTIVE), are being drained (INACTIVE: no writes, still read until their "
        "records are in blocks) or are joining (PENDING), and which live-stores (and zones) own them.",
        epilog=example_epilog("tempo-lite ring status -c live-store.yaml",
                              "tempo-lite ring drain -c live-store.yaml --partition 3    # waits until drained",
                              "tempo-lite ring activate -c live-store.yaml --partition 3"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ring_sub = p.add_subparsers(dest="ring_command", required=True)
    for name, help_text in (("status", "one line per partition: state and owners"),
                            ("drain", "stop writes to a partition and wait until its records are in blocks"),
                            ("activate", "make a partition take writes again")):
        q = ring_sub.add_parser(name, help=help_text)
        q.add_argument("--config", "-c", required=True, help="the deployment's config (its storage.trace.wal)")
        if name != "status":
            q.add_argument("--partition", "-p", type=int, required=True, help="the WAL partition")
        if name == "drain":
            q.add_argument("--timeout", default="10m", help="how long to wait for the drain (default %(default)s)")
            q.add_argument("--no-wait", action="store_true", help="mark it INACTIVE and return at once")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        ring = _ring(args.config)
        timeout = parse_duration(args.timeout) if args.ring_command == "drain" else 0
    except ConfigError as exc:
        for line in exc.message.splitlines():
            print(f"{PROG}: configuration error: {line}", file=sys.stderr)
        return EXIT_USAGE
    except UsageError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return trio.run(_main, ring, args, timeout)
    except BaseException as exc:  # noqa: BLE001 - one line naming the broker problem, not a traceback
        if isinstance(exc, KeyboardInterrupt):
            raise
        message = exc.message if isinstance(exc, TempoLiteError) else f"{type(exc).__name__}: {exc}"
        print(f"{PROG}: the ring topic {ring.topic} on {ring.brokers} could not be read or written: {message}",
              file=sys.stderr)
        return EXIT_FAILURE


def _ring(config_path: str) -> KafkaRing:
    wal = load_config(config_path).storage.trace.wal
    if wal.backend != "kafka" or not wal.kafka.brokers:
        raise ConfigError(f"{config_path}: storage.trace.wal.backend is {wal.backend}: the partition ring exists on "
                          "the kafka WAL of a split deployment only (with storage.trace.wal.kafka.brokers)")
    return KafkaRing(wal.kafka.brokers, wal.kafka.topic)


def _print(ring: dict[int, Entry]) -> None:
    for name, state in status_lines(ring):
        print(f"{name}: {state}")


def _print_drained(partition: int) -> None:
    print(f"partition-{partition}: drained (its records are in blocks; it takes no writes and no live-store serves it)")


async def _main(ring: KafkaRing, args: argparse.Namespace, timeout: float) -> int:
    command = args.ring_command
    if command == "status":
        await ring.read()
        _print(ring.ring)
        if not ring.ring:
            print(f"{PROG}: the ring is empty (no live-store has joined: every partition takes writes)",
                  file=sys.stderr)
        return EXIT_OK
    partition = args.partition
    state = State.INACTIVE if command == "drain" else State.ACTIVE
    try:
        changed = await ring.set_partition_state(partition, state)
    except ValueError as exc:
        if command == "drain" and partition in ring.drained:  # every instance deleted: a drain finished earlier
            _print_drained(partition)
            return EXIT_OK
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    _print({p: e for p, e in ring.ring.items() if p == partition})
    if not changed:
        print(f"{PROG}: partition {partition} was already {state.value}", file=sys.stderr)
    if command == "activate" or args.no_wait:
        return EXIT_OK
    print(f"{PROG}: waiting up to {timeout:g}s for partition {partition}'s records to be in blocks", file=sys.stderr)
    deadline = time.monotonic() + timeout
    while True:
        await ring.read()
        left = sorted((e for (p, _z), e in ring.instances.items() if p == partition), key=lambda e: e.zone)
        if not left:
            _print_drained(partition)
            return EXIT_OK
        if any(e.state is not State.INACTIVE for e in left):
            owners = ", ".join(f"{e.owner} {e.state.value}" for e in left if e.state is not State.INACTIVE)
            print(f"{PROG}: partition {partition} was made active again while draining ({owners})", file=sys.stderr)
            return EXIT_FAILURE
        if time.monotonic() >= deadline:
            owners = ", ".join(e.owner + (f" zone {e.zone}" if e.zone else "") for e in left)
            print(f"{PROG}: partition {partition} is still INACTIVE in the ring after {timeout:g}s: its live-stores "
                  f"({owners}) have not seen every record of it in blocks yet (is a block-builder running, and "
                  "each of those live-stores?)", file=sys.stderr)
            return EXIT_FAILURE
        await trio.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))

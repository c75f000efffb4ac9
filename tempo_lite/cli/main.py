"""`tempo-lite` command line: `serve` runs every component in one process (or the roles `-target` names),
`check-config` validates a file; `capture` (cli/capture/), the client commands query, trace, import and export
(cli/commands/) and `wal` (`wal_quarantine.py`) register their own subcommands here."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

import trio

from tempo_lite import __version__
from tempo_lite.cli.capture.command import add_capture_parser, capture_main
from tempo_lite.cli.commands import NAMES as CLIENT_COMMANDS
from tempo_lite.cli.commands import register as register_client_commands
from tempo_lite.cli.commands import run as run_client_command
from tempo_lite.cli.process import EXIT_CONFIG, report_failure, setup_logging
from tempo_lite.config import Config, load_config
from tempo_lite.errors import ConfigError
from tempo_lite.roles import ROLES, plan_for


async def serve(config: Config, target: str | None = None) -> None:
    from tempo_lite.app import TempoLite
    from tempo_lite.livestore import allocator

    allocator.tune()  # before any worker thread: freed buffers leave the process (docs/reliability.md)
    tl = TempoLite(config, target)
    async with trio.open_nursery() as nursery:

        async def watch_signals() -> None:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for sig in signals:
                    logging.getLogger("tempo_lite").info("received %s", signal.Signals(sig).name)
                    tl.stop()
                    return

        nursery.start_soon(watch_signals)
        await tl.run()
        nursery.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tempo-lite", description="A Grafana Tempo compatible trace store.")
    parser.add_argument("--version", action="version", version=f"tempo-lite {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p_serve = sub.add_parser("serve", help="run tempo-lite: every component, or the roles -target names")
    p_serve.add_argument("--config", "-c", help="YAML configuration file (Tempo-shaped); defaults if omitted")
    p_serve.add_argument("-target", "--target", dest="target", default=None, metavar="ROLE[,ROLE]",
                         help="the roles this process runs: all (default; or the config's `target`), or any of "
                              + ", ".join(ROLES) + " (docs/scaling.md)")
    p_check = sub.add_parser("check-config", help="validate a configuration file and exit")
    p_check.add_argument("--config", "-c", required=True)
    add_capture_parser(sub)
    register_client_commands(sub)
    from tempo_lite.cli.wal_quarantine import add_wal_parser, wal_main

    add_wal_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "capture":
        return capture_main(args, parser)
    if args.command in CLIENT_COMMANDS:
        return run_client_command(args)
    try:
        config = load_config(args.config)
        missing = missing_modules(config)
        if args.command == "serve":
            plan_for(config, args.target)  # a role that cannot run on this WAL or store: one line, exit 2
    except ConfigError as exc:
        return report_failure(exc)
    if missing:
        for line in missing:
            print(f"tempo-lite: {line}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "wal":
        return wal_main(args, config.storage.trace.wal.path)
    if args.command == "check-config":
        print(f"{args.config}: ok")
        return 0
    setup_logging(config)
    try:
        trio.run(serve, config, args.target)
    except BaseException as exc:  # trio wraps task errors in exception groups: report_failure finds the cause
        return report_failure(exc)
    return 0


# The Python module each optional backend loads at start-up, and the package that provides it.
BACKEND_MODULES = {
    ("storage.trace.backend", "s3"): ("s3fs", "s3fs"),
    ("storage.trace.backend", "gcs"): ("gcsfs", "gcsfs"),
    ("storage.trace.backend", "azure"): ("adlfs", "adlfs"),
    ("storage.trace.wal.backend", "kafka"): ("confluent_kafka", "confluent-kafka"),
    ("storage.trace.wal.backend", "managed"): ("confluent_kafka", "confluent-kafka"),
    ("storage.trace.wal.backend", "redpanda"): ("confluent_kafka", "confluent-kafka"),
}


def missing_modules(config: Config) -> list[str]:
    """One line per configured backend whose module cannot be imported, naming the key and the fix."""
    import importlib.util

    chosen = {("storage.trace.backend", config.storage.trace.backend),
              ("storage.trace.wal.backend", config.storage.trace.wal.backend)}
    lines = []
    for (key, value), (module, package) in BACKEND_MODULES.items():
        if (key, value) in chosen and importlib.util.find_spec(module) is None:
            lines.append(f"{key}: {value} needs the Python package {package}, which is not installed "
                         f"(pip install {package})")
    if config.storage.trace.wal.backend == "redpanda":
        from tempo_lite.wal.broker_command import redpanda_preset
        from tempo_lite.wal.factory import wal_config

        try:
            redpanda_preset(wal_config(config.storage.trace.wal))  # finds the binary, or says how to get it
        except ConfigError as exc:
            lines.append(exc.message)
    return lines


if __name__ == "__main__":
    sys.exit(main())

"""`tempo-lite` command line: `serve` runs every component in one process (or the roles `-target` names);
`capture` runs a command against an ephemeral instance and asserts on its traces with TraceQL
(tempo_lite.capture)."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
from typing import cast

import trio

from tempo_lite import __version__, commands
from tempo_lite.config import Config, load_config
from tempo_lite.errors import ConfigError, StorageError, TempoLiteError
from tempo_lite.roles import ROLES, plan_for

EXIT_CONFIG = 2


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        msg = record.getMessage().replace('"', '\\"')
        line = f'ts={ts} level={record.levelname.lower()} caller={record.name} msg="{msg}"'
        if record.exc_info:
            line += ' err="' + self.formatException(record.exc_info).replace('"', "'").replace("\n", "\\n") + '"'
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "caller": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            doc["err"] = self.formatException(record.exc_info)
        return json.dumps(doc)


def setup_logging(config: Config) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if config.server.log_format == "json" else LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    level = config.server.log_level.upper().replace("WARN", "WARNING").replace("WARNINGING", "WARNING")
    root.setLevel(level)
    for noisy in ("hypercorn.access", "hypercorn.error", "quart.app", "quart.serving"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


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
    commands.register(sub)
    from tempo_lite.wal.quarantine_cli import add_wal_parser, wal_main

    add_wal_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "capture":
        return capture_main(args, parser)
    if args.command in commands.NAMES:
        return commands.run(args)
    try:
        config = load_config(args.config)
        missing = missing_modules(config)
        if args.command == "serve":
            plan_for(config, args.target)  # a role that cannot run on this WAL or store: one line, exit 2
    except ConfigError as exc:
        print_config_error(exc.message)
        return EXIT_CONFIG
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
    except BaseException as exc:  # trio wraps task errors in exception groups: report the cause
        cause = first_leaf(exc)
        if isinstance(cause, ConfigError):
            print_config_error(cause.message)
            return EXIT_CONFIG
        if isinstance(cause, StorageError):
            print(f"tempo-lite: storage error: {cause.message}", file=sys.stderr)
            return 1
        if isinstance(cause, ImportError):
            print(f"tempo-lite: cannot start: {cause} (reinstall tempo-lite: pip install -e .)", file=sys.stderr)
            return EXIT_CONFIG
        if isinstance(cause, TempoLiteError):  # e.g. BlockConflict: one line naming what and why
            print(f"tempo-lite: {cause.message}", file=sys.stderr)
            return 1
        if isinstance(cause, OSError):
            print(f"tempo-lite: {cause}", file=sys.stderr)
            return 1
        raise
    return 0


def print_config_error(message: str) -> None:
    """One line per problem, each naming the file and line (ConfigError carries them newline-separated)."""
    for line in message.splitlines():
        print(f"tempo-lite: configuration error: {line}", file=sys.stderr)


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
        from tempo_lite.wal.factory import wal_config
        from tempo_lite.wal.managed import redpanda_preset

        try:
            redpanda_preset(wal_config(config.storage.trace.wal))  # finds the binary, or says how to get it
        except ConfigError as exc:
            lines.append(exc.message)
    return lines


class _OrderedAssertion(argparse.Action):
    """Keeps --expect, --expect-none and --expect-count in the order given, in one list."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        items = list(getattr(namespace, self.dest, None) or [])
        if option_string == "--expect-count":
            count, query = cast("tuple[str, str]", values)
            items.append(("expect", query, count))
        else:
            items.append(("expect_none" if option_string == "--expect-none" else "expect", values, None))
        setattr(namespace, self.dest, items)


def add_capture_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "capture",
        help="run a command against an ephemeral tempo-lite and assert on its traces with TraceQL",
        description="Start an in-process tempo-lite on free ports, run COMMAND with the OpenTelemetry SDK "
        "environment pointing at it, then check TraceQL assertions. Exit code: the command's own if it "
        "failed, else 1 if an assertion failed, else 0 (2: usage error, e.g. invalid TraceQL).",
    )
    p.add_argument("--expect", action=_OrderedAssertion, dest="cli_assertions", metavar="TRACEQL",
                   help="at least one trace matches (repeatable)")
    p.add_argument("--expect-none", action=_OrderedAssertion, dest="cli_assertions", metavar="TRACEQL",
                   help="no trace matches (repeatable)")
    p.add_argument("--expect-count", action=_OrderedAssertion, dest="cli_assertions", nargs=2,
                   metavar=("N", "TRACEQL"),
                   help="the number of matching traces is N (exactly), or satisfies >=N, >N, <=N, <N, !=N")
    p.add_argument("--assertions", "-f", action="append", default=[], metavar="FILE",
                   help="YAML list of {name?, expect | expect_none, count?} (repeatable)")
    p.add_argument("--junit", metavar="FILE", help="write a JUnit XML report of the assertions")
    p.add_argument("--export", metavar="FILE", help="write every captured trace as one OTLP/JSON TracesData")
    p.add_argument("--keep", metavar="DIR", help="keep blocks and WAL in DIR instead of a temp dir")
    p.add_argument("--override-env", action="store_true",
                   help="replace OTEL_* variables already set in the environment")
    for flag, dest in (("--http-port", "http_port"), ("--otlp-http-port", "otlp_http_port"),
                       ("--otlp-grpc-port", "otlp_grpc_port"), ("--zipkin-port", "zipkin_port"),
                       ("--jaeger-port", "jaeger_port")):
        p.add_argument(flag, dest=dest, type=int, default=0, metavar="PORT", help="fixed port (default: a free one)")
    p.add_argument("--log-level", default="warn", choices=("debug", "info", "warn", "error"),
                   help="tempo-lite's own log level (default warn)")
    p.add_argument("--quiet", "-q", action="store_true", help="no report on stderr (exit code and files only)")
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARGS...]")


def capture_main(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from pathlib import Path

    from tempo_lite.capture import (
        Assertion,
        CaptureError,
        CaptureOptions,
        cli_assertion,
        load_assertions,
        run_capture,
    )
    from tempo_lite.config import ServerConfig

    command = list(args.cmd)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        print("tempo-lite capture: no command given (usage: tempo-lite capture [options] -- COMMAND [ARGS...])",
              file=sys.stderr)
        return EXIT_CONFIG
    assertions: list[Assertion] = []
    try:
        for i, (kind, query, count) in enumerate(args.cli_assertions or [], start=1):
            assertions.append(cli_assertion(kind, query, count, i))
        for path in args.assertions:
            try:
                text = Path(path).read_text()
            except OSError as exc:
                raise CaptureError(f"{path}: cannot read assertions file: {exc.strerror}") from exc
            assertions += load_assertions(text, path)
    except CaptureError as exc:
        print(f"tempo-lite capture: {exc.message}", file=sys.stderr)
        return EXIT_CONFIG
    if args.keep and Path(args.keep).exists() and any(Path(args.keep).iterdir()):
        # Blocks left by an earlier run would be searched too and count towards the assertions.
        print(f"tempo-lite capture: --keep {args.keep}: directory is not empty", file=sys.stderr)
        return EXIT_CONFIG
    options = CaptureOptions(
        command=command, assertions=assertions, http_port=args.http_port, otlp_http_port=args.otlp_http_port,
        otlp_grpc_port=args.otlp_grpc_port, zipkin_port=args.zipkin_port, jaeger_port=args.jaeger_port,
        override_env=args.override_env, junit=args.junit, export=args.export, keep=args.keep,
        log_level=args.log_level, quiet=args.quiet,
    )
    setup_logging(Config(server=ServerConfig(log_level=args.log_level)))
    try:
        outcome = trio.run(run_capture, options)
    except BaseException as exc:  # trio wraps task errors in exception groups: report the cause
        cause = first_leaf(exc)
        if isinstance(cause, KeyboardInterrupt):
            return 130
        if isinstance(cause, ConfigError | StorageError):
            print(f"tempo-lite capture: {cause.message}", file=sys.stderr)
            return 1
        if isinstance(cause, OSError):
            print(f"tempo-lite capture: {cause}", file=sys.stderr)
            return 1
        raise
    return outcome.exit_code


def first_leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


if __name__ == "__main__":
    sys.exit(main())

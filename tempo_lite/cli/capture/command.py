"""`tempo-lite capture`: its command-line options, and the entry that checks them and the assertions before
running (cli/capture/run.py). Exit codes: the command's own if it failed, else 1 if an assertion failed,
else 0; 2 for a usage error."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, cast

import trio

from tempo_lite.cli.process import EXIT_CONFIG, report_failure, setup_logging
from tempo_lite.config import Config, ServerConfig

if TYPE_CHECKING:
    from tempo_lite.cli.capture.assertions import Assertion


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
    # Checking the assertions imports the query engine (pyarrow): only when `capture` runs.
    from tempo_lite.cli.capture.assertions import CaptureError, cli_assertion, load_assertions
    from tempo_lite.cli.capture.environment import CaptureOptions
    from tempo_lite.cli.capture.run import run_capture

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
    except BaseException as exc:  # trio wraps task errors in exception groups: report_failure finds the cause
        return report_failure(exc, "tempo-lite capture")
    return outcome.exit_code

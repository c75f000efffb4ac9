"""`tempo-lite` command line: `serve` runs every component in one process."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time

import trio

from tempo_lite import __version__
from tempo_lite.config import Config, load_config
from tempo_lite.errors import ConfigError, StorageError

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


async def serve(config: Config) -> None:
    from tempo_lite.app import TempoLite

    tl = TempoLite(config)
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
    p_serve = sub.add_parser("serve", help="run every component in one process")
    p_serve.add_argument("--config", "-c", help="YAML configuration file (Tempo-shaped); defaults if omitted")
    p_check = sub.add_parser("check-config", help="validate a configuration file and exit")
    p_check.add_argument("--config", "-c", required=True)
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"tempo-lite: configuration error: {exc.message}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "check-config":
        print(f"{args.config}: ok")
        return 0
    setup_logging(config)
    try:
        trio.run(serve, config)
    except BaseException as exc:  # trio wraps task errors in exception groups: report the cause
        cause = first_leaf(exc)
        if isinstance(cause, ConfigError):
            print(f"tempo-lite: configuration error: {cause.message}", file=sys.stderr)
            return EXIT_CONFIG
        if isinstance(cause, StorageError):
            print(f"tempo-lite: storage error: {cause.message}", file=sys.stderr)
            return 1
        if isinstance(cause, OSError):
            print(f"tempo-lite: {cause}", file=sys.stderr)
            return 1
        raise
    return 0


def first_leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


if __name__ == "__main__":
    sys.exit(main())

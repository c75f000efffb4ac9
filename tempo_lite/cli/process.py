"""What the long-running commands (`serve`, `capture`) share as processes: log format and level, and how an
error that stops one is reported: `report_failure`, the one mapping from an exception to the lines printed
and the exit code (2 for a configuration or usage error)."""

from __future__ import annotations

import json
import logging
import sys
import time

from tempo_lite.config import Config
from tempo_lite.errors import ConfigError, StorageError, TempoLiteError

EXIT_CONFIG = 2
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130  # the shell's 128 + SIGINT


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


def first_leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def report_failure(exc: BaseException, prog: str = "tempo-lite") -> int:
    """Print what stopped the command `prog` on stderr, one line per problem, and return its exit code.

    `exc` may be trio's exception group around the cause. Configuration errors print one line per problem,
    each naming the file and line (`ConfigError` carries them newline-separated), exit 2; so does a missing
    module (a broken install). Storage and other tempo-lite errors, and OS errors (a port in use, a
    directory not writable), print one line, exit 1; Ctrl-C exits 130 quietly. Anything else is a bug: it is
    raised again, with its traceback."""
    cause = first_leaf(exc)
    if isinstance(cause, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(cause, ConfigError):
        for line in cause.message.splitlines():
            print(f"{prog}: configuration error: {line}", file=sys.stderr)
        return EXIT_CONFIG
    if isinstance(cause, ImportError):
        print(f"{prog}: cannot start: {cause} (reinstall tempo-lite: pip install -e .)", file=sys.stderr)
        return EXIT_CONFIG
    if isinstance(cause, StorageError):
        message = f"storage error: {cause.message}"
    elif isinstance(cause, TempoLiteError):  # e.g. BlockConflict: one line naming what and why
        message = cause.message
    elif isinstance(cause, OSError):
        message = str(cause)
    else:
        raise exc
    print(f"{prog}: {message}", file=sys.stderr)
    return EXIT_FAILED

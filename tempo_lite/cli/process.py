"""What the long-running commands (`serve`, `capture`) share as processes: log format and level, the exit code
of a configuration or usage error, and the cause to report out of trio's exception groups."""

from __future__ import annotations

import json
import logging
import sys
import time

from tempo_lite.config import Config

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


def first_leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc

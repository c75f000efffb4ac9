"""What the client commands share: connection options, time ranges, errors and exit codes."""

from __future__ import annotations

import argparse
import re
import sys
import time
from datetime import datetime

from tempo_lite.cli.client import ClientError, TempoClient

EXIT_OK = 0
EXIT_FAILURE = 1  # the server said no, could not be reached, a file was bad, nothing found
EXIT_USAGE = 2  # bad arguments or an invalid query (HTTP 400)

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h|d|w)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class UsageError(Exception):
    pass


def parse_duration(text: str) -> int:
    """`90s`, `15m`, `1h`, `2d`, `1w` -> seconds."""
    m = _DURATION.match(text.strip())
    if not m:
        raise UsageError(f"invalid duration {text!r} (use e.g. 30s, 15m, 1h, 2d)")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def parse_time(text: str) -> int:
    """Unix seconds, or an RFC 3339 / ISO 8601 time (`2024-05-01T10:00:00Z`) -> unix seconds."""
    t = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", t):
        return int(float(t))
    try:
        return int(datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp())
    except ValueError as exc:
        raise UsageError(f"invalid time {text!r} (use unix seconds or 2024-05-01T10:00:00Z)") from exc


def time_range(args: argparse.Namespace, now: float | None = None) -> tuple[int, int]:
    now_s = int(now if now is not None else time.time())
    if args.start or args.end:
        if args.since:
            raise UsageError("give either --since or --start/--end, not both")
        end = parse_time(args.end) if args.end else now_s
        start = parse_time(args.start) if args.start else end - 3600
    else:
        end = now_s + 1
        start = end - parse_duration(args.since or "1h")
    if end <= start:
        raise UsageError("the end of the time range must be after its start")
    return start, end


def add_connection(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default="http://127.0.0.1:3200",
                   help="tempo-lite (or Tempo) query API (default %(default)s)")
    p.add_argument("--tenant", default="", help="tenant ID sent as X-Scope-OrgID (when multitenancy is on)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per HTTP call (default %(default)s)")


def add_time_range(p: argparse.ArgumentParser, default_since: str = "1h") -> None:
    p.add_argument("--since", default=None, metavar="DURATION",
                   help=f"look back this far from now: 30s, 15m, 1h, 2d (default {default_since})")
    p.add_argument("--start", default=None, metavar="TIME", help="range start: unix seconds or RFC 3339")
    p.add_argument("--end", default=None, metavar="TIME", help="range end: unix seconds or RFC 3339 (default now)")


def client(args: argparse.Namespace) -> TempoClient:
    return TempoClient(url=args.url, tenant=args.tenant, timeout=args.timeout)


def fail(command: str, exc: Exception) -> int:
    """Report an error on stderr; the exit code a shell user expects."""
    if isinstance(exc, UsageError):
        print(f"tempo-lite {command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if isinstance(exc, ClientError):
        print(f"tempo-lite {command}: {exc.message}", file=sys.stderr)
        return EXIT_USAGE if exc.status == 400 else EXIT_FAILURE
    raise exc


def example_epilog(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)

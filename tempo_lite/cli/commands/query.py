"""`tempo-lite query '<TraceQL>'`: search a server, print a table of traces or the JSON answer."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from tempo_lite.cli.commands.common import (
    UsageError,
    add_connection,
    add_time_range,
    client,
    example_epilog,
    fail,
    time_range,
)
from tempo_lite.cli.commands.tree import fmt_duration


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "query", help="search traces with TraceQL on a running server",
        description="Search a running tempo-lite (or Tempo) with TraceQL and print the matching traces. "
        "Exit code 0 (also when nothing matches), 1 when the server fails or cannot be reached, "
        "2 for bad arguments or an invalid query.",
        epilog=example_epilog(
            "tempo-lite query '{ resource.service.name = \"checkout\" && status = error }' --since 15m",
            "tempo-lite query '{ duration > 1s }' --start 2024-05-01T10:00:00Z --end 2024-05-01T11:00:00Z -o json",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("traceql", metavar="TRACEQL", help="the TraceQL query, e.g. '{ status = error }'")
    add_time_range(p)
    p.add_argument("--limit", type=int, default=20, help="most traces to return (default %(default)s)")
    p.add_argument("-o", "--output", choices=("table", "json"), default="table", help="output format (default table)")
    add_connection(p)
    p.set_defaults(run=run)


def _span_count(t: dict[str, Any]) -> int:
    return sum(int(s.get("spanCount", 0)) for s in (t.get("serviceStats") or {}).values())


def _errors(t: dict[str, Any]) -> int:
    return sum(int(s.get("errorCount", 0)) for s in (t.get("serviceStats") or {}).values())


def table(traces: list[dict[str, Any]]) -> str:
    """Aligned columns: trace ID, root service, root span, start (UTC), duration, spans, errors."""
    head = ("TRACE ID", "ROOT SERVICE", "ROOT SPAN", "START (UTC)", "DURATION", "SPANS", "ERRORS")
    rows = [head]
    for t in traces:
        start_ns = int(t.get("startTimeUnixNano", 0))
        rows.append((
            t.get("traceID", ""),
            t.get("rootServiceName", "") or "<root not received>",
            t.get("rootTraceName", ""),
            time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(start_ns / 1e9)),
            fmt_duration(int(t.get("durationMs", 0)) * 1_000_000) if "durationMs" in t else "<1ms",
            str(_span_count(t)),
            str(_errors(t)),
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    right = {4, 5, 6}
    lines = []
    for r in rows:
        cells = [c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(r)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    try:
        if args.limit < 1:
            raise UsageError("--limit must be at least 1")
        start, end = time_range(args)
        doc = client(args).search(args.traceql, start, end, args.limit)
    except Exception as exc:  # noqa: BLE001 - fail() re-raises what it does not know
        return fail("query", exc)
    traces = doc.get("traces") or []
    if args.output == "json":
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(table(traces))
        print(f"{len(traces)} trace(s)", file=sys.stderr)
    return 0

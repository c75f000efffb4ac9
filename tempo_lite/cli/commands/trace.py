"""`tempo-lite trace <id>`: one trace from a running server as a terminal waterfall, JSON or OTLP/JSON."""

from __future__ import annotations

import argparse
import json
import shutil
import sys

from google.protobuf import json_format

from tempo_lite.cli.commands.common import EXIT_FAILURE, add_connection, client, example_epilog, fail
from tempo_lite.cli.commands.tree import render
from tempo_lite.receivers.otlp_json import encode_otlp_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "trace", help="print one trace as a terminal waterfall (or JSON)",
        description="Fetch a trace by ID from a running tempo-lite (or Tempo). Output: `tree`, the span tree "
        "with a time bar per span (errors marked !); `json`, the API's answer (/api/v2/traces); `otlp`, "
        "OTLP/JSON with hex IDs (what `tempo-lite import` reads). Exit code 1 when the trace is not found.",
        epilog=example_epilog(
            "tempo-lite trace 2f3e0cbd1a4b4c9b8e6b0e4f6d2a1c3b",
            "tempo-lite trace 2f3e0cbd1a4b4c9b8e6b0e4f6d2a1c3b -o otlp > trace.json",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("trace_id", metavar="TRACE_ID", help="trace ID in hex (up to 32 digits)")
    p.add_argument("-o", "--output", choices=("tree", "json", "otlp"), default="tree",
                   help="output format (default tree)")
    p.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                   help="colour errors in the tree (default: when stdout is a terminal)")
    add_connection(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        traces = client(args).trace(args.trace_id)
    except Exception as exc:  # noqa: BLE001 - fail() re-raises what it does not know
        return fail("trace", exc)
    if traces is None:
        print(f"tempo-lite trace: trace {args.trace_id} not found", file=sys.stderr)
        return EXIT_FAILURE
    if args.output == "otlp":
        json.dump(encode_otlp_json(traces), sys.stdout, indent=1)
        sys.stdout.write("\n")
    elif args.output == "json":
        json.dump({"trace": json_format.MessageToDict(traces)}, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        color = args.color == "always" or (args.color == "auto" and sys.stdout.isatty())
        width = shutil.get_terminal_size((120, 24)).columns
        for line in render(traces, width=width, color=color):
            print(line)
    return 0

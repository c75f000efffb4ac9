"""`tempo-lite import FILE...` and `tempo-lite export '<TraceQL>'`: move traces in and out of a server.

Import decodes each whole file before sending any of it (formats.decode_file), so a bad file is refused
with where it went wrong and nothing of it is imported; good files are pushed over OTLP/HTTP in batches.
Export searches, fetches every matching trace by ID and writes one OTLP/JSON TracesData (hex IDs), the
format import reads back unchanged.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import IO

from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from tempo_lite.cli.client import ClientError
from tempo_lite.cli.commands.common import (
    EXIT_FAILURE,
    UsageError,
    add_connection,
    add_time_range,
    client,
    example_epilog,
    fail,
    time_range,
)
from tempo_lite.receivers.otlp_json import encode_otlp_json

PROGRESS_MIN_SPANS = 5000
RETRY_STATUSES = {429, 502, 503, 504}


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import", help="send trace files (OTLP JSON/protobuf, Jaeger JSON, Zipkin JSON) to a server",
        description="Read trace files and push their spans to a running tempo-lite over OTLP/HTTP. Formats are "
        "recognised by content: OTLP/JSON (what `capture --export` and `export` write, also one document per "
        "line), OTLP protobuf, Jaeger JSON (the Jaeger UI's download) and Zipkin JSON v2/v1. A file is decoded "
        "completely before any of it is sent: a bad file is refused with its line/column or byte offset and "
        "nothing of it is imported. Exit code 0 when every file was imported, 1 when any was refused or the "
        "server failed, 2 for bad arguments.",
        epilog=example_epilog("tempo-lite import traces.json jaeger-download.json zipkin.json",
                              "tempo-lite capture --export run.json -- pytest && tempo-lite import run.json",
                              "tempo-lite import --check *.json    # validate only, send nothing"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="trace file(s); - reads standard input")
    p.add_argument("--otlp-url", default="http://127.0.0.1:4318/v1/traces",
                   help="OTLP/HTTP traces endpoint to push to (default %(default)s)")
    p.add_argument("--check", action="store_true", help="only decode and validate the files; send nothing")
    p.add_argument("--batch-spans", type=int, default=2000, help="spans per push (default %(default)s)")
    p.add_argument("--progress", choices=("auto", "always", "never"), default="auto",
                   help=f"progress bar on stderr (auto: a terminal and at least {PROGRESS_MIN_SPANS} spans)")
    p.add_argument("--quiet", "-q", action="store_true", help="no summary lines on stderr")
    add_connection(p)
    p.set_defaults(run=run_import)

    p = sub.add_parser(
        "export", help="write the traces a TraceQL query matches as OTLP/JSON",
        description="Search a running tempo-lite with TraceQL, fetch every matching trace and write them as one "
        "OTLP/JSON TracesData document (hex IDs), which `tempo-lite import` reads back unchanged. Exit code 0 "
        "(also when nothing matches: an empty document), 1 when the server fails, 2 for bad arguments or an "
        "invalid query.",
        epilog=example_epilog("tempo-lite export '{ resource.service.name = \"checkout\" }' --since 2h > traces.json",
                              "tempo-lite export '{ status = error }' --limit 50 -o errors.json"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("traceql", metavar="TRACEQL", help="which traces, e.g. '{ }' for all")
    add_time_range(p)
    p.add_argument("--limit", type=int, default=1000, help="most traces to export (default %(default)s)")
    p.add_argument("-o", "--output", metavar="FILE", default="-", help="write here instead of standard output")
    add_connection(p)
    p.set_defaults(run=run_export)


class Progress:
    def __init__(self, label: str, total: int, stream: IO[str], enabled: bool) -> None:
        self.label, self.total, self.stream, self.enabled = label, total, stream, enabled
        self.done = 0
        self._last = 0.0

    def advance(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and (now - self._last > 0.1 or self.done >= self.total):
            self._last = now
            width = 30
            filled = int(width * self.done / max(1, self.total))
            pct = 100 * self.done // max(1, self.total)
            self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {pct:3d}% "
                              f"{self.done:,}/{self.total:,} spans")
            self.stream.flush()

    def finish(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


def _read(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    with open(path, "rb") as f:
        return f.read()


def _push_with_retry(args: argparse.Namespace, request) -> None:  # noqa: ANN001 - ExportTraceServiceRequest
    delay = 0.5
    for attempt in range(6):
        try:
            client(args).push(args.otlp_url, request)
            return
        except ClientError as exc:
            if exc.status not in RETRY_STATUSES or attempt == 5:
                raise
            time.sleep(delay)
            delay = min(8.0, delay * 2)


def run_import(args: argparse.Namespace) -> int:
    from tempo_lite.cli.commands.formats import FileFormatError, batches, decode_file  # the receivers' decoders

    if args.batch_spans < 1:
        return fail("import", UsageError("--batch-spans must be at least 1"))
    refused = 0
    for path in args.files:
        name = "<stdin>" if path == "-" else path
        try:
            data = _read(path)
        except OSError as exc:
            print(f"tempo-lite import: {name}: cannot read: {exc.strerror}", file=sys.stderr)
            refused += 1
            continue
        try:
            decoded = decode_file(data)
        except FileFormatError as exc:
            print(f"tempo-lite import: {name}: {exc.message}; nothing of this file was imported", file=sys.stderr)
            refused += 1
            continue
        if args.check:
            if not args.quiet:
                print(f"{name}: {decoded.format}, {decoded.spans} spans: ok", file=sys.stderr)
            continue
        show = args.progress == "always" or (args.progress == "auto" and sys.stderr.isatty()
                                              and decoded.spans >= PROGRESS_MIN_SPANS)
        progress = Progress(name, decoded.spans, sys.stderr, show)
        try:
            for batch in batches(decoded.request, max_spans=args.batch_spans):
                _push_with_retry(args, batch)
                progress.advance(sum(len(ss.spans) for rs in batch.resource_spans for ss in rs.scope_spans))
        except ClientError as exc:
            progress.finish()
            print(f"tempo-lite import: {name}: {exc.message} ({progress.done} of {decoded.spans} spans were "
                  "imported before the failure)", file=sys.stderr)
            return EXIT_FAILURE
        progress.finish()
        if not args.quiet:
            print(f"{name}: imported {decoded.spans} spans ({decoded.format})", file=sys.stderr)
    return EXIT_FAILURE if refused else 0


def run_export(args: argparse.Namespace) -> int:
    try:
        if args.limit < 1:
            raise UsageError("--limit must be at least 1")
        start, end = time_range(args)
        api = client(args)
        found = api.search(args.traceql, start, end, args.limit).get("traces") or []
        found.sort(key=lambda t: (int(t.get("startTimeUnixNano", 0)), t.get("traceID", "")))
        merged = TracesData()
        missing = 0
        for t in found:
            trace = api.trace(t["traceID"])
            if trace is None:
                missing += 1
                continue
            merged.resource_spans.extend(trace.resource_spans)
    except Exception as exc:  # noqa: BLE001 - fail() re-raises what it does not know
        return fail("export", exc)
    body = json.dumps(encode_otlp_json(merged), indent=1) + "\n"
    if args.output == "-":
        sys.stdout.write(body)
    else:
        try:
            with open(args.output, "w") as f:
                f.write(body)
        except OSError as exc:
            print(f"tempo-lite export: {args.output}: {exc.strerror}", file=sys.stderr)
            return EXIT_FAILURE
    spans = sum(len(ss.spans) for rs in merged.resource_spans for ss in rs.scope_spans)
    note = f" ({missing} expired between search and fetch)" if missing else ""
    print(f"exported {len(found) - missing} trace(s), {spans} spans{note}", file=sys.stderr)
    return 0

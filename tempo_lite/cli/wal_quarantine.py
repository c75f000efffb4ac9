"""`tempo-lite wal quarantine list|show|drop --config FILE`: inspect and drop set-aside WAL records."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from tempo_lite.wal.quarantine import drop, list_set_aside, payload_of, quarantine_dir


def add_wal_parser(sub: argparse._SubParsersAction) -> None:
    p_wal = sub.add_parser("wal", help="inspect the write-ahead log")
    wal_sub = p_wal.add_subparsers(dest="wal_command", required=True)
    p_q = wal_sub.add_parser("quarantine", help="WAL records set aside because a consumer could not take them")
    q_sub = p_q.add_subparsers(dest="quarantine_command", required=True)
    for name, help_text in (("list", "one line per set-aside record"),
                            ("show", "one record: where it was, why, and its spans as OTLP/JSON when decodable"),
                            ("drop", "delete set-aside records for good")):
        p = q_sub.add_parser(name, help=help_text)
        p.add_argument("--config", "-c", required=True)
        if name in ("show", "drop"):
            p.add_argument("records", nargs="*" if name == "drop" else 1, metavar="pP-oO",
                           help="record key as `list` prints it, e.g. p0-o42")
        if name == "drop":
            p.add_argument("--all", action="store_true", help="drop every set-aside record")


def wal_main(args: argparse.Namespace, wal_path: str) -> int:
    directory = quarantine_dir(wal_path)
    command = args.quarantine_command
    if command == "list":
        entries = list_set_aside(directory)
        for e in entries:
            print(f"{e.key}\ttenant={e.tenant}\tstage={e.stage}\tbytes={e.payload_bytes}\terror={e.error}")
        print(f"{len(entries)} set-aside record(s) in {directory}", file=sys.stderr)
        return 0
    if command == "show":
        key = args.records[0]
        by_key = {e.key: e for e in list_set_aside(directory)}
        if key not in by_key:
            print(f"tempo-lite wal quarantine: no set-aside record {key} in {directory}", file=sys.stderr)
            return 1
        doc = asdict(by_key[key])
        doc["spans"] = _as_otlp_json(payload_of(directory, key))
        print(json.dumps(doc, indent=2))
        return 0
    keys = [e.key for e in list_set_aside(directory)] if args.all else list(args.records)
    if not keys:
        print("tempo-lite wal quarantine drop: name records (pP-oO) or --all", file=sys.stderr)
        return 2
    missing = [k for k in keys if not drop(directory, k)]
    for k in missing:
        print(f"tempo-lite wal quarantine: no set-aside record {k} in {directory}", file=sys.stderr)
    print(f"dropped {len(keys) - len(missing)} record(s)", file=sys.stderr)
    return 1 if missing else 0


def _as_otlp_json(payload: bytes) -> object:
    from google.protobuf import json_format
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

    try:
        return json_format.MessageToDict(TracesData.FromString(payload))
    except (DecodeError, ValueError) as exc:
        return f"<{len(payload)} bytes, not decodable as OTLP TracesData: {exc}>"

"""The client commands of `tempo-lite`: query, trace, import, export talk to a running server's HTTP API
(tempo_lite.cli.client); ring reads and writes a split deployment's partition ring on its broker.
`register` adds them to the main parser in tempo_lite/cli/main.py and each parser carries its handler as
`args.run`."""

from __future__ import annotations

import argparse

from tempo_lite.cli.commands import query, ring, trace, transfer

NAMES = ("query", "trace", "import", "export", "ring")


def register(sub: argparse._SubParsersAction) -> None:
    query.add_parser(sub)
    trace.add_parser(sub)
    transfer.add_parsers(sub)
    ring.add_parser(sub)


def run(args: argparse.Namespace) -> int:
    return args.run(args)

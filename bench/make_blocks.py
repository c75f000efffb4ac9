"""Write synthetic blocks straight into a local store (no ingest), for the trace-by-ID and size benchmarks.

    .venv/bin/python bench/make_blocks.py DIR [--blocks 10] [--spans-per-block 500000] [--tenant single-tenant]

Blocks land in DIR/blocks/<tenant>/<block-id>/ (the layout `tempo-lite serve` reads with
`storage.trace.local.path: DIR/blocks`). Prints bytes per span of each block and in total.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import trio  # noqa: E402
from payloads import BASE_NS, span_table  # noqa: E402

from tempo_lite.block.meta import block_id_for  # noqa: E402
from tempo_lite.block.writer import encode_block, write_block  # noqa: E402
from tempo_lite.storage.store import local_store  # noqa: E402


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path)
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--spans-per-block", type=int, default=500_000)
    parser.add_argument("--tenant", default="single-tenant")
    parser.add_argument("--row-group-spans", type=int, default=None, help="default: the writer's default")
    args = parser.parse_args()
    store = local_store(str(args.dir / "blocks"))
    total_bytes = total_spans = 0
    for i in range(args.blocks):
        t0 = time.perf_counter()
        # Each block covers its own ~hour so blocks do not all overlap in time.
        table = span_table(args.spans_per_block, seed=1000 + i, start_ns=BASE_NS + i * 3_600_000_000_000)
        kwargs = {"row_group_spans": args.row_group_spans} if args.row_group_spans else {}
        block = encode_block(table, block_id=block_id_for(args.tenant, 0, i), tenant=args.tenant, **kwargs)
        await write_block(store, block)
        total_bytes += block.meta.size_bytes
        total_spans += block.meta.total_spans
        per_span = block.meta.size_bytes / block.meta.total_spans
        print(f"block {i}: {block.meta.total_spans} spans, {per_span:.1f} B/span, "
              f"{len(block.meta.row_groups)} row groups, {time.perf_counter() - t0:.1f}s", flush=True)
    print(f"total: {total_spans} spans, {total_bytes} bytes, {total_bytes / max(1, total_spans):.1f} B/span")


if __name__ == "__main__":
    trio.run(main)

"""Rewrite a local store's visible blocks in another block format, into a new directory (benchmarks).

    .venv/bin/python bench/convert_blocks.py SRC DST [--format tl2] [--level0]

Reads every block of SRC/blocks that has a meta.json (with `--level0`: instead every block-builder block,
compacted or not, i.e. the store as the block-builder left it before compaction) and writes it to
DST/blocks with the same block ID, tenant and source fields in `--format`, with the writer's defaults
(what the compactor would write). Other files of SRC (wide.parquet, generated.json) are linked into DST,
so `bench/query_vs_duckdb.py --dir DST --reuse` runs on the converted blocks. Prints bytes per span.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trio  # noqa: E402

from tempo_lite.block import paths  # noqa: E402
from tempo_lite.block.meta import FORMAT_VERSION, BlockMeta  # noqa: E402
from tempo_lite.block.reader import open_block  # noqa: E402
from tempo_lite.block.writer import encode_block, write_block  # noqa: E402
from tempo_lite.storage.cache import ByteCache  # noqa: E402
from tempo_lite.storage.store import local_store  # noqa: E402


def source_metas(root: Path, level0: bool) -> list[BlockMeta]:
    metas = []
    for block in sorted(p for p in root.glob("*/*") if p.is_dir()):
        live, retired = block / paths.META, block / paths.COMPACTED_META
        if level0:
            path = live if live.exists() else retired
            if not path.exists():
                continue
            meta = BlockMeta.from_json(path.read_bytes())
            if meta.compaction_level == 0:
                metas.append(meta)
        elif live.exists() and not retired.exists():
            metas.append(BlockMeta.from_json(live.read_bytes()))
    return metas


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path)
    parser.add_argument("dst", type=Path)
    parser.add_argument("--format", default=FORMAT_VERSION)
    parser.add_argument("--level0", action="store_true", help="the block-builder's blocks, before compaction")
    args = parser.parse_args()
    args.dst.mkdir(parents=True, exist_ok=True)
    for name in ("wide.parquet", "generated.json"):
        if (args.src / name).exists() and not (args.dst / name).exists():
            os.link(args.src / name, args.dst / name)
    src, dst = local_store(str(args.src / "blocks")), local_store(str(args.dst / "blocks"))
    total_bytes = total_spans = 0
    for meta in source_metas(args.src / "blocks", args.level0):
        t0 = time.perf_counter()
        table = await open_block(src, meta, ByteCache(1 << 30)).read_all()
        block = encode_block(
            table, block_id=meta.block_id, tenant=meta.tenant, compaction_level=meta.compaction_level,
            source=(meta.source_partition, meta.source_first_offset, meta.source_end_offset),
            source_wal=meta.source_wal, source_digest=meta.source_digest, format=args.format,
        )
        await write_block(dst, block)
        total_bytes += block.meta.size_bytes
        total_spans += block.meta.total_spans
        print(f"{meta.block_id}: {meta.format} -> {block.meta.format}, {block.meta.total_spans} spans, "
              f"{meta.size_bytes / meta.total_spans:.1f} -> {block.meta.size_bytes / block.meta.total_spans:.1f} "
              f"B/span, {time.perf_counter() - t0:.1f}s", flush=True)
    print(f"total: {total_spans} spans, {total_bytes / max(1, total_spans):.2f} B/span")


if __name__ == "__main__":
    trio.run(main)

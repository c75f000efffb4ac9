"""The compactor's merge of several blocks' spans into one encoded block, in slices that share the GIL.

A merge of blocks with millions of spans spends seconds in steps that hold the GIL without a break
(`with_nested_sets` turns every span's IDs into Python objects, `dedupe_spans` builds a Python range
of the row count): measured over 4 x 200k spans, single steps kept the event loop from running for
1.2 s and 3.2 s (docs/benchmarks.md, "Compaction and query latency"). Queries served by the same
process waited that long.

Dedupe, sort and nested-set numbering only ever look at one trace at a time, so the merged spans are
sorted by trace ID once (Arrow kernels, which release the GIL) and then processed in slices of whole
traces, each slice in its own worker-thread call, with the event loop free in between. The result is
the same block `encode_block` writes from the whole table:

* sorting before deduping keeps the same copy of a duplicated span: copies agree on trace ID and start
  time, so the stable sort keeps them in input order and the first stays first;
* every slice keeps the merged `resources` table, so `resource_index` means the same in each slice.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import trio

from tempo_lite import spantable
from tempo_lite.block.writer import EncodedBlock, encode_block

# Spans per slice: the longest GIL-holding step of a slice takes ~4 ms per 1k spans on the 2-core
# machine, so a slice of 8k holds the event loop off for some 30 ms at worst.
SLICE_SPANS = 8192
# After each slice the merge waits as long as the slice took, so a worker thread holds the GIL at most
# half the time while queries compete for it (the slices' part of a compaction takes twice as long:
# ~8 s instead of ~4 s for 800k spans; reading and encoding take longer).
SLICE_PAUSE = 1.0


def sorted_merge(tables: Sequence[spantable.SpanTable]) -> spantable.SpanTable:
    """The blocks' spans in one table (dedicated columns folded back), sorted by trace ID and start."""
    return spantable.sort_by_trace(spantable.concat(list(tables)))


def trace_slices(trace_ids: pa.ChunkedArray | pa.Array, target: int) -> list[tuple[int, int]]:
    """Row ranges [lo, hi) of about `target` rows covering every row, never splitting a trace (rows
    sorted by trace ID)."""
    n = len(trace_ids)
    if n == 0:
        return []
    ids = trace_ids.combine_chunks() if isinstance(trace_ids, pa.ChunkedArray) else trace_ids
    changed = pc.not_equal(ids.slice(1), ids.slice(0, n - 1)).to_numpy(zero_copy_only=False)
    starts = np.concatenate([[0], np.flatnonzero(changed) + 1, [n]]).astype(np.int64)
    wanted = np.arange(target, n, max(1, target), dtype=np.int64)
    cuts = np.unique(np.concatenate([[0], starts[np.searchsorted(starts, wanted)], [n]]))
    return [(int(lo), int(hi)) for lo, hi in zip(cuts[:-1], cuts[1:], strict=True)]


def prepare_slice(table: spantable.SpanTable, lo: int, hi: int) -> pa.Table:
    """Rows [lo, hi) of a sorted merge (whole traces), deduplicated and numbered with nested sets."""
    part = spantable.SpanTable(table.spans.slice(lo, hi - lo), table.resources, dict(table.dedicated))
    return spantable.with_nested_sets(spantable.dedupe_spans(part)).spans


async def merge_in_slices(
    tables: Sequence[spantable.SpanTable],
    limiter: trio.CapacityLimiter,
    *,
    slice_spans: int = SLICE_SPANS,
    pause: float = SLICE_PAUSE,
    **encode_args: Any,
) -> EncodedBlock:
    """Merge and encode the tables as `encode_block` would, every step in a worker thread under
    `limiter`, the per-trace work in slices of about `slice_spans` spans, each followed by a pause of
    `pause` times the time it took."""
    merged = await trio.to_thread.run_sync(sorted_merge, list(tables), limiter=limiter)
    slices = await trio.to_thread.run_sync(trace_slices, merged.spans.column("trace_id"), slice_spans,
                                           limiter=limiter)
    parts = []
    for lo, hi in slices:
        began = trio.current_time()
        parts.append(await trio.to_thread.run_sync(prepare_slice, merged, lo, hi, limiter=limiter))
        await trio.sleep(pause * (trio.current_time() - began))
    if parts:
        spans = pa.concat_tables(parts)
    else:
        spans = prepare_slice(merged, 0, 0)
    prepared = spantable.SpanTable(spans, merged.resources)
    return await trio.to_thread.run_sync(partial(encode_block, prepared, prepared_spans=True, **encode_args),
                                         limiter=limiter)

"""Query-frontend sharding: which jobs a search or trace-by-ID query is split into (pure, no I/O).

A job names the sources one querier process searches: some live-stores (each with the WAL partitions it
serves) and some blocks (by ID). Distributors shard spans over WAL partitions by trace ID, so every trace
lives in one partition: a job holding a live-store together with the blocks built from that live-store's
partitions (`BlockMeta.source_partition`) sees each of its traces whole, and its answer is the one the
single process gives for those traces. Blocks of no partition (compacted blocks mix partitions) are
spread over further jobs of at most `blocks_per_job` blocks, as Tempo's frontend shards blocks; a trace
with spans in two such jobs is evaluated per part (as in Tempo), and the combiner keeps one result per
trace. docs/scaling.md, "Query-frontend sharding".
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from tempo_lite.block.meta import BlockMeta
from tempo_lite.config import LiveStoreInstance
from tempo_lite.errors import InvalidRequest

BLOCKS_PER_JOB = 16


@dataclass(frozen=True)
class Job:
    """What one querier searches: these live-stores (none: no recent data) and these blocks of `tenant`."""

    tenant: str
    live_stores: tuple[LiveStoreInstance, ...]
    block_ids: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        return {
            "tenant": self.tenant,
            "live_stores": [{"url": i.url, "partitions": list(i.partitions)} for i in self.live_stores],
            "blocks": list(self.block_ids),
        }

    @classmethod
    def from_json(cls, raw: object) -> Job:
        """A job as a querier receives it; a malformed one is InvalidRequest (400)."""
        try:
            assert isinstance(raw, dict)
            tenant = raw["tenant"]
            live = tuple(
                LiveStoreInstance(url=str(i["url"]), partitions=tuple(int(p) for p in i["partitions"]))
                for i in raw["live_stores"]
            )
            blocks = tuple(str(b) for b in raw["blocks"])
            assert isinstance(tenant, str)
        except (AssertionError, KeyError, TypeError, ValueError) as exc:
            raise InvalidRequest(f"invalid querier job: {json.dumps(raw)[:200]}") from exc
        return cls(tenant, live, blocks)

    def describe(self) -> str:
        live = ",".join(i.url for i in self.live_stores) or "no live-store"
        return f"job ({live}; {len(self.block_ids)} blocks)"


def plan_jobs(
    tenant: str,
    live_stores: Sequence[LiveStoreInstance],
    partitions: int,
    blocks: Sequence[BlockMeta],
    *,
    blocks_per_job: int = BLOCKS_PER_JOB,
) -> list[Job]:
    """The jobs of one tenant's query: one per live-store with its partitions' blocks, then the others.

    `blocks` are the blocks the query reads (already narrowed to its time range; none for a query of
    recent data only); every block and every live-store is in exactly one job."""
    if blocks_per_job <= 0:
        raise ValueError(f"blocks_per_job must be positive, got {blocks_per_job}")
    owner: dict[int, int] = {}
    for index, instance in enumerate(live_stores):
        for p in instance.partitions or range(partitions):
            owner.setdefault(p, index)
    grouped: list[list[str]] = [[] for _ in live_stores]
    rest: list[str] = []
    for meta in blocks:
        if meta.source_partition in owner:
            grouped[owner[meta.source_partition]].append(meta.block_id)
        else:
            rest.append(meta.block_id)
    jobs = [Job(tenant, (instance,), tuple(ids)) for instance, ids in zip(live_stores, grouped, strict=True)]
    jobs += [Job(tenant, (), tuple(rest[i:i + blocks_per_job])) for i in range(0, len(rest), blocks_per_job)]
    return jobs

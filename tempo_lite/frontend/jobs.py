"""Query-frontend sharding: which jobs a search or trace-by-ID query is split into (pure, no I/O).

A job names the sources one querier process searches: some live-stores (each with the WAL partitions it
serves and its zone) and some blocks (by ID). Distributors shard spans over WAL partitions by trace ID, so
every trace lives in one partition: a job holding a live-store together with the blocks built from that
live-store's partitions (`BlockMeta.source_partition`) sees each of its traces whole, and its answer is the
one the single process gives for those traces. Live-stores sharing a partition (zone twins) share a job:
the querier asks one of them per partition and falls back to the other (frontend/remote_live.py). Blocks
of no partition (compacted blocks mix partitions) are spread over further jobs of at most `blocks_per_job`
blocks, as Tempo's frontend shards blocks; a trace with spans in two such jobs is evaluated per part (as in
Tempo), and the combiner keeps one result per trace. docs/scaling.md, "Query-frontend sharding".
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
            "live_stores": [{"url": i.url, "partitions": list(i.partitions), "zone": i.zone}
                            for i in self.live_stores],
            "blocks": list(self.block_ids),
        }

    @classmethod
    def from_json(cls, raw: object) -> Job:
        """A job as a querier receives it; a malformed one is InvalidRequest (400)."""
        try:
            assert isinstance(raw, dict)
            tenant = raw["tenant"]
            live = tuple(
                LiveStoreInstance(url=str(i["url"]), partitions=tuple(int(p) for p in i["partitions"]),
                                  zone=str(i.get("zone", "")))
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
    """The jobs of one tenant's query: one per live-store (with its zone twins: live-stores sharing a
    partition) with its partitions' blocks, then the others.

    `blocks` are the blocks the query reads (already narrowed to its time range; none for a query of
    recent data only); every block and every live-store is in exactly one job."""
    if blocks_per_job <= 0:
        raise ValueError(f"blocks_per_job must be positive, got {blocks_per_job}")
    groups = replica_groups(live_stores, partitions)
    owner = {p: index for index, group in enumerate(groups) for i in group for p in i.partitions or range(partitions)}
    grouped: list[list[str]] = [[] for _ in groups]
    rest: list[str] = []
    for meta in blocks:
        if meta.source_partition in owner:
            grouped[owner[meta.source_partition]].append(meta.block_id)
        else:
            rest.append(meta.block_id)
    jobs = [Job(tenant, group, tuple(ids)) for group, ids in zip(groups, grouped, strict=True)]
    jobs += [Job(tenant, (), tuple(rest[i:i + blocks_per_job])) for i in range(0, len(rest), blocks_per_job)]
    return jobs


def replica_groups(live_stores: Sequence[LiveStoreInstance], partitions: int) -> list[tuple[LiveStoreInstance, ...]]:
    """The live-stores in groups that share partitions (transitively), each in the listed order, groups
    ordered by their first live-store: without zones, one live-store per group."""
    parent = list(range(len(live_stores)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[int, int] = {}
    for index, instance in enumerate(live_stores):
        for p in instance.partitions or range(partitions):
            if p in first:
                a, b = root(first[p]), root(index)
                parent[max(a, b)] = min(a, b)
            else:
                first[p] = index
    groups: dict[int, list[LiveStoreInstance]] = {}
    for index, instance in enumerate(live_stores):
        groups.setdefault(root(index), []).append(instance)
    return [tuple(g) for _, g in sorted(groups.items())]

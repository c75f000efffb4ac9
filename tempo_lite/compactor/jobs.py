"""Compactor jobs: what planning produces and executing consumes, for the in-process compactor and for the
backend-scheduler, which hands the same jobs to backend-worker processes (tempo_lite/backend/).

A job is plain data (it crosses HTTP as JSON): a `CompactionJob` names its input blocks (their metas), a
`RetentionJob` names the blocks of one tenant past `block_retention`. Executing either twice is harmless:
a compaction's output ID is derived from its inputs (`compacted_block_id`), so a rerun finds it and only
finishes marking the inputs; retention marks are idempotent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tempo_lite.block.meta import BlockMeta, compacted_block_id

# At most this many blocks are merged at once, which bounds the memory a compaction takes.
MAX_INPUT_BLOCKS = 8


@dataclass(frozen=True)
class CompactionJob:
    inputs: tuple[BlockMeta, ...]

    @property
    def tenant(self) -> str:
        return self.inputs[0].tenant

    @property
    def output_id(self) -> str:
        return compacted_block_id(self.tenant, [m.block_id for m in self.inputs])

    @property
    def job_id(self) -> str:
        return f"compaction-{self.output_id}"

    @property
    def block_ids(self) -> frozenset[str]:
        return frozenset(m.block_id for m in self.inputs)


@dataclass(frozen=True)
class RetentionJob:
    tenant: str
    expired: tuple[BlockMeta, ...]  # may be empty: the job still deletes marked blocks past their grace
    cutoff_ns: int

    @property
    def job_id(self) -> str:
        return f"retention-{self.tenant}"  # one per tenant at a time

    @property
    def block_ids(self) -> frozenset[str]:
        return frozenset(m.block_id for m in self.expired)


Job = CompactionJob | RetentionJob


def plan_compactions(
    metas: list[BlockMeta], *, window_ns: int, max_block_bytes: int, max_inputs: int = MAX_INPUT_BLOCKS
) -> list[list[BlockMeta]]:
    """Groups of blocks to merge: same compaction level, same time window, within the size bound."""
    buckets: dict[tuple[int, int], list[BlockMeta]] = {}
    for m in metas:
        buckets.setdefault((m.compaction_level, m.start_unix_nano // max(1, window_ns)), []).append(m)
    plans = []
    for _, group in sorted(buckets.items()):
        group.sort(key=lambda m: (m.start_unix_nano, m.block_id))
        current: list[BlockMeta] = []
        size = 0
        for m in group:
            if current and (size + m.size_bytes > max_block_bytes or len(current) >= max_inputs):
                if len(current) > 1:
                    plans.append(current)
                current, size = [], 0
            current.append(m)
            size += m.size_bytes
        if len(current) > 1:
            plans.append(current)
    return plans


def plan_tenant(
    tenant: str, blocks: list[BlockMeta], *, now: float, block_retention: float, window_ns: int,
    max_block_bytes: int, busy: frozenset[str] = frozenset(),
) -> list[Job]:
    """One tenant's jobs: first its retention job (blocks whose newest span is older than `block_retention`),
    then compactions of the rest. Blocks in `busy` (taken by jobs still running) are left out."""
    cutoff_ns = int((now - block_retention) * 1e9)
    free = [m for m in blocks if m.block_id not in busy]
    expired = tuple(m for m in free if m.end_unix_nano < cutoff_ns)
    gone = {m.block_id for m in expired}
    jobs: list[Job] = [RetentionJob(tenant, expired, cutoff_ns)]
    for inputs in plan_compactions([m for m in free if m.block_id not in gone], window_ns=window_ns,
                                   max_block_bytes=max_block_bytes):
        jobs.append(CompactionJob(tuple(inputs)))
    return jobs


def job_to_json(job: Job) -> bytes:
    body: dict[str, Any]
    if isinstance(job, CompactionJob):
        body = {"kind": "compaction", "inputs": [json.loads(m.to_json()) for m in job.inputs]}
    else:
        body = {"kind": "retention", "tenant": job.tenant, "cutoff_ns": job.cutoff_ns,
                "expired": [json.loads(m.to_json()) for m in job.expired]}
    return json.dumps(body).encode()


def job_from_json(raw: bytes | str) -> Job:
    """A job as `job_to_json` wrote it; ValueError naming what is wrong otherwise."""
    try:
        body = json.loads(raw)
        kind = body["kind"]
        if kind == "compaction":
            inputs = tuple(BlockMeta.from_json(json.dumps(m).encode()) for m in body["inputs"])
            if len(inputs) < 2 or len({m.tenant for m in inputs}) != 1:
                raise ValueError("a compaction job needs two or more blocks of one tenant")
            return CompactionJob(inputs)
        if kind == "retention":
            expired = tuple(BlockMeta.from_json(json.dumps(m).encode()) for m in body["expired"])
            return RetentionJob(str(body["tenant"]), expired, int(body["cutoff_ns"]))
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"invalid job: {exc}") from None
    raise ValueError(f"invalid job: unknown kind {kind!r}")

"""The list of visible blocks per tenant, polled from object storage (a block exists once meta.json does).

The block-builder and the compactor `add` and `remove` the blocks they write and retire; every process
`poll`s the store to see what other processes wrote. `warmers` (the querier registers one) are run for
blocks the list has not warmed yet after each poll, newest first, so that caches are loaded when the
list is refreshed rather than by the first query that touches a block.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio

from tempo_lite.block import paths
from tempo_lite.block.meta import BlockMeta
from tempo_lite.errors import StorageError
from tempo_lite.storage.store import ObjectNotFound, ObjectStore

log = logging.getLogger(__name__)

Warmer = Callable[[BlockMeta], Awaitable[bool]]  # loads a block's caches; False: no room, nothing loaded


class BlockList:
    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self._blocks: dict[str, dict[str, BlockMeta]] = {}
        self.last_error: str | None = None
        # Adds and removals made while a poll is listing storage, replayed onto its result (otherwise a
        # block written during the poll would vanish until the next one).
        self._during_poll: list[tuple[str, str, BlockMeta | None]] | None = None
        self.warmers: list[Warmer] = []
        self._warmed: set[tuple[str, str]] = set()

    def add(self, meta: BlockMeta) -> None:
        """Make a block visible at once (the block-builder and compactor call this after writing it)."""
        self._blocks.setdefault(meta.tenant, {})[meta.block_id] = meta
        if self._during_poll is not None:
            self._during_poll.append((meta.tenant, meta.block_id, meta))

    def remove(self, tenant: str, block_id: str) -> None:
        self._blocks.get(tenant, {}).pop(block_id, None)
        self._warmed.discard((tenant, block_id))
        if self._during_poll is not None:
            self._during_poll.append((tenant, block_id, None))

    def tenants(self) -> list[str]:
        return sorted(self._blocks)

    def blocks(self, tenant: str, start_ns: int = 0, end_ns: int = 0) -> list[BlockMeta]:
        metas = list(self._blocks.get(tenant, {}).values())
        if start_ns or end_ns:
            metas = [m for m in metas if m.overlaps(start_ns, end_ns or (1 << 63) - 1)]
        return sorted(metas, key=lambda m: m.start_unix_nano, reverse=True)

    async def poll(self) -> None:
        """Re-read the block list from storage: new blocks appear, compacted and deleted ones go."""
        self._during_poll = []
        try:
            fresh = await self._read_all()
            for tenant, block_id, meta in self._during_poll:
                if meta is not None:
                    fresh.setdefault(tenant, {})[block_id] = meta
                else:
                    fresh.get(tenant, {}).pop(block_id, None)
            self._blocks = {t: blocks for t, blocks in fresh.items() if blocks}
        finally:
            self._during_poll = None
        self._warmed &= {(t, b) for t, blocks in self._blocks.items() for b in blocks}

    async def warm(self) -> int:
        """Run the warmers for every block not warmed yet, newest first; returns blocks warmed. A block
        that cannot be read is retried after the next poll; a warmer answering False (its cache is full:
        it loaded nothing) ends the round, and that block and the older ones are tried again next time."""
        pending = sorted(
            (m for blocks in self._blocks.values() for m in blocks.values()
             if (m.tenant, m.block_id) not in self._warmed),
            key=lambda m: m.end_unix_nano, reverse=True,
        )
        warmed = 0
        started = trio.current_time()
        for meta in pending:
            if not self.warmers:
                break
            try:
                room = [await warmer(meta) for warmer in self.warmers]
            except StorageError as exc:
                log.warning("loading caches of block %s/%s: %s", meta.tenant, meta.block_id, exc.message)
                continue
            if not all(room):
                break
            self._warmed.add((meta.tenant, meta.block_id))
            warmed += 1
        if warmed:
            log.info("loaded the caches of %d block(s) in %.2fs", warmed, trio.current_time() - started)
        return warmed

    async def _read_all(self) -> dict[str, dict[str, BlockMeta]]:
        fresh: dict[str, dict[str, BlockMeta]] = {}
        for tenant in await self.store.list(paths.ROOT):
            known = self._blocks.get(tenant, {})
            current: dict[str, BlockMeta] = {}
            for block_id in await self.store.list(paths.tenant_dir(tenant)):
                if block_id in known:
                    current[block_id] = known[block_id]
                    continue
                try:
                    meta = BlockMeta.from_json(await self.store.read(paths.block_file(tenant, block_id, paths.META)))
                except ObjectNotFound:
                    continue  # being written, compacted, or an interrupted write: invisible
                except (ValueError, TypeError) as exc:
                    log.warning("skipping block %s/%s: bad meta.json: %s", tenant, block_id, exc)
                    continue
                current[block_id] = meta
            # A compacted block keeps meta.json removed, so it drops out above; an input still being
            # marked compacted may have both files for a moment: skip it.
            for block_id in list(current):
                if block_id not in known and await self.store.exists(
                    paths.block_file(tenant, block_id, paths.COMPACTED_META)
                ):
                    current.pop(block_id)
            if current:
                fresh[tenant] = current
        return fresh

    async def run(self, interval: float, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        first = True
        while True:
            try:
                await self.poll()
                self.last_error = None
            except StorageError as exc:
                self.last_error = exc.message
                log.warning("block list poll failed: %s", exc.message)
            if first:
                task_status.started()
                first = False
            await self.warm()
            await trio.sleep(interval)

"""Where the querier finds recent spans (not yet in blocks): `LiveSource`.

In one process that is the process's own live-store (`LocalLive`); in a split deployment it is the
live-store processes, asked over their internal HTTP API (`frontend.remote_live.RemoteLiveStores`).
Either way the querier merges and deduplicates exactly the same way.
"""

from __future__ import annotations

from typing import Protocol

from tempo_lite import spantable
from tempo_lite.livestore import LiveStore


class LiveSource(Protocol):
    async def snapshot(self, tenant: str) -> spantable.SpanTable:
        """Every recent span of `tenant`, as one table."""
        ...

    async def find_trace(self, tenant: str, trace_id: bytes) -> spantable.SpanTable | None:
        """The recent spans of one trace, or None."""
        ...


class LocalLive:
    """This process's own live-store."""

    def __init__(self, livestore: LiveStore) -> None:
        self.livestore = livestore

    async def snapshot(self, tenant: str) -> spantable.SpanTable:
        return self.livestore.snapshot(tenant)

    async def find_trace(self, tenant: str, trace_id: bytes) -> spantable.SpanTable | None:
        return self.livestore.find_trace(tenant, trace_id)

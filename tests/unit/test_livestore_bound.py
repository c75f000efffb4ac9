"""`live_store.max_bytes` counts what is acknowledged but not yet decoded: the distributor is refused
(saturated) before the WAL backlog would push the decoded tables past the bound."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from test_livestore_segments import Clock, table

from tempo_lite.livestore import DECODED_BYTES_PER_PAYLOAD_BYTE, LiveStore
from tempo_lite.metrics import Metrics


def test_acknowledged_but_undecoded_payloads_count_against_max_bytes() -> None:
    wal: Any = SimpleNamespace(partitions=1)
    decoded = table(0)
    live = LiveStore(wal, Metrics(), max_bytes=decoded.nbytes * 4, complete_block_timeout=60, clock=Clock())
    live.add_segment(0, 0, 1, {"t": decoded})
    assert not live.saturated
    backlog = int(decoded.nbytes * 3 / DECODED_BYTES_PER_PAYLOAD_BYTE) + 1
    live.note_appended(backlog)  # decoded, it would reach the bound
    assert live.saturated
    live.backlog_bytes -= backlog  # the consumer decoded it (and the block-builder flushed it)
    assert not live.saturated

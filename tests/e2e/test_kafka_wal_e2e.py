"""tempo-lite with its WAL on a real Kafka-protocol broker (tansu): ingest, query, flush, restart."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trio
from conftest import start_tempo, tempo_config_text
from otlp_helpers import by_trace, encoded, normalize, sdk_spans
from test_otlp_http_roundtrip import export, fetch_all_forms, wait_for_trace
from wal_brokers import tansu_broker


@pytest.fixture(scope="module")
def broker() -> Iterator[str]:
    with tansu_broker() as brokers:
        yield brokers


async def test_server_on_kafka_wal_round_trips_and_replays(
    broker: str, nursery: trio.Nursery, tmp_path: Path, http: httpx.AsyncClient
) -> None:
    topic = f"tempo-{uuid.uuid4().hex[:8]}"
    config = tempo_config_text(
        tmp_path, f"storage: {{trace: {{wal: {{backend: kafka, partitions: 2, kafka: {{brokers: '{broker}', "
        f"topic: {topic}}}}}}}}}\n")
    tempo = await start_tempo(nursery, config)
    first, second = sdk_spans("kafka-a"), sdk_spans("kafka-b")
    assert (await export(tempo, first)).name == "SUCCESS"
    ((tid_a, want_a),) = by_trace(encoded(first)).items()
    await wait_for_trace(http, tempo, tid_a.hex())
    for got in await fetch_all_forms(http, tempo, tid_a.hex()):
        assert normalize(got) == want_a
    assert await tempo.tl.blockbuilder.flush_all() >= 1
    assert (await export(tempo, second)).name == "SUCCESS"
    ((tid_b, want_b),) = by_trace(encoded(second)).items()
    await wait_for_trace(http, tempo, tid_b.hex())
    # Stop without flushing the second trace: it must come back from the broker after a restart.
    tempo.tl.blockbuilder.flush_all = _no_flush  # type: ignore[method-assign]
    await tempo.stop()
    tempo = await start_tempo(nursery, config)
    try:
        for tid, want in ((tid_a, want_a), (tid_b, want_b)):
            for got in await fetch_all_forms(http, tempo, tid.hex()):
                assert normalize(got) == want
        assert tempo.tl.livestore.find_trace("single-tenant", tid_b) is not None
        assert tempo.tl.livestore.find_trace("single-tenant", tid_a) is None
    finally:
        await tempo.stop()


async def _no_flush() -> int:
    return 0

"""Prometheus metrics of every component, on one registry per running instance (served at /metrics).

Names follow Tempo's where Tempo has one (`tempo_distributor_spans_received_total`,
`tempo_discarded_spans_total`), so existing dashboards find them.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.spans_received = Counter(
            "tempo_distributor_spans_received", "Spans accepted into the WAL.", ["tenant"], registry=r
        )
        self.bytes_received = Counter(
            "tempo_distributor_bytes_received", "Request bytes accepted into the WAL.", ["tenant"], registry=r
        )
        self.requests_refused = Counter(
            "tempo_distributor_requests_refused", "Ingest requests refused, by reason.", ["reason"], registry=r
        )
        self.discarded_spans = Counter(
            "tempo_discarded_spans", "Spans discarded, by reason.", ["reason", "tenant"], registry=r
        )
        self.attributes_truncated = Counter(
            "tempo_distributor_attributes_truncated", "Attribute values truncated.", ["tenant"], registry=r
        )
        self.wal_append_seconds = Histogram(
            "tempo_wal_append_duration_seconds", "Time until an append was durable.", registry=r,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.wal_retained_bytes = Gauge("tempo_wal_retained_bytes", "WAL bytes not yet committed.", registry=r)
        self.livestore_bytes = Gauge("tempo_live_store_bytes", "Bytes of spans held in memory.", registry=r)
        self.livestore_traces = Gauge(
            "tempo_live_store_spans", "Spans held in memory by the live-store.", registry=r
        )
        self.wal_records_set_aside = Counter(
            "tempo_lite_wal_records_set_aside", "WAL records a consumer could not decode or build, set aside "
            "(see `tempo-lite wal quarantine`), by stage.", ["stage"], registry=r
        )
        self.blocks_flushed = Counter(
            "tempo_block_builder_blocks_flushed", "Blocks written to object storage.", ["tenant"], registry=r
        )
        self.flush_errors = Counter(
            "tempo_block_builder_flush_errors", "Failed attempts to write a block.", registry=r
        )
        self.flushed_bytes = Counter(
            "tempo_block_builder_flushed_bytes", "Bytes of blocks written.", registry=r
        )
        self.query_seconds = Histogram(
            "tempo_query_frontend_duration_seconds", "Query latency by endpoint.", ["op"], registry=r
        )
        self.blocks_unreadable = Counter(
            "tempo_querier_block_read_errors", "Blocks that could not be read during a query.", registry=r
        )
        self.store_read_bytes = Gauge(
            "tempo_object_store_read_bytes", "Bytes read from object storage since start.", registry=r
        )
        self.compactions = Counter("tempo_compactor_compactions", "Compactions done.", registry=r)
        self.blocks_deleted = Counter(
            "tempo_compactor_blocks_deleted", "Blocks deleted (retention or compacted).", registry=r
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

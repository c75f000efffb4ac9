"""The configuration schema: frozen dataclasses shaped like Tempo's YAML, every key with its default (so
`tempo-lite serve` runs with no file at all). Field names are the YAML keys (`global_` is `global`); the
metrics-generator's section is in `generator.py`. The keys are documented in docs/configuration.md and
config/tempo.yaml.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tempo_lite.config.generator import MetricsGeneratorConfig
from tempo_lite.units import ByteSize, Duration


@dataclass(frozen=True)
class Endpoint:
    endpoint: str = ""


@dataclass(frozen=True)
class OtlpProtocols:
    http: Endpoint | None = field(default_factory=lambda: Endpoint("127.0.0.1:4318"))
    grpc: Endpoint | None = None


@dataclass(frozen=True)
class OtlpReceiver:
    protocols: OtlpProtocols = field(default_factory=OtlpProtocols)


@dataclass(frozen=True)
class JaegerProtocols:
    grpc: Endpoint | None = None
    thrift_http: Endpoint | None = None
    thrift_compact: Endpoint | None = None
    thrift_binary: Endpoint | None = None


@dataclass(frozen=True)
class JaegerReceiver:
    protocols: JaegerProtocols = field(default_factory=JaegerProtocols)


@dataclass(frozen=True)
class Receivers:
    otlp: OtlpReceiver | None = field(default_factory=OtlpReceiver)
    zipkin: Endpoint | None = None
    jaeger: JaegerReceiver | None = None


@dataclass(frozen=True)
class DistributorConfig:
    receivers: Receivers = field(default_factory=Receivers)
    # A request body over this many bytes (as sent, or once decompressed) is refused with 413.
    max_request_bytes: ByteSize = ByteSize(32 << 20)


@dataclass(frozen=True)
class ServerConfig:
    http_listen_address: str = "127.0.0.1"
    http_listen_port: int = 3200
    log_level: str = "info"
    log_format: str = "logfmt"  # logfmt | json
    # Every HTTP listener (query API and receivers): see tempo_lite/server.py and docs/configuration.md.
    http_server_idle_timeout: Duration = Duration(120.0)
    http_server_read_timeout: Duration = Duration(30.0)


@dataclass(frozen=True)
class KafkaConfig:
    brokers: str = ""
    topic: str = "tempo-lite-wal"


@dataclass(frozen=True)
class ManagedBrokerConfig:
    """`wal.backend: managed` (and the supervision of `redpanda`): tempo-lite runs the broker itself."""

    # The broker's argv; {host} {port} {rpc_port} {admin_port} {data_dir} are filled in (docs/wal.md).
    command: tuple[str, ...] = ()
    env: dict[str, Any] = field(default_factory=dict)
    # File name (under the data directory) -> text, placeholders filled in, written before every start.
    files: dict[str, Any] = field(default_factory=dict)
    host: str = "127.0.0.1"
    port: int = 0  # the Kafka listener; 0 picks a free port once and keeps it
    start_timeout: Duration = Duration(60.0)
    restart_backoff: Duration = Duration(1.0)
    max_restart_backoff: Duration = Duration(30.0)
    stop_timeout: Duration = Duration(30.0)


@dataclass(frozen=True)
class RedpandaConfig:
    path: str = ""  # the redpanda binary; empty: `redpanda` on PATH
    smp: int = 1
    memory: str = "1G"
    args: tuple[str, ...] = ()  # more redpanda/Seastar flags, e.g. [--reactor-backend=epoll]


@dataclass(frozen=True)
class WalConfig:
    path: str = "./tempo-data/wal"
    backend: str = "embedded"  # embedded | kafka | managed | redpanda
    # Trace-ID shards; each is consumed and cut into blocks on its own. More than one only pays off
    # when several processes share a Kafka topic.
    partitions: int = 1
    # Bytes not yet committed by every consumer; beyond it ingest answers 503/UNAVAILABLE.
    max_retained_bytes: ByteSize = ByteSize(1 << 30)
    kafka: KafkaConfig = field(default_factory=KafkaConfig)
    managed: ManagedBrokerConfig = field(default_factory=ManagedBrokerConfig)
    redpanda: RedpandaConfig = field(default_factory=RedpandaConfig)


@dataclass(frozen=True)
class LocalStorage:
    path: str = "./tempo-data/blocks"
    # Every process of a split deployment (`-target`) mounts this same directory (NFS, a shared volume):
    # lets roles that share the store run on `local` storage (docs/scaling.md).
    shared: bool = False


@dataclass(frozen=True)
class S3Storage:
    bucket: str = ""
    endpoint: str = ""
    region: str = ""
    access_key: str = ""
    secret_key: str = ""
    insecure: bool = False
    prefix: str = ""
    forcepathstyle: bool = False


@dataclass(frozen=True)
class GcsStorage:
    bucket_name: str = ""
    endpoint: str = ""
    prefix: str = ""


@dataclass(frozen=True)
class AzureStorage:
    container_name: str = ""
    storage_account_name: str = ""
    storage_account_key: str = ""
    endpoint_suffix: str = ""
    prefix: str = ""
    connection_string: str = ""


@dataclass(frozen=True)
class BlockConfig:
    # Spans per Parquet row group: trace-by-ID reads one row group; 2k rows measured p99 23.5 ms over 5M
    # spans against 10k rows' slower reads, for ~1 byte/span more (docs/block-format.md).
    row_group_spans: int = 2_000
    bloom_false_positive: float = 0.01
    max_dedicated_columns: int = 10


@dataclass(frozen=True)
class TraceStorage:
    backend: str = "local"  # local | s3 | gcs | azure | memory
    local: LocalStorage = field(default_factory=LocalStorage)
    s3: S3Storage = field(default_factory=S3Storage)
    gcs: GcsStorage = field(default_factory=GcsStorage)
    azure: AzureStorage = field(default_factory=AzureStorage)
    wal: WalConfig = field(default_factory=WalConfig)
    block: BlockConfig = field(default_factory=BlockConfig)
    # Bytes of meta.json, bloom filters and Parquet footers kept in memory.
    cache_bytes: ByteSize = ByteSize(128 << 20)
    # How often the block list is read again from the store (Tempo's blocklist_poll): what makes blocks
    # another process wrote visible here. Keep live_store.complete_block_timeout above it (docs/scaling.md).
    blocklist_poll: Duration = Duration(15.0)


@dataclass(frozen=True)
class StorageConfig:
    trace: TraceStorage = field(default_factory=TraceStorage)


@dataclass(frozen=True)
class LiveStoreConfig:
    # In-memory bound for spans not yet in blocks plus the recent window; beyond it ingest answers 503.
    max_bytes: ByteSize = ByteSize(512 << 20)
    # How long flushed spans stay queryable from memory (covers block-list refresh delays).
    complete_block_timeout: Duration = Duration(60.0)
    # Resident memory allowed above the process's start-up RSS on top of max_bytes and the block cache
    # (docs/reliability.md, "Memory under sustained ingest"); above it the live-store flushes early and
    # refuses writes. 0: unwatched.
    memory_overhead_bytes: ByteSize = ByteSize(160 << 20)
    # The WAL partitions a `live-store` role consumes; empty: all of them (docs/scaling.md).
    partitions: tuple[int, ...] = ()
    # Its availability zone: two live-stores of one partition in different zones both consume it and a
    # querier asks one of them (docs/scaling.md, "Zones"); empty: no zones.
    zone: str = ""


@dataclass(frozen=True)
class LiveStoreInstance:
    """A live-store a querier asks for recent data: its HTTP URL and the partitions it consumes."""

    url: str = ""
    partitions: tuple[int, ...] = ()
    zone: str = ""  # its live_store.zone: live-stores of one partition in different zones are twins


@dataclass(frozen=True)
class QuerierConfig:
    # Where a `querier` role (without a live-store of its own) finds recent data: every partition of the
    # WAL must be listed under at least one instance, at most one per zone (docs/scaling.md).
    live_stores: tuple[LiveStoreInstance, ...] = ()
    # The zone this querier (or sharding query-frontend) is in: of two zone twins it asks its own first.
    zone: str = ""
    # How long a query waits for a live-store's answer before asking its zone twin (none left: 503).
    live_store_timeout: Duration = Duration(10.0)


@dataclass(frozen=True)
class BlockBuilderConfig:
    # A block is cut per tenant every cycle, or earlier when this many bytes of spans are pending.
    consume_cycle_duration: Duration = Duration(30.0)
    max_block_bytes: ByteSize = ByteSize(256 << 20)
    # The WAL partitions a `block-builder` role builds blocks for; empty: all (each partition must be
    # built by exactly one block-builder; docs/scaling.md).
    partitions: tuple[int, ...] = ()


@dataclass(frozen=True)
class CompactionConfig:
    block_retention: Duration = Duration(14 * 86400.0)
    compacted_block_retention: Duration = Duration(3600.0)
    compaction_window: Duration = Duration(3600.0)
    max_block_bytes: ByteSize = ByteSize(1 << 30)
    compaction_cycle: Duration = Duration(30.0)


@dataclass(frozen=True)
class CompactorConfig:
    compaction: CompactionConfig = field(default_factory=CompactionConfig)


@dataclass(frozen=True)
class BackendSchedulerConfig:
    # A job a worker has not reported by then is handed to another worker; a new leader also waits this long
    # before handing out jobs (the old leader's jobs finish or are abandoned first). docs/scaling.md.
    job_timeout: Duration = Duration(300.0)
    # A job that failed this many times is dropped (planned again next cycle if still due).
    max_attempts: int = 3
    # The leader's Kafka group session: a dead leader's standby takes over after about this long.
    leader_session_timeout: Duration = Duration(6.0)


@dataclass(frozen=True)
class BackendWorkerConfig:
    # Base URLs of the backend-scheduler processes (the leader answers; the others refuse with 503).
    schedulers: tuple[str, ...] = ()
    # How long an idle worker waits before asking for a job again.
    poll_interval: Duration = Duration(2.0)


@dataclass(frozen=True)
class SearchFrontendConfig:
    default_result_limit: int = 20
    max_result_limit: int = 262144
    max_duration: Duration = Duration(168 * 3600.0)
    max_spans_per_span_set: int = 100
    concurrent_jobs: int = 8


@dataclass(frozen=True)
class QueryFrontendConfig:
    search: SearchFrontendConfig = field(default_factory=SearchFrontendConfig)
    # TraceQL metrics: `end` later than now minus this is clamped (recent data is still arriving).
    query_end_cutoff: Duration = Duration(30.0)
    # `-target=query-frontend` alone: the querier processes (base URLs) its search and trace-by-ID jobs go
    # to; empty: the frontend runs the querier itself (docs/scaling.md, "Query-frontend sharding").
    queriers: tuple[str, ...] = ()
    # How long the frontend waits for one querier's answer to a job before trying the next querier.
    querier_timeout: Duration = Duration(60.0)


@dataclass(frozen=True)
class IngestionLimits:
    rate_limit_bytes: ByteSize = ByteSize(15_000_000)
    burst_size_bytes: ByteSize = ByteSize(20_000_000)


@dataclass(frozen=True)
class GlobalLimits:
    max_bytes_per_trace: ByteSize = ByteSize(5_000_000)


@dataclass(frozen=True)
class ReadLimits:
    # Tag-values answers stop before this many bytes of values (v2: type + value); 0: no limit (Tempo's default).
    max_bytes_per_tag_values_query: ByteSize = ByteSize(1_000_000)


@dataclass(frozen=True)
class TenantOverrides:
    ingestion: IngestionLimits = field(default_factory=IngestionLimits)
    global_: GlobalLimits = field(default_factory=GlobalLimits)
    read: ReadLimits = field(default_factory=ReadLimits)
    max_attribute_bytes: ByteSize = ByteSize(2048)


@dataclass(frozen=True)
class OverridesConfig:
    defaults: TenantOverrides = field(default_factory=TenantOverrides)
    # Per-tenant overrides, same shape as `defaults` (keys not given fall back to the defaults).
    tenants: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Config:
    # The roles this process runs (`-target` overrides): `all`, or a comma-separated list (tempo_lite/roles.py).
    target: str = "all"
    server: ServerConfig = field(default_factory=ServerConfig)
    multitenancy_enabled: bool = False
    distributor: DistributorConfig = field(default_factory=DistributorConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    live_store: LiveStoreConfig = field(default_factory=LiveStoreConfig)
    block_builder: BlockBuilderConfig = field(default_factory=BlockBuilderConfig)
    compactor: CompactorConfig = field(default_factory=CompactorConfig)
    backend_scheduler: BackendSchedulerConfig = field(default_factory=BackendSchedulerConfig)
    backend_worker: BackendWorkerConfig = field(default_factory=BackendWorkerConfig)
    query_frontend: QueryFrontendConfig = field(default_factory=QueryFrontendConfig)
    querier: QuerierConfig = field(default_factory=QuerierConfig)
    overrides: OverridesConfig = field(default_factory=OverridesConfig)
    metrics_generator: MetricsGeneratorConfig = field(default_factory=MetricsGeneratorConfig)

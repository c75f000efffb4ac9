"""Configuration: YAML shaped like Tempo's, bound onto frozen dataclasses with strict checking.

Every key has a default, so `tempo-lite serve` runs with no file at all. An unknown key, a wrong
type or a bad duration stops start-up with a `ConfigError` naming the file and the dotted key.
`${VAR}` and `${VAR:-default}` are expanded from the environment before parsing (Tempo's
`-config.expand-env`). The keys are documented in docs/configuration.md and config/tempo.yaml.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tempo_lite.errors import ConfigError
from tempo_lite.generator.config import MetricsGeneratorConfig
from tempo_lite.units import ByteSize, Duration, parse_duration, parse_size

# --------------------------------------------------------------------------------------------- schema


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
    # The WAL partitions a `live-store` role consumes; empty: all of them (docs/scaling.md).
    partitions: tuple[int, ...] = ()


@dataclass(frozen=True)
class LiveStoreInstance:
    """A live-store a querier asks for recent data: its HTTP URL and the partitions it consumes."""

    url: str = ""
    partitions: tuple[int, ...] = ()


@dataclass(frozen=True)
class QuerierConfig:
    # Where a `querier` role (without a live-store of its own) finds recent data: every partition of the
    # WAL must be listed under exactly one instance (docs/scaling.md).
    live_stores: tuple[LiveStoreInstance, ...] = ()
    # How long a query waits for a live-store's answer before failing with 503.
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
class TenantOverrides:
    ingestion: IngestionLimits = field(default_factory=IngestionLimits)
    global_: GlobalLimits = field(default_factory=GlobalLimits)
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
    query_frontend: QueryFrontendConfig = field(default_factory=QueryFrontendConfig)
    querier: QuerierConfig = field(default_factory=QuerierConfig)
    overrides: OverridesConfig = field(default_factory=OverridesConfig)
    metrics_generator: MetricsGeneratorConfig = field(default_factory=MetricsGeneratorConfig)


# --------------------------------------------------------------------------------------------- binding

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(text: str, environ: typing.Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return _ENV.sub(lambda m: env.get(m.group(1), m.group(2) if m.group(2) is not None else ""), text)


def _yaml_key(f: dataclasses.Field) -> str:
    return f.name.rstrip("_")  # `global_` is `global` in YAML


class _Problems:
    """Every problem found while binding one file, each with the YAML line of the key it names."""

    def __init__(self, source: str, lines: dict[str, int]) -> None:
        self.source = source
        self.lines = lines
        self.messages: list[str] = []

    def add(self, where: str, message: str) -> None:
        line = self.lines.get(where)
        prefix = f"{self.source}:{line}" if line else self.source
        self.messages.append(f"{prefix}: {message}")

    def raise_if_any(self) -> None:
        if self.messages:
            raise ConfigError("\n".join(self.messages))


_INVALID = object()  # a value that failed to bind: its field keeps the default, the problem is recorded


def _key_lines(node: yaml.Node | None, where: str = "", out: dict[str, int] | None = None) -> dict[str, int]:
    """Dotted key path -> 1-based line of that key in the YAML text (for messages that name the line)."""
    out = {} if out is None else out
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            path = f"{where}.{key_node.value}" if where else str(key_node.value)
            out.setdefault(path, key_node.start_mark.line + 1)
            _key_lines(value_node, path, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out.setdefault(f"{where}[{i}]", item.start_mark.line + 1)
            _key_lines(item, f"{where}[{i}]", out)
    return out


def _bind(cls: Any, value: Any, where: str, problems: _Problems) -> Any:
    """`value` bound onto `cls`; a problem is recorded (and `_INVALID` returned) instead of raising, so
    one pass reports every bad key of a file."""
    origin = typing.get_origin(cls)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(cls) if a is not type(None)]
        if value is None:
            return None
        return _bind(args[0], value, where, problems)
    if dataclasses.is_dataclass(cls):
        if value is None:
            value = {}
        if not isinstance(value, dict):
            problems.add(where, f"{where or 'top level'}: expected a mapping, got {value!r}")
            return _INVALID
        hints = typing.get_type_hints(cls)
        fields = {_yaml_key(f): f for f in dataclasses.fields(cls)}
        kwargs = {}
        for key, item in value.items():
            f = fields.get(str(key))
            path = f"{where}.{key}" if where else str(key)
            if f is None:
                problems.add(path, f"unknown configuration key {path!r}")
                continue
            bound = _bind(hints[f.name], item, path, problems)
            if bound is not _INVALID:
                kwargs[f.name] = bound
        try:
            return cls(**kwargs)
        except ConfigError as exc:  # a section's own cross-field checks (__post_init__)
            problems.add(where, exc.message)
            return _INVALID
    if origin is tuple:
        if not isinstance(value, list | tuple):
            problems.add(where, f"invalid value for {where!r}: expected a list, got {value!r}")
            return _INVALID
        item_cls = typing.get_args(cls)[0]
        items = tuple(_bind(item_cls, v, f"{where}[{i}]", problems) for i, v in enumerate(value))
        return _INVALID if _INVALID in items else items
    try:
        return _bind_scalar(cls, origin, value)
    except ValueError as exc:
        problems.add(where, f"invalid value for {where!r}: {exc}")
        return _INVALID
    except TypeError:
        problems.add(where, f"{where}: unsupported type {cls!r}")
        return _INVALID


def _bind_scalar(cls: Any, origin: Any, value: Any) -> Any:
    if cls is Duration:
        if isinstance(value, bool):
            raise ValueError(f"invalid duration {value!r}")
        return Duration(value if isinstance(value, int | float) else parse_duration(str(value)))
    if cls is ByteSize:
        if isinstance(value, bool):
            raise ValueError(f"invalid size {value!r}")
        return ByteSize(value if isinstance(value, int) else parse_size(str(value)))
    if cls is bool:
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {value!r}")
        return value
    if cls is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {value!r}")
        return value
    if cls is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"expected a number, got {value!r}")
        return float(value)
    if cls is str:
        if isinstance(value, dict | list):
            raise ValueError(f"expected a string, got {value!r}")
        return "" if value is None else str(value)
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"expected a mapping, got {value!r}")
        return value
    raise TypeError(cls)


_CHOICES = {
    "storage.trace.backend": ("local", "s3", "gcs", "azure", "memory"),
    "storage.trace.wal.backend": ("embedded", "kafka", "managed", "redpanda"),
    "server.log_format": ("logfmt", "json"),
    "server.log_level": ("debug", "info", "warn", "warning", "error"),
}


def _check_choices(config: Config, problems: _Problems) -> None:
    for path, allowed in _CHOICES.items():
        value: Any = config
        for part in path.split("."):
            value = getattr(value, part)
        if value not in allowed:
            problems.add(path, f"invalid value for {path!r}: {value!r} (expected one of {', '.join(allowed)})")


def load_config_text(text: str, source: str = "<config>") -> Config:
    """Every problem of the file is reported at once (one line each: `file:line: message`)."""
    expanded = expand_env(text)
    try:
        data = yaml.safe_load(expanded) if text.strip() else {}
        lines = _key_lines(yaml.compose(expanded)) if text.strip() else {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{source}: invalid YAML{where}: {getattr(exc, 'problem', exc)}") from exc
    problems = _Problems(source, lines)
    config = _bind(Config, data, "", problems)
    problems.raise_if_any()
    _check_choices(config, problems)
    for tenant in config.overrides.tenants:
        # Validate now, not on the first request.
        _bind(TenantOverrides, _tenant_overrides_dict(config, tenant), f"overrides.tenants.{tenant}", problems)
    problems.raise_if_any()
    return config


def load_config(path: str | os.PathLike[str] | None) -> Config:
    if path is None:
        return Config()
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read configuration file: {exc.strerror}") from exc
    return load_config_text(text, str(p))


def tenant_overrides(config: Config, tenant: str) -> TenantOverrides:
    """The limits in force for `tenant`: defaults, with any per-tenant keys layered on top."""
    if not config.overrides.tenants.get(tenant):
        return config.overrides.defaults
    problems = _Problems("<config>", {})
    bound = _bind(TenantOverrides, _tenant_overrides_dict(config, tenant), f"overrides.tenants.{tenant}", problems)
    problems.raise_if_any()
    return bound


def _tenant_overrides_dict(config: Config, tenant: str) -> dict:
    return _merge(_to_yaml_dict(config.overrides.defaults), config.overrides.tenants.get(tenant) or {})


def _to_yaml_dict(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {_yaml_key(f): _to_yaml_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    return obj


def _merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for k, v in top.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def split_endpoint(endpoint: str, where: str) -> tuple[str, int]:
    """`host:port` -> (host, port); raises ConfigError naming the key."""
    host, sep, port = endpoint.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"invalid endpoint {endpoint!r} for {where!r} (expected host:port)")
    return host.strip("[]") or "0.0.0.0", int(port)

"""Configuration: YAML shaped like Tempo's, bound onto frozen dataclasses with strict checking.

Every key has a default, so `tempo-lite serve` runs with no file at all. An unknown key, a wrong
type or a bad duration stops start-up with a `ConfigError` naming the file and the dotted key.
`${VAR}` and `${VAR:-default}` are expanded from the environment before parsing (Tempo's
`-config.expand-env`). The keys are documented in docs/configuration.md and config/tempo.yaml.

This package is the one namespace the rest of tempo-lite imports configuration from:

- `schema.py`: the sections as frozen dataclasses, with their defaults;
- `generator.py`: the `metrics_generator:` section (its processors, registry, remote write);
- `loading.py`: YAML -> `Config` (`load_config`, `load_config_text`), per-tenant overrides
  (`tenant_overrides`) and `split_endpoint`.
"""

from tempo_lite.config.generator import MetricsGeneratorConfig
from tempo_lite.config.loading import expand_env, load_config, load_config_text, split_endpoint, tenant_overrides
from tempo_lite.config.schema import (
    AzureStorage,
    BlockBuilderConfig,
    BlockConfig,
    CompactionConfig,
    CompactorConfig,
    Config,
    DistributorConfig,
    Endpoint,
    GcsStorage,
    GlobalLimits,
    IngestionLimits,
    JaegerProtocols,
    JaegerReceiver,
    KafkaConfig,
    LiveStoreConfig,
    LiveStoreInstance,
    LocalStorage,
    ManagedBrokerConfig,
    OtlpProtocols,
    OtlpReceiver,
    OverridesConfig,
    QuerierConfig,
    QueryFrontendConfig,
    Receivers,
    RedpandaConfig,
    S3Storage,
    SearchFrontendConfig,
    ServerConfig,
    StorageConfig,
    TenantOverrides,
    TraceStorage,
    WalConfig,
)
from tempo_lite.errors import ConfigError

__all__ = [
    "AzureStorage",
    "BlockBuilderConfig",
    "BlockConfig",
    "CompactionConfig",
    "CompactorConfig",
    "Config",
    "ConfigError",
    "DistributorConfig",
    "Endpoint",
    "GcsStorage",
    "GlobalLimits",
    "IngestionLimits",
    "JaegerProtocols",
    "JaegerReceiver",
    "KafkaConfig",
    "LiveStoreConfig",
    "LiveStoreInstance",
    "LocalStorage",
    "ManagedBrokerConfig",
    "MetricsGeneratorConfig",
    "OtlpProtocols",
    "OtlpReceiver",
    "OverridesConfig",
    "QuerierConfig",
    "QueryFrontendConfig",
    "Receivers",
    "RedpandaConfig",
    "S3Storage",
    "SearchFrontendConfig",
    "ServerConfig",
    "StorageConfig",
    "TenantOverrides",
    "TraceStorage",
    "WalConfig",
    "expand_env",
    "load_config",
    "load_config_text",
    "split_endpoint",
    "tenant_overrides",
]

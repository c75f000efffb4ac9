"""The throw-away tempo-lite of `tempo-lite capture`: its configuration (127.0.0.1, temp storage, limits sized
for one CI job) and the environment of the command it runs (the OpenTelemetry SDK variables pointing at its
listeners). Pure: no I/O.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tempo_lite.cli.capture.assertions import Assertion
from tempo_lite.config import Config, load_config_text

QUERY_TENANT = "single-tenant"
# The widest range the search API accepts (unix seconds, uint32): spans with old or skewed timestamps
# are still found, and blocks already cut during a long run are searched as well as the live-store.
SEARCH_START_S = 1
SEARCH_END_S = 0xFFFFFFFF
SEARCH_LIMIT = 262_144  # Tempo's max_result_limit default: the ceiling of traces one assertion counts



@dataclass(frozen=True)
class Endpoints:
    """Bound listeners: name -> (host, port), as `TempoLite.listeners.addresses`."""

    addresses: Mapping[str, tuple[str, int]]

    def url(self, name: str, path: str = "") -> str:
        host, port = self.addresses[name]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}{path}"


def child_environment(
    base: Mapping[str, str], endpoints: Endpoints, *, override: bool
) -> tuple[dict[str, str], list[str]]:
    """The command's environment and notes about user-set variables that were kept.

    A variable the user already set wins (unless `override`): a CI job may point its SDK elsewhere on
    purpose. The traces endpoint follows the same rule as a group: if the user set the generic
    `OTEL_EXPORTER_OTLP_ENDPOINT`, setting the more specific traces variable would silently override it.
    """
    env = dict(base)
    notes: list[str] = []
    protocol = (env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "")
    if override:
        protocol = ""
    grpc = protocol.strip() == "grpc" and "otlp_grpc" in endpoints.addresses
    otlp_base = endpoints.url("otlp_grpc" if grpc else "otlp_http")
    wanted: dict[str, str] = {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_base,
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": otlp_base if grpc else otlp_base + "/v1/traces",
    }
    if "zipkin" in endpoints.addresses:
        wanted["OTEL_EXPORTER_ZIPKIN_ENDPOINT"] = endpoints.url("zipkin", "/api/v2/spans")
    if "jaeger_thrift_http" in endpoints.addresses:
        wanted["OTEL_EXPORTER_JAEGER_ENDPOINT"] = endpoints.url("jaeger_thrift_http", "/api/traces")
        wanted["JAEGER_ENDPOINT"] = endpoints.url("jaeger_thrift_http", "/api/traces")
    if "jaeger_thrift_compact" in endpoints.addresses:
        host, port = endpoints.addresses["jaeger_thrift_compact"]
        wanted["JAEGER_AGENT_HOST"] = host
        wanted["JAEGER_AGENT_PORT"] = str(port)
    user_set_generic = "OTEL_EXPORTER_OTLP_ENDPOINT" in base and not override
    for key, value in wanted.items():
        kept = key in base and not override
        if key == "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" and user_set_generic and key not in base:
            notes.append(f"not setting {key}: OTEL_EXPORTER_OTLP_ENDPOINT is set (use --override-env)")
            continue
        if kept:
            if base[key] != value:
                notes.append(f"keeping {key}={base[key]} from the environment (use --override-env)")
            continue
        env[key] = value
    # Always ours: these name tempo-lite's own listeners and cannot collide with an SDK's settings.
    env["TEMPO_LITE_URL"] = endpoints.url("http")
    for name in sorted(endpoints.addresses):
        host, port = endpoints.addresses[name]
        env[f"TEMPO_LITE_{name.upper()}_ENDPOINT"] = f"{host}:{port}"
    return env, notes


# --------------------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class CaptureOptions:
    command: list[str]
    assertions: list[Assertion]
    http_port: int = 0
    otlp_http_port: int = 0
    otlp_grpc_port: int = 0
    zipkin_port: int = 0
    jaeger_port: int = 0
    override_env: bool = False
    junit: str | None = None
    export: str | None = None
    keep: str | None = None
    log_level: str = "warn"
    quiet: bool = False


def capture_config(options: CaptureOptions, data_dir: Path) -> Config:
    """Ephemeral tempo-lite: everything on 127.0.0.1, storage under data_dir, limits sized for one CI job."""
    text = textwrap.dedent(
        f"""
        server: {{http_listen_address: 127.0.0.1, http_listen_port: {options.http_port},
                  log_level: {options.log_level}}}
        distributor:
          receivers:
            otlp:
              protocols:
                http: {{endpoint: "127.0.0.1:{options.otlp_http_port}"}}
                grpc: {{endpoint: "127.0.0.1:{options.otlp_grpc_port}"}}
            zipkin: {{endpoint: "127.0.0.1:{options.zipkin_port}"}}
            jaeger:
              protocols:
                thrift_http: {{endpoint: "127.0.0.1:{options.jaeger_port}"}}
                thrift_compact: {{endpoint: "127.0.0.1:0"}}
        storage:
          trace:
            backend: local
            local: {{path: {json.dumps(str(data_dir / "blocks"))}}}
            wal: {{path: {json.dumps(str(data_dir / "wal"))}}}
        query_frontend:
          search: {{max_duration: 2000000h, max_result_limit: {SEARCH_LIMIT}}}
        overrides:
          defaults:
            ingestion: {{rate_limit_bytes: 1GB, burst_size_bytes: 1GB}}
        """
    )
    return load_config_text(text, "tempo-lite capture")



"""Backend configs (Tempo's `storage.trace.<backend>` keys) and `open_store`, which builds the fsspec
filesystem for one backend and checks at start-up that the bucket is there and the credentials work.

Client timeouts and retries are bounded on purpose: when the store is down a call fails with
`StorageError` within seconds (callers such as the block-builder retry with `retry.with_backoff`)
instead of hanging inside a library's own retry loop (gcsfs ~30 s, azure-storage ~60 s by default).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import fsspec
import trio

from tempo_lite.errors import ConfigError
from tempo_lite.storage.store import ObjectStore, local_store, memory_store

# Seconds to open a connection / wait for a response, and attempts per call, for every cloud client.
CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 30.0
CLIENT_ATTEMPTS = 2

_SECRET_FIELDS = frozenset({"secret_key", "storage_account_key", "connection_string"})


class _MaskedRepr:
    """`repr()` that shows which secrets are set without ever printing them."""

    def __repr__(self) -> str:
        parts = []
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.name in _SECRET_FIELDS and value:
                parts.append(f"{f.name}='***'")
            else:
                parts.append(f"{f.name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"

    __str__ = __repr__


@dataclass(frozen=True, repr=False)
class S3Config(_MaskedRepr):
    bucket: str
    endpoint: str = ""  # host[:port] or URL; "" means AWS
    region: str = ""
    access_key: str = ""  # "" falls back to AWS_ACCESS_KEY_ID / profiles / instance roles
    secret_key: str = ""
    insecure: bool = False  # plain http to `endpoint`
    prefix: str = ""
    forcepathstyle: bool = False


@dataclass(frozen=True, repr=False)
class GcsConfig(_MaskedRepr):
    bucket_name: str
    endpoint: str = ""  # an emulator URL; "" means Google Cloud Storage with default credentials
    prefix: str = ""


@dataclass(frozen=True, repr=False)
class AzureConfig(_MaskedRepr):
    container_name: str
    storage_account_name: str = ""  # "" falls back to AZURE_STORAGE_ACCOUNT_NAME
    storage_account_key: str = ""  # "" falls back to AZURE_STORAGE_ACCOUNT_KEY / DefaultAzureCredential
    endpoint_suffix: str = ""  # "" = blob.core.windows.net; "host:port" = emulator (http, path style)
    prefix: str = ""
    connection_string: str = ""  # wins over the account fields; also AZURE_STORAGE_CONNECTION_STRING


@dataclass(frozen=True)
class LocalConfig:
    path: str


@dataclass(frozen=True)
class MemoryConfig:
    root: str | None = None


BackendConfig = S3Config | GcsConfig | AzureConfig | LocalConfig | MemoryConfig

_CONFIG_TYPES: dict[str, type] = {
    "s3": S3Config,
    "gcs": GcsConfig,
    "azure": AzureConfig,
    "local": LocalConfig,
    "memory": MemoryConfig,
}


def config_from_mapping(backend: str, values: dict[str, Any]) -> BackendConfig:
    """Build the config for `backend` from a YAML mapping, naming any unknown or missing key."""
    cls = _CONFIG_TYPES.get(backend)
    if cls is None:
        raise ConfigError(f"storage.trace.backend: unknown backend {backend!r} (one of {sorted(_CONFIG_TYPES)})")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"storage.trace.{backend}: unknown key(s) {unknown} (known: {sorted(known)})")
    try:
        return cls(**values)
    except TypeError as exc:
        raise ConfigError(f"storage.trace.{backend}: {exc}") from exc


async def open_store(backend: str, cfg: BackendConfig, *, concurrency: int = 16) -> ObjectStore:
    """The `ObjectStore` for `backend`, after checking the bucket exists and is readable.

    Raises `ConfigError` naming the backend and bucket (never a secret) when it is missing, the
    credentials are refused, or the endpoint cannot be reached.
    """
    if backend == "local":
        if not isinstance(cfg, LocalConfig):
            raise ConfigError(f"storage.trace.local: expected LocalConfig, got {type(cfg).__name__}")
        try:
            return local_store(cfg.path)
        except OSError as exc:
            raise ConfigError(f"storage.trace.local.path: cannot use {cfg.path!r}: {exc}") from exc
    if backend == "memory":
        root = cfg.root if isinstance(cfg, MemoryConfig) else None
        return memory_store(root)
    builders: dict[str, tuple[type, Callable[[Any], tuple[Any, str, str]]]] = {
        "s3": (S3Config, _open_s3), "gcs": (GcsConfig, _open_gcs), "azure": (AzureConfig, _open_azure),
    }
    if backend not in builders:
        raise ConfigError(f"storage.trace.backend: unknown backend {backend!r} (one of {sorted(_CONFIG_TYPES)})")
    cls, build = builders[backend]
    if not isinstance(cfg, cls):
        raise ConfigError(f"storage.trace.{backend}: expected {cls.__name__}, got {type(cfg).__name__}")
    fs, base, bucket = await trio.to_thread.run_sync(build, cfg)
    return ObjectStore(fs, base, name=f"{backend}:{bucket}", concurrency=concurrency)


_BUCKET_KEYS = {"s3": "bucket", "gcs": "bucket_name", "azure": "container_name"}


async def open_store_from_config(trace: Any, *, concurrency: int = 16) -> ObjectStore:
    """`open_store` for a `storage.trace` section (tempo_lite.config.TraceStorage): reads the
    sub-section named by `trace.backend` (same key names) and requires its bucket key."""
    backend = trace.backend
    if backend == "local":
        return await open_store("local", LocalConfig(path=trace.local.path), concurrency=concurrency)
    if backend == "memory":
        return await open_store("memory", MemoryConfig(), concurrency=concurrency)
    if backend not in _BUCKET_KEYS:
        raise ConfigError(f"storage.trace.backend: unknown backend {backend!r} (one of {sorted(_CONFIG_TYPES)})")
    section = getattr(trace, backend)
    is_instance = dataclasses.is_dataclass(section) and not isinstance(section, type)
    values = dataclasses.asdict(section) if is_instance else dict(vars(section))
    bucket_key = _BUCKET_KEYS[backend]
    if not values.get(bucket_key):
        raise ConfigError(f"storage.trace.{backend}.{bucket_key} is required when backend is {backend}")
    return await open_store(backend, config_from_mapping(backend, values), concurrency=concurrency)


def _root(bucket: str, prefix: str) -> str:
    prefix = prefix.strip("/")
    return f"{bucket}/{prefix}" if prefix else bucket


def _startup_error(
    backend: str, what: str, bucket: str, exc: BaseException, secrets: tuple[str, ...] = ()
) -> ConfigError:
    kind = type(exc).__name__
    detail = str(exc).splitlines()[0][:300] if str(exc) else ""
    for secret in secrets:
        if secret:
            detail = detail.replace(secret, "***")
    return ConfigError(f"storage.trace.{backend}: {what} {bucket!r}: {kind}: {detail}")


# --- S3 -----------------------------------------------------------------------------------------


def _s3_endpoint_url(cfg: S3Config) -> str | None:
    if not cfg.endpoint:
        return None
    if "://" in cfg.endpoint:
        return cfg.endpoint
    return f"{'http' if cfg.insecure else 'https'}://{cfg.endpoint}"


def _open_s3(cfg: S3Config) -> tuple[fsspec.AbstractFileSystem, str, str]:
    import s3fs

    config_kwargs: dict[str, Any] = {
        "connect_timeout": CONNECT_TIMEOUT,
        "read_timeout": READ_TIMEOUT,
        "retries": {"max_attempts": CLIENT_ATTEMPTS, "mode": "standard"},
    }
    if cfg.forcepathstyle:
        config_kwargs["s3"] = {"addressing_style": "path"}
    client_kwargs: dict[str, Any] = {}
    if cfg.region:
        client_kwargs["region_name"] = cfg.region
    fs = s3fs.S3FileSystem(
        key=cfg.access_key or None,
        secret=cfg.secret_key or None,
        endpoint_url=_s3_endpoint_url(cfg),
        client_kwargs=client_kwargs,
        config_kwargs=config_kwargs,
        use_listings_cache=False,
        skip_instance_cache=True,
    )
    fs.retries = CLIENT_ATTEMPTS  # s3fs's own retry loop around botocore's
    try:
        fs.call_s3("head_bucket", Bucket=cfg.bucket)
    except FileNotFoundError as exc:
        raise _startup_error("s3", "bucket does not exist:", cfg.bucket, exc, (cfg.secret_key,)) from exc
    except PermissionError as exc:
        raise _startup_error("s3", "credentials refused for bucket", cfg.bucket, exc, (cfg.secret_key,)) from exc
    except Exception as exc:
        raise _startup_error("s3", "cannot reach bucket", cfg.bucket, exc, (cfg.secret_key,)) from exc
    return fs, _root(cfg.bucket, cfg.prefix), cfg.bucket


# --- GCS ----------------------------------------------------------------------------------------


def _gcs_filesystem_class(emulator: bool) -> type:
    import gcsfs
    import gcsfs.core
    from gcsfs.retry import retry_request

    # `gcsfs.GCSFileSystem` is the experimental zonal/HNS subclass unless
    # GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false was set before gcsfs was imported; its probes stall
    # each call 60 s against an emulator (docs/architecture.md, known traps), so emulators always get the core class.
    base = gcsfs.core.GCSFileSystem if emulator else gcsfs.GCSFileSystem

    class BoundedRetryGCSFileSystem(base):  # type: ignore[valid-type,misc]
        """gcsfs retries every request 6 times with 1-32 s sleeps (~30 s on a refused connection)
        and takes the count from a class-level decorator: re-wrap with fewer attempts."""

        _request = retry_request(retries=CLIENT_ATTEMPTS)(gcsfs.core.GCSFileSystem._request.__wrapped__)

    return BoundedRetryGCSFileSystem


def _open_gcs(cfg: GcsConfig) -> tuple[fsspec.AbstractFileSystem, str, str]:
    import aiohttp

    kwargs: dict[str, Any] = {}
    endpoint = cfg.endpoint or os.environ.get("STORAGE_EMULATOR_HOST", "")
    if endpoint:  # an emulator: no OAuth
        if "://" not in endpoint:
            endpoint = f"http://{endpoint}"
        kwargs.update(endpoint_url=endpoint, token="anon", project="tempo-lite")
    fs = _gcs_filesystem_class(emulator=bool(endpoint))(
        requests_timeout=aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT, sock_read=READ_TIMEOUT),
        use_listings_cache=False,
        skip_instance_cache=True,
        **kwargs,
    )
    try:
        fs.call("GET", "b/{}", cfg.bucket_name, json_out=True)
    except FileNotFoundError as exc:
        raise _startup_error("gcs", "bucket does not exist:", cfg.bucket_name, exc) from exc
    except Exception as exc:
        raise _startup_error("gcs", "cannot reach or read bucket", cfg.bucket_name, exc) from exc
    return fs, _root(cfg.bucket_name, cfg.prefix), cfg.bucket_name


# --- Azure --------------------------------------------------------------------------------------

_AZURE_CLIENT_KWARGS: dict[str, Any] = {
    # azure-storage's ExponentialRetry defaults to 15 s then x3 backoff: keep it short.
    "retry_total": CLIENT_ATTEMPTS - 1,
    "initial_backoff": 0.3,
    "increment_base": 2,
    "connection_timeout": CONNECT_TIMEOUT,
    "read_timeout": READ_TIMEOUT,
}


def _azure_account_url(cfg: AzureConfig, account: str) -> str:
    suffix = cfg.endpoint_suffix or "blob.core.windows.net"
    if "://" in suffix:
        return f"{suffix.rstrip('/')}/{account}"
    host = suffix.split(":", 1)[0]
    if ":" in suffix or host in ("localhost", "127.0.0.1") or host.startswith("azurite"):
        # Emulator: plain http, account name as the first path segment.
        return f"http://{suffix}/{account}"
    if suffix.startswith("blob."):
        return f"https://{account}.{suffix}"
    return f"https://{account}.blob.{suffix}"


def _azure_filesystem_class() -> type:
    import adlfs
    from azure.storage.blob.aio import BlobServiceClient

    class BoundedRetryAzureBlobFileSystem(adlfs.AzureBlobFileSystem):
        """adlfs builds its BlobServiceClient with the SDK's default retry policy and no way to
        change it; build the client here with bounded retries and timeouts instead."""

        def __init__(self, *args: Any, tl_account_url: str | None = None, **kwargs: Any) -> None:
            self._tl_account_url = tl_account_url
            super().__init__(*args, **kwargs)

        def do_connect(self) -> None:
            if self.connection_string:
                self.service_client = BlobServiceClient.from_connection_string(
                    self.connection_string, **_AZURE_CLIENT_KWARGS
                )
                return
            account_url = self._tl_account_url or f"https://{self.account_name}.blob.core.windows.net"
            credential: Any = self.account_key or self.credential
            if credential is None:
                from azure.identity.aio import DefaultAzureCredential

                credential = DefaultAzureCredential()
            self.service_client = BlobServiceClient(account_url, credential=credential, **_AZURE_CLIENT_KWARGS)

    return BoundedRetryAzureBlobFileSystem


def _open_azure(cfg: AzureConfig) -> tuple[fsspec.AbstractFileSystem, str, str]:
    from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError
    from fsspec.asyn import sync

    connection_string = cfg.connection_string or os.environ.get("AZURE_STORAGE_CONNECTION_STRING", "")
    account = cfg.storage_account_name or os.environ.get("AZURE_STORAGE_ACCOUNT_NAME", "")
    key = cfg.storage_account_key or os.environ.get("AZURE_STORAGE_ACCOUNT_KEY", "")
    if not connection_string and not account:
        raise ConfigError(
            "storage.trace.azure: set storage_account_name (or connection_string, or the "
            "AZURE_STORAGE_ACCOUNT_NAME / AZURE_STORAGE_CONNECTION_STRING variables)"
        )
    secrets = (connection_string, key)
    cls = _azure_filesystem_class()
    try:
        if connection_string:
            fs = cls(connection_string=connection_string, skip_instance_cache=True, use_listings_cache=False)
        else:
            fs = cls(
                account_name=account,
                account_key=key or None,
                anon=False,
                tl_account_url=_azure_account_url(cfg, account),
                skip_instance_cache=True,
                use_listings_cache=False,
            )
    except ValueError as exc:  # adlfs wraps bad connection strings and keys in ValueError
        raise _startup_error(
            "azure", "cannot build a client for container", cfg.container_name, exc, secrets
        ) from exc

    async def container_properties() -> None:
        await fs.service_client.get_container_client(cfg.container_name).get_container_properties()

    try:
        sync(fs.loop, container_properties)
    except ResourceNotFoundError as exc:
        raise _startup_error("azure", "container does not exist:", cfg.container_name, exc, secrets) from exc
    except ClientAuthenticationError as exc:
        raise _startup_error("azure", "credentials refused for container", cfg.container_name, exc, secrets) from exc
    except HttpResponseError as exc:
        raise _startup_error("azure", "cannot read container", cfg.container_name, exc, secrets) from exc
    except Exception as exc:
        raise _startup_error("azure", "cannot reach container", cfg.container_name, exc, secrets) from exc
    return fs, _root(cfg.container_name, cfg.prefix), cfg.container_name

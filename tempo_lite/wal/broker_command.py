"""The managed broker's command line: `wal.backend: managed` fills the user's command template, and
`wal.backend: redpanda` is a preset of it (the `redpanda` binary with a generated `redpanda.yaml`). The broker
keeps its data under `<wal.path>/broker`; its ports are chosen once and remembered there. See docs/wal.md,
section "Managed broker".
"""

from __future__ import annotations

import json
import re
import shutil
import socket
from dataclasses import dataclass, replace
from pathlib import Path

from tempo_lite.errors import ConfigError
from tempo_lite.wal.options import ManagedOptions, WalOptions

PLACEHOLDER = re.compile(r"\{(host|port|rpc_port|admin_port|data_dir)\}")
PORT_NAMES = ("port", "rpc_port", "admin_port")
PID_FILE = "broker.pid"
PORTS_FILE = "ports.json"

REDPANDA_INSTALL = (
    "install Redpanda (https://docs.redpanda.com/current/get-started/quick-start/; Debian/Ubuntu: the "
    "`redpanda` package from Redpanda's apt repository), or use the tempo-lite Docker image, which ships it"
)

# Written to <data_dir>/redpanda.yaml before every start: one node, listeners on {host} only.
REDPANDA_YAML = """\
# Written by tempo-lite before every start of its managed Redpanda broker: edits are overwritten.
redpanda:
  data_directory: {data_dir}/data
  node_id: 0
  seed_servers: []
  empty_seed_starts_cluster: true
  developer_mode: true
  rpc_server:
    address: {host}
    port: {rpc_port}
  advertised_rpc_api:
    address: {host}
    port: {rpc_port}
  kafka_api:
    - address: {host}
      port: {port}
  advertised_kafka_api:
    - address: {host}
      port: {port}
  admin:
    - address: {host}
      port: {admin_port}
rpk:
  overprovisioned: true
"""

# Cluster properties Redpanda applies when it first forms the cluster (read next to redpanda.yaml):
# acknowledge a produce only once it is fsynced, whatever the mode's default.
REDPANDA_BOOTSTRAP_YAML = """write_caching_default: "false"
"""


@dataclass(frozen=True, slots=True)
class BrokerCommand:
    """Everything needed to start the broker, placeholders already filled in."""

    name: str
    argv: list[str]
    env: dict[str, str]
    files: dict[str, str]
    data_dir: Path
    host: str
    port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def redpanda_preset(config: WalOptions) -> ManagedOptions:
    """The `redpanda` backend as a `managed` command; a missing binary is a one-line ConfigError."""
    managed = config.managed
    if managed.command:
        raise ConfigError(
            "storage.trace.wal.managed.command is set, but wal.backend: redpanda builds its own command; "
            "use wal.backend: managed to run a command of your own"
        )
    binary = managed.redpanda_path or "redpanda"
    found = shutil.which(binary)
    if found is None:
        key = "storage.trace.wal.redpanda.path"
        where = f"{binary!r} does not exist or is not executable" if managed.redpanda_path else (
            "no `redpanda` binary on PATH"
        )
        raise ConfigError(f"{key}: {where}; {REDPANDA_INSTALL}, or set {key} to the binary")
    if managed.redpanda_smp <= 0:
        raise ConfigError(f"storage.trace.wal.redpanda.smp must be positive, got {managed.redpanda_smp}")
    command = (
        found, "--redpanda-cfg", "{data_dir}/redpanda.yaml", "--smp", str(managed.redpanda_smp),
        "--memory", managed.redpanda_memory, "--reserve-memory", "0M", "--overprovisioned",
        "--lock-memory=false", "--default-log-level=info", *managed.redpanda_args,
    )
    files = {"redpanda.yaml": REDPANDA_YAML, ".bootstrap.yaml": REDPANDA_BOOTSTRAP_YAML, **managed.files}
    return replace(managed, command=command, files=files)


def broker_command(config: WalOptions) -> BrokerCommand:
    """The broker's command for `config` (backend `managed` or `redpanda`), ports chosen and kept.

    Free ports are picked once and remembered in `<data_dir>/ports.json`, so a restarted tempo-lite
    finds its broker's data under the same addresses.
    """
    managed = redpanda_preset(config) if config.backend == "redpanda" else config.managed
    if not managed.command:
        raise ConfigError(
            "storage.trace.wal.managed.command must give the broker's command line (a list) for "
            "wal.backend: managed, e.g. [redpanda, --redpanda-cfg, '{data_dir}/redpanda.yaml']"
        )
    for key, value in (("start_timeout", managed.start_timeout), ("restart_backoff", managed.restart_backoff),
                       ("max_restart_backoff", managed.max_restart_backoff), ("stop_timeout", managed.stop_timeout)):
        if value <= 0:
            raise ConfigError(f"storage.trace.wal.managed.{key} must be positive, got {value}")
    if not 0 <= managed.port < 65536:
        raise ConfigError(f"storage.trace.wal.managed.port must be a TCP port (0: a free one), got {managed.port}")
    data_dir = Path(config.path).resolve() / "broker"
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"storage.trace.wal.path: cannot create the broker directory {data_dir}: {exc}") from exc
    ports = _ports(data_dir, managed)
    values = {"host": managed.host, "data_dir": str(data_dir), **{k: str(v) for k, v in ports.items()}}

    def fill(text: str) -> str:
        return PLACEHOLDER.sub(lambda m: values[m.group(1)], text)

    for name in managed.files:
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise ConfigError(f"storage.trace.wal.managed.files: {name!r} must be a relative name under the data "
                              "directory")
    return BrokerCommand(
        name=Path(managed.command[0]).name,
        argv=[fill(arg) for arg in managed.command],
        env={str(k): fill(str(v)) for k, v in managed.env.items()},
        files={name: fill(str(text)) for name, text in managed.files.items()},
        data_dir=data_dir,
        host=managed.host,
        port=ports["port"],
    )


def _ports(data_dir: Path, managed: ManagedOptions) -> dict[str, int]:
    path = data_dir / PORTS_FILE
    try:
        remembered = {k: int(v) for k, v in json.loads(path.read_text()).items() if k in PORT_NAMES}
    except (OSError, ValueError, AttributeError):
        remembered = {}
    ports = {name: remembered.get(name) or _free_port(managed.host) for name in PORT_NAMES}
    if managed.port:
        ports["port"] = managed.port
    if ports != remembered:
        path.write_text(json.dumps(ports) + "\n")
    return ports


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])

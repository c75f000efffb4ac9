"""Loading the configuration: YAML bound onto the schema (`schema.py`) with strict checking.

An unknown key, a wrong type or a bad duration stops start-up with a `ConfigError` naming the file, the line
and the dotted key; every problem of a file is reported at once. `${VAR}` and `${VAR:-default}` are
expanded from the environment before parsing (Tempo's `-config.expand-env`). Per-tenant overrides are
layered on the defaults here too (`tenant_overrides`).
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from tempo_lite.config.schema import Config, TenantOverrides
from tempo_lite.errors import ConfigError
from tempo_lite.units import ByteSize, Duration, parse_duration, parse_size

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
    if isinstance(cls, type) and dataclasses.is_dataclass(cls):
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

"""Configuration loader: file + environment -> validated, immutable :class:`~neoevents.config.Config`.

Sources, lowest precedence first:

1. the defaults of :class:`~neoevents.config.Config` (or, with no file at all, :func:`dev_config`'s values);
2. the configuration file (JSON; YAML too when PyYAML is importable);
3. the environment (``NEOEVENTS_<KEY>`` for every top-level key, plus the seed's ``CENTRIFUGO_SECRET``,
   ``CENTRIFUGO_TOKEN``, ``JWT_SECRET``, ``REDIS_PASSWORD``, ``REDIS_HOST`` and ``REDIS_PORT``).

Every accepted key is declared once, in :data:`neoevents.configkeys.KEYS`: its name, aliases, type (a parser from
:mod:`neoevents.configvalues`), extra environment variables and documentation. Validation, environment handling
and the key reference in ``docs/configuration.md`` all come from that table.

Problems are collected, not raised one at a time: :func:`load_config` raises a single :class:`ConfigError`
listing every :class:`Problem` (key path + reason), and :func:`check_config` returns them.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import json
import os
import re
import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, NamedTuple

from neoevents.auth.rules import RuleSyntaxError, compile_expression, default_rules, rule_problems
from neoevents.config import DEV_API_KEY, DEV_SECRET, Config, NamespaceOptions
from neoevents.configkeys import (
    BY_INPUT_NAME,
    BY_NAME,
    DEFAULT_REDIS_HOST,
    DEFAULT_REDIS_PORT,
    KEYS,
    NAMESPACE_BY_NAME,
)
from neoevents.configvalues import (
    HOST_PORT,
    show_value,
)

__all__ = [
    "BUILTIN_NAMESPACES",
    "ConfigError",
    "Problem",
    "builtin_namespace",
    "channel_option_problems",
    "check_config",
    "dev_config",
    "generate_config",
    "load_config",
]

#: Namespaces that exist unless the file defines one of the same name or sets ``builtin_namespaces: false``.
BUILTIN_NAMESPACES: Final = ("tenant", "admin", "system")
#: History of the built-in namespaces when the top level sets no ``history_size`` / ``history_ttl``.
BUILTIN_HISTORY_SIZE: Final = 10
BUILTIN_HISTORY_TTL: Final = 3600.0

NAMESPACE_NAME_PATTERN: Final = r"^[-a-zA-Z0-9_.]{2,}$"

_RANK_DEFAULTS: Final = 0
_RANK_FILE: Final = 1
_RANK_ENV: Final = 2


# ----------------------------------------------------------------------------------------------------
# Problems


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with the configuration.

    ``key`` is the key path as written by the user (``port``, ``namespaces[1].history_ttl``) or, for a file
    that cannot be read at all, the file name. ``source`` names where a value came from when it was not the
    file (``environment variable NEOEVENTS_PORT``); it is empty for the file itself.
    """

    key: str
    reason: str
    source: str = ""

    def __str__(self) -> str:
        suffix = f" (from {self.source})" if self.source else ""
        return f"{self.key}: {self.reason}{suffix}"


class ConfigError(ValueError):
    """The configuration is unusable. ``problems`` lists every error found, in discovery order; the message
    is one ``key: reason`` line per problem, ready to print under a heading."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems: list[Problem] = list(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


@dataclass(slots=True)
class _Report:
    """Collects errors and unknown keys while the sources are read."""

    errors: list[Problem] = field(default_factory=list)
    unknown: list[Problem] = field(default_factory=list)

    def error(self, key: str, reason: str, source: str = "") -> None:
        self.errors.append(Problem(key, reason, source))

    def unknown_key(self, path: str, name: str, known: Iterable[str], source: str = "") -> None:
        reason = "unknown key (ignored)"
        close = difflib.get_close_matches(name, list(known), n=1)
        if close:
            reason += f"; did you mean {close[0]!r}?"
        self.unknown.append(Problem(path, reason, source))


# ----------------------------------------------------------------------------------------------------
# Reading sources into layers


class _Entry(NamedTuple):
    """A raw value as found in one source."""

    key: str  # the input key (a name or alias in KEYS, or an unknown key)
    raw: object
    source: str  # "" for the file, else a description of where the value came from
    given_as: str  # how the user spelled it (the key, or the environment variable)


@dataclass(frozen=True, slots=True)
class _Setting:
    """A parsed value and where it came from."""

    value: Any
    source: str
    given_as: str
    rank: int


_Layer = dict[str, _Setting]


def _read_layer(entries: Iterable[_Entry], rank: int, report: _Report) -> _Layer:
    """Parse each entry against :data:`KEYS`, keyed by canonical name. Two spellings of one key in the same
    source (``secret`` and ``token_hmac_secret_key``) must agree."""
    layer: _Layer = {}
    for entry in entries:
        spec = BY_INPUT_NAME.get(entry.key)
        if spec is None:
            report.unknown_key(entry.key, entry.key, BY_INPUT_NAME, entry.source)
            continue
        try:
            value = spec.type.parse(entry.raw)
        except ValueError as exc:
            report.error(entry.key, str(exc), entry.source)
            continue
        previous = layer.get(spec.name)
        if previous is not None and previous.value != value:
            report.error(entry.key, f"conflicts with {previous.given_as} (set to a different value)", entry.source)
            continue
        layer[spec.name] = _Setting(value, entry.source, entry.given_as, rank)
    return layer


def _file_entries(data: Mapping[str, object]) -> Iterator[_Entry]:
    for key, raw in data.items():
        yield _Entry(key, raw, "", key)


def _env_entries(env: Mapping[str, str]) -> Iterator[_Entry]:
    """Entries for every variable in :attr:`KeySpec.env_vars` that is set to a non-empty value.

    Empty variables count as unset (``FOO=`` in a compose file must not wipe a secret). Other
    ``NEOEVENTS_*`` variables are ignored: they may belong to tooling, not to the server.
    """
    for spec in KEYS:
        for var in spec.env_vars:
            raw = env.get(var)
            if raw is not None and raw.strip():
                yield _Entry(spec.name, raw, f"environment variable {var}", var)


def _dev_entries() -> Iterator[_Entry]:
    values: dict[str, object] = {
        "engine": "memory",
        "token_hmac_secret_key": DEV_SECRET,
        "api_key": DEV_API_KEY,
        "allowed_origins": ["*"],
    }
    for key, raw in values.items():
        yield _Entry(key, raw, "development defaults", key)


def _duplicate_checking_hook(duplicates: list[str]) -> Callable[[list[tuple[str, Any]]], dict[str, Any]]:
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                duplicates.append(key)
            result[key] = value
        return result

    return hook


def _parse_json(text: str, where: str, report: _Report) -> object:
    duplicates: list[str] = []
    try:
        data = json.loads(text, object_pairs_hook=_duplicate_checking_hook(duplicates))
    except json.JSONDecodeError as exc:
        report.error(where, f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}")
        return None
    for key in duplicates:
        report.error(key, "appears twice in the same object; remove one")
    return data


def _parse_yaml(text: str, where: str, report: _Report) -> object:
    try:
        yaml = importlib.import_module("yaml")
    except ImportError:
        report.error(where, "YAML files need PyYAML installed (pip install pyyaml); or use JSON")
        return None
    try:
        return yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        report.error(where, f"invalid YAML: {exc}")
        return None


def _read_file(path: str | os.PathLike[str], report: _Report) -> Mapping[str, object] | None:
    """The top-level object of the file, or None after reporting why it cannot be used."""
    where = os.fspath(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        report.error(where, f"cannot read the file: {getattr(exc, 'strerror', None) or exc}")
        return None
    is_yaml = Path(path).suffix.lower() in (".yaml", ".yml")
    data = _parse_yaml(text, where, report) if is_yaml else _parse_json(text, where, report)
    if data is None:
        return None
    if not isinstance(data, dict):
        report.error(where, f"the top level must be an object of keys, got {show_value(data)}")
        return None
    return data


# ----------------------------------------------------------------------------------------------------
# Merging and building


def _merge(layers: Iterable[_Layer]) -> _Layer:
    """Later layers win key by key."""
    merged: _Layer = {}
    for layer in layers:
        merged.update(layer)
    return merged


def _join_host_port(host: str, port: int) -> str:
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


def _split_host_port(addresses: tuple[str, ...]) -> tuple[str, int]:
    """Host and port of the first address when it is ``host:port``; the defaults otherwise."""
    match = HOST_PORT.fullmatch(addresses[0]) if addresses else None
    if match is None:
        return DEFAULT_REDIS_HOST, DEFAULT_REDIS_PORT
    return match.group(1).strip("[]"), int(match.group(2))


def _resolve_redis_address(merged: _Layer, report: _Report) -> tuple[str, ...]:
    """Combine ``redis_address`` with the seed's ``redis_host`` / ``redis_port``.

    The source with the higher precedence wins (``REDIS_HOST`` in the environment overrides a file's
    ``redis_address``; a missing host or port is then taken from that address). Both forms in the same
    source is an error.
    """
    address = merged.get("redis_address")
    parts = [setting for setting in (merged.get("redis_host"), merged.get("redis_port")) if setting is not None]
    if not parts:
        return tuple(address.value) if address is not None else ()
    parts_rank = max(setting.rank for setting in parts)
    if address is not None and address.rank >= parts_rank:
        if address.rank == parts_rank:
            names = " and ".join(setting.given_as for setting in parts)
            report.error(address.given_as, f"set together with {names}; use one or the other", address.source)
        return tuple(address.value)
    base_host, base_port = _split_host_port(tuple(address.value) if address is not None else ())
    host_setting, port_setting = merged.get("redis_host"), merged.get("redis_port")
    host = host_setting.value if host_setting is not None else base_host
    port = port_setting.value if port_setting is not None else base_port
    return (_join_host_port(host, port),)


def _build_namespace(index: int, raw: Mapping[str, object], source: str, report: _Report) -> NamespaceOptions | None:
    """One ``namespaces`` entry; None when its name is missing or invalid (reported)."""
    path = f"namespaces[{index}]"
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "name":
            continue
        spec = NAMESPACE_BY_NAME.get(key)
        if spec is None:
            report.unknown_key(f"{path}.{key}", key, [*NAMESPACE_BY_NAME, "name"], source)
            continue
        try:
            values[key] = spec.type.parse(value)
        except ValueError as exc:
            report.error(f"{path}.{key}", str(exc), source)
    name = raw.get("name")
    if not isinstance(name, str) or re.fullmatch(NAMESPACE_NAME_PATTERN, name) is None:
        reason = "is required" if name is None else f"must match {NAMESPACE_NAME_PATTERN}, got {show_value(name)}"
        report.error(f"{path}.name", reason, source)
        return None
    namespace = NamespaceOptions(name=name, **values)
    for option, reason in channel_option_problems(namespace):
        report.error(f"{path}.{option}", reason, source)
    return namespace


def _build_namespaces(setting: _Setting | None, report: _Report) -> list[NamespaceOptions]:
    if setting is None:
        return []
    built: list[NamespaceOptions] = []
    first_index: dict[str, int] = {}
    for index, raw in enumerate(setting.value):
        namespace = _build_namespace(index, raw, setting.source, report)
        if namespace is None:
            continue
        if namespace.name in first_index:
            earlier = first_index[namespace.name]
            report.error(
                f"namespaces[{index}].name",
                f"duplicate namespace {namespace.name!r} (also namespaces[{earlier}])",
                setting.source,
            )
            continue
        first_index[namespace.name] = index
        built.append(namespace)
    return built


def builtin_namespace(
    name: str, history_size: int, history_ttl: float, tenant_publish_rule: str = "false"
) -> NamespaceOptions:
    """A built-in namespace with presence, join/leave, history and recovery, authorised by the built-in
    rules (:func:`neoevents.auth.rules.default_rules`). History is off when either size or TTL is 0."""
    if history_size == 0 or history_ttl == 0:
        history_size, history_ttl = 0, 0.0
    return NamespaceOptions(
        name=name,
        presence=True,
        # Join/leave on system channels would tell every tenant's users who else is connected.
        join_leave=name != "system",
        allow_subscribe_for_client=True,
        allow_history_for_subscriber=True,
        allow_presence_for_subscriber=True,
        allow_recovery=True,
        # Every subscription is positioned and recoverable, so SDKs get missed events back after a reconnect.
        force_recovery=history_size > 0,
        history_size=history_size,
        history_ttl=history_ttl,
        rules=default_rules(name, tenant_publish_rule),
    )


def _builtin_namespaces(merged: _Layer, defined: Iterable[NamespaceOptions]) -> list[NamespaceOptions]:
    size_setting, ttl_setting = merged.get("history_size"), merged.get("history_ttl")
    size = size_setting.value if size_setting is not None else BUILTIN_HISTORY_SIZE
    ttl = ttl_setting.value if ttl_setting is not None else BUILTIN_HISTORY_TTL
    taken = {namespace.name for namespace in defined}
    publish = _tenant_publish_rule(merged)
    return [builtin_namespace(name, size, ttl, publish) for name in BUILTIN_NAMESPACES if name not in taken]


def _tenant_publish_rule(merged: _Layer) -> str:
    setting = merged.get("tenant_publish_rule")
    return str(setting.value) if setting is not None else "false"


def _with_builtin_rules(namespaces: list[NamespaceOptions], merged: _Layer) -> list[NamespaceOptions]:
    """A namespace the file defines with a built-in name but no ``rules`` keeps the built-in rules, so that
    changing, say, its history does not turn tenant isolation off."""
    publish = _tenant_publish_rule(merged)
    return [
        dataclasses.replace(ns, rules=default_rules(ns.name, publish))
        if ns.rules is None and ns.name in BUILTIN_NAMESPACES
        else ns
        for ns in namespaces
    ]


def _build_config(merged: _Layer, report: _Report) -> Config:
    config_values: dict[str, Any] = {}
    channel_values: dict[str, Any] = {}
    for name, setting in merged.items():
        target = BY_NAME[name].target
        if target == "config":
            config_values[name] = setting.value
        elif target == "channel":
            channel_values[name] = setting.value
    namespaces = _build_namespaces(merged.get("namespaces"), report)
    if config_values.get("builtin_namespaces", True):
        namespaces = _with_builtin_rules(namespaces, merged)
        namespaces += _builtin_namespaces(merged, namespaces)
    config_values["namespaces"] = tuple(namespaces)
    redis_address = _resolve_redis_address(merged, report)
    if not redis_address and config_values.get("engine") == "redis":
        redis_address = (_join_host_port(DEFAULT_REDIS_HOST, DEFAULT_REDIS_PORT),)
    config_values["redis_address"] = redis_address
    config_values["unknown_keys"] = tuple(problem.key for problem in report.unknown)
    return Config(channel=NamespaceOptions(**channel_values), **config_values)


# ----------------------------------------------------------------------------------------------------
# Cross-key validation


def channel_option_problems(options: NamespaceOptions) -> list[tuple[str, str]]:
    """``(option, reason)`` for each inconsistency in one set of channel options (Centrifugo v5's rules)."""
    problems: list[tuple[str, str]] = []
    if (options.history_size == 0) != (options.history_ttl == 0):
        missing = "history_ttl" if options.history_ttl == 0 else "history_size"
        problems.append((missing, "history needs both history_size and history_ttl greater than 0"))
    if options.history_meta_ttl and options.history_meta_ttl < options.history_ttl:
        problems.append(("history_meta_ttl", "must not be less than history_ttl"))
    if options.force_recovery and not options.history_enabled:
        problems.append(("force_recovery", "recovery needs history (history_size and history_ttl)"))
    if options.rules is not None:
        problems.extend(rule_problems(options.rules, options.name))
    return problems


def _validate(config: Config, merged: _Layer, report: _Report) -> None:
    """Rules that span keys of the top level (each namespace entry is checked as it is built)."""

    def source_of(key: str) -> str:
        setting = merged.get(key)
        return setting.source if setting is not None else ""

    for option, reason in channel_option_problems(config.channel):
        report.error(option, reason, source_of(option))
    if config.ping_interval > 0 and config.pong_timeout >= config.ping_interval:
        reason = f"must be less than ping_interval ({config.pong_timeout:g}s >= {config.ping_interval:g}s)"
        report.error("pong_timeout", reason, source_of("pong_timeout"))
    if config.rate_limit_window <= 0:
        report.error("rate_limit_window", "must be greater than 0", source_of("rate_limit_window"))
    try:
        compile_expression(config.tenant_publish_rule, ("tenant_id", "resource"))
    except RuleSyntaxError as exc:
        report.error("tenant_publish_rule", str(exc), source_of("tenant_publish_rule"))


# ----------------------------------------------------------------------------------------------------
# Public API


def _evaluate(path: str | os.PathLike[str] | None, env: Mapping[str, str] | None) -> tuple[Config, _Report]:
    report = _Report()
    layers: list[_Layer] = []
    if path is None:
        layers.append(_read_layer(_dev_entries(), _RANK_DEFAULTS, report))
    else:
        data = _read_file(path, report)
        if data is not None:
            layers.append(_read_layer(_file_entries(data), _RANK_FILE, report))
    layers.append(_read_layer(_env_entries(os.environ if env is None else env), _RANK_ENV, report))
    merged = _merge(layers)
    config = _build_config(merged, report)
    _validate(config, merged, report)
    return config, report


def load_config(path: str | os.PathLike[str] | None, env: Mapping[str, str] | None = None) -> Config:
    """Read ``path`` (JSON, or YAML when PyYAML is installed), apply environment overrides and validate.

    ``path=None`` starts from :func:`dev_config`'s values instead of a file. ``env=None`` reads
    :data:`os.environ`; pass ``{}`` to ignore the environment. Unknown keys do not fail: their paths are in
    ``Config.unknown_keys`` for the caller to log. Raises :class:`ConfigError` listing every error.
    """
    config, report = _evaluate(path, env)
    if report.errors:
        raise ConfigError(report.errors)
    return config


def check_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> list[Problem]:
    """Every problem :func:`load_config` would find, plus each unknown key as a problem; empty means OK.

    Backs ``neoevents checkconfig FILE`` (which prints ``str(problem)`` lines and exits 1 if any).
    """
    _config, report = _evaluate(path, env)
    return [*report.errors, *report.unknown]


def dev_config() -> Config:
    """The configuration of ``neoevents serve`` without a file, ignoring the environment: memory engine,
    ``DEV_SECRET`` / ``DEV_API_KEY``, any origin, and the built-in namespaces (so e.g.
    ``tenant:123:deployments`` is subscribable with history 10 / 3600 s)."""
    return load_config(None, env={})


def generate_config() -> dict[str, Any]:
    """A fresh minimal configuration (``neoevents genconfig``) with new random secrets.

    Serialise it with ``json.dumps(..., indent=2)``; :func:`load_config` accepts the result.
    """
    return {
        "token_hmac_secret_key": secrets.token_urlsafe(32),
        "api_key": secrets.token_urlsafe(32),
        "allowed_origins": [],
        "engine": "memory",
        "log_level": "info",
    }

"""Unit tests of the configuration loader (neoevents.configfile)."""

from __future__ import annotations

import dataclasses
import json
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from neoevents.auth.rules import default_rules
from neoevents.config import DEV_API_KEY, DEV_SECRET, ChannelRules, Config, NamespaceOptions
from neoevents.configfile import (
    BUILTIN_NAMESPACES,
    ConfigError,
    Problem,
    check_config,
    dev_config,
    generate_config,
    load_config,
)
from neoevents.configkeys import KEYS, NAMESPACE_KEYS, render_key_reference, uncovered_fields
from neoevents.configvalues import parse_duration

REPO = Path(__file__).resolve().parents[2]
SEED_FILE = REPO / "config" / "centrifugo.json"
EXAMPLE_FILE = REPO / "config" / "neoevents.example.json"
DOCS = REPO / "docs" / "configuration.md"

SEED_TEXT = (
    '{"address": "0.0.0.0", "port": 8000, "secret": "YOUR_SECRET", "token": "YOUR_TOKEN", "engine": "redis", '
    '"redis_host": "redis", "redis_port": 6379, "allowed_origins": ["http://localhost:3000"], '
    '"history_size": 10, "history_ttl": 3600}'
)

NO_ENV: dict[str, str] = {}


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """Write a dict (as JSON) or raw text to a file and return its path."""

    def write(content: dict[str, Any] | str, name: str = "config.json") -> Path:
        path = tmp_path / name
        path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
        return path

    return write


def load(write_config: Callable[..., Path], content: dict[str, Any], env: dict[str, str] | None = None) -> Config:
    return load_config(str(write_config(content)), env=NO_ENV if env is None else env)


def problems_of(
    write_config: Callable[..., Path], content: dict[str, Any] | str, env: dict[str, str] | None = None
) -> dict[str, str]:
    """``{key: reason}`` of every problem check_config finds."""
    problems = check_config(str(write_config(content)), env=NO_ENV if env is None else env)
    return {problem.key: problem.reason for problem in problems}


def load_error(
    write_config: Callable[..., Path], content: dict[str, Any], env: dict[str, str] | None = None
) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(write_config, content, env)
    return info.value


def reason_for(error: ConfigError, key: str) -> str:
    reasons = [problem.reason for problem in error.problems if problem.key == key]
    assert reasons, f"no problem for {key!r} in {[str(p) for p in error.problems]}"
    return reasons[0]


# ---------------------------------------------------------------------------------------------------------
# The seed file


def test_seed_file_is_verbatim() -> None:
    assert SEED_FILE.read_text(encoding="utf-8").strip() == SEED_TEXT


def test_seed_file_loads_as_is() -> None:
    config = load_config(str(SEED_FILE), env=NO_ENV)
    assert config.address == "0.0.0.0"
    assert config.port == 8000
    assert config.token_hmac_secret_key == "YOUR_SECRET"
    assert config.api_key == "YOUR_TOKEN"
    assert config.engine == "redis"
    assert config.redis_address == ("redis:6379",)
    assert config.allowed_origins == ("http://localhost:3000",)
    assert config.channel.history_size == 10
    assert config.channel.history_ttl == 3600.0
    assert config.unknown_keys == ()
    assert check_config(str(SEED_FILE), env=NO_ENV) == []


def test_seed_history_is_the_builtin_namespaces_history(write_config: Callable[..., Path]) -> None:
    seed = json.loads(SEED_TEXT) | {"history_size": 25, "history_ttl": 120}
    config = load(write_config, seed)
    for name in BUILTIN_NAMESPACES:
        namespace = config.namespace(name)
        assert namespace is not None
        assert (namespace.history_size, namespace.history_ttl) == (25, 120.0)


def test_example_file_loads_without_unknown_keys() -> None:
    config = load_config(str(EXAMPLE_FILE), env=NO_ENV)
    assert config.unknown_keys == ()
    chat = config.namespace("chat")
    assert chat is not None and chat.history_ttl == 86400.0 and chat.force_recovery
    assert check_config(str(EXAMPLE_FILE), env=NO_ENV) == []


# ---------------------------------------------------------------------------------------------------------
# Centrifugo v5 names


def _public_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return public.decode()


RSA_PEM = _public_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
ECDSA_PEM = _public_pem(ec.generate_private_key(ec.SECP256R1()))

V5_CONFIG: dict[str, Any] = {
    "address": "127.0.0.1",
    "port": 9000,
    "token_hmac_secret_key": "hmac",
    "token_rsa_public_key": RSA_PEM,
    "token_ecdsa_public_key": ECDSA_PEM,
    "token_audience": "aud",
    "token_issuer": "iss",
    "api_key": "key",
    "api_insecure": True,
    "engine": "redis",
    "redis_address": ["r1:6379", "redis://r2:6380/1"],
    "redis_password": "pw",
    "redis_db": 3,
    "redis_prefix": "pfx",
    "allowed_origins": ["https://*.example.com", "*"],
    "client_insecure": True,
    "client_anonymous": True,
    "client_channel_limit": 7,
    "channel_max_length": 100,
    "client_queue_max_size": 2048,
    "client_connection_limit": 11,
    "client_user_connection_limit": 2,
    "websocket_message_size_limit": 4096,
    "client_stale_close_delay": "3s",
    "client_expired_close_delay": "1m",
    "client_expired_sub_close_delay": 40,
    "ping_interval": "20s",
    "pong_timeout": "5s",
    "client_history_max_publication_limit": 50,
    "client_recovery_max_publication_limit": 60,
    "log_level": "debug",
    "health": False,
    "prometheus": False,
    "shutdown_timeout": "45s",
    "presence": True,
    "join_leave": True,
    "history_size": 5,
    "history_ttl": "10m",
    "allow_subscribe_for_client": True,
    "namespaces": [
        {"name": "chat", "presence": True, "history_size": 100, "history_ttl": "1h", "force_recovery": True},
        {"name": "public.feed_2", "allow_subscribe_for_anonymous": True, "channel_regex": "^[a-z]+$"},
    ],
}


def test_v5_names(write_config: Callable[..., Path]) -> None:
    config = load(write_config, V5_CONFIG)
    assert config.unknown_keys == ()
    assert (config.address, config.port) == ("127.0.0.1", 9000)
    assert config.token_rsa_public_key == RSA_PEM and config.token_ecdsa_public_key == ECDSA_PEM
    assert (config.token_audience, config.token_issuer) == ("aud", "iss")
    assert config.api_insecure and config.client_insecure and config.client_anonymous
    assert config.redis_address == ("r1:6379", "redis://r2:6380/1")
    assert (config.redis_password, config.redis_db, config.redis_prefix) == ("pw", 3, "pfx")
    assert config.allowed_origins == ("https://*.example.com", "*")
    assert config.client_channel_limit == 7 and config.channel_max_length == 100
    assert config.client_queue_max_size == 2048
    assert (config.client_connection_limit, config.client_user_connection_limit) == (11, 2)
    assert config.websocket_message_size_limit == 4096
    assert config.client_stale_close_delay == 3.0
    assert config.client_expired_close_delay == 60.0
    assert config.client_expired_sub_close_delay == 40.0
    assert (config.ping_interval, config.pong_timeout) == (20.0, 5.0)
    assert config.client_history_max_publication_limit == 50
    assert config.client_recovery_max_publication_limit == 60
    assert config.log_level == "debug"
    assert not config.health and not config.prometheus
    assert config.shutdown_timeout == 45.0
    assert config.channel == NamespaceOptions(
        presence=True, join_leave=True, history_size=5, history_ttl=600.0, allow_subscribe_for_client=True
    )
    chat = config.namespace("chat")
    assert chat == NamespaceOptions(
        name="chat", presence=True, history_size=100, history_ttl=3600.0, force_recovery=True
    )
    feed = config.namespace("public.feed_2")
    assert feed is not None and feed.allow_subscribe_for_anonymous and feed.channel_regex == "^[a-z]+$"
    assert not feed.presence, "namespaces do not inherit top-level options"


def test_every_namespace_option_is_accepted_in_a_namespace(write_config: Callable[..., Path]) -> None:
    samples = {
        "bool": True,
        "int (>= 0)": 3,
        "duration (whole seconds)": 60,
        "regular expression": "^x",
        "rules object": {"pattern": "all:{x}", "subscribe": "true"},
    }
    entry: dict[str, Any] = {"name": "all"}
    for spec in NAMESPACE_KEYS:
        entry[spec.name] = samples[spec.type.label]
    entry["history_meta_ttl"] = 120
    config = load(write_config, {"namespaces": [entry]})
    namespace = config.namespace("all")
    assert namespace is not None
    expected = {"history_meta_ttl": 120, "rules": ChannelRules(pattern="all:{x}", subscribe="true")}
    for spec in NAMESPACE_KEYS:
        assert getattr(namespace, spec.name) == expected.get(spec.name, entry[spec.name])


def test_redis_address_as_a_single_string(write_config: Callable[..., Path]) -> None:
    assert load(write_config, {"redis_address": "cache:6390"}).redis_address == ("cache:6390",)


def test_redis_engine_without_address_uses_localhost(write_config: Callable[..., Path]) -> None:
    assert load(write_config, {"engine": "redis"}).redis_address == ("127.0.0.1:6379",)
    assert load(write_config, {"engine": "memory"}).redis_address == ()


def test_redis_port_alone_uses_default_host(write_config: Callable[..., Path]) -> None:
    assert load(write_config, {"redis_port": 6400}).redis_address == ("127.0.0.1:6400",)


def test_redis_ipv6_host_is_bracketed(write_config: Callable[..., Path]) -> None:
    assert load(write_config, {"redis_host": "::1", "redis_port": 1}).redis_address == ("[::1]:1",)


def test_redis_address_and_host_in_one_file_conflict(write_config: Callable[..., Path]) -> None:
    error = load_error(write_config, {"redis_address": "a:1", "redis_host": "b"})
    assert "redis_host" in reason_for(error, "redis_address")


# ---------------------------------------------------------------------------------------------------------
# Durations


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        (3600, 3600.0),
        (2.5, 2.5),
        ("3600", 3600.0),
        ("300s", 300.0),
        ("1h", 3600.0),
        ("1m30s", 90.0),
        ("500ms", 0.5),
        ("1.5h", 5400.0),
        ("1h0m0s", 3600.0),
        ("2us", 2e-6),
        ("0", 0.0),
        ("0s", 0.0),
        (" 10s ", 10.0),
    ],
)
def test_durations(raw: object, seconds: float) -> None:
    assert parse_duration(raw) == pytest.approx(seconds)


@pytest.mark.parametrize("raw", ["abc", "5 s", "5x", "s", "1h-5m", "", True, None, [], float("nan"), float("inf")])
def test_bad_durations(raw: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(raw)


@pytest.mark.parametrize("raw", [-1, -0.5, "-5s", "-1"])
def test_negative_durations(raw: object) -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        parse_duration(raw)


def test_whole_seconds() -> None:
    assert parse_duration("2000ms", whole_seconds=True) == 2.0
    with pytest.raises(ValueError, match="whole number of seconds"):
        parse_duration("1500ms", whole_seconds=True)


def test_duration_keys_in_a_file(write_config: Callable[..., Path]) -> None:
    config = load(write_config, {"ping_interval": "1m30s", "pong_timeout": "500ms", "shutdown_timeout": 12})
    assert (config.ping_interval, config.pong_timeout, config.shutdown_timeout) == (90.0, 0.5, 12.0)


def test_history_ttl_needs_whole_seconds(write_config: Callable[..., Path]) -> None:
    error = load_error(write_config, {"history_size": 1, "history_ttl": "1500ms"})
    assert "whole number of seconds" in reason_for(error, "history_ttl")


# ---------------------------------------------------------------------------------------------------------
# Environment overrides


def test_centrifugo_secret_and_token_override_the_seed_file() -> None:
    env = {"CENTRIFUGO_SECRET": "env-secret", "CENTRIFUGO_TOKEN": "env-token"}
    config = load_config(str(SEED_FILE), env=env)
    assert config.token_hmac_secret_key == "env-secret"
    assert config.api_key == "env-token"


def test_jwt_secret_sets_platform_jwt_secret() -> None:
    config = load_config(str(SEED_FILE), env={"JWT_SECRET": "platform"})
    assert config.platform_jwt_secret == "platform"
    assert config.token_hmac_secret_key == "YOUR_SECRET"


def test_redis_password_host_and_port_from_environment() -> None:
    env = {"REDIS_PASSWORD": "pw", "REDIS_HOST": "redis.internal", "REDIS_PORT": "6390"}
    config = load_config(str(SEED_FILE), env=env)
    assert config.redis_password == "pw"
    assert config.redis_address == ("redis.internal:6390",)


def test_redis_host_from_environment_keeps_the_file_port(write_config: Callable[..., Path]) -> None:
    assert load(write_config, {"redis_host": "a", "redis_port": 7000}, {"REDIS_HOST": "b"}).redis_address == ("b:7000",)
    assert load(write_config, {"redis_address": "a:7001"}, {"REDIS_HOST": "b"}).redis_address == ("b:7001",)


def test_redis_address_from_environment_beats_file_host(write_config: Callable[..., Path]) -> None:
    config = load(write_config, {"redis_host": "a"}, {"NEOEVENTS_REDIS_ADDRESS": "c:1,d:2"})
    assert config.redis_address == ("c:1", "d:2")


@pytest.mark.parametrize(("text", "expected"), [("true", True), ("1", True), ("FALSE", False), ("0", False)])
def test_env_booleans(write_config: Callable[..., Path], text: str, expected: bool) -> None:
    config = load(write_config, {"client_insecure": not expected}, {"NEOEVENTS_CLIENT_INSECURE": text})
    assert config.client_insecure is expected


def test_env_ints_durations_and_strings(write_config: Callable[..., Path]) -> None:
    env = {
        "NEOEVENTS_PORT": "9100",
        "NEOEVENTS_PING_INTERVAL": "1m",
        "NEOEVENTS_HISTORY_TTL": "2h",
        "NEOEVENTS_HISTORY_SIZE": "50",
        "NEOEVENTS_ENGINE": "redis",
        "NEOEVENTS_LOG_LEVEL": "warn",
    }
    config = load(write_config, {"port": 8000, "history_size": 1, "history_ttl": 1}, env)
    assert config.port == 9100
    assert config.ping_interval == 60.0
    assert (config.channel.history_size, config.channel.history_ttl) == (50, 7200.0)
    assert config.engine == "redis"
    assert config.log_level == "warn"


@pytest.mark.parametrize(
    "text",
    ["https://a.example.com, https://b.example.com", '["https://a.example.com", "https://b.example.com"]'],
)
def test_env_lists(write_config: Callable[..., Path], text: str) -> None:
    config = load(write_config, {"allowed_origins": ["*"]}, {"NEOEVENTS_ALLOWED_ORIGINS": text})
    assert config.allowed_origins == ("https://a.example.com", "https://b.example.com")


def test_env_namespaces_as_json_replace_the_file_list(write_config: Callable[..., Path]) -> None:
    env = {"NEOEVENTS_NAMESPACES": '[{"name": "chat", "presence": true, "history_size": 3, "history_ttl": "1m"}]'}
    config = load(write_config, {"namespaces": [{"name": "old"}]}, env)
    chat = config.namespace("chat")
    assert chat is not None and chat.presence and chat.history_ttl == 60.0
    assert config.namespace("old") is None


def test_env_seed_aliases_under_neoevents_prefix(write_config: Callable[..., Path]) -> None:
    config = load(write_config, {}, {"NEOEVENTS_SECRET": "s", "NEOEVENTS_TOKEN": "t"})
    assert (config.token_hmac_secret_key, config.api_key) == ("s", "t")


def test_empty_env_variables_count_as_unset() -> None:
    config = load_config(str(SEED_FILE), env={"CENTRIFUGO_SECRET": "", "NEOEVENTS_PORT": "  "})
    assert config.token_hmac_secret_key == "YOUR_SECRET"
    assert config.port == 8000


def test_unrelated_neoevents_variables_are_ignored() -> None:
    config = load_config(str(SEED_FILE), env={"NEOEVENTS_CENTRIFUGO_BIN": "/usr/bin/centrifugo"})
    assert config.unknown_keys == ()


def test_conflicting_env_variables_are_an_error() -> None:
    env = {"CENTRIFUGO_SECRET": "one", "NEOEVENTS_TOKEN_HMAC_SECRET_KEY": "two"}
    with pytest.raises(ConfigError) as info:
        load_config(str(SEED_FILE), env=env)
    (problem,) = info.value.problems
    assert problem.key == "token_hmac_secret_key"
    assert "CENTRIFUGO_SECRET" in problem.reason
    assert problem.source == "environment variable NEOEVENTS_TOKEN_HMAC_SECRET_KEY"


def test_agreeing_env_variables_are_fine() -> None:
    config = load_config(str(SEED_FILE), env={"CENTRIFUGO_SECRET": "x", "NEOEVENTS_SECRET": "x"})
    assert config.token_hmac_secret_key == "x"


def test_env_errors_name_the_variable() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(str(SEED_FILE), env={"NEOEVENTS_PORT": "abc"})
    (problem,) = info.value.problems
    assert problem.key == "port"
    assert problem.source == "environment variable NEOEVENTS_PORT"
    assert str(problem) == 'port: must be an integer, got "abc" (from environment variable NEOEVENTS_PORT)'


def test_env_none_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CENTRIFUGO_TOKEN", "from-process")
    assert load_config(str(SEED_FILE)).api_key == "from-process"


# ---------------------------------------------------------------------------------------------------------
# Unknown keys


def test_unknown_keys_are_reported_not_fatal(write_config: Callable[..., Path]) -> None:
    content = {"port": 8001, "admin_password": "x", "namespaces": [{"name": "chat", "histroy_size": 3}]}
    config = load(write_config, content)
    assert config.port == 8001
    assert config.unknown_keys == ("admin_password", "namespaces[0].histroy_size")


def test_check_config_lists_unknown_keys_with_suggestions(write_config: Callable[..., Path]) -> None:
    problems = problems_of(write_config, {"prot": 1, "namespaces": [{"name": "chat", "histroy_size": 3}]})
    assert problems["prot"].startswith("unknown key")
    assert "'port'" in problems["prot"]
    assert "'history_size'" in problems["namespaces[0].histroy_size"]


def test_server_keys_inside_a_namespace_are_unknown(write_config: Callable[..., Path]) -> None:
    config = load(write_config, {"namespaces": [{"name": "chat", "port": 1}]})
    assert config.unknown_keys == ("namespaces[0].port",)


# ---------------------------------------------------------------------------------------------------------
# Errors carry the key path and a reason


@pytest.mark.parametrize(
    ("content", "key", "reason"),
    [
        ({"port": "abc"}, "port", 'must be an integer, got "abc"'),
        ({"port": 70000}, "port", "between 0 and 65535"),
        ({"port": 80.5}, "port", "must be an integer"),
        ({"port": True}, "port", "must be an integer"),
        ({"history_size": -1, "history_ttl": 1}, "history_size", "must be >= 0, got -1"),
        ({"ping_interval": "-5s"}, "ping_interval", "must not be negative"),
        ({"shutdown_timeout": "soon"}, "shutdown_timeout", "is not a duration"),
        ({"engine": "foo"}, "engine", "must be one of memory, redis"),
        ({"log_level": "loud"}, "log_level", "must be one of"),
        ({"allowed_origins": ["localhost:3000"]}, "allowed_origins", "is not an origin pattern"),
        ({"allowed_origins": ["http://localhost:3000/"]}, "allowed_origins", "is not an origin pattern"),
        ({"allowed_origins": [3000]}, "allowed_origins", "must be a string"),
        ({"allowed_origins": {"a": 1}}, "allowed_origins", "must be a list"),
        ({"redis_address": ["redis"]}, "redis_address", "is not a Redis address"),
        ({"redis_port": 0}, "redis_port", "between 1 and 65535"),
        ({"client_insecure": "maybe"}, "client_insecure", "must be a boolean"),
        ({"secret": 123}, "secret", "must be a string"),
        ({"channel_regex": "("}, "channel_regex", "not a valid regular expression"),
        ({"channel_max_length": 0}, "channel_max_length", "must be >= 1"),
        ({"history_size": 10}, "history_ttl", "history needs both"),
        ({"history_ttl": 10}, "history_size", "history needs both"),
        ({"force_recovery": True}, "force_recovery", "recovery needs history"),
        (
            {"history_size": 1, "history_ttl": 60, "history_meta_ttl": 30},
            "history_meta_ttl",
            "must not be less",
        ),
        ({"ping_interval": 5, "pong_timeout": 5}, "pong_timeout", "must be less than ping_interval"),
        ({"secret": "a", "token_hmac_secret_key": "b"}, "token_hmac_secret_key", "conflicts with secret"),
        ({"token": "a", "api_key": "b"}, "api_key", "conflicts with token"),
        ({"namespaces": {"name": "x"}}, "namespaces", "must be a list"),
        ({"namespaces": ["chat"]}, "namespaces", "item 0 must be an object"),
    ],
)
def test_errors_carry_key_and_reason(
    write_config: Callable[..., Path], content: dict[str, Any], key: str, reason: str
) -> None:
    assert reason in reason_for(load_error(write_config, content), key)


@pytest.mark.parametrize(
    ("namespace", "key", "reason"),
    [
        ({"name": "chat", "history_ttl": -5}, "namespaces[1].history_ttl", "must not be negative"),
        ({"name": "chat", "history_size": "ten"}, "namespaces[1].history_size", "must be an integer"),
        ({"name": "chat", "history_size": 5}, "namespaces[1].history_ttl", "history needs both"),
        ({"name": "x"}, "namespaces[1].name", "must match"),
        ({"name": "a b"}, "namespaces[1].name", "must match"),
        ({"name": 12}, "namespaces[1].name", "must match"),
        ({"presence": True}, "namespaces[1].name", "is required"),
        ({"name": "ok"}, "namespaces[1].name", "duplicate namespace 'ok' (also namespaces[0])"),
    ],
)
def test_namespace_errors_carry_their_path(
    write_config: Callable[..., Path], namespace: dict[str, Any], key: str, reason: str
) -> None:
    error = load_error(write_config, {"namespaces": [{"name": "ok"}, namespace]})
    assert reason in reason_for(error, key)


def test_all_errors_are_collected(write_config: Callable[..., Path]) -> None:
    error = load_error(write_config, {"port": "abc", "engine": "foo", "namespaces": [{"name": "x"}]})
    assert [problem.key for problem in error.problems] == ["port", "engine", "namespaces[0].name"]
    assert "port: must be an integer" in str(error)
    assert isinstance(error, ValueError)


def test_problem_str() -> None:
    assert str(Problem("port", "bad")) == "port: bad"
    assert str(Problem("port", "bad", "environment variable NEOEVENTS_PORT")) == (
        "port: bad (from environment variable NEOEVENTS_PORT)"
    )


def test_file_ints_and_bools_may_be_strings(write_config: Callable[..., Path]) -> None:
    config = load(write_config, {"port": "8100", "health": "false"})
    assert (config.port, config.health) == (8100, False)


# ---------------------------------------------------------------------------------------------------------
# Files


def test_missing_file(tmp_path: Path) -> None:
    path = str(tmp_path / "absent.json")
    with pytest.raises(ConfigError) as info:
        load_config(path, env=NO_ENV)
    assert info.value.problems[0].key == path
    assert "cannot read" in info.value.problems[0].reason


def test_invalid_json(write_config: Callable[..., Path]) -> None:
    path = write_config('{"port": 8000,\n "engine": }')
    (problem,) = check_config(str(path), env=NO_ENV)
    assert problem.key == str(path)
    assert problem.reason.startswith("invalid JSON at line 2 column")


def test_top_level_must_be_an_object(write_config: Callable[..., Path]) -> None:
    assert "must be an object" in problems_of(write_config, "[1, 2]")[str(write_config("[1, 2]"))]


def test_duplicate_json_keys_are_an_error(write_config: Callable[..., Path]) -> None:
    assert "appears twice" in problems_of(write_config, '{"port": 1, "port": 2}')["port"]


def test_yaml_with_pyyaml(write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType("yaml")
    fake.safe_load = json.loads  # type: ignore[attr-defined]
    fake.YAMLError = ValueError  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "yaml", fake)
    path = write_config('{"port": 8200, "secret": "s"}', name="config.yaml")
    config = load_config(str(path), env=NO_ENV)
    assert (config.port, config.token_hmac_secret_key) == (8200, "s")


def test_yaml_without_pyyaml(write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "yaml", None)
    path = write_config("port: 8000\n", name="config.yml")
    (problem,) = check_config(str(path), env=NO_ENV)
    assert "PyYAML" in problem.reason


# ---------------------------------------------------------------------------------------------------------
# Built-in namespaces and the development configuration


def test_dev_config() -> None:
    config = dev_config()
    assert config.engine == "memory"
    assert config.token_hmac_secret_key == DEV_SECRET
    assert config.api_key == DEV_API_KEY
    assert config.allowed_origins == ("*",)
    assert config.unknown_keys == ()


def test_dev_config_ignores_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CENTRIFUGO_SECRET", "from-env")
    assert dev_config().token_hmac_secret_key == DEV_SECRET
    assert load_config(None).token_hmac_secret_key == "from-env"


def test_tenant_channel_is_subscribable_with_no_config() -> None:
    namespace_name, _, _ = "tenant:123:deployments".partition(":")
    tenant = dev_config().namespace(namespace_name)
    assert tenant == NamespaceOptions(
        name="tenant",
        presence=True,
        join_leave=True,
        allow_subscribe_for_client=True,
        allow_history_for_subscriber=True,
        allow_presence_for_subscriber=True,
        allow_recovery=True,
        force_recovery=True,
        history_size=10,
        history_ttl=3600.0,
        rules=default_rules("tenant"),
    )


def test_builtin_namespaces_exist_in_every_config(write_config: Callable[..., Path]) -> None:
    config = load(write_config, {})
    assert [namespace.name for namespace in config.namespaces] == list(BUILTIN_NAMESPACES)
    assert config.builtin_namespaces


def test_a_file_namespace_replaces_the_builtin_one(write_config: Callable[..., Path]) -> None:
    config = load(write_config, {"namespaces": [{"name": "admin", "presence": False}]})
    names = [namespace.name for namespace in config.namespaces]
    assert names == ["admin", "tenant", "system"]
    # It keeps the built-in rules (replacing the options does not turn isolation off).
    assert config.namespace("admin") == NamespaceOptions(name="admin", rules=default_rules("admin"))


def test_builtin_namespaces_can_be_turned_off(write_config: Callable[..., Path]) -> None:
    config = load(write_config, {"builtin_namespaces": False, "namespaces": [{"name": "chat"}]})
    assert [namespace.name for namespace in config.namespaces] == ["chat"]
    assert not config.builtin_namespaces
    env_off = load(write_config, {}, {"NEOEVENTS_BUILTIN_NAMESPACES": "0"})
    assert env_off.namespaces == ()


def test_builtin_history_off_when_top_level_history_is_zero(write_config: Callable[..., Path]) -> None:
    tenant = load(write_config, {"history_size": 0}).namespace("tenant")
    assert tenant is not None
    assert (tenant.history_size, tenant.history_ttl) == (0, 0.0)


def test_config_is_immutable() -> None:
    config = dev_config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.port = 1  # type: ignore[misc]
    assert isinstance(config.namespaces, tuple) and isinstance(config.allowed_origins, tuple)


# ---------------------------------------------------------------------------------------------------------
# genconfig


def test_generated_config_loads(write_config: Callable[..., Path]) -> None:
    generated = generate_config()
    config = load(write_config, generated)
    assert config.unknown_keys == ()
    assert config.token_hmac_secret_key == generated["token_hmac_secret_key"]
    assert config.api_key == generated["api_key"]


def test_generated_secrets_are_random_and_distinct() -> None:
    first, second = generate_config(), generate_config()
    secrets_seen = {
        first["token_hmac_secret_key"],
        first["api_key"],
        second["token_hmac_secret_key"],
        second["api_key"],
    }
    assert len(secrets_seen) == 4
    assert all(len(secret) >= 32 for secret in secrets_seen)
    assert DEV_SECRET not in secrets_seen and DEV_API_KEY not in secrets_seen


# ---------------------------------------------------------------------------------------------------------
# The key table and the documentation


def test_every_model_field_has_a_key() -> None:
    assert uncovered_fields() == set()


def test_key_names_and_aliases_are_unique() -> None:
    names = [name for spec in KEYS for name in (spec.name, *spec.aliases)]
    assert len(names) == len(set(names))


def test_docs_contain_the_generated_key_reference() -> None:
    text = DOCS.read_text(encoding="utf-8")
    begin, end = "<!-- BEGIN KEY REFERENCE -->\n", "<!-- END KEY REFERENCE -->"
    embedded = text.split(begin, 1)[1].split(end, 1)[0]
    assert embedded == render_key_reference(), "docs/configuration.md is stale: regenerate the key reference"


def test_docs_list_every_key_alias_and_env_variable() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for spec in KEYS:
        assert f"`{spec.name}`" in text
        for alias in spec.aliases:
            assert f"`{alias}`" in text
        for var in spec.env_vars:
            assert f"`{var}`" in text

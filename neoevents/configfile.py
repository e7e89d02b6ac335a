"""Configuration loader: file + environment -> validated, immutable :class:`~neoevents.config.Config`.

Sources, lowest precedence first:

1. the defaults of :class:`~neoevents.config.Config` (or, with no file at all, :func:`dev_config`'s values);
2. the configuration file (JSON; YAML too when PyYAML is importable);
3. the environment (``NEOEVENTS_<KEY>`` for every top-level key, plus the seed's ``CENTRIFUGO_SECRET``,
   ``CENTRIFUGO_TOKEN``, ``JWT_SECRET``, ``REDIS_PASSWORD``, ``REDIS_HOST`` and ``REDIS_PORT``).

Every accepted key is declared once, in :data:`KEYS`: its name, aliases, type (the parser), extra environment
variables and documentation. Validation, environment handling and the key reference in
``docs/configuration.md`` (see :func:`render_key_reference`) all come from that table.

Problems are collected, not raised one at a time: :func:`load_config` raises a single :class:`ConfigError`
listing every :class:`Problem` (key path + reason), and :func:`check_config` returns them.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import json
import math
import os
import re
import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Final, Literal, NamedTuple

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from neoevents.auth.rules import ACTIONS, RuleSyntaxError, compile_expression, default_rules, rule_problems
from neoevents.config import DEV_API_KEY, DEV_SECRET, ChannelRules, Config, NamespaceOptions, RateLimit

__all__ = [
    "BUILTIN_NAMESPACES",
    "KEYS",
    "NAMESPACE_KEYS",
    "ConfigError",
    "KeySpec",
    "Problem",
    "ValueType",
    "builtin_namespace",
    "channel_option_problems",
    "check_config",
    "dev_config",
    "generate_config",
    "load_config",
    "parse_duration",
    "render_key_reference",
    "uncovered_fields",
]

#: Namespaces that exist unless the file defines one of the same name or sets ``builtin_namespaces: false``.
BUILTIN_NAMESPACES: Final = ("tenant", "admin", "system")
#: History of the built-in namespaces when the top level sets no ``history_size`` / ``history_ttl``.
BUILTIN_HISTORY_SIZE: Final = 10
BUILTIN_HISTORY_TTL: Final = 3600.0

NAMESPACE_NAME_PATTERN: Final = r"^[-a-zA-Z0-9_.]{2,}$"
DEFAULT_REDIS_HOST: Final = "127.0.0.1"
DEFAULT_REDIS_PORT: Final = 6379
ENV_PREFIX: Final = "NEOEVENTS_"

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
# Value types: a documentation label and a parser that raises ValueError(reason).


@dataclass(frozen=True, slots=True)
class ValueType:
    """How a key's value is parsed. ``parse`` accepts the file's native value or an environment string and
    returns the typed value, or raises :class:`ValueError` whose message is the human reason."""

    label: str
    parse: Callable[[object], Any]
    is_duration: bool = False


def _show(raw: object) -> str:
    """A short rendering of a bad value for error messages."""
    text = json.dumps(raw, default=repr)
    return text if len(text) <= 60 else text[:57] + "..."


_TRUE_WORDS: Final = frozenset({"true", "1", "yes", "on"})
_FALSE_WORDS: Final = frozenset({"false", "0", "no", "off"})


def _parse_bool(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str):
        word = raw.strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
    raise ValueError(f"must be a boolean (true or false), got {_show(raw)}")


_INT_TEXT: Final = re.compile(r"[+-]?\d+")


def _parse_int(raw: object) -> int:
    if isinstance(raw, bool):
        raise ValueError(f"must be an integer, got {_show(raw)}")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    if isinstance(raw, str) and _INT_TEXT.fullmatch(raw.strip()):
        return int(raw.strip())
    raise ValueError(f"must be an integer, got {_show(raw)}")


def _integer(minimum: int = 0, maximum: int | None = None) -> ValueType:
    label = f"int ({minimum}-{maximum})" if maximum is not None else f"int (>= {minimum})"

    def parse(raw: object) -> int:
        value = _parse_int(raw)
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
            raise ValueError(f"must be {bound}, got {value}")
        return value

    return ValueType(label, parse)


_GO_UNIT_NS: Final = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # Go accepts both micro signs
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_GO_PART: Final = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_NUMBER_TEXT: Final = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)")
_DURATION_HINT: Final = "use seconds (3600) or a Go duration such as 300s, 1m30s, 1h, 500ms"


def _go_duration_ns(text: str) -> Fraction:
    """Nanoseconds in a Go duration string (``1h30m``, ``-5s``, ``0``), exact."""
    sign = 1
    body = text
    if body[:1] in ("+", "-"):
        sign = -1 if body[0] == "-" else 1
        body = body[1:]
    if body == "0":
        return Fraction(0)
    if not body:
        raise ValueError(f"{text!r} is not a duration; {_DURATION_HINT}")
    total = Fraction(0)
    pos = 0
    while pos < len(body):
        match = _GO_PART.match(body, pos)
        if match is None:
            raise ValueError(f"{text!r} is not a duration; {_DURATION_HINT}")
        total += Fraction(match.group(1)) * _GO_UNIT_NS[match.group(2)]
        pos = match.end()
    return sign * total


def _duration_seconds(raw: object) -> Fraction:
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise ValueError(f"must be a duration, got {_show(raw)}; {_DURATION_HINT}")
    if isinstance(raw, float) and not math.isfinite(raw):
        raise ValueError(f"must be a finite duration, got {raw}")
    if isinstance(raw, int | float):
        return Fraction(raw)
    text = raw.strip()
    if _NUMBER_TEXT.fullmatch(text):
        return Fraction(text)
    return _go_duration_ns(text) / 1_000_000_000


def parse_duration(raw: object, *, whole_seconds: bool = False) -> float:
    """Seconds in ``raw``: a number of seconds (``3600``, ``2.5``, ``"3600"``) or a Go duration string
    (``"300s"``, ``"1h"``, ``"1m30s"``, ``"500ms"``). Negative values raise :class:`ValueError`; so do
    fractional seconds when ``whole_seconds`` is set (Centrifugo requires them for history TTLs)."""
    seconds = _duration_seconds(raw)
    if seconds < 0:
        raise ValueError(f"must not be negative, got {_show(raw)}")
    if whole_seconds and seconds.denominator != 1:
        raise ValueError(f"must be a whole number of seconds, got {_show(raw)}")
    return float(seconds)


def _duration(*, whole_seconds: bool = False, maximum: float | None = None) -> ValueType:
    label = "duration (whole seconds)" if whole_seconds else "duration"
    if maximum is not None:
        label += f" (at most {maximum:g}s)"

    def parse(raw: object) -> float:
        seconds = parse_duration(raw, whole_seconds=whole_seconds)
        if maximum is not None and seconds > maximum:
            raise ValueError(f"must be at most {maximum:g}s, got {_show(raw)}")
        return seconds

    return ValueType(label, parse, is_duration=True)


def _parse_string(raw: object) -> str:
    if not isinstance(raw, str):
        raise ValueError(f"must be a string, got {_show(raw)}")
    return raw


def _string() -> ValueType:
    return ValueType("string", _parse_string)


def _choice(*options: str) -> ValueType:
    def parse(raw: object) -> str:
        value = _parse_string(raw).strip().lower()
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}; got {_show(raw)}")
        return value

    return ValueType(" or ".join(f"`{option}`" for option in options), parse)


def _parse_regex(raw: object) -> str:
    pattern = _parse_string(raw)
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"is not a valid regular expression: {exc}") from None
    return pattern


def _regex() -> ValueType:
    return ValueType("regular expression", _parse_regex)


HMAC_ALGORITHMS: Final = ("HS256", "HS384", "HS512")
RSA_ALGORITHMS: Final = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
EC_ALGORITHMS: Final = ("ES256", "ES384", "ES512")
#: Largest ``token_leeway`` accepted (seconds).
MAX_TOKEN_LEEWAY: Final = 30.0


def _algorithm_list(allowed: tuple[str, ...]) -> ValueType:
    """A non-empty list of JWT algorithm names, each one of ``allowed`` (exact spelling)."""

    def parse(raw: object) -> tuple[str, ...]:
        items = _raw_list(raw)
        if not items:
            raise ValueError("must list at least one algorithm")
        for index, item in enumerate(items):
            if item not in allowed:
                raise ValueError(f"item {index} ({_show(item)}) must be one of {', '.join(allowed)}")
        return tuple(dict.fromkeys(str(item) for item in items))

    return ValueType("list of algorithms", parse)


def _pem_public_key(kind: Literal["RSA", "ECDSA"]) -> ValueType:
    """A PEM public key of ``kind`` (empty: none)."""

    def parse(raw: object) -> str:
        text = _parse_string(raw)
        if not text.strip():
            return ""
        try:
            key = serialization.load_pem_public_key(text.encode())
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise ValueError(f"is not a PEM public key (-----BEGIN PUBLIC KEY-----) for {kind}") from None
        expected = rsa.RSAPublicKey if kind == "RSA" else ec.EllipticCurvePublicKey
        if not isinstance(key, expected):
            raise ValueError(f"is a PEM public key, but not an {kind} one")
        return text

    return ValueType("PEM public key", parse)


_HTTP_URL: Final = re.compile(r"https?://[^\s/?#]+(/\S*)?")


def _url() -> ValueType:
    def parse(raw: object) -> str:
        url = _parse_string(raw).strip()
        if url and not _HTTP_URL.fullmatch(url):
            raise ValueError(f"must be an http:// or https:// URL, got {_show(raw)}")
        return url

    return ValueType("URL", parse)


_RATE_TEXT: Final = re.compile(r"(\d+)\s*(?:/\s*(\S+))?")
_RATE_HINT: Final = "use a count (per rate_limit_window) or count/duration such as 20/1s, 1000/1m or 5/s"


def _parse_rate(raw: object) -> RateLimit:
    """``N`` (per ``rate_limit_window``) or ``N/duration``; a bare unit means one of it (``5/s``)."""
    if isinstance(raw, str):
        match = _RATE_TEXT.fullmatch(raw.strip())
        if match is None:
            raise ValueError(f"must be a rate, got {_show(raw)}; {_RATE_HINT}")
        count, per = int(match.group(1)), match.group(2)
        if per is None:
            return RateLimit(count)
        try:
            period = parse_duration("1" + per if per[0].isalpha() else per)
        except ValueError as exc:
            raise ValueError(f"has a bad period: {exc}") from None
        if period <= 0:
            raise ValueError(f"must have a period greater than 0, got {_show(raw)}")
        return RateLimit(count, period)
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
        raise ValueError(f"must be a rate, got {_show(raw)}; {_RATE_HINT}")
    return RateLimit(raw)


def _rate() -> ValueType:
    return ValueType("rate (`N` or `N/duration`)", _parse_rate)


_RULE_KEYS: Final = ("pattern", *ACTIONS)


def _parse_rules(raw: object) -> ChannelRules:
    """A ``rules`` object: ``pattern`` (required) and a CEL expression (or true/false) per action. Only the
    shape is checked here; the pattern and expressions are compiled by ``channel_option_problems``."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"is not valid JSON: {exc.msg}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"must be an object with a pattern and rules per action, got {_show(raw)}")
    values: dict[str, str] = {}
    for key, value in raw.items():
        if key not in _RULE_KEYS:
            close = difflib.get_close_matches(str(key), _RULE_KEYS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; expected {', '.join(_RULE_KEYS)}"
            raise ValueError(f"has an unknown key {_show(key)}{hint}")
        if isinstance(value, bool) and key != "pattern":
            value = "true" if value else "false"
        if not isinstance(value, str):
            raise ValueError(f"{key} must be a string, got {_show(value)}")
        values[key] = value
    if "pattern" not in values:
        raise ValueError("needs a pattern, e.g. tenant:{tenant_id}:{resource}")
    return ChannelRules(**values)


def _parse_rule_expression(raw: object) -> str:
    if isinstance(raw, bool):
        return "true" if raw else "false"
    return _parse_string(raw)


def _raw_list(raw: object) -> list[object]:
    """A list from a native list, a JSON array string or a comma-separated string."""
    if isinstance(raw, list | tuple):
        return list(raw)
    if isinstance(raw, str):
        text = raw.strip()
        if text.startswith("["):
            try:
                decoded = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"is not a valid JSON array: {exc.msg}") from None
            if isinstance(decoded, list):
                return decoded
        return [item.strip() for item in text.split(",") if item.strip()]
    raise ValueError(f"must be a list of strings, got {_show(raw)}")


def _string_list(label: str, check: Callable[[str], str | None]) -> ValueType:
    """A list of strings; ``check`` returns a reason for a bad item, or None."""

    def parse(raw: object) -> tuple[str, ...]:
        items: list[str] = []
        for index, item in enumerate(_raw_list(raw)):
            if not isinstance(item, str):
                raise ValueError(f"item {index} must be a string, got {_show(item)}")
            reason = check(item)
            if reason is not None:
                raise ValueError(f"item {index} ({item!r}) {reason}")
            items.append(item)
        return tuple(items)

    return ValueType(label, parse)


_ORIGIN_PATTERN: Final = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s/?#]+")


def _origin_problem(pattern: str) -> str | None:
    if pattern == "*" or _ORIGIN_PATTERN.fullmatch(pattern):
        return None
    return "is not an origin pattern: use '*' or scheme://host[:port] ('*' allowed in the host), no path"


_REDIS_URL: Final = re.compile(r"(redis|rediss|unix|tcp)://\S+")
_HOST_PORT: Final = re.compile(r"(\[[0-9a-fA-F:.]+\]|[^\s:/\[\]]+):(\d{1,5})")


def _redis_address_problem(address: str) -> str | None:
    if _REDIS_URL.fullmatch(address):
        return None
    match = _HOST_PORT.fullmatch(address)
    if match and 0 < int(match.group(2)) <= 65535:
        return None
    return "is not a Redis address: use host:port or a redis://, rediss:// or unix:// URL"


def _parse_namespace_list(raw: object) -> tuple[dict[str, object], ...]:
    """The namespace objects, checked only for shape; their keys are parsed by ``_build_namespace``."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"is not valid JSON: {exc.msg}") from None
    if not isinstance(raw, list | tuple):
        raise ValueError(f"must be a list of namespace objects, got {_show(raw)}")
    for index, item in enumerate(raw):
        if not isinstance(item, dict):
            raise ValueError(f"item {index} must be an object with a name, got {_show(item)}")
    return tuple(raw)


# ----------------------------------------------------------------------------------------------------
# The key table

Target = Literal["config", "channel", "input"]


@dataclass(frozen=True, slots=True)
class KeySpec:
    """One accepted key.

    ``target`` says where the value goes:

    - ``config``: the :class:`Config` field of the same name;
    - ``channel``: the :class:`NamespaceOptions` field of the same name, valid at top level (the default
      namespace) and inside ``namespaces`` entries;
    - ``input``: an input-only key combined into other fields (``redis_host`` / ``redis_port``).

    ``aliases`` are other accepted names (the seed's), ``env`` are environment variables read besides
    ``NEOEVENTS_<NAME>``, ``default`` overrides the documented default.
    """

    name: str
    type: ValueType
    doc: str
    target: Target = "config"
    aliases: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    default: str | None = None

    @property
    def env_vars(self) -> tuple[str, ...]:
        """Every environment variable that sets this key, in the order they are read."""
        generic = tuple(ENV_PREFIX + name.upper() for name in (self.name, *self.aliases))
        return (*self.env, *generic)


_BOOL: Final = ValueType("bool", _parse_bool)

KEYS: Final[tuple[KeySpec, ...]] = (
    # Server.
    KeySpec("address", _string(), "Interface the HTTP/WebSocket server binds to."),
    KeySpec("port", _integer(0, 65535), "TCP port of the HTTP/WebSocket server (0 picks a free port)."),
    # Connection tokens.
    KeySpec(
        "token_hmac_secret_key",
        _string(),
        "HMAC secret (HS256/384/512) that client connection and subscription JWTs are signed with.",
        aliases=("secret",),
        env=("CENTRIFUGO_SECRET",),
    ),
    KeySpec(
        "platform_jwt_secret",
        _string(),
        "The platform's own HMAC key for user tokens; connection tokens signed with it are accepted too. "
        "Empty disables it.",
        env=("JWT_SECRET",),
    ),
    KeySpec(
        "token_rsa_public_key",
        _pem_public_key("RSA"),
        "PEM RSA public key for RS256/384/512 and PS256/384/512 connection JWTs.",
    ),
    KeySpec(
        "token_ecdsa_public_key",
        _pem_public_key("ECDSA"),
        "PEM ECDSA public key for ES256/384/512 connection JWTs.",
    ),
    KeySpec("token_audience", _string(), "When set, connection JWTs must carry this `aud`."),
    KeySpec("token_issuer", _string(), "When set, connection JWTs must carry this `iss`."),
    KeySpec(
        "token_leeway",
        _duration(maximum=MAX_TOKEN_LEEWAY),
        f"Clock skew tolerated when checking `exp` / `nbf` of tokens (at most {MAX_TOKEN_LEEWAY:g}s).",
    ),
    KeySpec(
        "token_require_exp",
        _BOOL,
        "Refuse connection and subscription tokens without an `exp` claim (close 3500 / error 103).",
    ),
    KeySpec(
        "token_hmac_algorithms",
        _algorithm_list(HMAC_ALGORITHMS),
        "Algorithms the HMAC keys (`token_hmac_secret_key`, `platform_jwt_secret`, "
        "`subscription_token_hmac_secret_key`) may verify.",
    ),
    KeySpec(
        "token_rsa_algorithms",
        _algorithm_list(RSA_ALGORITHMS),
        "Algorithms `token_rsa_public_key` may verify.",
    ),
    KeySpec(
        "token_ecdsa_algorithms",
        _algorithm_list(EC_ALGORITHMS),
        "Algorithms `token_ecdsa_public_key` may verify (only the one matching the key's curve ever does).",
    ),
    KeySpec(
        "token_jwks_public_endpoint",
        _url(),
        "URL of a JWKS document (`http://` or `https://`) with RS/PS/ES/EdDSA keys, chosen by the token's "
        "`kid`. Fetched only for a token whose header and `iss`/`aud` passed every check; never redirected.",
    ),
    KeySpec(
        "token_jwks_algorithms",
        _algorithm_list((*RSA_ALGORITHMS, *EC_ALGORITHMS, "EdDSA")),
        "Algorithms keys from the JWKS endpoint may verify (a key's own `alg` narrows it further).",
    ),
    KeySpec(
        "token_jwks_cache_ttl",
        _duration(),
        "How long fetched JWKS keys are used before the endpoint is asked again; an unknown `kid` refetches "
        "at most every 10 s.",
    ),
    KeySpec(
        "subscription_token_hmac_secret_key",
        _string(),
        "HMAC secret for subscription JWTs; empty means the connection token keys are used.",
    ),
    # Server API.
    KeySpec(
        "api_key",
        _string(),
        "Key the server HTTP API requires in `Authorization: apikey <KEY>` or `X-API-Key`.",
        aliases=("token",),
        env=("CENTRIFUGO_TOKEN",),
    ),
    KeySpec("api_insecure", _BOOL, "Serve the server API without checking the API key (development only)."),
    # Engine.
    KeySpec("engine", _choice("memory", "redis"), "Where history, presence and PUB/SUB live."),
    KeySpec(
        "redis_address",
        _string_list("list of strings (or one string)", _redis_address_problem),
        "Redis server(s) as `host:port` or `redis://` URLs. With engine `redis` and no address, "
        f"`{DEFAULT_REDIS_HOST}:{DEFAULT_REDIS_PORT}` is used.",
    ),
    KeySpec(
        "redis_host",
        _string(),
        "Seed key: Redis host, combined with `redis_port` into `redis_address`.",
        target="input",
        env=("REDIS_HOST",),
        default=f'"{DEFAULT_REDIS_HOST}"',
    ),
    KeySpec(
        "redis_port",
        _integer(1, 65535),
        "Seed key: Redis port, combined with `redis_host` into `redis_address`.",
        target="input",
        env=("REDIS_PORT",),
        default=str(DEFAULT_REDIS_PORT),
    ),
    KeySpec("redis_password", _string(), "Redis password (AUTH).", env=("REDIS_PASSWORD",)),
    KeySpec("redis_db", _integer(0), "Redis database number."),
    KeySpec("redis_prefix", _string(), "Prefix of every Redis key and PUB/SUB channel."),
    KeySpec(
        "redis_presence_ttl",
        _duration(),
        "How long a presence entry lives in Redis unless its node refreshes it (every third of this); the "
        "entries of a node that stopped disappear after it.",
        aliases=("presence_ttl",),
    ),
    # Client connections.
    KeySpec(
        "allowed_origins",
        _string_list("list of origin patterns", _origin_problem),
        "Browser origins allowed to open connections: `*`, or `scheme://host[:port]` with `*` wildcards in "
        "the host. Empty (as in Centrifugo) accepts only an Origin whose host equals the request's Host; "
        "requests without an Origin header are always accepted.",
    ),
    KeySpec("client_insecure", _BOOL, "Accept connections without a token and skip channel permission checks."),
    KeySpec("client_anonymous", _BOOL, "Accept connections without a token as anonymous users."),
    KeySpec("client_channel_limit", _integer(0), "Maximum channels one connection may subscribe to."),
    KeySpec("channel_max_length", _integer(1), "Maximum length of a channel name in bytes."),
    KeySpec(
        "client_queue_max_size",
        _integer(0),
        "Maximum bytes queued for one slow client before it is disconnected.",
    ),
    KeySpec("client_connection_limit", _integer(0), "Maximum connections per node; 0 is unlimited."),
    KeySpec("client_user_connection_limit", _integer(0), "Maximum connections per user per node; 0 is unlimited."),
    KeySpec(
        "websocket_message_size_limit",
        _integer(0),
        "Maximum size in bytes of one incoming WebSocket message.",
    ),
    KeySpec("websocket_read_buffer_size", _integer(0), "WebSocket read buffer size in bytes; 0 uses the default."),
    KeySpec(
        "client_stale_close_delay",
        _duration(),
        "Time a connection may stay open without sending its connect command.",
    ),
    KeySpec(
        "client_expired_close_delay",
        _duration(),
        "Extra time an expired connection gets to refresh its token before being closed.",
    ),
    KeySpec(
        "client_expired_sub_close_delay",
        _duration(),
        "Extra time an expired subscription gets to refresh its token before being unsubscribed.",
    ),
    KeySpec("ping_interval", _duration(), "Interval between server pings."),
    KeySpec("pong_timeout", _duration(), "Time a client has to answer a ping; must be less than `ping_interval`."),
    KeySpec(
        "client_history_max_publication_limit",
        _integer(0),
        "Maximum publications a client may ask for in one history call.",
    ),
    KeySpec(
        "client_recovery_max_publication_limit",
        _integer(0),
        "Maximum publications recovered on resubscribe; more means the stream is reported as not recovered.",
    ),
    KeySpec("client_concurrency", _integer(0), "Commands of one connection handled concurrently; 0 is sequential."),
    # Rate limits and quotas: see "Rate limits" in docs/configuration.md.
    KeySpec(
        "enable_rate_limit",
        _BOOL,
        "Seed key: turn on the rate limits and quotas below (each can still be turned off with 0).",
        env=("ENABLE_RATE_LIMIT",),
    ),
    KeySpec(
        "rate_limit_window",
        _duration(),
        "Seed key: the period of `rate_limit_max_requests` and of every limit given as a bare count.",
        env=("RATE_LIMIT_WINDOW",),
    ),
    KeySpec(
        "rate_limit_max_requests",
        _integer(0),
        "Seed key: the budget, per `rate_limit_window`, of every limit below that is not set; 0 turns those off.",
        env=("RATE_LIMIT_MAX_REQUESTS",),
    ),
    KeySpec(
        "client_command_rate_limit",
        _rate(),
        "Commands one connection may send (`connect` and pongs are not counted); over it a command gets error "
        "111 (temporary). Unset: the seed budget.",
        default="unset",
    ),
    KeySpec(
        "client_user_command_rate_limit",
        _rate(),
        "Commands one user may send over all their connections on this node; over it: error 111. Anonymous "
        "connections have only the per-connection limit. Unset: the seed budget.",
        default="unset",
    ),
    KeySpec(
        "client_rejected_command_limit",
        _rate(),
        "Commands refused with 111 one connection may accumulate; one more closes it with 3013 (a client that "
        "keeps sending more than twice its budget). Unset: the seed budget.",
        default="unset",
    ),
    KeySpec(
        "client_ip_connection_rate_limit",
        _rate(),
        "WebSocket connection attempts per client IP address (IPv6: per /64 network); over it the upgrade is "
        "refused with HTTP 429 and `Retry-After`. Unset: the seed budget.",
        default="unset",
    ),
    KeySpec(
        "api_user_tokens",
        _BOOL,
        "Also accept `Authorization: Bearer <user JWT>` on the server API, for `publish`, `broadcast`, `history`, "
        "`presence` and `presence_stats` only, held to the same channel rules as a WebSocket connection.",
    ),
    KeySpec(
        "api_tenant_publish_rate_limit",
        _rate(),
        "Publications through the server HTTP API per tenant (the `{id}` of `tenant:{id}:...` channels; other "
        "channels are not limited); over it the request gets HTTP 429 with `Retry-After`. Unset: the seed budget.",
        default="unset",
    ),
    # Channels.
    KeySpec(
        "namespaces",
        ValueType("list of namespace objects", _parse_namespace_list),
        "Channel namespaces: objects with a `name` and any channel option below. Options are not inherited "
        "from the top level. In the environment, a JSON array.",
    ),
    KeySpec(
        "builtin_namespaces",
        _BOOL,
        "Add the built-in `tenant`, `admin` and `system` namespaces the file does not define, and give a namespace "
        "of those names without `rules` the built-in rules.",
    ),
    # Channel rules: see "Channel rules" in docs/configuration.md.
    KeySpec("tenant_claim", _string(), "Token claim the rule variable `tenant` is read from."),
    KeySpec("roles_claim", _string(), "Token claim the rule variable `roles` is read from."),
    KeySpec("admin_role", _string(), "Role that makes the rule variable `admin` true (platform administrators)."),
    KeySpec(
        "tenant_publish_rule",
        ValueType("CEL expression", _parse_rule_expression),
        "Publish rule of the built-in `tenant` rules (client and user-token publications); "
        "`vars.tenant_id == tenant` lets users publish into their own tenant.",
    ),
    # Operations.
    KeySpec(
        "log_level",
        _choice("trace", "debug", "info", "warn", "error", "none"),
        "Minimum level of log records written.",
    ),
    KeySpec("health", _BOOL, "Serve `GET /health`."),
    KeySpec("prometheus", _BOOL, "Serve Prometheus metrics at `GET /metrics`."),
    KeySpec("shutdown_timeout", _duration(), "Time allowed for a graceful shutdown before connections are cut."),
    KeySpec(
        "test_echo_endpoint",
        _BOOL,
        "Test only: serve a WebSocket echo endpoint at `/test/echo`, on the same WebSocket stack and limits, for "
        "protocol conformance runs. Never enable it in production.",
    ),
    # Channel options: top level (= the default namespace) and inside each namespace.
    KeySpec("presence", _BOOL, "Keep presence information (who is subscribed).", target="channel"),
    KeySpec("join_leave", _BOOL, "Send join/leave messages to subscribers.", target="channel"),
    KeySpec(
        "force_push_join_leave",
        _BOOL,
        "Push join/leave messages to every subscriber without them asking.",
        target="channel",
    ),
    KeySpec(
        "history_size",
        _integer(0),
        "Publications kept per channel; history needs both `history_size` and `history_ttl`.",
        target="channel",
    ),
    KeySpec(
        "history_ttl",
        _duration(whole_seconds=True),
        "How long publications are kept in history.",
        target="channel",
    ),
    KeySpec(
        "history_meta_ttl",
        _duration(whole_seconds=True),
        "How long a channel's stream position (offset, epoch) is kept; 0 uses the server default. "
        "Must not be less than `history_ttl`.",
        target="channel",
    ),
    KeySpec("force_positioning", _BOOL, "Turn on positioning for every subscription.", target="channel"),
    KeySpec("allow_positioning", _BOOL, "Let clients ask for positioning.", target="channel"),
    KeySpec(
        "force_recovery",
        _BOOL,
        "Turn on recovery for every subscription (needs history).",
        target="channel",
    ),
    KeySpec("allow_recovery", _BOOL, "Let clients ask for recovery.", target="channel"),
    KeySpec(
        "allow_subscribe_for_client",
        _BOOL,
        "Authenticated clients may subscribe without a subscription token.",
        target="channel",
    ),
    KeySpec(
        "allow_subscribe_for_anonymous",
        _BOOL,
        "Anonymous clients may subscribe without a subscription token.",
        target="channel",
    ),
    KeySpec("allow_publish_for_client", _BOOL, "Authenticated clients may publish.", target="channel"),
    KeySpec("allow_publish_for_subscriber", _BOOL, "Subscribers may publish.", target="channel"),
    KeySpec("allow_publish_for_anonymous", _BOOL, "Anonymous clients may publish.", target="channel"),
    KeySpec(
        "allow_presence_for_client",
        _BOOL,
        "Authenticated clients may call presence.",
        target="channel",
    ),
    KeySpec("allow_presence_for_subscriber", _BOOL, "Subscribers may call presence.", target="channel"),
    KeySpec("allow_presence_for_anonymous", _BOOL, "Anonymous clients may call presence.", target="channel"),
    KeySpec("allow_history_for_client", _BOOL, "Authenticated clients may call history.", target="channel"),
    KeySpec("allow_history_for_subscriber", _BOOL, "Subscribers may call history.", target="channel"),
    KeySpec("allow_history_for_anonymous", _BOOL, "Anonymous clients may call history.", target="channel"),
    KeySpec(
        "allow_user_limited_channels",
        _BOOL,
        "Channels with `#user` suffixes are subscribable by the listed users without a token.",
        target="channel",
    ),
    KeySpec(
        "channel_regex",
        _regex(),
        "When set, channel names (after the namespace) must match it.",
        target="channel",
    ),
    KeySpec(
        "rules",
        ValueType("rules object", _parse_rules),
        "Channel `pattern` and a CEL rule per action (`subscribe`, `publish`, `history`, `presence`); replaces "
        "the `allow_*` options. See [Channel rules](#channel-rules).",
        target="channel",
        default="none",
    ),
)

#: Keys valid inside a ``namespaces`` entry (besides ``name``).
NAMESPACE_KEYS: Final = tuple(spec for spec in KEYS if spec.target == "channel")

_BY_NAME: Final = {spec.name: spec for spec in KEYS}
_BY_INPUT_NAME: Final = {name: spec for spec in KEYS for name in (spec.name, *spec.aliases)}
_NAMESPACE_BY_NAME: Final = {spec.name: spec for spec in NAMESPACE_KEYS}


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
        spec = _BY_INPUT_NAME.get(entry.key)
        if spec is None:
            report.unknown_key(entry.key, entry.key, _BY_INPUT_NAME, entry.source)
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
        report.error(where, f"the top level must be an object of keys, got {_show(data)}")
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
    match = _HOST_PORT.fullmatch(addresses[0]) if addresses else None
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
        spec = _NAMESPACE_BY_NAME.get(key)
        if spec is None:
            report.unknown_key(f"{path}.{key}", key, [*_NAMESPACE_BY_NAME, "name"], source)
            continue
        try:
            values[key] = spec.type.parse(value)
        except ValueError as exc:
            report.error(f"{path}.{key}", str(exc), source)
    name = raw.get("name")
    if not isinstance(name, str) or re.fullmatch(NAMESPACE_NAME_PATTERN, name) is None:
        reason = "is required" if name is None else f"must match {NAMESPACE_NAME_PATTERN}, got {_show(name)}"
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
        target = _BY_NAME[name].target
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


# ----------------------------------------------------------------------------------------------------
# Documentation


def _default_of(spec: KeySpec) -> str:
    if spec.default is not None:
        return spec.default
    model: object = NamespaceOptions() if spec.target == "channel" else Config()
    value = getattr(model, spec.name)
    if spec.type.is_duration:
        return f"{value:g}s" if value else "0"
    if isinstance(value, tuple):
        return json.dumps(list(value))
    return json.dumps(value)


def _reference_rows(specs: Iterable[KeySpec]) -> list[str]:
    rows = [
        "| Key | Aliases | Type | Default | Environment | Description |",
        "|---|---|---|---|---|---|",
    ]
    for spec in specs:
        aliases = ", ".join(f"`{alias}`" for alias in spec.aliases) or "-"
        env = ", ".join(f"`{var}`" for var in spec.env_vars)
        default = f"`{_default_of(spec)}`"
        rows.append(f"| `{spec.name}` | {aliases} | {spec.type.label} | {default} | {env} | {spec.doc} |")
    return rows


def render_key_reference() -> str:
    """The Markdown key reference embedded in ``docs/configuration.md``, generated from :data:`KEYS`."""
    server = [spec for spec in KEYS if spec.target != "channel"]
    lines = [
        "### Server keys",
        "",
        *_reference_rows(server),
        "",
        "### Channel options",
        "",
        "Valid at the top level (options of the default namespace, channels without `:`) and inside each",
        "`namespaces` entry. The environment variables set the top-level value only.",
        "",
        *_reference_rows(NAMESPACE_KEYS),
    ]
    return "\n".join(lines) + "\n"


def _field_names(model: type[Any]) -> set[str]:
    return {f.name for f in dataclasses.fields(model)}


def uncovered_fields() -> set[str]:
    """Model fields no key sets (expected empty: ``channel``, ``unknown_keys`` and ``name`` are derived)."""
    config_fields = _field_names(Config) - {"channel", "unknown_keys"}
    channel_fields = _field_names(NamespaceOptions) - {"name"}
    config_keys = {spec.name for spec in KEYS if spec.target == "config"}
    channel_keys = {spec.name for spec in NAMESPACE_KEYS}
    return (config_fields - config_keys) | {f"channel.{name}" for name in channel_fields - channel_keys}

"""The key table: every accepted configuration key, declared once.

A :class:`KeySpec` gives a key's name, aliases (the seed's spellings), value type, extra environment variables
and documentation. The loader (:mod:`neoevents.configfile`), the environment handling and the key reference in
``docs/configuration.md`` (:func:`render_key_reference`) all read :data:`KEYS`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, Literal

from neoevents.config import Config, NamespaceOptions
from neoevents.configvalues import (
    EC_ALGORITHMS,
    HMAC_ALGORITHMS,
    MAX_TOKEN_LEEWAY,
    RSA_ALGORITHMS,
    ValueType,
    algorithm_list,
    choice,
    duration,
    integer,
    network_problem,
    origin_problem,
    parse_bool,
    parse_namespace_list,
    parse_rule_expression,
    parse_rules,
    pem_public_key,
    rate,
    redis_address_problem,
    regex,
    string,
    string_list,
    url,
)

ENV_PREFIX: Final = "NEOEVENTS_"
DEFAULT_REDIS_HOST: Final = "127.0.0.1"
DEFAULT_REDIS_PORT: Final = 6379


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


_BOOL: Final = ValueType("bool", parse_bool)

KEYS: Final[tuple[KeySpec, ...]] = (
    # Server.
    KeySpec("address", string(), "Interface the HTTP/WebSocket server binds to."),
    KeySpec("port", integer(0, 65535), "TCP port of the HTTP/WebSocket server (0 picks a free port)."),
    # Connection tokens.
    KeySpec(
        "token_hmac_secret_key",
        string(),
        "HMAC secret (HS256/384/512) that client connection and subscription JWTs are signed with.",
        aliases=("secret",),
        env=("CENTRIFUGO_SECRET",),
    ),
    KeySpec(
        "platform_jwt_secret",
        string(),
        "The platform's own HMAC key for user tokens; connection tokens signed with it are accepted too. "
        "Empty disables it.",
        env=("JWT_SECRET",),
    ),
    KeySpec(
        "token_rsa_public_key",
        pem_public_key("RSA"),
        "PEM RSA public key for RS256/384/512 and PS256/384/512 connection JWTs.",
    ),
    KeySpec(
        "token_ecdsa_public_key",
        pem_public_key("ECDSA"),
        "PEM ECDSA public key for ES256/384/512 connection JWTs.",
    ),
    KeySpec("token_audience", string(), "When set, connection JWTs must carry this `aud`."),
    KeySpec("token_issuer", string(), "When set, connection JWTs must carry this `iss`."),
    KeySpec(
        "token_leeway",
        duration(maximum=MAX_TOKEN_LEEWAY),
        f"Clock skew tolerated when checking `exp` / `nbf` of tokens (at most {MAX_TOKEN_LEEWAY:g}s).",
    ),
    KeySpec(
        "token_require_exp",
        _BOOL,
        "Refuse connection and subscription tokens without an `exp` claim (close 3500 / error 103).",
    ),
    KeySpec(
        "token_hmac_algorithms",
        algorithm_list(HMAC_ALGORITHMS),
        "Algorithms the HMAC keys (`token_hmac_secret_key`, `platform_jwt_secret`, "
        "`subscription_token_hmac_secret_key`) may verify.",
    ),
    KeySpec(
        "token_rsa_algorithms",
        algorithm_list(RSA_ALGORITHMS),
        "Algorithms `token_rsa_public_key` may verify.",
    ),
    KeySpec(
        "token_ecdsa_algorithms",
        algorithm_list(EC_ALGORITHMS),
        "Algorithms `token_ecdsa_public_key` may verify (only the one matching the key's curve ever does).",
    ),
    KeySpec(
        "token_jwks_public_endpoint",
        url(),
        "URL of a JWKS document (`http://` or `https://`) with RS/PS/ES/EdDSA keys, chosen by the token's "
        "`kid`. Fetched only for a token whose header and `iss`/`aud` passed every check; never redirected.",
    ),
    KeySpec(
        "token_jwks_algorithms",
        algorithm_list((*RSA_ALGORITHMS, *EC_ALGORITHMS, "EdDSA")),
        "Algorithms keys from the JWKS endpoint may verify (a key's own `alg` narrows it further).",
    ),
    KeySpec(
        "token_jwks_cache_ttl",
        duration(),
        "How long fetched JWKS keys are used before the endpoint is asked again; an unknown `kid` refetches "
        "at most every 10 s.",
    ),
    KeySpec(
        "subscription_token_hmac_secret_key",
        string(),
        "HMAC secret for subscription JWTs; empty means the connection token keys are used.",
    ),
    # Server API.
    KeySpec(
        "api_key",
        string(),
        "Key the server HTTP API requires in `Authorization: apikey <KEY>` or `X-API-Key`.",
        aliases=("token",),
        env=("CENTRIFUGO_TOKEN",),
    ),
    KeySpec("api_insecure", _BOOL, "Serve the server API without checking the API key (development only)."),
    # Engine.
    KeySpec("engine", choice("memory", "redis"), "Where history, presence and PUB/SUB live."),
    KeySpec(
        "redis_address",
        string_list("list of strings (or one string)", redis_address_problem),
        "Redis server(s) as `host:port` or `redis://` URLs. With engine `redis` and no address, "
        f"`{DEFAULT_REDIS_HOST}:{DEFAULT_REDIS_PORT}` is used.",
    ),
    KeySpec(
        "redis_host",
        string(),
        "Seed key: Redis host, combined with `redis_port` into `redis_address`.",
        target="input",
        env=("REDIS_HOST",),
        default=f'"{DEFAULT_REDIS_HOST}"',
    ),
    KeySpec(
        "redis_port",
        integer(1, 65535),
        "Seed key: Redis port, combined with `redis_host` into `redis_address`.",
        target="input",
        env=("REDIS_PORT",),
        default=str(DEFAULT_REDIS_PORT),
    ),
    KeySpec("redis_password", string(), "Redis password (AUTH).", env=("REDIS_PASSWORD",)),
    KeySpec("redis_db", integer(0), "Redis database number."),
    KeySpec("redis_prefix", string(), "Prefix of every Redis key and PUB/SUB channel."),
    KeySpec(
        "redis_presence_ttl",
        duration(),
        "How long a presence entry lives in Redis unless its node refreshes it (every third of this); the "
        "entries of a node that stopped disappear after it.",
        aliases=("presence_ttl",),
    ),
    # Client connections.
    KeySpec(
        "allowed_origins",
        string_list("list of origin patterns", origin_problem),
        "Browser origins allowed to open connections: `*`, or `scheme://host[:port]` with `*` wildcards in "
        "the host. Empty (as in Centrifugo) accepts only an Origin whose host equals the request's Host; "
        "requests without an Origin header are always accepted.",
    ),
    KeySpec(
        "client_trusted_proxies",
        string_list("list of networks", network_problem),
        "Reverse proxies (addresses or CIDR networks) whose `X-Forwarded-For` / `X-Real-IP` headers name the "
        "client's address, for per-address limits and logs. Empty: the TCP peer is the client.",
    ),
    KeySpec("client_insecure", _BOOL, "Accept connections without a token and skip channel permission checks."),
    KeySpec("client_anonymous", _BOOL, "Accept connections without a token as anonymous users."),
    KeySpec("client_channel_limit", integer(0), "Maximum channels one connection may subscribe to."),
    KeySpec("channel_max_length", integer(1), "Maximum length of a channel name in bytes."),
    KeySpec(
        "client_queue_max_size",
        integer(0),
        "Maximum bytes queued for one slow client before it is disconnected.",
    ),
    KeySpec("client_connection_limit", integer(0), "Maximum connections per node; 0 is unlimited."),
    KeySpec("client_user_connection_limit", integer(0), "Maximum connections per user per node; 0 is unlimited."),
    KeySpec(
        "websocket_message_size_limit",
        integer(0),
        "Maximum size in bytes of one incoming WebSocket message.",
    ),
    KeySpec("websocket_read_buffer_size", integer(0), "WebSocket read buffer size in bytes; 0 uses the default."),
    KeySpec(
        "client_stale_close_delay",
        duration(),
        "Time a connection may stay open without sending its connect command.",
    ),
    KeySpec(
        "client_expired_close_delay",
        duration(),
        "Extra time an expired connection gets to refresh its token before being closed.",
    ),
    KeySpec(
        "client_expired_sub_close_delay",
        duration(),
        "Extra time an expired subscription gets to refresh its token before being unsubscribed.",
    ),
    KeySpec("ping_interval", duration(), "Interval between server pings."),
    KeySpec("pong_timeout", duration(), "Time a client has to answer a ping; must be less than `ping_interval`."),
    KeySpec(
        "client_history_max_publication_limit",
        integer(0),
        "Maximum publications a client may ask for in one history call.",
    ),
    KeySpec(
        "client_recovery_max_publication_limit",
        integer(0),
        "Maximum publications recovered on resubscribe; more means the stream is reported as not recovered.",
    ),
    KeySpec("client_concurrency", integer(0), "Commands of one connection handled concurrently; 0 is sequential."),
    # Rate limits and quotas: see "Rate limits" in docs/configuration.md.
    KeySpec(
        "enable_rate_limit",
        _BOOL,
        "Seed key: turn on the rate limits and quotas below (each can still be turned off with 0).",
        env=("ENABLE_RATE_LIMIT",),
    ),
    KeySpec(
        "rate_limit_window",
        duration(),
        "Seed key: the period of `rate_limit_max_requests` and of every limit given as a bare count.",
        env=("RATE_LIMIT_WINDOW",),
    ),
    KeySpec(
        "rate_limit_max_requests",
        integer(0),
        "Seed key: the budget, per `rate_limit_window`, of every limit below that is not set; 0 turns those off.",
        env=("RATE_LIMIT_MAX_REQUESTS",),
    ),
    KeySpec(
        "client_command_rate_limit",
        rate(),
        "Commands one connection may send (`connect` and pongs are not counted); over it a command gets error "
        "111 (temporary). Unset: the seed budget.",
        default="unset",
    ),
    KeySpec(
        "client_user_command_rate_limit",
        rate(),
        "Commands one user may send over all their connections on this node; over it: error 111. Anonymous "
        "connections have only the per-connection limit. Unset: the seed budget.",
        default="unset",
    ),
    KeySpec(
        "client_rejected_command_limit",
        rate(),
        "Commands refused with 111 one connection may accumulate; one more closes it with 3013 (a client that "
        "keeps sending more than twice its budget). Unset: the seed budget.",
        default="unset",
    ),
    KeySpec(
        "client_ip_connection_rate_limit",
        rate(),
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
        rate(),
        "Publications through the server HTTP API per tenant (the `{id}` of `tenant:{id}:...` channels; other "
        "channels are not limited); over it the request gets HTTP 429 with `Retry-After`. Unset: the seed budget.",
        default="unset",
    ),
    # Channels.
    KeySpec(
        "namespaces",
        ValueType("list of namespace objects", parse_namespace_list),
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
    KeySpec("tenant_claim", string(), "Token claim the rule variable `tenant` is read from."),
    KeySpec("roles_claim", string(), "Token claim the rule variable `roles` is read from."),
    KeySpec("admin_role", string(), "Role that makes the rule variable `admin` true (platform administrators)."),
    KeySpec(
        "tenant_publish_rule",
        ValueType("CEL expression", parse_rule_expression),
        "Publish rule of the built-in `tenant` rules (client and user-token publications); "
        "`vars.tenant_id == tenant` lets users publish into their own tenant.",
    ),
    # Operations.
    KeySpec(
        "log_level",
        choice("trace", "debug", "info", "warn", "error", "none"),
        "Minimum level of log records written.",
    ),
    KeySpec("health", _BOOL, "Serve `GET /health`."),
    KeySpec("prometheus", _BOOL, "Serve Prometheus metrics at `GET /metrics`."),
    KeySpec("shutdown_timeout", duration(), "Time allowed for a graceful shutdown before connections are cut."),
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
        integer(0),
        "Publications kept per channel; history needs both `history_size` and `history_ttl`.",
        target="channel",
    ),
    KeySpec(
        "history_ttl",
        duration(whole_seconds=True),
        "How long publications are kept in history.",
        target="channel",
    ),
    KeySpec(
        "history_meta_ttl",
        duration(whole_seconds=True),
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
        regex(),
        "When set, channel names (after the namespace) must match it.",
        target="channel",
    ),
    KeySpec(
        "rules",
        ValueType("rules object", parse_rules),
        "Channel `pattern` and a CEL rule per action (`subscribe`, `publish`, `history`, `presence`); replaces "
        "the `allow_*` options. See [Channel rules](#channel-rules).",
        target="channel",
        default="none",
    ),
)

#: Keys valid inside a ``namespaces`` entry (besides ``name``).
NAMESPACE_KEYS: Final = tuple(spec for spec in KEYS if spec.target == "channel")

BY_NAME: Final = {spec.name: spec for spec in KEYS}
BY_INPUT_NAME: Final = {name: spec for spec in KEYS for name in (spec.name, *spec.aliases)}
NAMESPACE_BY_NAME: Final = {spec.name: spec for spec in NAMESPACE_KEYS}


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

"""Server configuration: the typed model every other module reads.

The loader (``neoevents.configfile``) turns a JSON/YAML file, the seed's keys, the Centrifugo v5 flat names
and environment variables into these immutable objects. Nothing else in the package parses configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEV_SECRET = "neoevents-development-secret-change-me"
DEV_API_KEY = "neoevents-development-api-key"


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A configured budget: ``count`` requests per ``period`` seconds. ``count`` 0 is no limit; ``period`` 0
    means ``Config.rate_limit_window``."""

    count: int
    period: float = 0.0


@dataclass(frozen=True, slots=True)
class ChannelRules:
    """Declarative channel rules of one namespace (``neoevents.auth.rules``): a channel ``pattern`` with named
    segments and, per action, a CEL expression that must be true. An action without an expression is denied."""

    pattern: str
    subscribe: str | None = None
    publish: str | None = None
    history: str | None = None
    presence: str | None = None


@dataclass(frozen=True, slots=True)
class NamespaceOptions:
    """Channel options for one namespace (the part of a channel name before the first ``:``).

    Names and meanings follow Centrifugo v5 channel options. Durations are seconds.
    """

    name: str = ""
    presence: bool = False
    join_leave: bool = False
    force_push_join_leave: bool = False
    history_size: int = 0
    history_ttl: float = 0.0
    history_meta_ttl: float = 0.0
    force_positioning: bool = False
    allow_positioning: bool = False
    force_recovery: bool = False
    allow_recovery: bool = False
    allow_subscribe_for_client: bool = False
    allow_subscribe_for_anonymous: bool = False
    allow_publish_for_client: bool = False
    allow_publish_for_subscriber: bool = False
    allow_publish_for_anonymous: bool = False
    allow_presence_for_client: bool = False
    allow_presence_for_subscriber: bool = False
    allow_presence_for_anonymous: bool = False
    allow_history_for_client: bool = False
    allow_history_for_subscriber: bool = False
    allow_history_for_anonymous: bool = False
    allow_user_limited_channels: bool = False
    channel_regex: str = ""
    # Declarative rules; when set they replace the allow_* options above for every action.
    rules: ChannelRules | None = None

    @property
    def history_enabled(self) -> bool:
        return self.history_size > 0 and self.history_ttl > 0


@dataclass(frozen=True, slots=True)
class Config:
    """Everything the server needs to run. Durations are in seconds, sizes in bytes."""

    address: str = "0.0.0.0"
    port: int = 8000
    # Client connection tokens.
    token_hmac_secret_key: str = ""
    # The platform's own HMAC key for user tokens (JWT_SECRET); tokens signed with it are accepted too.
    platform_jwt_secret: str = ""
    token_rsa_public_key: str = ""
    token_ecdsa_public_key: str = ""
    token_audience: str = ""
    token_issuer: str = ""
    token_leeway: float = 0.0
    # Refuse connection and subscription tokens without an ``exp`` claim.
    token_require_exp: bool = False
    # Algorithms each kind of key may verify (``none`` is never possible).
    token_hmac_algorithms: tuple[str, ...] = ("HS256", "HS384", "HS512")
    token_rsa_algorithms: tuple[str, ...] = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
    token_ecdsa_algorithms: tuple[str, ...] = ("ES256", "ES384", "ES512")
    # JWKS endpoint for RS/PS/ES/EdDSA keys selected by ``kid`` (empty: none).
    token_jwks_public_endpoint: str = ""
    token_jwks_algorithms: tuple[str, ...] = (
        "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
    )  # fmt: skip
    token_jwks_cache_ttl: float = 300.0
    # Subscription tokens (default: the connection token keys).
    subscription_token_hmac_secret_key: str = ""
    # Server API.
    api_key: str = ""
    api_insecure: bool = False
    # Engine.
    engine: str = "memory"
    redis_address: tuple[str, ...] = ()
    redis_password: str = ""
    redis_db: int = 0
    redis_prefix: str = "centrifugo"
    redis_presence_ttl: float = 60.0
    # Client connections.
    allowed_origins: tuple[str, ...] = ()
    client_trusted_proxies: tuple[str, ...] = ()
    client_insecure: bool = False
    client_anonymous: bool = False
    client_channel_limit: int = 128
    channel_max_length: int = 255
    client_queue_max_size: int = 1048576
    client_connection_limit: int = 0
    client_user_connection_limit: int = 0
    websocket_message_size_limit: int = 65536
    websocket_read_buffer_size: int = 0
    client_stale_close_delay: float = 10.0
    client_expired_close_delay: float = 25.0
    client_expired_sub_close_delay: float = 25.0
    ping_interval: float = 25.0
    pong_timeout: float = 8.0
    client_history_max_publication_limit: int = 300
    client_recovery_max_publication_limit: int = 300
    client_concurrency: int = 0
    # Rate limits and quotas (neoevents.ratelimit), all off unless enable_rate_limit is set. A limit left as
    # None is rate_limit_max_requests per rate_limit_window.
    enable_rate_limit: bool = False
    rate_limit_window: float = 60.0
    rate_limit_max_requests: int = 100
    client_command_rate_limit: RateLimit | None = None
    client_user_command_rate_limit: RateLimit | None = None
    client_rejected_command_limit: RateLimit | None = None
    client_ip_connection_rate_limit: RateLimit | None = None
    api_tenant_publish_rate_limit: RateLimit | None = None
    # Channel rules: where the rule variables ``tenant``, ``roles`` and ``admin`` come from.
    tenant_claim: str = "tenant_id"
    roles_claim: str = "roles"
    admin_role: str = "admin"
    # Publish rule of the built-in tenant rules (a CEL expression; "false": users never publish).
    tenant_publish_rule: str = "false"
    # Accept ``Authorization: Bearer <user JWT>`` on the server API, held to the channel rules.
    api_user_tokens: bool = True
    # Channels.
    channel: NamespaceOptions = field(default_factory=NamespaceOptions)
    namespaces: tuple[NamespaceOptions, ...] = ()
    # Whether the loader added the built-in namespaces (tenant, admin, system) that the file did not define.
    builtin_namespaces: bool = True
    # Operations.
    log_level: str = "info"
    health: bool = True
    prometheus: bool = True
    shutdown_timeout: float = 30.0
    # Test only: serve a WebSocket echo endpoint at /test/echo (protocol conformance runs). Never in production.
    test_echo_endpoint: bool = False
    # Keys that were present in the source file but are not understood (reported, never silently dropped).
    unknown_keys: tuple[str, ...] = ()

    def namespace(self, name: str) -> NamespaceOptions | None:
        """Options for a namespace name; ``""`` is the top-level (default) namespace."""
        if name == "":
            return self.channel
        for ns in self.namespaces:
            if ns.name == name:
                return ns
        return None

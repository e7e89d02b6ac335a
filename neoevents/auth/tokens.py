"""Verification of connection and subscription JWTs.

Each configured key has an explicit algorithm allowlist: HMAC secrets accept only HS256/384/512, an RSA
public key only RS*/PS*, an ECDSA key only ES*. ``alg: none`` and HS/RS confusion therefore never verify.
A token carrying a ``channel`` claim is a subscription token and is refused as a connection token; a
token without it is refused as a subscription token.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import jwt
import msgspec

from neoevents.config import Config

HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")
RSA_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
EC_ALGORITHMS = ("ES256", "ES384", "ES512")


class TokenError(Exception):
    """The token cannot be used (bad signature, malformed, wrong kind, failed claim check)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TokenExpired(TokenError):
    """The token verified but its ``exp`` is in the past."""


@dataclass(frozen=True, slots=True)
class ConnectClaims:
    user: str
    exp: int = 0
    info: bytes = b""
    channels: tuple[str, ...] = ()
    subs: dict[str, dict[str, Any]] = field(default_factory=dict)
    expire_at: int | None = None
    meta: bytes = b""
    tenant_id: str = ""
    roles: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SubscribeClaims:
    user: str
    channel: str
    exp: int = 0
    info: bytes = b""
    data: bytes = b""
    expire_at: int | None = None
    override: dict[str, Any] = field(default_factory=dict)


def _json_bytes(value: Any) -> bytes:
    if value is None:
        return b""
    return msgspec.json.encode(value)


class TokenVerifier:
    """Verifies tokens against the keys in the configuration (dependencies passed in, no globals)."""

    def __init__(self, config: Config) -> None:
        keys: list[tuple[Any, tuple[str, ...]]] = []
        for secret in (config.token_hmac_secret_key, config.platform_jwt_secret):
            if secret:
                keys.append((secret, HMAC_ALGORITHMS))
        if config.token_rsa_public_key:
            keys.append((config.token_rsa_public_key, RSA_ALGORITHMS))
        if config.token_ecdsa_public_key:
            keys.append((config.token_ecdsa_public_key, EC_ALGORITHMS))
        self._keys = keys
        sub_keys = list(keys)
        if config.subscription_token_hmac_secret_key:
            sub_keys = [(config.subscription_token_hmac_secret_key, HMAC_ALGORITHMS)]
        self._sub_keys = sub_keys
        self._audience = config.token_audience or None
        self._issuer = config.token_issuer or None
        self._leeway = config.token_leeway

    def _decode(self, token: str, keys: list[tuple[Any, tuple[str, ...]]]) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenError("malformed token") from exc
        alg = header.get("alg")
        if not isinstance(alg, str):
            raise TokenError("missing alg")
        if header.get("crit"):
            raise TokenError("unsupported critical header")
        candidates = [(key, algs) for key, algs in keys if alg in algs]
        if not candidates:
            raise TokenError(f"algorithm {alg!r} not allowed")
        options = {"verify_aud": self._audience is not None, "verify_iss": self._issuer is not None}
        last: Exception | None = None
        for key, algs in candidates:
            try:
                claims: dict[str, Any] = jwt.decode(
                    token,
                    key,
                    algorithms=list(algs),
                    audience=self._audience,
                    issuer=self._issuer,
                    leeway=self._leeway,
                    options=options,  # type: ignore[arg-type]
                )
                return claims
            except jwt.ExpiredSignatureError as exc:
                raise TokenExpired("token expired") from exc
            except jwt.InvalidSignatureError as exc:
                last = exc
                continue
            except jwt.PyJWTError as exc:
                raise TokenError(str(exc)) from exc
        raise TokenError("invalid signature") from last

    def verify_connect(self, token: str) -> ConnectClaims:
        claims = self._decode(token, self._keys)
        if "channel" in claims:
            raise TokenError("subscription token used as connection token")
        user = claims.get("sub", "")
        if not isinstance(user, str):
            raise TokenError("sub claim must be a string")
        channels = claims.get("channels") or ()
        if not isinstance(channels, list | tuple) or not all(isinstance(c, str) for c in channels):
            raise TokenError("channels claim must be a list of strings")
        subs = claims.get("subs") or {}
        if not isinstance(subs, dict):
            raise TokenError("subs claim must be an object")
        roles = claims.get("roles") or ()
        if isinstance(roles, str):
            roles = (roles,)
        expire_at = claims.get("expire_at")
        tenant = claims.get("tenant_id", "")
        return ConnectClaims(
            user=user,
            exp=_int_claim(claims, "exp"),
            info=_json_bytes(claims.get("info")),
            channels=tuple(channels),
            subs=subs,
            expire_at=int(expire_at) if isinstance(expire_at, int | float) else None,
            meta=_json_bytes(claims.get("meta")),
            tenant_id=str(tenant) if tenant is not None else "",
            roles=tuple(str(r) for r in roles) if isinstance(roles, list | tuple) else (),
        )

    def verify_subscribe(self, token: str) -> SubscribeClaims:
        claims = self._decode(token, self._sub_keys)
        channel = claims.get("channel")
        if not isinstance(channel, str) or not channel:
            raise TokenError("not a subscription token")
        user = claims.get("sub", "")
        if not isinstance(user, str):
            raise TokenError("sub claim must be a string")
        expire_at = claims.get("expire_at")
        override = claims.get("override") or {}
        return SubscribeClaims(
            user=user,
            channel=channel,
            exp=_int_claim(claims, "exp"),
            info=_json_bytes(claims.get("info")),
            data=_json_bytes(claims.get("data")),
            expire_at=int(expire_at) if isinstance(expire_at, int | float) else None,
            override=override if isinstance(override, dict) else {},
        )


def _int_claim(claims: dict[str, Any], name: str) -> int:
    value = claims.get(name, 0)
    return int(value) if isinstance(value, int | float) else 0


def make_token(secret: str, user: str, ttl: float | None = None, algorithm: str = "HS256", **claims: Any) -> str:
    """Create a connection token (used by ``neoevents gentoken`` and tests)."""
    payload: dict[str, Any] = {"sub": user, **claims}
    now = int(time.time())
    payload.setdefault("iat", now)
    if ttl:
        payload["exp"] = now + int(ttl)
    return jwt.encode(payload, secret, algorithm=algorithm)

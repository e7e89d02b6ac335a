"""Verification of connection and subscription JWTs.

A token is parsed once, strictly (three base64url segments, a JSON object header and payload), and every
decision is taken from that one parse:

* **Header.** ``alg`` must be in the allowlist of a configured key *kind*: HMAC secrets accept only
  ``token_hmac_algorithms`` (HS256/384/512 by default), the RSA key only ``token_rsa_algorithms``, the
  ECDSA key only ``token_ecdsa_algorithms`` (and only the one matching its curve), JWKS keys only
  ``token_jwks_algorithms`` and the algorithms that fit the key. ``none`` in any spelling and HS/RS
  confusion therefore never verify. Tokens carrying ``crit`` (no extension is understood) or a key
  reference of their own — ``jku``, ``x5u``, ``x5c``, ``jwk`` — are refused before any key is looked at;
  nothing named in a token is ever fetched or trusted. ``kid`` is only a lookup key among the keys of the
  configured JWKS endpoint; any other value is simply an unknown key id.
* **Signature.** HMAC is checked with :mod:`hmac` directly (the fast path, a few microseconds); the
  public-key algorithms use PyJWT's algorithm objects with keys prepared once.
* **Claims.** ``exp`` and ``nbf`` (expired or not yet valid → :class:`TokenExpired`, as the reference
  server answers both) with ``token_leeway`` seconds of clock skew (at most 30), ``aud`` and ``iss``
  (exact string equality when configured). With ``token_require_exp`` a token without ``exp`` is refused.
* **Kind.** A token carrying a ``channel`` claim is a subscription token and is refused as a connection
  token; a token without it is refused as a subscription token.

JWKS (``token_jwks_public_endpoint``): keys are fetched lazily, only for a token whose header and issuer
have passed every check, cached for ``token_jwks_cache_ttl``, and an unknown ``kid`` triggers at most one
refetch per :data:`JWKS_MIN_REFETCH` seconds. Fetching needs the event loop, so it happens in
:meth:`TokenVerifier.verify_connect_async` / :meth:`TokenVerifier.verify_subscribe_async`; the synchronous
methods use keys already cached.

Error reasons are fixed strings: nothing from the token (not even the header) is ever put in a reason or
a log line.
"""

from __future__ import annotations

import asyncio
import binascii
import functools
import hmac
import logging
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

import httpx
import jwt
import msgspec
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from jwt.algorithms import Algorithm, ECAlgorithm, OKPAlgorithm, RSAAlgorithm, get_default_algorithms

from neoevents.config import Config

log = logging.getLogger("neoevents.tokens")

HMAC_ALGORITHMS: Final = ("HS256", "HS384", "HS512")
RSA_ALGORITHMS: Final = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
EC_ALGORITHMS: Final = ("ES256", "ES384", "ES512")
EDDSA_ALGORITHMS: Final = ("EdDSA",)
JWKS_ALGORITHMS: Final = (*RSA_ALGORITHMS, *EC_ALGORITHMS, *EDDSA_ALGORITHMS)

#: Largest clock skew ``token_leeway`` may allow, in seconds.
MAX_LEEWAY: Final = 30.0
#: Longest token accepted at all (a connect frame is at most ``websocket_message_size_limit`` anyway).
MAX_TOKEN_LENGTH: Final = 65536
#: Longest ``kid`` looked up.
MAX_KID_LENGTH: Final = 256
#: Longest header segment whose decoded form is remembered.
MAX_CACHED_HEADER: Final = 256
#: Header parameters that point at keys chosen by the token's author: refused, never fetched.
FORBIDDEN_HEADERS: Final = ("jku", "x5u", "x5c", "jwk")
#: An unknown ``kid`` refetches the JWKS at most this often (seconds), so random kids cannot flood it.
JWKS_MIN_REFETCH: Final = 10.0
JWKS_TIMEOUT: Final = 5.0
JWKS_MAX_BYTES: Final = 1024 * 1024

_HMAC_DIGESTS: Final[dict[str, str]] = {"HS256": "sha256", "HS384": "sha384", "HS512": "sha512"}
_EC_CURVES: Final[dict[str, type[ec.EllipticCurve]]] = {
    "ES256": ec.SECP256R1,
    "ES384": ec.SECP384R1,
    "ES512": ec.SECP521R1,
}
_ALGORITHMS: Final[dict[str, Algorithm]] = get_default_algorithms()
_TOKEN_SHAPE: Final = re.compile(rb"([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]*)")
_URLSAFE: Final = bytes.maketrans(b"-_", b"+/")
_PAD: Final = (b"", b"", b"==", b"=")


class TokenError(Exception):
    """The token cannot be used (bad signature, malformed, wrong kind, failed claim check).

    ``reason`` is a fixed description for logs and metrics; it never contains any part of the token.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TokenExpired(TokenError):
    """The token verified but its ``exp`` is in the past (beyond the leeway)."""


class SigningKeyUnavailable(TokenError):
    """The token needs a JWKS key that could not be fetched (the endpoint failed): a server-side problem,
    answered like an internal error rather than as an invalid token."""


class _KeyNotCached(TokenError):
    """Internal: the token needs a JWKS key that is not cached; the async path fetches it."""

    def __init__(self, token: _Parsed, kid: str) -> None:
        super().__init__("signing key not loaded")
        self.token = token
        self.kid = kid


class ConnectClaims(msgspec.Struct, frozen=True, gc=False):
    """What a verified connection token grants (immutable)."""

    user: str
    exp: int = 0
    info: bytes = b""
    channels: tuple[str, ...] = ()
    subs: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)
    expire_at: int | None = None
    meta: bytes = b""
    tenant_id: str = ""
    roles: tuple[str, ...] = ()
    # Every claim of the verified token, for the channel rules (neoevents.auth.rules).
    payload: dict[str, Any] = msgspec.field(default_factory=dict)


class SubscribeClaims(msgspec.Struct, frozen=True, gc=False):
    """What a verified subscription token grants (immutable)."""

    user: str
    channel: str
    exp: int = 0
    info: bytes = b""
    data: bytes = b""
    expire_at: int | None = None
    override: dict[str, Any] = msgspec.field(default_factory=dict)


def _json_bytes(value: Any) -> bytes:
    if value is None:
        return b""
    return msgspec.json.encode(value)


# ---- parsing ------------------------------------------------------------------------------------------


class _Parsed:
    """A token split and decoded (not yet verified)."""

    __slots__ = ("alg", "header", "payload", "signature", "signing_input")

    def __init__(
        self, header: Mapping[str, Any], payload: dict[str, Any], signing_input: bytes, signature: bytes, alg: str
    ) -> None:
        self.header = header
        self.payload = payload
        self.signing_input = signing_input
        self.signature = signature
        self.alg = alg


def _b64decode(segment: bytes) -> bytes:
    if len(segment) % 4 == 1:
        raise TokenError("malformed token")
    try:
        return binascii.a2b_base64(segment.translate(_URLSAFE) + _PAD[len(segment) % 4], strict_mode=True)
    except binascii.Error:
        raise TokenError("malformed token") from None


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        value = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        raise TokenError("malformed token") from None
    if not isinstance(value, dict):
        raise TokenError("malformed token")
    return value


def _header(segment: bytes) -> tuple[Mapping[str, Any], str]:
    """The decoded, checked header of a token (read-only) and its ``alg``; raises TokenError."""
    header = _json_object(_b64decode(segment))
    alg = header.get("alg")
    if not isinstance(alg, str):
        raise TokenError("missing alg")
    if "crit" in header:
        raise TokenError("unsupported critical header")
    for name in FORBIDDEN_HEADERS:
        if name in header:
            raise TokenError(f"forbidden header {name}")
    kid = header.get("kid")
    if kid is not None and (not isinstance(kid, str) or len(kid) > MAX_KID_LENGTH):
        raise TokenError("bad kid")
    return MappingProxyType(header), alg


# The header depends on its segment's bytes only, and nearly every token of a deployment has the same one:
# short headers are remembered (a bounded number; failures are not cached).
_cached_header: Final = functools.lru_cache(maxsize=256)(_header)


def _parse(token: str) -> _Parsed:
    """Split and decode a compact JWS; checks the header's shape but no key or claim."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH or not token.isascii():
        raise TokenError("malformed token")
    raw = token.encode("ascii")
    match = _TOKEN_SHAPE.fullmatch(raw)
    if match is None:
        raise TokenError("malformed token")
    segment = match.group(1)
    header, alg = _cached_header(segment) if len(segment) <= MAX_CACHED_HEADER else _header(segment)
    payload = _json_object(_b64decode(match.group(2)))
    signature = _b64decode(match.group(3))
    signing_input = raw[: match.end(2)]
    return _Parsed(header, payload, signing_input, signature, alg)


def _number(claims: Mapping[str, Any], name: str) -> float:
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TokenError(f"{name} claim must be a number")
    return float(value)


# ---- keys ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class _Key:
    """One verification key and the algorithms it may verify (compared and hashed by identity)."""

    algorithms: frozenset[str]
    # HMAC keys: per algorithm, an HMAC already keyed with the secret; each verification continues a copy.
    macs: Mapping[str, hmac.HMAC] = field(default_factory=dict)
    public: Any = None  # public-key objects (cryptography)

    def verify(self, token: _Parsed) -> bool:
        alg = token.alg
        if alg not in self.algorithms:
            return False
        if self.public is None:
            mac = self.macs[alg].copy()
            mac.update(token.signing_input)
            return hmac.compare_digest(mac.digest(), token.signature)
        return bool(_ALGORITHMS[alg].verify(token.signing_input, self.public, token.signature))


def _algorithms_for(public: Any) -> frozenset[str]:
    """Algorithms a public key can verify at all (an EC key: only the one of its curve)."""
    if isinstance(public, rsa.RSAPublicKey):
        return frozenset(RSA_ALGORITHMS)
    if isinstance(public, ec.EllipticCurvePublicKey):
        return frozenset(alg for alg, curve in _EC_CURVES.items() if isinstance(public.curve, curve))
    if isinstance(public, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return frozenset(EDDSA_ALGORITHMS)
    return frozenset()


def _public_key(pem: str, algorithms: tuple[str, ...]) -> _Key:
    """A configured PEM public key, restricted to ``algorithms`` and to what the key can verify."""
    public = serialization.load_pem_public_key(pem.encode())
    return _Key(frozenset(algorithms) & _algorithms_for(public), public=public)


def _hmac_key(secret: str, algorithms: tuple[str, ...]) -> _Key:
    allowed = frozenset(algorithms) & frozenset(HMAC_ALGORITHMS)
    key = secret.encode()
    return _Key(allowed, macs={alg: hmac.new(key, digestmod=_HMAC_DIGESTS[alg]) for alg in allowed})


_JWK_PUBLIC_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    "RSA": ("kty", "n", "e"),
    "EC": ("kty", "crv", "x", "y"),
    "OKP": ("kty", "crv", "x"),
}
_JWK_LOADERS: Final[dict[str, Callable[[Any], Any]]] = {
    "RSA": RSAAlgorithm.from_jwk,
    "EC": ECAlgorithm.from_jwk,
    "OKP": OKPAlgorithm.from_jwk,
}


def jwk_to_key(jwk: Mapping[str, Any], allowed: frozenset[str]) -> tuple[str, _Key] | None:
    """``(kid, key)`` for one JWKS entry usable for signatures, or None to skip it.

    Only public RSA, EC and OKP (Ed25519/Ed448) keys with a ``kid`` are used; symmetric (``oct``) keys,
    encryption keys and anything malformed are skipped. Only the public fields are read (private parts
    and ``x5c`` chains are ignored). A key's own ``alg`` narrows what it may verify.
    """
    kid, kty = jwk.get("kid"), jwk.get("kty")
    if not isinstance(kid, str) or not kid or len(kid) > MAX_KID_LENGTH or kty not in _JWK_PUBLIC_FIELDS:
        return None
    if jwk.get("use", "sig") != "sig":
        return None
    ops = jwk.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        return None
    public_fields = {name: jwk[name] for name in _JWK_PUBLIC_FIELDS[kty] if name in jwk}
    try:
        public = _JWK_LOADERS[kty](public_fields)
    except (jwt.PyJWTError, ValueError, TypeError, KeyError):
        return None
    algorithms = allowed & _algorithms_for(public)
    alg = jwk.get("alg")
    if alg is not None:
        algorithms &= {alg} if isinstance(alg, str) else set()
    if not algorithms:
        return None
    return kid, _Key(algorithms, public=public)


class JwksCache:
    """Keys of one JWKS endpoint, by ``kid``: fetched on demand, cached for ``ttl`` seconds.

    Fetches are shared (one request however many tokens wait for it), limited to one per
    ``min_refetch`` seconds when a ``kid`` is unknown, bounded in time and size, and never follow a
    redirect. When a refetch fails the keys already known stay in use.
    """

    def __init__(
        self,
        url: str,
        algorithms: tuple[str, ...],
        ttl: float,
        *,
        min_refetch: float = JWKS_MIN_REFETCH,
        timeout: float = JWKS_TIMEOUT,
        max_bytes: int = JWKS_MAX_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self._allowed = frozenset(algorithms)
        self._ttl = ttl
        self._min_refetch = min_refetch
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._clock = clock
        self._keys: dict[str, _Key] = {}
        self._fetched_at: float | None = None  # last successful fetch
        self._attempted_at: float | None = None  # last attempt, successful or not
        self._inflight: asyncio.Task[bool] | None = None
        self.fetches = 0

    def _fresh(self) -> bool:
        return self._fetched_at is not None and self._clock() - self._fetched_at < self._ttl

    def cached(self, kid: str) -> _Key | None:
        """The key for ``kid`` if it is cached and the cache is within its TTL."""
        return self._keys.get(kid) if self._fresh() else None

    def allows(self, alg: str) -> bool:
        """Whether JWKS keys may verify ``alg`` at all."""
        return alg in self._allowed

    def _may_fetch(self) -> bool:
        return self._attempted_at is None or self._clock() - self._attempted_at >= self._min_refetch

    async def get(self, kid: str) -> _Key | None:
        """The key for ``kid``, fetching the JWKS when the cache is stale or the kid unknown (rate-limited).

        Raises :class:`SigningKeyUnavailable` when the endpoint failed and no key for ``kid`` is known.
        """
        key = self.cached(kid)
        if key is not None:
            return key
        ok = True
        if self._may_fetch():
            ok = await self._fetch_shared()
        key = self._keys.get(kid)
        if key is None and not ok:
            raise SigningKeyUnavailable("signing keys unavailable")
        return key

    async def _fetch_shared(self) -> bool:
        task = self._inflight
        if task is None:
            task = self._inflight = asyncio.get_running_loop().create_task(self._fetch())
            task.add_done_callback(self._fetch_done)
        return await asyncio.shield(task)

    def _fetch_done(self, _task: asyncio.Task[bool]) -> None:
        self._inflight = None

    async def _fetch(self) -> bool:
        self._attempted_at = self._clock()
        self.fetches += 1
        try:
            body = await self._download()
            document = msgspec.json.decode(body)
        except Exception as exc:  # any failure of the endpoint: keep the keys we have
            log.warning("JWKS fetch from the configured endpoint failed: %s", type(exc).__name__)
            return False
        entries = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            log.warning("JWKS document from the configured endpoint has no keys list")
            return False
        keys: dict[str, _Key] = {}
        for entry in entries:
            parsed = jwk_to_key(entry, self._allowed) if isinstance(entry, dict) else None
            if parsed is not None and parsed[0] not in keys:
                keys[parsed[0]] = parsed[1]
        self._keys = keys
        self._fetched_at = self._clock()
        log.info("JWKS loaded: %d usable signing keys", len(keys))
        return True

    async def _download(self) -> bytes:
        async with (
            httpx.AsyncClient(timeout=self._timeout, follow_redirects=False, trust_env=False) as http,
            http.stream("GET", self.url, headers={"Accept": "application/json"}) as response,
        ):
            if response.status_code != 200:
                raise _JwksError(f"HTTP {response.status_code}")
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > self._max_bytes:
                    raise _JwksError("document too large")
                chunks.append(chunk)
            return b"".join(chunks)


class _JwksError(Exception):
    pass


# ---- the verifier -------------------------------------------------------------------------------------


class TokenVerifier:
    """Verifies tokens against the keys in the configuration (dependencies passed in, no globals)."""

    def __init__(self, config: Config, *, clock: Callable[[], float] = time.time) -> None:
        hmac_algs = config.token_hmac_algorithms
        keys: list[_Key] = []
        for secret in (config.token_hmac_secret_key, config.platform_jwt_secret):
            if secret:
                keys.append(_hmac_key(secret, hmac_algs))
        if config.token_rsa_public_key:
            keys.append(_public_key(config.token_rsa_public_key, config.token_rsa_algorithms))
        if config.token_ecdsa_public_key:
            keys.append(_public_key(config.token_ecdsa_public_key, config.token_ecdsa_algorithms))
        self._keys = tuple(key for key in keys if key.algorithms)
        self._jwks: JwksCache | None = None
        if config.token_jwks_public_endpoint:
            self._jwks = JwksCache(
                config.token_jwks_public_endpoint, config.token_jwks_algorithms, config.token_jwks_cache_ttl
            )
        self._sub_keys = self._keys
        self._sub_jwks = self._jwks
        if config.subscription_token_hmac_secret_key:
            self._sub_keys = (_hmac_key(config.subscription_token_hmac_secret_key, hmac_algs),)
            self._sub_jwks = None
        # The algorithms any key of a key set may verify.
        self._algorithms = {
            keys: frozenset().union(*(key.algorithms for key in keys)) for keys in (self._keys, self._sub_keys)
        }
        self._audience = config.token_audience or None
        self._issuer = config.token_issuer or None
        self._leeway = min(max(config.token_leeway, 0.0), MAX_LEEWAY)
        self._require_exp = config.token_require_exp
        self._clock = clock

    @property
    def jwks(self) -> JwksCache | None:
        return self._jwks

    # ---- core ----------------------------------------------------------------------------------

    def _decode(self, token: str, keys: tuple[_Key, ...], jwks: JwksCache | None) -> dict[str, Any]:
        parsed = _parse(token)
        alg = parsed.alg
        via_jwks = jwks is not None and jwks.allows(alg)
        if not via_jwks and alg not in self._algorithms[keys]:
            raise TokenError("algorithm not allowed")
        for key in keys:
            if key.verify(parsed):
                return self._check_claims(parsed.payload)
        kid = parsed.header.get("kid")
        if jwks is None or not via_jwks or kid is None:
            raise TokenError("invalid signature")
        jwk = jwks.cached(kid)
        if jwk is None:
            raise _KeyNotCached(parsed, kid)
        return self._verify_with(parsed, jwk)

    def _verify_with(self, parsed: _Parsed, key: _Key) -> dict[str, Any]:
        if not key.verify(parsed):
            raise TokenError("invalid signature")
        return self._check_claims(parsed.payload)

    async def _decode_async(self, token: str, keys: tuple[_Key, ...], jwks: JwksCache | None) -> dict[str, Any]:
        try:
            return self._decode(token, keys, jwks)
        except _KeyNotCached as missing:
            assert jwks is not None
            # Nothing is fetched for a token whose issuer (or audience) is not the configured one.
            self._check_issuer_audience(missing.token.payload)
            key = await jwks.get(missing.kid)
            if key is None:
                raise TokenError("unknown kid") from None
            return self._verify_with(missing.token, key)

    def _check_issuer_audience(self, claims: Mapping[str, Any]) -> None:
        if self._issuer is not None:
            iss = claims.get("iss")
            if not isinstance(iss, str) or iss != self._issuer:
                raise TokenError("issuer mismatch")
        if self._audience is not None:
            aud = claims.get("aud")
            if isinstance(aud, str):
                ok = aud == self._audience
            elif isinstance(aud, list):
                ok = all(isinstance(item, str) for item in aud) and self._audience in aud
            else:
                ok = False
            if not ok:
                raise TokenError("audience mismatch")

    def _check_claims(self, claims: dict[str, Any]) -> dict[str, Any]:
        now = self._clock()
        leeway = self._leeway
        if "exp" in claims:
            if _number(claims, "exp") <= now - leeway:
                raise TokenExpired("token expired")
        elif self._require_exp:
            raise TokenError("missing exp")
        if "nbf" in claims and _number(claims, "nbf") > now + leeway:
            # As the reference server: a token that is not valid yet is answered like an expired one (109 /
            # 3005), so that a client with a skewed clock fetches a new token instead of giving up.
            raise TokenExpired("token not yet valid")
        if "iat" in claims:
            _number(claims, "iat")
        self._check_issuer_audience(claims)
        return claims

    # ---- connection tokens ---------------------------------------------------------------------

    def verify_connect(self, token: str) -> ConnectClaims:
        """Verify a connection token with the keys in memory (JWKS keys only when already cached)."""
        return _connect_claims(self._decode(token, self._keys, self._jwks))

    async def verify_connect_async(self, token: str) -> ConnectClaims:
        """Verify a connection token, fetching JWKS keys when needed."""
        return _connect_claims(await self._decode_async(token, self._keys, self._jwks))

    # ---- subscription tokens -------------------------------------------------------------------

    def verify_subscribe(self, token: str) -> SubscribeClaims:
        """Verify a subscription token with the keys in memory (JWKS keys only when already cached)."""
        return _subscribe_claims(self._decode(token, self._sub_keys, self._sub_jwks))

    async def verify_subscribe_async(self, token: str) -> SubscribeClaims:
        """Verify a subscription token, fetching JWKS keys when needed."""
        return _subscribe_claims(await self._decode_async(token, self._sub_keys, self._sub_jwks))


# Registered claims with no meaning for a connection beyond what the verifier checked: a token with only these
# (the usual ``sub`` + ``exp``) grants nothing else, and its claims are built without looking for the others.
_PLAIN_CLAIMS: Final = frozenset(("sub", "exp", "iat", "nbf", "iss", "aud", "jti"))


def _connect_claims(claims: dict[str, Any]) -> ConnectClaims:
    if claims.keys() <= _PLAIN_CLAIMS:
        user = claims.get("sub", "")
        if not isinstance(user, str):
            raise TokenError("sub claim must be a string")
        return ConnectClaims(user=user, exp=_int_claim(claims, "exp"), payload=claims)
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
        expire_at=_int_or_none(expire_at),
        meta=_json_bytes(claims.get("meta")),
        tenant_id=str(tenant) if tenant is not None else "",
        roles=tuple(str(r) for r in roles) if isinstance(roles, list | tuple) else (),
        payload=claims,
    )


def _subscribe_claims(claims: dict[str, Any]) -> SubscribeClaims:
    channel = claims.get("channel")
    if not isinstance(channel, str) or not channel:
        raise TokenError("not a subscription token")
    user = claims.get("sub", "")
    if not isinstance(user, str):
        raise TokenError("sub claim must be a string")
    override = claims.get("override") or {}
    return SubscribeClaims(
        user=user,
        channel=channel,
        exp=_int_claim(claims, "exp"),
        info=_json_bytes(claims.get("info")),
        data=_json_bytes(claims.get("data")),
        expire_at=_int_or_none(claims.get("expire_at")),
        override=override if isinstance(override, dict) else {},
    )


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return int(value)


def _int_claim(claims: dict[str, Any], name: str) -> int:
    value = _int_or_none(claims.get(name, 0))
    return value if value is not None else 0


def make_token(secret: str, user: str, ttl: float | None = None, algorithm: str = "HS256", **claims: Any) -> str:
    """Create a connection token (used by ``neoevents gentoken`` and tests)."""
    payload: dict[str, Any] = {"sub": user, **claims}
    now = int(time.time())
    payload.setdefault("iat", now)
    if ttl:
        payload["exp"] = now + int(ttl)
    return jwt.encode(payload, secret, algorithm=algorithm)

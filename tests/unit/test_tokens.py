"""Connection and subscription token verification: keys, algorithm allowlists, claims."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from neoevents.auth.tokens import (
    HMAC_ALGORITHMS,
    JWKS_ALGORITHMS,
    ConnectClaims,
    JwksCache,
    SigningKeyUnavailable,
    TokenError,
    TokenExpired,
    TokenVerifier,
)
from neoevents.config import Config
from neoevents.configfile import check_config, load_config
from tests.support.listener import Listener, Response

SECRET = "hmac-secret-0123456789abcdef0123456789abcdef0123456789abcdef0123456789"
PLATFORM = "platform-jwt-secret-0123456789abcdef0123456789abcdef0123456789abcdef"  # >= 64 bytes for HS512


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def verifier(**overrides: object) -> TokenVerifier:
    base: dict[str, object] = {
        "token_hmac_secret_key": SECRET,
        "platform_jwt_secret": PLATFORM,
        "token_rsa_public_key": _pem(RSA_KEY),
        "token_ecdsa_public_key": _pem(EC_KEY),
    }
    base.update(overrides)
    return TokenVerifier(Config(**base))  # type: ignore[arg-type]


def test_hmac_rsa_ecdsa_and_platform_keys_verify() -> None:
    v = verifier()
    assert v.verify_connect(jwt.encode({"sub": "a"}, SECRET)).user == "a"
    assert v.verify_connect(jwt.encode({"sub": "b"}, PLATFORM, algorithm="HS512")).user == "b"
    assert v.verify_connect(jwt.encode({"sub": "c"}, RSA_KEY, algorithm="RS256")).user == "c"
    assert v.verify_connect(jwt.encode({"sub": "d"}, EC_KEY, algorithm="ES256")).user == "d"


def test_platform_claims_and_server_side_channels() -> None:
    claims = verifier().verify_connect(
        jwt.encode(
            {"sub": "u", "tenant_id": 123, "roles": ["admin"], "channels": ["system:health"], "info": {"n": 1}},
            SECRET,
        )
    )
    assert (claims.tenant_id, claims.roles, claims.channels) == ("123", ("admin",), ("system:health",))
    assert json.loads(claims.info) == {"n": 1}


def test_registered_claims_only_grant_the_user_and_expiry() -> None:
    exp = int(time.time()) + 60
    token = jwt.encode({"sub": "u", "exp": exp, "iat": exp - 60, "jti": "j"}, SECRET)
    claims = verifier().verify_connect(token)
    assert claims == ConnectClaims(user="u", exp=exp, payload={"sub": "u", "exp": exp, "iat": exp - 60, "jti": "j"})
    with pytest.raises(TokenError, match="sub claim must be a string"):
        verifier().verify_connect(jwt.encode({"sub": 5, "exp": exp}, SECRET))
    # Any other claim takes the full path: a subscription token is refused as a connection token.
    with pytest.raises(TokenError, match="subscription token"):
        verifier().verify_connect(jwt.encode({"sub": "u", "exp": exp, "channel": "c"}, SECRET))


def _b64(obj: Mapping[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "token",
    [
        _b64({"alg": "none", "typ": "JWT"}) + "." + _b64({"sub": "x"}) + ".",
        _b64({"alg": "None", "typ": "JWT"}) + "." + _b64({"sub": "x"}) + ".",
        jwt.encode({"sub": "x"}, "some-other-secret-0123456789abcdef0123"),
        "not.a.jwt",
        "",
    ],
)
def test_unsigned_forged_and_malformed_tokens_are_refused(token: str) -> None:
    with pytest.raises(TokenError):
        verifier().verify_connect(token)


def test_hs256_signed_with_the_rsa_public_key_is_refused() -> None:
    pem = _pem(RSA_KEY)
    header = _b64({"alg": "HS256", "typ": "JWT"})
    payload = _b64({"sub": "mallory"})
    sig = hmac.new(pem.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    forged = f"{header}.{payload}." + base64.urlsafe_b64encode(sig).rstrip(b"=").decode()
    with pytest.raises(TokenError):
        verifier(token_hmac_secret_key="", platform_jwt_secret="").verify_connect(forged)


def test_expired_is_distinguished_from_invalid() -> None:
    with pytest.raises(TokenExpired):
        verifier().verify_connect(jwt.encode({"sub": "a", "exp": int(time.time()) - 10}, SECRET))


def test_audience_and_issuer_must_match_exactly_when_configured() -> None:
    v = verifier(token_audience="portal", token_issuer="https://auth.example.com")
    good = {"sub": "a", "aud": "portal", "iss": "https://auth.example.com"}
    assert v.verify_connect(jwt.encode(good, SECRET)).user == "a"
    for bad in ({**good, "aud": "other"}, {**good, "iss": "https://auth.example.com.evil"}, {"sub": "a"}):
        with pytest.raises(TokenError):
            v.verify_connect(jwt.encode(bad, SECRET))


def test_connection_and_subscription_tokens_are_not_interchangeable() -> None:
    v = verifier()
    sub_token = jwt.encode({"sub": "a", "channel": "chat:1"}, SECRET)
    conn_token = jwt.encode({"sub": "a"}, SECRET)
    assert v.verify_subscribe(sub_token).channel == "chat:1"
    with pytest.raises(TokenError):
        v.verify_connect(sub_token)
    with pytest.raises(TokenError):
        v.verify_subscribe(conn_token)


def test_unknown_critical_header_is_refused() -> None:
    token = jwt.encode({"sub": "a"}, SECRET, headers={"crit": ["exp-ext"], "exp-ext": 1})
    with pytest.raises(TokenError):
        verifier().verify_connect(token)


# ---- hardening --------------------------------------------------------------------------------------------


def now() -> int:
    return int(time.time())


def _raw_token(
    header: Mapping[str, object], payload: Mapping[str, object], secret: bytes, digest: str = "sha256"
) -> str:
    signing_input = f"{_b64(header)}.{_b64(payload)}"
    sig = hmac.new(secret, signing_input.encode(), digest).digest()
    return signing_input + "." + base64.urlsafe_b64encode(sig).rstrip(b"=").decode()


def test_hmac_fast_path_agrees_with_pyjwt_for_every_hmac_algorithm() -> None:
    v = verifier()
    for alg in ("HS256", "HS384", "HS512"):
        assert v.verify_connect(jwt.encode({"sub": alg, "exp": now() + 60}, SECRET, algorithm=alg)).user == alg


def test_algorithms_are_configurable_per_key_kind() -> None:
    v = verifier(token_hmac_algorithms=("HS512",), token_rsa_algorithms=("PS256",))
    with pytest.raises(TokenError, match="algorithm not allowed"):
        v.verify_connect(jwt.encode({"sub": "a"}, SECRET, algorithm="HS256"))
    assert v.verify_connect(jwt.encode({"sub": "a"}, SECRET, algorithm="HS512")).user == "a"
    with pytest.raises(TokenError, match="algorithm not allowed"):
        v.verify_connect(jwt.encode({"sub": "a"}, RSA_KEY, algorithm="RS256"))
    assert v.verify_connect(jwt.encode({"sub": "a"}, RSA_KEY, algorithm="PS256")).user == "a"


def test_an_ecdsa_key_verifies_only_the_algorithm_of_its_curve() -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    v = verifier(token_ecdsa_public_key=_pem(p384))
    assert v.verify_connect(jwt.encode({"sub": "a"}, p384, algorithm="ES384")).user == "a"
    with pytest.raises(TokenError):
        v.verify_connect(jwt.encode({"sub": "a"}, EC_KEY, algorithm="ES256"))


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE", ""])
def test_every_spelling_of_alg_none_is_refused(alg: str) -> None:
    token = _b64({"alg": alg, "typ": "JWT"}) + "." + _b64({"sub": "x"}) + "."
    with pytest.raises(TokenError, match="algorithm not allowed"):
        verifier().verify_connect(token)


def test_hs256_signed_with_the_rsa_public_key_in_der_is_refused() -> None:
    der = RSA_KEY.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    forged = _raw_token({"alg": "HS256", "typ": "JWT"}, {"sub": "mallory"}, der)
    with pytest.raises(TokenError):
        verifier().verify_connect(forged)
    with pytest.raises(TokenError):
        verifier(token_hmac_secret_key="", platform_jwt_secret="").verify_connect(forged)


def test_leeway_applies_to_exp_and_nbf_and_is_capped() -> None:
    v = verifier(token_leeway=10.0)
    assert v.verify_connect(jwt.encode({"sub": "a", "exp": now() - 5}, SECRET)).user == "a"
    assert v.verify_connect(jwt.encode({"sub": "a", "nbf": now() + 5}, SECRET)).user == "a"
    with pytest.raises(TokenExpired):
        v.verify_connect(jwt.encode({"sub": "a", "exp": now() - 60}, SECRET))
    with pytest.raises(TokenExpired, match="not yet valid"):
        v.verify_connect(jwt.encode({"sub": "a", "nbf": now() + 60}, SECRET))
    capped = verifier(token_leeway=3600.0)  # the loader refuses this; the verifier caps it anyway
    with pytest.raises(TokenExpired):
        capped.verify_connect(jwt.encode({"sub": "a", "exp": now() - 31}, SECRET))


@pytest.mark.parametrize("value", ["1700000000", None, True, [1], {"a": 1}, 1e400])
def test_time_claims_must_be_finite_numbers(value: object) -> None:
    for claim in ("exp", "nbf", "iat"):
        token = jwt.encode({"sub": "a", claim: value}, SECRET) if value != 1e400 else _big_number_token(claim)
        with pytest.raises(TokenError):
            verifier().verify_connect(token)


def _big_number_token(claim: str) -> str:
    header = _b64({"alg": "HS256", "typ": "JWT"})
    payload = base64.urlsafe_b64encode(f'{{"sub":"a","{claim}":1e400}}'.encode()).rstrip(b"=").decode()
    sig = hmac.new(SECRET.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}." + base64.urlsafe_b64encode(sig).rstrip(b"=").decode()


def test_missing_exp_is_refused_only_when_required() -> None:
    token = jwt.encode({"sub": "a"}, SECRET)
    assert verifier().verify_connect(token).exp == 0
    with pytest.raises(TokenError, match="missing exp"):
        verifier(token_require_exp=True).verify_connect(token)
    with pytest.raises(TokenError, match="missing exp"):
        verifier(token_require_exp=True).verify_subscribe(jwt.encode({"sub": "a", "channel": "c"}, SECRET))


@pytest.mark.parametrize(
    "iss",
    [
        "https://auth.example",
        "https://auth.example.co",
        "https://auth.example.com/",
        "https://auth.example.com.evil",
        "https://AUTH.example.com",
        " https://auth.example.com",
        "auth.example.com",
        "",
        ["https://auth.example.com"],
        None,
    ],
)
def test_issuer_must_match_exactly(iss: object) -> None:
    v = verifier(token_issuer="https://auth.example.com")
    with pytest.raises(TokenError, match="issuer"):
        v.verify_connect(_raw_token({"alg": "HS256", "typ": "JWT"}, {"sub": "a", "iss": iss}, SECRET.encode()))


def test_audience_may_be_a_list_containing_the_configured_one() -> None:
    v = verifier(token_audience="portal")
    assert v.verify_connect(jwt.encode({"sub": "a", "aud": ["x", "portal"]}, SECRET)).user == "a"
    for aud in (["x"], "portal2", "port", ["portal", 1], 7):
        with pytest.raises(TokenError, match="audience"):
            v.verify_connect(jwt.encode({"sub": "a", "aud": aud}, SECRET))


@pytest.mark.parametrize(
    "extra",
    [
        {"jku": "http://127.0.0.1:1/jwks.json"},
        {"x5u": "http://127.0.0.1:1/cert.pem"},
        {"x5c": ["MIIB"]},
        {"jwk": {"kty": "oct", "k": "c2VjcmV0"}},
        {"crit": []},
        {"crit": ["b64"], "b64": False},
    ],
)
def test_key_references_in_the_header_and_crit_are_refused(extra: dict[str, object]) -> None:
    token = jwt.encode({"sub": "a"}, SECRET, headers=extra)
    with pytest.raises(TokenError):
        verifier().verify_connect(token)


@pytest.mark.parametrize(
    "kid", ["../../../../dev/null", "/dev/null", "' OR '1'='1", "x'; DROP TABLE keys; --", "|id", "\x00", "kid\n"]
)
def test_kid_injection_is_just_an_unknown_kid(kid: str) -> None:
    for secret in (b"", b"\x00", b"1"):
        forged = _raw_token({"alg": "HS256", "typ": "JWT", "kid": kid}, {"sub": "mallory"}, secret)
        with pytest.raises(TokenError):
            verifier().verify_connect(forged)
    # A kid never selects anything among static keys: a properly signed token still verifies.
    assert verifier().verify_connect(jwt.encode({"sub": "a"}, SECRET, headers={"kid": kid})).user == "a"


@pytest.mark.parametrize("kid", [1, ["a"], {"a": 1}, "k" * 300])
def test_a_kid_that_is_not_a_short_string_is_refused(kid: object) -> None:
    token = _raw_token({"alg": "HS256", "kid": kid}, {"sub": "a"}, SECRET.encode())
    with pytest.raises(TokenError, match="bad kid"):
        verifier().verify_connect(token)


def _good() -> str:
    return jwt.encode({"sub": "a"}, SECRET)


@pytest.mark.parametrize(
    "token",
    [
        _good() + "=",
        _good().replace(".", "..", 1),
        _good() + ".extra",
        _good().rsplit(".", 1)[0],
        _good().rsplit(".", 1)[0] + ".",
        "." + _good(),
        _good()[:-1] + "+",
        _good()[:-2],
        "é" + _good(),
        _b64({"alg": "HS256"})[:-1] + "." + _good().split(".", 1)[1],
        base64.urlsafe_b64encode(b"[1,2]").decode().rstrip("=") + "." + _good().split(".", 1)[1],
        _raw_token({"alg": "HS256"}, {"sub": "a"}, SECRET.encode()).replace(_b64({"sub": "a"}), "bm90IGpzb24"),
        "a" * 70000,
    ],
)
def test_malformed_tokens_are_refused(token: str) -> None:
    with pytest.raises(TokenError):
        verifier().verify_connect(token)


def test_payload_that_is_not_an_object_is_refused() -> None:
    token = _b64({"alg": "HS256"}) + "." + base64.urlsafe_b64encode(b'"x"').decode().rstrip("=")
    sig = hmac.new(SECRET.encode(), token.encode(), hashlib.sha256).digest()
    with pytest.raises(TokenError, match="malformed"):
        verifier().verify_connect(token + "." + base64.urlsafe_b64encode(sig).decode().rstrip("="))


def test_reasons_never_contain_token_contents() -> None:
    header = {"alg": "eyJhbGciOiJub25lIn0", "kid": "eyJ"}
    for token in (_b64(header) + "." + _b64({"sub": "eyJ"}) + ".", "eyJ" * 10, jwt.encode({"sub": "x"}, "w" * 40)):
        with pytest.raises(TokenError) as info:
            verifier().verify_connect(token)
        assert "eyJ" not in info.value.reason and "eyJ" not in str(info.value)


def test_hs256_tokens_never_go_through_the_general_decoder(monkeypatch: pytest.MonkeyPatch) -> None:
    # HMAC tokens take the direct path (hmac on the pre-keyed secret); its cost is measured by the connect
    # storm in bench/, not here.
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("PyJWT's decoder was used for an HMAC token")

    for name in ("decode", "decode_complete"):
        monkeypatch.setattr(jwt, name, refuse)
        monkeypatch.setattr(jwt.api_jwt._jwt_global_obj, name, refuse)
        monkeypatch.setattr(jwt.api_jws._jws_global_obj, name, refuse)
    token = jwt.encode({"sub": "u", "exp": now() + 3600, "tenant_id": "1", "roles": ["user"]}, SECRET)
    claims = verifier().verify_connect(token)
    assert (claims.user, claims.tenant_id, claims.roles) == ("u", "1", ("user",))


# ---- JWKS -------------------------------------------------------------------------------------------------

JWKS_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
JWKS_EC = ec.generate_private_key(ec.SECP256R1())
JWKS_ED = ed25519.Ed25519PrivateKey.generate()
ISSUER = "https://idp.example.com"


def _jwk(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey, **extra: str) -> dict:  # type: ignore[type-arg]
    if isinstance(key, rsa.RSAPrivateKey):
        jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    else:
        jwk = OKPAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {**jwk, **extra}


JWKS_DOCUMENT = {
    "keys": [
        _jwk(JWKS_RSA, kid="rsa-1", use="sig"),
        _jwk(JWKS_EC, kid="ec-1"),
        _jwk(JWKS_ED, kid="ed-1", alg="EdDSA"),
        _jwk(JWKS_RSA, kid="rsa-512-only", alg="RS512"),
        _jwk(JWKS_RSA, kid="rsa-enc", use="enc"),
        {"kty": "oct", "kid": "oct-1", "k": base64.urlsafe_b64encode(b"s" * 32).decode().rstrip("=")},
        {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
    ]
}


def jwks_verifier(url: str, **overrides: object) -> TokenVerifier:
    base: dict[str, object] = {"token_jwks_public_endpoint": url, "token_issuer": ISSUER}
    base.update(overrides)
    return TokenVerifier(Config(**base))  # type: ignore[arg-type]


def _signed(key: object, alg: str, kid: str, **claims: object) -> str:
    payload = {"sub": "a", "iss": ISSUER, "exp": now() + 600, **claims}
    payload = {name: value for name, value in payload.items() if value is not None}
    return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid})  # type: ignore[arg-type]


async def test_jwks_keys_are_fetched_after_the_issuer_check_and_cached() -> None:
    with Listener() as listener:
        listener.serve_json("/jwks", JWKS_DOCUMENT)
        v = jwks_verifier(listener.url + "/jwks")
        with pytest.raises(TokenError, match="issuer"):
            await v.verify_connect_async(_signed(JWKS_RSA, "RS256", "rsa-1", iss="https://idp.example.com.evil"))
        with pytest.raises(TokenError, match="issuer"):
            await v.verify_connect_async(_signed(JWKS_RSA, "RS256", "rsa-1", iss=None))
        assert listener.count() == 0, "nothing may be fetched for a token of another issuer"
        with pytest.raises(TokenError, match="signing key not loaded"):
            v.verify_connect(_signed(JWKS_RSA, "RS256", "rsa-1"))
        assert (await v.verify_connect_async(_signed(JWKS_RSA, "RS256", "rsa-1"))).user == "a"
        assert (await v.verify_connect_async(_signed(JWKS_RSA, "PS384", "rsa-1"))).user == "a"
        assert (await v.verify_connect_async(_signed(JWKS_EC, "ES256", "ec-1"))).user == "a"
        assert (await v.verify_connect_async(_signed(JWKS_ED, "EdDSA", "ed-1"))).user == "a"
        assert (await v.verify_subscribe_async(_signed(JWKS_ED, "EdDSA", "ed-1", channel="c"))).channel == "c"
        assert v.verify_connect(_signed(JWKS_RSA, "RS256", "rsa-1")).user == "a", "cached keys serve sync calls"
        assert listener.count("/jwks") == 1


@pytest.mark.parametrize(
    ("key", "alg", "kid"),
    [
        (JWKS_RSA, "RS256", "rsa-512-only"),  # the key's own alg narrows it
        (JWKS_RSA, "RS256", "rsa-enc"),  # an encryption key
        (JWKS_RSA, "RS256", "ec-1"),  # kid of a key of another type
        (JWKS_EC, "ES256", "rsa-1"),
        (JWKS_RSA, "RS256", "broken"),
        (rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256", "rsa-1"),  # another key
    ],
)
async def test_jwks_key_must_fit_the_token(key: object, alg: str, kid: str) -> None:
    with Listener() as listener:
        listener.serve_json("/jwks", JWKS_DOCUMENT)
        with pytest.raises(TokenError):
            await jwks_verifier(listener.url + "/jwks").verify_connect_async(_signed(key, alg, kid))


async def test_symmetric_keys_from_a_jwks_are_never_used() -> None:
    with Listener() as listener:
        listener.serve_json("/jwks", JWKS_DOCUMENT)
        v = jwks_verifier(listener.url + "/jwks", token_hmac_secret_key=SECRET)
        with pytest.raises(TokenError):
            await v.verify_connect_async(_signed(b"s" * 32, "HS256", "oct-1"))


async def test_jwks_refetch_is_rate_limited_and_follows_the_ttl() -> None:
    now = [1000.0]
    with Listener() as listener:
        listener.serve_json("/jwks", JWKS_DOCUMENT)
        cache = JwksCache(listener.url + "/jwks", JWKS_ALGORITHMS, ttl=60.0, min_refetch=10.0, clock=lambda: now[0])
        assert await cache.get("rsa-1") is not None
        for kid in ("unknown-1", "../../dev/null", "' OR 1=1 --"):
            assert await cache.get(kid) is None
        assert listener.count() == 1, "unknown kids do not refetch within the minimum interval"
        now[0] += 10
        for kid in ("unknown-2", "unknown-3"):
            assert await cache.get(kid) is None
        assert listener.count() == 2, "one refetch per interval, however many unknown kids"
        assert await cache.get("rsa-1") is not None and listener.count() == 2
        now[0] += 61
        assert await cache.get("rsa-1") is not None
        assert listener.count() == 3, "an expired cache is fetched again"


async def test_concurrent_tokens_share_one_fetch() -> None:
    with Listener() as listener:
        listener.serve_json("/jwks", JWKS_DOCUMENT)
        cache = JwksCache(listener.url + "/jwks", JWKS_ALGORITHMS, ttl=60.0)
        keys = await asyncio.gather(*(cache.get("ec-1") for _ in range(20)))
        assert all(key is not None for key in keys)
        assert listener.count() == 1


async def test_jwks_endpoint_failures() -> None:
    now = [1000.0]
    with Listener() as listener:
        listener.routes["/redirect"] = Response(302, b"", {"Location": listener.url + "/jwks"})
        listener.routes["/huge"] = Response(200, b'{"keys": [' + b" " * (2 * 1024 * 1024) + b"]}")
        listener.routes["/not-json"] = Response(200, b"<html>")
        listener.serve_json("/no-keys", {"keys": "nope"})
        listener.serve_json("/jwks", JWKS_DOCUMENT)
        for path in ("/redirect", "/huge", "/not-json", "/no-keys", "/missing"):
            cache = JwksCache(listener.url + path, JWKS_ALGORITHMS, ttl=60.0)
            with pytest.raises(SigningKeyUnavailable):
                await cache.get("rsa-1")
        assert listener.count("/jwks") == 0, "redirects are not followed"
        cache = JwksCache(listener.url + "/jwks", JWKS_ALGORITHMS, ttl=60.0, min_refetch=1.0, clock=lambda: now[0])
        assert await cache.get("rsa-1") is not None
        listener.routes["/jwks"] = Response(500, b"down")
        now[0] += 120
        assert await cache.get("rsa-1") is not None, "known keys stay in use while the endpoint fails"


async def test_unreachable_jwks_endpoint_is_a_key_error_not_an_invalid_token() -> None:
    with Listener() as listener:
        url = listener.url + "/jwks"
    v = jwks_verifier(url)  # the listener is gone: connection refused
    with pytest.raises(SigningKeyUnavailable):
        await v.verify_connect_async(_signed(JWKS_RSA, "RS256", "rsa-1"))


# ---- configuration keys -----------------------------------------------------------------------------------


def _load(tmp_path: Path, content: dict[str, object], env: dict[str, str] | None = None) -> Config:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(content))
    return load_config(str(path), env=env or {})


def test_token_hardening_keys_load(tmp_path: Path) -> None:
    config = _load(
        tmp_path,
        {
            "token_leeway": "30s",
            "token_require_exp": True,
            "token_hmac_algorithms": ["HS512"],
            "token_rsa_algorithms": "RS256,PS256",
            "token_ecdsa_algorithms": ["ES384"],
            "token_jwks_public_endpoint": "https://idp.example.com/.well-known/jwks.json",
            "token_jwks_algorithms": ["RS256", "EdDSA"],
            "token_jwks_cache_ttl": "1h",
            "token_rsa_public_key": _pem(RSA_KEY),
            "token_ecdsa_public_key": _pem(EC_KEY),
        },
    )
    assert config.token_leeway == 30.0 and config.token_require_exp
    assert config.token_hmac_algorithms == ("HS512",)
    assert config.token_rsa_algorithms == ("RS256", "PS256")
    assert config.token_jwks_algorithms == ("RS256", "EdDSA") and config.token_jwks_cache_ttl == 3600.0
    defaults = Config()
    assert defaults.token_hmac_algorithms == HMAC_ALGORITHMS and not defaults.token_require_exp
    env = _load(tmp_path, {}, env={"NEOEVENTS_TOKEN_REQUIRE_EXP": "true", "NEOEVENTS_TOKEN_LEEWAY": "5"})
    assert env.token_require_exp and env.token_leeway == 5.0


@pytest.mark.parametrize(
    ("content", "key"),
    [
        ({"token_leeway": "31s"}, "token_leeway"),
        ({"token_leeway": 3600}, "token_leeway"),
        ({"token_hmac_algorithms": ["none"]}, "token_hmac_algorithms"),
        ({"token_hmac_algorithms": ["RS256"]}, "token_hmac_algorithms"),
        ({"token_hmac_algorithms": ["hs256"]}, "token_hmac_algorithms"),
        ({"token_hmac_algorithms": []}, "token_hmac_algorithms"),
        ({"token_rsa_algorithms": ["HS256"]}, "token_rsa_algorithms"),
        ({"token_ecdsa_algorithms": ["ES256K"]}, "token_ecdsa_algorithms"),
        ({"token_jwks_algorithms": ["HS256"]}, "token_jwks_algorithms"),
        ({"token_jwks_public_endpoint": "file:///etc/passwd"}, "token_jwks_public_endpoint"),
        ({"token_jwks_public_endpoint": "ftp://idp/jwks"}, "token_jwks_public_endpoint"),
        ({"token_rsa_public_key": "rsa-pem"}, "token_rsa_public_key"),
        ({"token_ecdsa_public_key": _pem(RSA_KEY)}, "token_ecdsa_public_key"),
        ({"token_rsa_public_key": _pem(EC_KEY)}, "token_rsa_public_key"),
    ],
)
def test_bad_token_settings_are_reported(tmp_path: Path, content: dict[str, object], key: str) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(content))
    assert key in {problem.key for problem in check_config(str(path), env={})}


def test_header_checks_hold_for_headers_seen_before_and_for_long_headers() -> None:
    v = verifier()
    good = {"alg": "HS256", "typ": "JWT"}
    long = {**good, "pad": "p" * 400}  # longer than the headers that are remembered
    for _ in range(3):
        for header in (good, long):
            assert v.verify_connect(_raw_token(header, {"sub": "a"}, SECRET.encode())).user == "a"
            with pytest.raises(TokenError, match="invalid signature"):
                v.verify_connect(_raw_token(header, {"sub": "a"}, b"other"))
            with pytest.raises(TokenError, match="forbidden header jku"):
                v.verify_connect(_raw_token({**header, "jku": "http://x"}, {"sub": "a"}, SECRET.encode()))
        with pytest.raises(TokenError, match="algorithm not allowed"):
            verifier(token_hmac_algorithms=("HS512",)).verify_connect(_raw_token(good, {"sub": "a"}, SECRET.encode()))

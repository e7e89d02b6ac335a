"""Connection and subscription token verification: keys, algorithm allowlists, claims."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from neoevents.auth.tokens import TokenError, TokenExpired, TokenVerifier
from neoevents.config import Config

SECRET = "hmac-secret-0123456789abcdef0123456789abcdef0123456789abcdef0123456789"
PLATFORM = "platform-jwt-secret-0123456789abcdef0123456789abcdef0123456789"


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


def _b64(obj: dict[str, object]) -> str:
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

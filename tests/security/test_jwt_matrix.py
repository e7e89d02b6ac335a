"""The JWT matrix: forged and broken tokens against a real neoevents process, in every place a token is used.

Each case is a forgery (or a breakage) of an otherwise valid token. It is tried as the connection token of a
``connect``, as the subscription token of a ``subscribe`` and as the new token of a ``refresh``, over JSON and
Protobuf, and must be refused with the code the reference server uses (docs/compatibility.md, "Reference
behaviour"):

* connect: close 3500 "invalid token", or error 109 "token expired" (the SDK then refreshes);
* subscribe: error 103 "permission denied" for a token that does not verify, 109 when expired, close 3500
  for a valid token of another channel or user;
* refresh: close 3500, or 3005 "connection expired" for an expired token.

``jku`` / ``x5u`` point at a local listener that must receive no request at all, and the server log must
not contain any token (no ``eyJ``). Valid tokens in the same contexts are accepted (the controls).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.support.listener import Listener
from tests.support.protocol import PROTOCOLS
from tests.support.rawclient import RawClient
from tests.support.servers import RunningServer, ServerOptions

pytestmark = pytest.mark.asyncio

SECRET = "jwt-matrix-secret-0123456789abcdef0123456789abcdef0123456789abcdef"
AUDIENCE = "neoevents"
ISSUER = "https://auth.example.com"
LEEWAY = 5
USER = "alice"
CHANNEL = "priv:room"

SERVER_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # token_rsa_public_key
JWKS_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # served by the JWKS endpoint
ATTACKER_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
SERVER_RSA_PEM = SERVER_RSA.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)
SERVER_RSA_DER = SERVER_RSA.public_key().public_bytes(
    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
)

# What a context must answer: ("close", code) or ("error", code).
Outcome = tuple[str, int]
INVALID_CONNECT: Outcome = ("close", 3500)
EXPIRED_CONNECT: Outcome = ("error", 109)
INVALID_SUBSCRIBE: Outcome = ("error", 103)
EXPIRED_SUBSCRIBE: Outcome = ("error", 109)
MISMATCH_SUBSCRIBE: Outcome = ("close", 3500)
INVALID_REFRESH: Outcome = ("close", 3500)
EXPIRED_REFRESH: Outcome = ("close", 3005)
ACCEPTED: Outcome = ("ok", 0)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(obj: Any) -> str:
    return b64(json.dumps(obj, separators=(",", ":")).encode())


def hs256(header: dict[str, Any], payload: dict[str, Any], key: bytes) -> str:
    signing_input = f"{b64json(header)}.{b64json(payload)}"
    return signing_input + "." + b64(hmac.new(key, signing_input.encode(), hashlib.sha256).digest())


def unsigned(alg: str, payload: dict[str, Any]) -> str:
    return f"{b64json({'alg': alg, 'typ': 'JWT'})}.{b64json(payload)}."


def signed(payload: dict[str, Any], **headers: Any) -> str:
    return jwt.encode(payload, SECRET, algorithm="HS256", headers=headers or None)


@dataclass
class Env:
    """What the cases need to build their tokens."""

    attacker_url: str

    @staticmethod
    def claims(kind: str, **changes: Any) -> dict[str, Any]:
        """Valid claims of a connection (``conn``) or subscription (``sub``) token, with ``changes``;
        a change to None removes the claim."""
        claims: dict[str, Any] = {"sub": USER, "exp": int(time.time()) + 600, "aud": AUDIENCE, "iss": ISSUER}
        if kind == "sub":
            claims["channel"] = CHANNEL
        claims.update(changes)
        return {name: value for name, value in claims.items() if value is not None}


Maker = Callable[[Env, str], str]  # (env, kind "conn" | "sub") -> token


@dataclass
class Case:
    name: str
    make: Maker
    connect: Outcome | None = INVALID_CONNECT
    subscribe: Outcome | None = INVALID_SUBSCRIBE
    refresh: Outcome | None = INVALID_REFRESH


def _other_kind(kind: str) -> str:
    return "sub" if kind == "conn" else "conn"


def _attacker_jwks() -> dict[str, Any]:
    return {"keys": [{**RSAAlgorithm.to_jwk(ATTACKER_RSA.public_key(), as_dict=True), "kid": "attacker-1"}]}


def _x5c() -> list[str]:
    """A base64 DER "certificate" chain slot holding the attacker's public key (never parsed as trusted)."""
    der = ATTACKER_RSA.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return [base64.b64encode(der).decode()]


def _swap_signature(token: str, signature: str) -> str:
    return token.rsplit(".", 1)[0] + "." + signature


FORGED: list[Case] = [
    Case("alg none", lambda e, k: unsigned("none", e.claims(k))),
    Case("alg None", lambda e, k: unsigned("None", e.claims(k))),
    Case("alg NONE", lambda e, k: unsigned("NONE", e.claims(k))),
    Case("alg none with the original signature", lambda e, k: unsigned("none", e.claims(k)) + signed({}).split(".")[2]),
    Case("alg lower-case hs256", lambda e, k: hs256({"alg": "hs256"}, e.claims(k), SECRET.encode())),
    Case(
        "HS256 signed with the RSA public key (PEM)", lambda e, k: hs256({"alg": "HS256"}, e.claims(k), SERVER_RSA_PEM)
    ),
    Case(
        "HS256 signed with the RSA public key (DER)", lambda e, k: hs256({"alg": "HS256"}, e.claims(k), SERVER_RSA_DER)
    ),
    Case("RS256 signed by another key", lambda e, k: jwt.encode(e.claims(k), ATTACKER_RSA, algorithm="RS256")),
    Case(
        "RS256 with the JWKS kid, signed by another key",
        lambda e, k: jwt.encode(e.claims(k), ATTACKER_RSA, algorithm="RS256", headers={"kid": "legit-1"}),
    ),
    Case(
        "expired beyond the leeway",
        lambda e, k: signed(e.claims(k, exp=int(time.time()) - LEEWAY - 30)),
        connect=EXPIRED_CONNECT,
        subscribe=EXPIRED_SUBSCRIBE,
        refresh=EXPIRED_REFRESH,
    ),
    Case(
        "nbf in the future (answered like an expired token, as the reference does)",
        lambda e, k: signed(e.claims(k, nbf=int(time.time()) + LEEWAY + 60)),
        connect=EXPIRED_CONNECT,
        subscribe=EXPIRED_SUBSCRIBE,
        refresh=EXPIRED_REFRESH,
    ),
    Case("wrong audience", lambda e, k: signed(e.claims(k, aud="another-service"))),
    Case("audience missing", lambda e, k: signed(e.claims(k, aud=None))),
    Case("wrong issuer", lambda e, k: signed(e.claims(k, iss="https://evil.example.com"))),
    Case("issuer prefix (partial match)", lambda e, k: signed(e.claims(k, iss="https://auth.example"))),
    Case("issuer with a suffix", lambda e, k: signed(e.claims(k, iss=ISSUER + ".evil.com"))),
    Case("issuer in a list", lambda e, k: hs256({"alg": "HS256"}, e.claims(k, iss=[ISSUER]), SECRET.encode())),
    Case("missing exp (required)", lambda e, k: signed(e.claims(k, exp=None))),
    Case("exp as a string", lambda e, k: signed(e.claims(k, exp=str(int(time.time()) + 600)))),
    Case(
        "kid path injection, signed with an empty key",
        lambda e, k: hs256({"alg": "HS256", "kid": "../../../../../../dev/null"}, e.claims(k), b""),
    ),
    Case(
        "kid SQL injection, signed with the injected value",
        lambda e, k: hs256({"alg": "HS256", "kid": "x' UNION SELECT 'attacker-key' --"}, e.claims(k), b"attacker-key"),
    ),
    Case(
        "kid command injection",
        lambda e, k: hs256({"alg": "HS256", "kid": "key|/usr/bin/id"}, e.claims(k), b"key"),
    ),
    Case(
        "jku to an attacker JWKS",
        lambda e, k: jwt.encode(
            e.claims(k),
            ATTACKER_RSA,
            algorithm="RS256",
            headers={"kid": "attacker-1", "jku": e.attacker_url + "/jwks.json"},
        ),
    ),
    Case(
        "jku with a valid HMAC signature",
        lambda e, k: signed(e.claims(k), jku=e.attacker_url + "/jwks.json"),
    ),
    Case(
        "x5u to an attacker certificate",
        lambda e, k: jwt.encode(
            e.claims(k), ATTACKER_RSA, algorithm="RS256", headers={"x5u": e.attacker_url + "/cert.pem"}
        ),
    ),
    Case(
        "x5c with the attacker key",
        lambda e, k: jwt.encode(e.claims(k), ATTACKER_RSA, algorithm="RS256", headers={"x5c": _x5c()}),
    ),
    Case(
        "embedded jwk with the attacker key",
        lambda e, k: jwt.encode(
            e.claims(k), ATTACKER_RSA, algorithm="RS256", headers={"jwk": _attacker_jwks()["keys"][0]}
        ),
    ),
    Case("unknown crit header", lambda e, k: signed(e.claims(k), crit=["exp-ext"], **{"exp-ext": True})),
    Case("empty signature", lambda e, k: _swap_signature(signed(e.claims(k)), "")),
    Case("truncated signature", lambda e, k: signed(e.claims(k))[:-6]),
    Case("garbage signature", lambda e, k: _swap_signature(signed(e.claims(k)), b64(b"\x00" * 32))),
    Case("signature of another token", lambda e, k: _swap_signature(signed(e.claims(k)), signed({}).split(".")[2])),
    Case("payload altered after signing", lambda e, k: _alter_payload(signed(e.claims(k)), e.claims(k, sub="admin"))),
    Case("garbage header segment", lambda e, k: "e30K!!." + signed(e.claims(k)).split(".", 1)[1]),
    Case("payload that is not JSON", lambda e, k: hs256({"alg": "HS256"}, {}, SECRET.encode()).replace("e30", "bm90")),
    Case("two segments", lambda e, k: signed(e.claims(k)).rsplit(".", 1)[0]),
    Case("four segments", lambda e, k: signed(e.claims(k)) + ".e30"),
    Case("padding characters", lambda e, k: signed(e.claims(k)) + "=="),
    Case("not base64url", lambda e, k: signed(e.claims(k)).replace("-", "+").replace("_", "/") + "+/"),
    Case("wrong secret", lambda e, k: jwt.encode(e.claims(k), "another-secret-" + "x" * 40, algorithm="HS256")),
    Case("sub that is not a string", lambda e, k: hs256({"alg": "HS256"}, e.claims(k, sub=42), SECRET.encode())),
    Case(
        "token of the other kind (subscription token to connect, connection token to subscribe)",
        lambda e, k: signed(e.claims(_other_kind(k))),
    ),
    Case(
        "token for another user",
        lambda e, k: signed(e.claims(k, sub="mallory")),
        connect=None,  # a valid token of another user is simply that user's connection
        subscribe=MISMATCH_SUBSCRIBE,
        refresh=INVALID_REFRESH,
    ),
    Case(
        "subscription token for another channel",
        lambda e, k: signed(e.claims(k, channel="priv:other")),
        connect=None,
        subscribe=MISMATCH_SUBSCRIBE,
        refresh=None,
    ),
]

CONTROLS: list[Case] = [
    Case("valid HS256", lambda e, k: signed(e.claims(k)), ACCEPTED, ACCEPTED, ACCEPTED),
    Case(
        "nbf within the leeway",
        lambda e, k: signed(e.claims(k, nbf=int(time.time()) + 2)),
        ACCEPTED,
        ACCEPTED,
        ACCEPTED,
    ),
    Case(
        "valid RS256 from the configured key",
        lambda e, k: jwt.encode(e.claims(k), SERVER_RSA, algorithm="RS256"),
        ACCEPTED,
        ACCEPTED,
        ACCEPTED,
    ),
    Case(
        "valid RS256 from the JWKS endpoint",
        lambda e, k: jwt.encode(e.claims(k), JWKS_RSA, algorithm="RS256", headers={"kid": "legit-1"}),
        ACCEPTED,
        ACCEPTED,
        ACCEPTED,
    ),
]


def _alter_payload(token: str, payload: dict[str, Any]) -> str:
    header, _payload, signature = token.split(".")
    return f"{header}.{b64json(payload)}.{signature}"


# ---- running one case in one context ------------------------------------------------------------------


async def _good_connection(server: RunningServer, protocol: str) -> RawClient:
    client = await RawClient.connect(server.ws_url, protocol, auto_pong=True)
    await client.send_command({"id": 1, "connect": {"token": signed(Env.claims("conn"))}})
    [reply] = await client.recv_replies()
    assert "connect" in reply, reply
    return client


async def _outcome(client: RawClient, command_id: int, result_key: str) -> Outcome:
    """What the server did with the command: an error reply, a result, or a close."""
    try:
        replies = await client.recv_replies(timeout=5)
    except TimeoutError:
        return ("timeout", 0)
    except Exception:  # closed: read the close code
        code, _ = await client.wait_close(5)
        return ("close", code or 0)
    for reply in replies:
        if reply.get("id") == command_id:
            if "error" in reply:
                return ("error", int(reply["error"]["code"]))
            if result_key in reply:
                return ("ok", 0)
    return ("unexpected", 0)


async def run_connect(server: RunningServer, protocol: str, token: str) -> Outcome:
    client = await RawClient.connect(server.ws_url, protocol, auto_pong=True)
    try:
        await client.send_command({"id": 1, "connect": {"token": token}})
        return await _outcome(client, 1, "connect")
    finally:
        await client.close()


async def run_subscribe(server: RunningServer, protocol: str, token: str) -> Outcome:
    client = await _good_connection(server, protocol)
    try:
        await client.send_command({"id": 2, "subscribe": {"channel": CHANNEL, "token": token}})
        return await _outcome(client, 2, "subscribe")
    finally:
        await client.close()


async def run_refresh(server: RunningServer, protocol: str, token: str) -> Outcome:
    client = await _good_connection(server, protocol)
    try:
        await client.send_command({"id": 2, "refresh": {"token": token}})
        return await _outcome(client, 2, "refresh")
    finally:
        await client.close()


CONTEXTS = {"connect": ("conn", run_connect), "subscribe": ("sub", run_subscribe), "refresh": ("conn", run_refresh)}


def _plan(cases: list[Case]) -> Iterator[tuple[Case, str, Outcome]]:
    for case in cases:
        for context, expected in (("connect", case.connect), ("subscribe", case.subscribe), ("refresh", case.refresh)):
            if expected is not None:
                yield case, context, expected


# ---- the test ---------------------------------------------------------------------------------------------


@pytest.fixture
def listeners() -> Iterator[tuple[Listener, Listener]]:
    """(the configured JWKS endpoint, an attacker's server that must never be contacted)."""
    with Listener() as jwks, Listener() as attacker:
        jwks.serve_json(
            "/jwks.json", {"keys": [{**RSAAlgorithm.to_jwk(JWKS_RSA.public_key(), as_dict=True), "kid": "legit-1"}]}
        )
        attacker.serve_json("/jwks.json", _attacker_jwks())
        attacker.routes["/cert.pem"] = attacker.routes["/jwks.json"]
        yield jwks, attacker


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_every_forged_token_is_refused_everywhere(
    server_factory: Callable[..., RunningServer], listeners: tuple[Listener, Listener], protocol: str
) -> None:
    jwks, attacker = listeners
    server = server_factory(
        "neoevents",
        ServerOptions(
            secret=SECRET,
            token_audience=AUDIENCE,
            token_issuer=ISSUER,
            namespaces=[{"name": "priv"}],  # subscribing needs a subscription token
            extra={
                "token_rsa_public_key": SERVER_RSA_PEM.decode(),
                "token_leeway": LEEWAY,
                "token_require_exp": True,
                "token_jwks_public_endpoint": jwks.url + "/jwks.json",
            },
        ),
    )
    env = Env(attacker_url=attacker.url)
    assert len(FORGED) >= 25

    mismatches: list[str] = []
    runs = 0
    for case, context, expected in _plan(FORGED + CONTROLS):
        kind, run = CONTEXTS[context]
        token = case.make(env, kind)
        got = await run(server, protocol, token)
        runs += 1
        if got != expected:
            mismatches.append(f"{case.name} / {context}: expected {expected}, got {got}")

    assert mismatches == [], "\n".join(mismatches)
    assert runs >= 3 * 25
    assert attacker.count() == 0, [r.path for r in attacker.requests]
    assert jwks.count("/jwks.json") >= 1, "the control signed with a JWKS key must have fetched the keys"
    assert server.alive() and server.http("GET", "/health").status == 200
    log = server.log_text()
    assert "eyJ" not in log, "token contents in the server log"
    assert "Traceback" not in log

"""Tenant isolation: the built-in channel rules on every path, against tenant id pairs and mutated names.

Two property tests share one oracle (:func:`expected`): a fast one over ``Node.permission`` (the single
authorisation decision) with many examples, and a bounded one that drives a real server with raw WebSocket
clients and HTTP requests carrying user tokens. Deterministic tests cover server-side subscriptions from the
token, subscription tokens, the API's user-token methods, metrics and logs.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neoevents.api.executor import ApiUser
from neoevents.configfile import dev_config
from neoevents.engines.memory import MemoryBroker, MemoryPresenceManager
from neoevents.node import Node
from tests.conftest import ServerPool
from tests.support.rawclient import RawClient
from tests.support.servers import RunningServer, ServerOptions

ACTIONS = ("subscribe", "history", "presence", "publish")
OWN_TENANT_PUBLISH = "vars.tenant_id == tenant"
DENIED = {102, 103, 107}

# ---- the oracle -----------------------------------------------------------------------------------------

_ASCII_SEGMENT = re.compile(r"[A-Za-z0-9_.\-]+")


def canonical_segment(text: str) -> bool:
    if not text.isascii() or _ASCII_SEGMENT.fullmatch(text) is None:
        return False
    return not (text.isdigit() and len(text) > 1 and text.startswith("0"))


def channel_tenant(name: str) -> str | None:
    """The tenant of a well-formed ``tenant:{id}:{resource}`` name, or None for any other name."""
    parts = name.split(":")
    if len(parts) != 3 or parts[0] != "tenant" or not all(canonical_segment(part) for part in parts[1:]):
        return None
    return parts[1]


def claim_tenant(claim: object) -> str:
    if isinstance(claim, bool):
        return ""
    if isinstance(claim, int):
        return str(claim)
    return claim if isinstance(claim, str) else ""


def expected(claim: object, admin: bool, name: str, action: str, publish_own: bool) -> bool:
    """Whether the built-in rules allow ``action`` on ``name`` for a token with tenant ``claim``."""
    tenant = channel_tenant(name)
    if tenant is None:
        return False
    own = tenant == claim_tenant(claim)
    if action == "publish":
        return publish_own and own
    return own or admin


# ---- generated cases ------------------------------------------------------------------------------------

FULLWIDTH = str.maketrans("0123456789", "".join(map(chr, range(0xFF10, 0xFF1A))))
ARABIC_INDIC = str.maketrans("0123456789", "".join(map(chr, range(0x0660, 0x066A))))
MUTATIONS: dict[str, Callable[[str, str], str]] = {
    "same": lambda t, r: f"tenant:{t}:{r}",
    "leading zero": lambda t, r: f"tenant:0{t}:{r}",
    "appended digit": lambda t, r: f"tenant:{t}2:{r}",
    "space before": lambda t, r: f"tenant: {t}:{r}",
    "space after": lambda t, r: f"tenant:{t} :{r}",
    "tab": lambda t, r: f"tenant:\t{t}:{r}",
    "newline at the end": lambda t, r: f"tenant:{t}:{r}\n",
    "fullwidth digits": lambda t, r: f"tenant:{t.translate(FULLWIDTH)}:{r}",
    "arabic-indic digits": lambda t, r: f"tenant:{t.translate(ARABIC_INDIC)}:{r}",
    "zero-width space": lambda t, r: f"tenant:{t}\u200b:{r}",
    "percent-encoded colon": lambda t, r: f"tenant:{t}%3A{r}",
    "percent-encoded tenant": lambda t, r: f"tenant%3A{t}:{r}",
    "nul": lambda t, r: f"tenant:{t}\x00:{r}",
    "braces": lambda t, r: f"tenant:{{{t}}}:{r}",
    "star": lambda t, r: f"tenant:{t}*:{r}",
    "star tenant": lambda t, r: f"tenant:*:{r}",
    "question mark": lambda t, r: f"tenant:{t}?:{r}",
    "brackets": lambda t, r: f"tenant:[{t}]:{r}",
    "extra segment": lambda t, r: f"tenant:{t}:{r}:extra",
    "extra segment inside": lambda t, r: f"tenant:{t}:x:{r}",
    "empty tenant": lambda t, r: f"tenant::{r}",
    "no resource": lambda t, r: f"tenant:{t}",
    "trailing colon": lambda t, r: f"tenant:{t}:{r}:",
    "private prefix": lambda t, r: f"$tenant:{t}:{r}",
    "upper-case namespace": lambda t, r: f"TENANT:{t}:{r}",
    "user-limited": lambda t, r: f"tenant:{t}:{r}#alice",
    "slash": lambda t, r: f"tenant:{t}/{r}:x",
}

numeric_ids = st.integers(min_value=0, max_value=10**12).map(str)
slug_ids = st.from_regex(r"[a-z][a-z0-9_-]{0,11}", fullmatch=True)
tenant_ids = st.one_of(numeric_ids, slug_ids, st.sampled_from(["1", "12", "2", "acme"]))
resources = st.from_regex(r"[a-z][a-z0-9_.-]{0,11}", fullmatch=True)
odd_claims = st.sampled_from(["01", " 1", "1 ", "\u0661", "", "1.0", 1.0, True, None])


@st.composite
def cases(draw: st.DrawFn) -> tuple[object, bool, str]:
    """(the token's tenant claim, admin or not, a channel name)."""
    user_tenant = draw(tenant_ids)
    claim: object = user_tenant
    if user_tenant.isdigit() and draw(st.booleans()):
        claim = int(user_tenant)  # the same tenant as a JSON number
    if draw(st.integers(0, 9)) == 0:
        claim = draw(odd_claims)
    other = draw(tenant_ids)
    target = user_tenant if draw(st.booleans()) else other
    mutation = draw(st.sampled_from(sorted(MUTATIONS)))
    name = MUTATIONS[mutation](target, draw(resources))
    return claim, draw(st.integers(0, 4)) == 0, name


def claims_of(claim: object, admin: bool) -> dict[str, Any]:
    out: dict[str, Any] = {} if claim is None else {"tenant_id": claim}
    out["roles"] = ["admin"] if admin else ["user"]
    return out


# ---- in process: many examples over the authorisation decision --------------------------------------------

_node_cache: dict[bool, Node] = {}


def node(publish_own: bool) -> Node:
    if publish_own not in _node_cache:
        config = dev_config()
        if publish_own:
            from neoevents.configfile import builtin_namespace

            namespaces = tuple(
                builtin_namespace(ns.name, ns.history_size, int(ns.history_ttl), OWN_TENANT_PUBLISH)
                for ns in config.namespaces
            )
            config = replace(config, namespaces=namespaces, tenant_publish_rule=OWN_TENANT_PUBLISH)
        _node_cache[publish_own] = Node(config, MemoryBroker(), MemoryPresenceManager())
    return _node_cache[publish_own]


@settings(max_examples=3000, deadline=None, database=None)
@given(case=cases(), publish_own=st.booleans())
def test_authorisation_decision_isolates_tenants(case: tuple[object, bool, str], publish_own: bool) -> None:
    claim, admin, name = case
    n = node(publish_own)
    who = ApiUser("user-1", n.rules.identity("user-1", {"sub": "user-1", **claims_of(claim, admin)}))
    ns = n.namespace_for(name)
    for action in ACTIONS:
        allowed = ns is not None and n.permission(who, name, ns, action) is None
        assert allowed == expected(claim, admin, name, action, publish_own), (claim, admin, name, action)
    # A server-side subscription from the token is held to the same subscribe rule.
    from_token = ns is not None and n.permission(who, name, ns, "subscribe", from_token=True) is None
    assert from_token == expected(claim, admin, name, "subscribe", publish_own)
    # The trusted server (API key) is refused only names that are not canonical.
    if ns is not None and ns.name == "tenant":
        assert (n.permission(None, name, ns, "publish") is None) == (channel_tenant(name) is not None)


# ---- against a real server --------------------------------------------------------------------------------


def rules_options(**extra: Any) -> ServerOptions:
    return ServerOptions(extra={"builtin_namespaces": True, **extra})


@pytest.fixture(scope="module")
def publishing_server(server_pool: ServerPool) -> RunningServer:
    """Built-in rules, with tenant users allowed to publish into their own tenant."""
    return server_pool.shared("neoevents", "rules-own-publish", rules_options(tenant_publish_rule=OWN_TENANT_PUBLISH))


@pytest.fixture(scope="module")
def default_server(server_pool: ServerPool) -> RunningServer:
    """Built-in rules exactly as without configuration."""
    return server_pool.shared("neoevents", "rules-default", rules_options())


def error_code(reply: dict[str, Any]) -> int | None:
    error = reply.get("error")
    return None if error is None else int(error["code"])


async def connect(server: RunningServer, token: str) -> RawClient:
    client = await RawClient.connect(server.ws_url, auto_pong=True)
    await client.send_command({"id": 1, "connect": {"token": token}})
    [reply] = await client.recv_replies()
    assert "connect" in reply, reply
    return client


async def websocket_outcomes(server: RunningServer, token: str, name: str) -> dict[str, int | None]:
    """The error code (None: allowed) of history, presence, publish and subscribe on ``name``."""
    client = await connect(server, token)
    try:
        await client.send_commands(
            [
                {"id": 2, "history": {"channel": name, "limit": 1}},
                {"id": 3, "presence": {"channel": name}},
                {"id": 4, "publish": {"channel": name, "data": {"probe": True}}},
                {"id": 5, "subscribe": {"channel": name}},
            ]
        )
        replies: dict[int, dict[str, Any]] = {}
        while len(replies) < 4:
            for reply in await client.recv_replies():
                if reply.get("id"):
                    replies[int(reply["id"])] = reply
    finally:
        await client.close()
    return {
        action: error_code(replies[i])
        for i, action in ((2, "history"), (3, "presence"), (4, "publish"), (5, "subscribe"))
    }


def api_as_user(server: RunningServer, token: str, method: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = server.api_raw(
        method, json.dumps(params).encode(), api_key=None, headers={"Authorization": f"Bearer {token}"}
    )
    return response.status, response.json() if response.status == 200 else {}


@settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=cases())
def test_real_server_isolates_tenants(publishing_server: RunningServer, case: tuple[object, bool, str]) -> None:
    claim, admin, name = case
    token = publishing_server.token("user-1", **claims_of(claim, admin))
    outcomes = asyncio.run(websocket_outcomes(publishing_server, token, name))
    for action, code in outcomes.items():
        if expected(claim, admin, name, action, True):
            assert code is None, (action, name, claim, admin, code)
        else:
            assert code in DENIED, (action, name, claim, admin, code)
    status, body = api_as_user(publishing_server, token, "publish", {"channel": name, "data": {"probe": 1}})
    assert status == 200
    if expected(claim, admin, name, "publish", True):
        assert "result" in body, (name, claim, body)
    else:
        assert body["error"]["code"] in DENIED, (name, claim, body)
    status, body = api_as_user(publishing_server, token, "history", {"channel": name, "limit": 1})
    assert status == 200
    assert ("result" in body) == expected(claim, admin, name, "history", True), (name, claim, body)


# ---- deterministic cases ------------------------------------------------------------------------------------


async def test_by_default_users_never_publish(default_server: RunningServer) -> None:
    token = default_server.token("alice", tenant_id="1")
    outcomes = await websocket_outcomes(default_server, token, "tenant:1:deployments")
    assert outcomes == {"history": None, "presence": None, "publish": 103, "subscribe": None}
    status, body = api_as_user(default_server, token, "publish", {"channel": "tenant:1:deployments", "data": {}})
    assert (status, body["error"]["code"]) == (200, 103)
    admin = default_server.token("root", roles=["admin"])
    assert (await websocket_outcomes(default_server, admin, "tenant:1:deployments"))["publish"] == 103
    # The server itself (API key) publishes anywhere well-formed.
    assert "result" in default_server.api("publish", {"channel": "tenant:1:deployments", "data": {"n": 1}})


async def test_admin_and_system_channels(default_server: RunningServer) -> None:
    user = default_server.token("alice", tenant_id="1")
    admin = default_server.token("root", tenant_id="9", roles=["admin"])
    assert await websocket_outcomes(default_server, user, "admin:alerts") == dict.fromkeys(
        ("history", "presence", "publish", "subscribe"), 103
    )
    assert await websocket_outcomes(default_server, admin, "admin:alerts") == {
        "history": None,
        "presence": None,
        "publish": 103,
        "subscribe": None,
    }
    assert await websocket_outcomes(default_server, user, "system:health") == {
        "history": None,
        "presence": 103,
        "publish": 103,
        "subscribe": None,
    }
    assert (await websocket_outcomes(default_server, admin, "system:health"))["presence"] is None


async def test_token_channels_are_held_to_the_rules(default_server: RunningServer) -> None:
    ok = await connect(
        default_server, default_server.token("alice", tenant_id="1", channels=["tenant:1:a", "system:x"])
    )
    await ok.close()
    for channels in (["tenant:1:a", "tenant:2:a"], ["tenant:01:a"], ["admin:alerts"]):
        client = await RawClient.connect(default_server.ws_url, auto_pong=True)
        token = default_server.token("alice", tenant_id="1", channels=channels)
        await client.send_command({"id": 1, "connect": {"token": token}})
        code, _ = await client.wait_close()
        assert code == 3500, channels
    subs_claim = default_server.token("alice", tenant_id="1", subs={"tenant:2:a": {}})
    client = await RawClient.connect(default_server.ws_url, auto_pong=True)
    await client.send_command({"id": 1, "connect": {"token": subs_claim}})
    assert (await client.wait_close())[0] == 3500


async def test_subscription_tokens(default_server: RunningServer) -> None:
    client = await connect(default_server, default_server.token("alice", tenant_id="1"))
    try:
        # A grant the server minted for this user and channel subscribes across tenants (Centrifugo's semantics).
        granted = default_server.sub_token("alice", "tenant:2:shared")
        await client.send_command({"id": 2, "subscribe": {"channel": "tenant:2:shared", "token": granted}})
        [reply] = await client.recv_replies()
        assert "subscribe" in reply, reply
        # ... but never a name outside the pattern, nor an admin channel (that rule ignores grants).
        for i, channel in enumerate(["tenant:02:shared", "tenant:2:shared:x", "admin:alerts"], start=3):
            token = default_server.sub_token("alice", channel)
            await client.send_command({"id": i, "subscribe": {"channel": channel, "token": token}})
            [reply] = await client.recv_replies()
            assert error_code(reply) == (103 if channel.startswith("admin") else 107), (channel, reply)
        # A token minted for another user is refused as before.
        stolen = default_server.sub_token("bob", "tenant:3:x")
        await client.send_command({"id": 9, "subscribe": {"channel": "tenant:3:x", "token": stolen}})
        assert (await client.wait_close())[0] == 3500
    finally:
        await client.close()


async def test_api_user_tokens(default_server: RunningServer) -> None:
    token = default_server.token("alice", tenant_id="1")
    for method, params in [
        ("info", {}),
        ("channels", {}),
        ("subscribe", {"user": "alice", "channel": "tenant:1:x"}),
        ("disconnect", {"user": "bob"}),
        ("history_remove", {"channel": "tenant:1:x"}),
    ]:
        status, body = api_as_user(default_server, token, method, params)
        assert (status, body["error"]["code"]) == (200, 103), method
    status, body = api_as_user(default_server, token, "presence_stats", {"channel": "tenant:1:x"})
    assert "result" in body
    status, body = api_as_user(default_server, token, "presence", {"channel": "tenant:2:x"})
    assert body["error"]["code"] == 103
    status, body = api_as_user(
        default_server, token, "broadcast", {"channels": ["tenant:1:x", "tenant:2:x", "tenant:1 :x"], "data": {}}
    )
    assert [r["error"]["code"] for r in body["result"]["responses"]] == [103, 103, 107]
    response = default_server.api_raw(
        "batch",
        json.dumps(
            {"commands": [{"history": {"channel": "tenant:1:x"}}, {"history": {"channel": "tenant:2:x"}}]}
        ).encode(),
        api_key=None,
        headers={"Authorization": f"Bearer {token}"},
    )
    replies = response.json()["replies"]
    assert "history" in replies[0] and replies[1]["error"]["code"] == 103
    other_key = "another-secret-0123456789abcdef-0123456789"
    for bad in ("not-a-jwt", default_server.token("alice", tenant_id="1", secret=other_key)):
        response = default_server.api_raw(
            "publish",
            b'{"channel": "tenant:1:x", "data": {}}',
            api_key=None,
            headers={"Authorization": f"Bearer {bad}"},
        )
        assert response.status == 401
    expired = default_server.token("alice", tenant_id="1", exp=int(time.time()) - 60)
    response = default_server.api_raw(
        "history", b'{"channel": "tenant:1:x"}', api_key=None, headers={"Authorization": f"Bearer {expired}"}
    )
    assert response.status == 401
    # The API key stays the trusted server, whatever else is sent; and it too is held to canonical names.
    assert "result" in default_server.api("publish", {"channel": "tenant:2:x", "data": {}})
    assert default_server.api("publish", {"channel": "tenant:01:x", "data": {}})["error"]["code"] == 107


def test_user_tokens_can_be_turned_off(server_factory: Callable[..., RunningServer]) -> None:
    server = server_factory("neoevents", rules_options(api_user_tokens=False))
    token = server.token("alice", tenant_id="1")
    response = server.api_raw(
        "history", b'{"channel": "tenant:1:x"}', api_key=None, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status == 401


async def test_denials_are_counted_and_logged_without_tokens(server_factory: Callable[..., RunningServer]) -> None:
    server = server_factory("neoevents", rules_options())
    token = server.token("alice", tenant_id="1")
    await websocket_outcomes(server, token, "tenant:2:x")
    await websocket_outcomes(server, token, "tenant:01:x")
    api_as_user(server, token, "info", {})
    server.api_raw("history", b"{}", api_key=None, headers={"Authorization": "Bearer eyJhbGciOiJub25lIn0.e30."})
    client = await RawClient.connect(server.ws_url, auto_pong=True)
    await client.send_command(
        {"id": 1, "connect": {"token": server.token("alice", tenant_id="1", channels=["tenant:2:x"])}}
    )
    await client.wait_close()
    metrics = server.http("GET", "/metrics").body.decode()
    counts = dict(re.findall(r'^auth_failures_total\{reason="([a-z_]+)"\} (\S+)$', metrics, re.MULTILINE))
    for reason in ("subscribe_denied", "history_denied", "presence_denied", "publish_denied", "invalid_channel"):
        assert float(counts.get(reason, 0)) >= 1, (reason, counts)
    for reason in ("token_channel_denied", "api_method_denied", "api_invalid_token"):
        assert float(counts.get(reason, 0)) == 1, (reason, counts)
    await asyncio.sleep(0.2)
    log = server.log_text()
    assert "refused: subscribe_denied" in log
    assert "eyJ" not in log


def test_namespaces_without_rules_keep_centrifugo_names(server_factory: Callable[..., RunningServer]) -> None:
    server = server_factory(
        "neoevents", ServerOptions(namespaces=[{"name": "chat", "allow_subscribe_for_client": True}])
    )
    for name in ("chat:Ünïcode room", "chat:01:*:x", "chat:{x}"):
        outcome = asyncio.run(websocket_outcomes(server, server.token("alice"), name))
        assert outcome["subscribe"] is None, name

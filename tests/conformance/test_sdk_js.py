"""The official JavaScript SDK (npm `centrifuge`, under Node.js with `ws`) against a real server.

Each test runs a scenario script from tests/conformance/js with node and asserts on the JSON
events it prints. The scripts need `npm ci` in tests/conformance/js (`make deps-node`).
"""

from __future__ import annotations

import shutil
import time
from typing import TYPE_CHECKING, Any

import jwt
import pytest

from tests.conformance.sdk_helpers import (
    EXPIRED_CLOSE_DELAY,
    conformance_server,
    conformance_targets,
    js_available,
    js_event,
    js_events,
    run_js,
    unique,
)
from tests.support.servers import RunningServer

if TYPE_CHECKING:
    from tests.conftest import ServerPool

PERMISSION_DENIED = 103
NOT_AVAILABLE = 108
TOKEN_EXPIRED = 109
RPC_WITHOUT_HANDLER = {"neoevents": 104, "centrifugo": NOT_AVAILABLE}  # see test_sdk_python
INVALID_TOKEN = 3500
CUSTOM_RECONNECT = 4001


@pytest.fixture(autouse=True)
def _node_and_sdk() -> None:
    if shutil.which("node") is None or not js_available():
        pytest.fail("node or tests/conformance/js/node_modules missing (run `make deps-node`)")


@pytest.fixture(params=conformance_targets())
def server(request: pytest.FixtureRequest, server_pool: ServerPool) -> RunningServer:
    return conformance_server(server_pool, request.param)


@pytest.fixture(params=["json", "protobuf"])
def protobuf(request: pytest.FixtureRequest) -> bool:
    return bool(request.param == "protobuf")


def base(server: RunningServer, protobuf: bool = False) -> dict[str, Any]:
    return {
        "url": server.ws_url,
        "api_url": server.api_url,
        "api_key": server.api_key,
        "protobuf": protobuf,
    }


async def test_connect_with_token(server: RunningServer, protobuf: bool) -> None:
    token = server.token(unique("user-"))
    events = await run_js("connect.mjs", {**base(server, protobuf), "mode": "token", "token": token})
    connected = js_event(events, "connected")
    assert connected["client"]
    assert connected["transport"] == "websocket"
    rpc = js_event(events, "rpc")
    assert (rpc["ok"], rpc["code"]) == (False, RPC_WITHOUT_HANDLER[server.kind])
    assert js_event(events, "disconnected")["code"] == 0  # disconnect() called
    assert js_events(events, "error") == []


async def test_invalid_token_disconnects_without_reconnect(server: RunningServer) -> None:
    bad = jwt.encode({"sub": unique("user-")}, "not-the-server-secret-0123456789", algorithm="HS256")
    events = await run_js("connect.mjs", {**base(server), "mode": "invalid", "token": bad, "settle_ms": 1000})
    assert js_event(events, "disconnected")["code"] == INVALID_TOKEN
    settled = js_event(events, "settled")
    assert settled["sockets"] == 1
    assert settled["state"] == "disconnected"
    assert "connected" not in settled["transitions"]


async def test_expired_token_is_refreshed_with_get_token(server: RunningServer) -> None:
    user = unique("user-")
    scenario = {
        **base(server),
        "mode": "expired",
        "token": server.token(user, exp=int(time.time()) - 60),
        "fresh_token": server.token(user),
    }
    events = await run_js("connect.mjs", scenario)
    errors = js_events(events, "error")
    assert [(e["type"], e["code"]) for e in errors] == [("connect", TOKEN_EXPIRED)]
    settled = js_event(events, "settled")
    assert (settled["token_calls"], settled["state"]) == (1, "connected")


async def test_connection_token_refresh(server: RunningServer) -> None:
    user = unique("user-")
    exp = int(time.time()) + 2
    scenario = {
        **base(server),
        "mode": "refresh",
        "token": server.token(user, exp=exp),
        "fresh_token": server.token(user),
        "channel": unique("chat:refresh-"),
        # Past the expiry and the close delay: an unrefreshed connection would be closed by now.
        "hold_until_ms": int((exp + EXPIRED_CLOSE_DELAY + 1.5) * 1000),
    }
    events = await run_js("connect.mjs", scenario)
    settled = js_event(events, "settled")
    assert settled["token_calls"] >= 1
    assert settled["state"] == "connected"
    assert settled["sockets"] == 1
    assert settled["transitions"] == ["connecting", "connected"]
    assert [p["data"] for p in settled["pubs"]] == [{"after": "refresh"}]


async def test_pubsub_presence_history(server: RunningServer, protobuf: bool) -> None:
    users = {"alice": unique("alice-"), "bob": unique("bob-")}
    scenario = {
        **base(server, protobuf),
        "channel": unique("chat:js-"),
        "readonly_channel": unique("news:js-"),
        "users": users,
        "tokens": {
            "alice": server.token(users["alice"]),
            "bob": server.token(users["bob"], info={"nick": "b"}),
        },
    }
    events = await run_js("pubsub.mjs", scenario)
    assert js_events(events, "error") == []
    clients = {e["who"]: e["client"] for e in js_events(events, "connected")}
    for sub in js_events(events, "subscribed"):
        assert sub["channel"] == scenario["channel"]
        assert sub["recoverable"] is True

    joins = js_event(events, "joins")["joins"]
    assert [(j["user"], j["client"]) for j in joins] == [
        (users["alice"], clients["alice"]),
        (users["bob"], clients["bob"]),
    ]
    assert joins[1]["connInfo"] == {"nick": "b"}

    assert js_event(events, "client_publish")["ok"] is True
    received = js_event(events, "publications")["received"]
    for who in ("alice", "bob"):
        pubs = received[who]
        assert [p["data"] for p in pubs] == [{"from": "bob", "n": 1}, {"from": "api", "n": 2}]
        assert [p["offset"] for p in pubs] == [1, 2]
        assert pubs[0]["info"]["user"] == users["bob"]
        assert pubs[0]["info"]["client"] == clients["bob"]
        assert pubs[1]["info"] is None
        assert pubs[1]["tags"] == {"kind": "api"}

    presence = js_event(events, "presence")["clients"]
    assert sorted((c["user"], c["client"]) for c in presence) == sorted(
        (users[who], clients[who]) for who in ("alice", "bob")
    )
    stats = js_event(events, "presence_stats")
    assert (stats["num_clients"], stats["num_users"]) == (2, 2)

    history = {e["name"]: e for e in js_events(events, "history")}
    epoch = history["limit10"]["epoch"]
    assert epoch
    for name, offsets in {
        "limit10": [1, 2, 3, 4, 5],
        "limit2": [1, 2],
        "reverse2": [5, 4],
        "since2": [3, 4, 5],
        "position": [],
    }.items():
        assert [p["offset"] for p in history[name]["pubs"]] == offsets, name
        assert [p["data"]["n"] for p in history[name]["pubs"]] == offsets, name
        assert (history[name]["offset"], history[name]["epoch"]) == (5, epoch), name

    denied = js_event(events, "readonly_publish")
    assert (denied["ok"], denied["code"]) == (False, PERMISSION_DENIED)
    assert js_event(events, "unsubscribed")["code"] == 0  # unsubscribe() called
    leaves = js_event(events, "leaves")["leaves"]
    assert [(lv["user"], lv["client"]) for lv in leaves] == [(users["bob"], clients["bob"])]


async def test_a_burst_to_a_busy_channel_arrives_whole_and_in_order(server: RunningServer, protobuf: bool) -> None:
    # Enough subscribers for the channel to be batched, so that several publications share each frame.
    count = 40
    scenario = {
        **base(server, protobuf),
        "channel": unique("chat:burst-"),
        "tokens": [server.token(unique("u-")) for _ in range(9)],
        "count": count,
    }
    events = await run_js("burst.mjs", scenario)
    result = js_event(events, "received")
    assert result["errors"] == []
    assert result["connects"] == [1] * 9  # received as sent, not recovered after a reconnect
    for pubs in result["received"]:
        assert [p["data"] for p in pubs] == [{"n": n} for n in range(count)]
        assert [p["offset"] for p in pubs] == list(range(1, count + 1))


async def test_recovery_after_server_disconnect(server: RunningServer, protobuf: bool) -> None:
    user = unique("user-")
    missed = 5
    scenario = {
        **base(server, protobuf),
        "user": user,
        "token": server.token(user),
        "channel": unique("chat:jsrec-"),
        "tiny_channel": unique("tiny:jsrec-"),
        "missed": missed,
        "disconnect_code": CUSTOM_RECONNECT,
    }
    events = await run_js("recovery.mjs", scenario)
    assert [e["code"] for e in js_events(events, "connecting")][:2] == [0, CUSTOM_RECONNECT]
    assert len(js_events(events, "connected")) == 2
    subscribed = {
        ch: [e for e in js_events(events, "subscribed") if e["channel"] == ch]
        for ch in (scenario["channel"], scenario["tiny_channel"])
    }
    chat, tiny = subscribed[scenario["channel"]], subscribed[scenario["tiny_channel"]]
    assert [(e["was_recovering"], e["recovered"]) for e in chat] == [(False, False), (True, True)]
    assert [(e["was_recovering"], e["recovered"]) for e in tiny] == [(False, False), (True, False)]
    assert chat[0]["epoch"] == chat[1]["epoch"]

    final = js_event(events, "received")
    assert final["sockets"] > final["sockets_while_down"]  # reconnected only once the gate opened
    chat_pubs = final["received"][scenario["channel"]]
    assert [p["data"]["n"] for p in chat_pubs] == list(range(missed + 2))
    assert [p["offset"] for p in chat_pubs] == list(range(1, missed + 3))
    assert [p["data"]["n"] for p in final["received"][scenario["tiny_channel"]]] == [0]


async def test_server_side_subscriptions_and_subscription_tokens(server: RunningServer) -> None:
    users = {"alice": unique("alice-"), "bob": unique("bob-")}
    server_channel = unique("srv:js-")
    secure = unique("secure:js-")
    scenario = {
        **base(server),
        "server_channel": server_channel,
        "secure_channel": secure,
        "secure_channel_denied": unique("secure:jsdenied-"),
        "users": users,
        "tokens": {who: server.token(user, channels=[server_channel]) for who, user in users.items()},
        "sub_token": server.sub_token(users["alice"], secure),
    }
    events = await run_js("subscriptions.mjs", scenario)
    [server_sub] = js_events(events, "server_subscribed")
    assert server_sub["channel"] == server_channel
    assert server_sub["recoverable"] is True
    joins = js_event(events, "server_joins")["joins"]
    assert {(j["channel"], j["user"]) for j in joins} == {(server_channel, u) for u in users.values()}
    pubs = js_event(events, "server_publications")["pubs"]
    assert [(p["channel"], p["data"], p["offset"]) for p in pubs] == [(server_channel, {"server": True}, 1)]

    assert js_event(events, "secure_subscribed")["token_calls"] == [secure]
    secure_pub = js_event(events, "secure_publication")
    assert (secure_pub["channel"], secure_pub["data"]) == (secure, {"secret": 1})
    assert js_event(events, "denied_unsubscribed")["code"] == PERMISSION_DENIED

"""The differential scenario table and the server configurations ("profiles") they run against.

Channel and user names contain ``{run}``, replaced by a token unique to each run, so runs can share a server.
"""

from __future__ import annotations

from typing import Any

from tests.conformance.differential.harness import (
    Api,
    ApiRaw,
    Close,
    Closed,
    Now,
    Open,
    Raw,
    Recv,
    Scenario,
    Send,
    Step,
    SubTok,
    Sync,
    Tok,
    Var,
)
from tests.support.protocol import encode_commands
from tests.support.servers import ServerOptions

ALLOWED_ORIGIN = "http://allowed.example"

_SUB: dict[str, Any] = {"allow_subscribe_for_client": True}
HISTORY_NS: dict[str, Any] = {
    "name": "hist",
    "history_size": 5,
    "history_ttl": "300s",
    **_SUB,
    "allow_history_for_subscriber": True,
    "allow_history_for_client": True,
    "allow_recovery": True,
    "allow_positioning": True,
    "allow_publish_for_subscriber": True,
}

PROFILES: dict[str, ServerOptions] = {
    "main": ServerOptions(
        allowed_origins=[ALLOWED_ORIGIN],
        channel=dict(_SUB),
        namespaces=[
            HISTORY_NS,
            {
                "name": "pres",
                "presence": True,
                "join_leave": True,
                **_SUB,
                "allow_presence_for_subscriber": True,
            },
            {
                "name": "presall",
                "presence": True,
                "join_leave": True,
                "force_push_join_leave": True,
                **_SUB,
                "allow_presence_for_client": True,
            },
            {"name": "pub", **_SUB, "allow_publish_for_client": True},
            {"name": "nopub", **_SUB},
            {"name": "priv"},
            {
                "name": "tenant",
                "history_size": 10,
                "history_ttl": "300s",
                **_SUB,
                "allow_history_for_subscriber": True,
            },
        ],
    ),
    "limits": ServerOptions(
        client_anonymous=True,
        client_channel_limit=2,
        websocket_message_size_limit=1024,
        client_stale_close_delay=1,
        client_expired_close_delay=1,
        client_expired_sub_close_delay=1,
        # Centrifugo looks for expired subscriptions when it refreshes presence (27 s by default).
        centrifugo_extra={"client": {"presence_update_interval": "1s"}},
        channel={**_SUB, "allow_subscribe_for_anonymous": True},
        namespaces=[{"name": "pub", **_SUB, "allow_publish_for_client": True}, {"name": "priv"}],
    ),
    "ping": ServerOptions(ping_interval=2, pong_timeout=1, channel=dict(_SUB)),
}
# Profiles that need a server of their own for each run (their replies count clients or channels).
FRESH_PROFILES = {"fresh": PROFILES["main"]}

USER = "u-{run}"


def connect(client: str = "a", user: str = USER, cmd_id: int = 1, **claims: Any) -> list[Step]:
    """Open ``client`` and connect it with a valid token for ``user``."""
    return [
        Open(client),
        Send(client, [{"id": cmd_id, "connect": {"token": Tok(user, claims=claims)}}]),
        Recv(client, 1, check=[{"id": cmd_id, "connect": {}}]),
    ]


def sub(cmd_id: int, channel: str, **extra: Any) -> dict[str, Any]:
    return {"id": cmd_id, "subscribe": {"channel": channel, **extra}}


def error(cmd_id: int, code: int) -> dict[str, Any]:
    return {"id": cmd_id, "error": {"code": code}}


def ok(cmd_id: int, method: str) -> dict[str, Any]:
    return {"id": cmd_id, method: {}}


def _pb(commands: list[dict[str, Any]]) -> bytes:
    frame = encode_commands(commands, "protobuf")
    assert isinstance(frame, bytes)
    return frame


SEED_BODY = b'{"channel": "tenant:123:deployments", "data": {"type": "deployment_start", "deploymentId": "test-123"}}'

JSON_ONLY = ("json",)
API_ONLY = ("json",)

SCENARIOS: list[Scenario] = [
    # --- connect ------------------------------------------------------------------------------------
    Scenario(
        "connect_valid_token",
        [
            Open("a"),
            Send(
                "a",
                [
                    {
                        "id": 1,
                        "connect": {
                            "token": Tok(USER, claims={"info": {"name": "Alice"}}),
                            "name": "python",
                            "version": "1.2.3",
                            "data": {"hello": "world"},
                        },
                    }
                ],
            ),
            Recv("a", 1, check=[{"id": 1, "connect": {"expires": True, "pong": True, "ping": 25}}]),
            Sync("a"),
        ],
    ),
    Scenario(
        "connect_token_without_exp",
        [
            Open("a"),
            Send("a", [{"id": 1, "connect": {"token": Tok(USER, exp=None)}}]),
            Recv("a", 1, check=[{"id": 1, "connect": {}}]),
            Sync("a"),
        ],
    ),
    Scenario(
        "connect_invalid_token",
        [Open("a"), Send("a", [{"id": 1, "connect": {"token": "not-a-jwt"}}]), Closed("a", 3500)],
    ),
    Scenario(
        "connect_token_wrong_secret",
        [
            Open("a"),
            Send("a", [{"id": 1, "connect": {"token": Tok(USER, secret="another-secret-0123456789abcdef0")}}]),
            Closed("a", 3500),
        ],
    ),
    Scenario(
        "connect_expired_token",
        [
            Open("a"),
            Send("a", [{"id": 1, "connect": {"token": Tok(USER, exp=-60)}}]),
            Recv("a", 1, check=[error(1, 109)]),
        ],
    ),
    Scenario(
        "connect_no_token_anonymous_disabled",
        [Open("a"), Send("a", [{"id": 1, "connect": {}}]), Closed("a", 3501)],
    ),
    Scenario(
        "connect_anonymous_token_sub_empty",
        [
            Open("a"),
            Send("a", [{"id": 1, "connect": {"token": Tok("")}}]),
            Recv("a", 1, check=[{"id": 1, "connect": {}}]),
            Send("a", [sub(2, "ch-{run}")]),
            Recv("a", 1),
        ],
    ),
    Scenario(
        "connect_no_token_anonymous_enabled",
        [
            Open("a"),
            Send("a", [{"id": 1, "connect": {}}]),
            Recv("a", 1, check=[{"id": 1, "connect": {"pong": True}}]),
            Send("a", [sub(2, "ch-{run}"), {"id": 3, "publish": {"channel": "pub:x-{run}", "data": 1}}]),
            Recv("a", 2, check=[ok(2, "subscribe"), error(3, 103)]),
            Sync("a"),
        ],
        profile="limits",
    ),
    Scenario(
        "connect_with_server_side_channels",
        [
            *connect("a", channels=["pub:srv-{run}"]),
            Api("publish", {"channel": "pub:srv-{run}", "data": {"server": "side"}}),
            Recv("a", 1, check=[{"push": {"channel": "pub:srv-{run}", "pub": {"data": {"server": "side"}}}}]),
            Send("a", [{"id": 2, "unsubscribe": {"channel": "pub:srv-{run}"}}]),
            Recv("a", 1),
            Sync("a"),
        ],
    ),
    Scenario(
        "origin_allowed",
        [
            Open("a", origin=ALLOWED_ORIGIN),
            Send("a", [{"id": 1, "connect": {"token": Tok(USER)}}]),
            Recv("a", 1, check=[{"id": 1, "connect": {}}]),
        ],
    ),
    Scenario("origin_not_allowed", [Open("a", origin="http://evil.example")]),
    # --- subscriptions ------------------------------------------------------------------------------
    Scenario(
        "subscribe_unsubscribe",
        [
            *connect("a"),
            Send("a", [sub(2, "ch-{run}")]),
            Recv("a", 1, check=[ok(2, "subscribe")]),
            Send("a", [{"id": 3, "unsubscribe": {"channel": "ch-{run}"}}]),
            Recv("a", 1, check=[ok(3, "unsubscribe")]),
            Send("a", [{"id": 4, "unsubscribe": {"channel": "ch-{run}"}}, sub(5, "ch-{run}")]),
            Recv("a", 2, check=[ok(4, "unsubscribe"), ok(5, "subscribe")]),
            Sync("a"),
        ],
    ),
    Scenario(
        "subscribe_errors",
        [
            *connect("a"),
            Send(
                "a",
                [
                    sub(2, "ch-{run}"),
                    sub(3, "ch-{run}"),
                    sub(4, "unknown:ch-{run}"),
                    sub(5, "b" * 256),
                    sub(6, "c" * 255),
                    sub(7, "priv:ch-{run}"),
                ],
            ),
            Recv(
                "a",
                6,
                check=[
                    ok(2, "subscribe"),
                    error(3, 105),
                    error(4, 102),
                    error(5, 107),
                    ok(6, "subscribe"),
                    error(7, 103),
                ],
            ),
            Sync("a"),
        ],
    ),
    Scenario(
        "subscribe_channel_limit",
        [
            *connect("a"),
            Send("a", [sub(2, "a-{run}"), sub(3, "b-{run}"), sub(4, "c-{run}")]),
            Recv("a", 3, check=[ok(2, "subscribe"), ok(3, "subscribe"), error(4, 106)]),
            Send("a", [{"id": 5, "unsubscribe": {"channel": "a-{run}"}}, sub(6, "c-{run}")]),
            Recv("a", 2, check=[ok(5, "unsubscribe"), ok(6, "subscribe")]),
            Sync("a"),
        ],
        profile="limits",
    ),
    Scenario(
        "subscribe_with_subscription_token",
        [
            *connect("a"),
            Send(
                "a",
                [
                    sub(2, "priv:ok-{run}", token=SubTok(USER, "priv:ok-{run}", claims={"info": {"role": "x"}})),
                    sub(3, "priv:other-{run}", token=SubTok(USER, "priv:ok-{run}")),
                ],
            ),
            Recv("a", 1, check=[{"id": 2, "subscribe": {"expires": True}}]),
            Closed("a", 3500),
        ],
    ),
    Scenario(
        "subscribe_token_for_other_user",
        [
            *connect("a"),
            Send("a", [sub(2, "priv:ok-{run}", token=SubTok("someone-else", "priv:ok-{run}"))]),
            Closed("a", 3500),
        ],
    ),
    Scenario(
        "subscribe_token_expired_or_bad",
        [
            *connect("a"),
            Send(
                "a",
                [
                    sub(2, "priv:e-{run}", token=SubTok(USER, "priv:e-{run}", exp=-60)),
                    sub(3, "priv:s-{run}", token=SubTok(USER, "priv:s-{run}", secret="x" * 40)),
                ],
            ),
            Recv("a", 2, check=[error(2, 109), error(3, 103)]),
            Sync("a"),
        ],
    ),
    Scenario(
        "sub_refresh",
        [
            *connect("a"),
            Send("a", [sub(2, "priv:r-{run}", token=SubTok(USER, "priv:r-{run}", exp=600))]),
            Recv("a", 1, check=[{"id": 2, "subscribe": {"expires": True}}]),
            Send(
                "a",
                [
                    {"id": 3, "sub_refresh": {"channel": "priv:r-{run}", "token": SubTok(USER, "priv:r-{run}")}},
                    {"id": 4, "sub_refresh": {"channel": "ch-{run}", "token": SubTok(USER, "ch-{run}")}},
                ],
            ),
            Recv("a", 2, check=[{"id": 3, "sub_refresh": {"expires": True}}, {"id": 4}]),
            Sync("a"),
        ],
    ),
    Scenario(
        "sub_refresh_bad_token",
        [
            *connect("a"),
            Send("a", [sub(2, "priv:r-{run}", token=SubTok(USER, "priv:r-{run}", exp=600))]),
            Recv("a", 1),
            Send("a", [{"id": 3, "sub_refresh": {"channel": "priv:r-{run}", "token": "garbage"}}]),
            Closed("a", 3500),
        ],
    ),
    # --- publications -------------------------------------------------------------------------------
    Scenario(
        "api_publish_then_push",
        [
            *connect("a"),
            Send("a", [sub(2, "ch-{run}")]),
            Recv("a", 1),
            Api("publish", {"channel": "ch-{run}", "data": {"n": 1}}, check={"result": {}}),
            Api("publish", {"channel": "ch-{run}", "data": [1, "two", None], "tags": {"k": "v"}}),
            Api("publish", {"channel": "ch-{run}", "data": "plain string"}),
            Recv(
                "a",
                3,
                check=[
                    {"push": {"channel": "ch-{run}", "pub": {"data": {"n": 1}}}},
                    {"push": {"pub": {"data": [1, "two", None], "tags": {"k": "v"}}}},
                    {"push": {"pub": {"data": "plain string"}}},
                ],
            ),
            Sync("a"),
        ],
    ),
    Scenario(
        "api_publish_history_channel_push",
        [
            *connect("a"),
            Send("a", [sub(2, "hist:p-{run}")]),
            Recv("a", 1),
            Api("publish", {"channel": "hist:p-{run}", "data": {"n": 1}}),
            Api("publish", {"channel": "hist:p-{run}", "data": {"n": 2}}),
            Recv("a", 2),
            Sync("a"),
        ],
    ),
    Scenario(
        "client_publish_allowed",
        [
            *connect("a"),
            *connect("b", user="other-{run}", info={"name": "Bob"}),
            Send("a", [sub(2, "pub:x-{run}")]),
            Recv("a", 1),
            Send("b", [sub(2, "pub:x-{run}")]),
            Recv("b", 1),
            Send("b", [{"id": 3, "publish": {"channel": "pub:x-{run}", "data": {"text": "hi"}}}]),
            Recv("b", 2),
            Recv("a", 1, check=[{"push": {"pub": {"data": {"text": "hi"}, "info": {"conn_info": {"name": "Bob"}}}}}]),
            Sync("a"),
            Sync("b"),
        ],
    ),
    Scenario(
        "client_publish_not_subscribed_allowed",
        [
            *connect("a"),
            Send("a", [{"id": 2, "publish": {"channel": "pub:y-{run}", "data": 1}}]),
            Recv("a", 1, check=[ok(2, "publish")]),
            Sync("a"),
        ],
    ),
    Scenario(
        "client_publish_denied",
        [
            *connect("a"),
            Send("a", [sub(2, "nopub:x-{run}")]),
            Recv("a", 1),
            Send(
                "a",
                [
                    {"id": 3, "publish": {"channel": "nopub:x-{run}", "data": 1}},
                    {"id": 4, "publish": {"channel": "ch-{run}", "data": 1}},
                    {"id": 5, "publish": {"channel": "unknown:x-{run}", "data": 1}},
                    {"id": 6, "publish": {"channel": "pub:x-{run}"}},
                ],
            ),
            Recv("a", 4, check=[error(3, 103), error(4, 103), error(5, 102), error(6, 107)]),
            Sync("a"),
        ],
    ),
    Scenario(
        "client_publish_for_subscriber",
        [
            *connect("a"),
            Send("a", [{"id": 2, "publish": {"channel": "hist:s-{run}", "data": 1}}, sub(3, "hist:s-{run}")]),
            Recv("a", 2, check=[error(2, 103), ok(3, "subscribe")]),
            Send("a", [{"id": 4, "publish": {"channel": "hist:s-{run}", "data": 2}}]),
            Recv("a", 2),
            Sync("a"),
        ],
    ),
    # --- history and recovery -----------------------------------------------------------------------
    Scenario(
        "history_not_available",
        [
            *connect("a"),
            Send("a", [sub(2, "ch-{run}")]),
            Recv("a", 1),
            Send(
                "a",
                [
                    {"id": 3, "history": {"channel": "ch-{run}", "limit": 10}},
                    {"id": 4, "presence": {"channel": "ch-{run}"}},
                    {"id": 5, "presence_stats": {"channel": "ch-{run}"}},
                    {"id": 6, "history": {"channel": "unknown:ch-{run}"}},
                    {"id": 7, "presence": {"channel": "pres:not-subscribed-{run}"}},
                ],
            ),
            Recv("a", 5, check=[error(3, 108), error(4, 108), error(5, 108), error(6, 102), error(7, 103)]),
            Sync("a"),
        ],
    ),
    Scenario(
        "history_queries",
        [
            *[Api("publish", {"channel": "hist:h-{run}", "data": {"i": i}}) for i in range(1, 8)],
            *connect("a"),
            Send("a", [sub(2, "hist:h-{run}")]),
            Recv("a", 1),
            Send(
                "a",
                [
                    {"id": 3, "history": {"channel": "hist:h-{run}", "limit": 2}},
                    {"id": 4, "history": {"channel": "hist:h-{run}", "limit": -1}},
                    {"id": 5, "history": {"channel": "hist:h-{run}", "limit": -1, "reverse": True}},
                    {"id": 6, "history": {"channel": "hist:h-{run}", "limit": 0}},
                    {"id": 7, "history": {"channel": "hist:h-{run}"}},
                    {"id": 8, "history": {"channel": "hist:h-{run}", "limit": 100}},
                ],
            ),
            Recv("a", 6, save={"epoch": (0, "history", "epoch")}),
            Send(
                "a",
                [
                    {
                        "id": 9,
                        "history": {
                            "channel": "hist:h-{run}",
                            "limit": 10,
                            "since": {"offset": 4, "epoch": Var("epoch")},
                        },
                    },
                    {
                        "id": 10,
                        "history": {
                            "channel": "hist:h-{run}",
                            "limit": 1,
                            "since": {"offset": 4, "epoch": Var("epoch")},
                        },
                    },
                    {
                        "id": 11,
                        "history": {"channel": "hist:h-{run}", "limit": 10, "since": {"offset": 4, "epoch": "wrong"}},
                    },
                    {
                        "id": 12,
                        "history": {
                            "channel": "hist:h-{run}",
                            "limit": 2,
                            "since": {"offset": 6, "epoch": Var("epoch")},
                            "reverse": True,
                        },
                    },
                    {
                        "id": 13,
                        "history": {
                            "channel": "hist:h-{run}",
                            "limit": 10,
                            "since": {"offset": 1, "epoch": Var("epoch")},
                        },
                    },
                    {
                        "id": 14,
                        "history": {
                            "channel": "hist:h-{run}",
                            "limit": 10,
                            "since": {"offset": 7, "epoch": Var("epoch")},
                        },
                    },
                    {
                        "id": 15,
                        "history": {
                            "channel": "hist:h-{run}",
                            "limit": 10,
                            "since": {"offset": 70, "epoch": Var("epoch")},
                        },
                    },
                ],
            ),
            Recv("a", 7, check=[{"id": 9}, {"id": 10}, error(11, 112), {"id": 12}, {"id": 13}, {"id": 14}, {"id": 15}]),
            Sync("a"),
        ],
    ),
    Scenario(
        "history_empty_channel",
        [
            *connect("a"),
            Send("a", [{"id": 2, "history": {"channel": "hist:empty-{run}", "limit": 10}}]),
            Recv("a", 1),
            Sync("a"),
        ],
    ),
    Scenario(
        "recovery",
        [
            Api("publish", {"channel": "hist:r-{run}", "data": {"i": 1}}, save={"epoch": ("result", "epoch")}),
            *[Api("publish", {"channel": "hist:r-{run}", "data": {"i": i}}) for i in range(2, 5)],
            *connect("a"),
            Send(
                "a",
                [
                    sub(2, "hist:r-{run}", recoverable=True, recover=True, offset=2, epoch=Var("epoch")),
                    sub(3, "hist:r2-{run}", recoverable=True, positioned=True),
                ],
            ),
            Recv("a", 2, check=[{"id": 2, "subscribe": {"recovered": True, "was_recovering": True}}, {"id": 3}]),
            Send("a", [{"id": 4, "unsubscribe": {"channel": "hist:r-{run}"}}]),
            Recv("a", 1),
            Send("a", [sub(5, "hist:r-{run}", recoverable=True, recover=True, offset=4, epoch=Var("epoch"))]),
            Recv("a", 1, check=[{"id": 5, "subscribe": {"recovered": True}}]),
            Send("a", [{"id": 6, "unsubscribe": {"channel": "hist:r-{run}"}}]),
            Recv("a", 1),
            Send("a", [sub(7, "hist:r-{run}", recoverable=True, recover=True, offset=2, epoch="bad-epoch")]),
            Recv("a", 1),
            Send("a", [{"id": 8, "unsubscribe": {"channel": "hist:r-{run}"}}]),
            Recv("a", 1),
            Send("a", [sub(9, "hist:r-{run}", recover=True, offset=2, epoch=Var("epoch"))]),
            Recv("a", 1),
            Sync("a"),
        ],
    ),
    Scenario(
        "recovery_too_far_behind",
        [
            Api("publish", {"channel": "hist:f-{run}", "data": {"i": 1}}, save={"epoch": ("result", "epoch")}),
            *[Api("publish", {"channel": "hist:f-{run}", "data": {"i": i}}) for i in range(2, 9)],
            *connect("a"),
            Send("a", [sub(2, "hist:f-{run}", recoverable=True, recover=True, offset=1, epoch=Var("epoch"))]),
            Recv("a", 1, check=[{"id": 2, "subscribe": {"was_recovering": True}}]),
            Api("publish", {"channel": "hist:f-{run}", "data": {"i": 9}}),
            Recv("a", 1),
            Sync("a"),
        ],
    ),
    # --- presence, join and leave -------------------------------------------------------------------
    Scenario(
        "presence_join_leave",
        [
            *connect("a", info={"name": "Alice"}),
            *connect("b", user="bob-{run}"),
            Send("a", [sub(2, "pres:room-{run}", join_leave=True)]),
            Recv("a", 2, check=[ok(2, "subscribe"), {"push": {"channel": "pres:room-{run}", "join": {}}}]),
            Send("b", [sub(2, "pres:room-{run}")]),
            Recv("b", 1, check=[ok(2, "subscribe")]),
            Recv("a", 1, check=[{"push": {"join": {"info": {"user": "bob-{run}"}}}}]),
            Send(
                "a",
                [
                    {"id": 3, "presence": {"channel": "pres:room-{run}"}},
                    {"id": 4, "presence_stats": {"channel": "pres:room-{run}"}},
                ],
            ),
            Recv(
                "a",
                2,
                check=[{"id": 3, "presence": {}}, {"id": 4, "presence_stats": {"num_clients": 2, "num_users": 2}}],
            ),
            Api("presence", {"channel": "pres:room-{run}"}),
            Api("presence_stats", {"channel": "pres:room-{run}"}),
            Send("b", [{"id": 3, "unsubscribe": {"channel": "pres:room-{run}"}}]),
            Recv("b", 1),
            Recv("a", 1, check=[{"push": {"leave": {"info": {"user": "bob-{run}"}}}}]),
            Send("b", [sub(4, "pres:room-{run}")]),
            Recv("b", 1),
            Recv("a", 1, check=[{"push": {"join": {}}}]),
            Close("b"),
            Recv("a", 1, check=[{"push": {"leave": {}}}]),
            Sync("a"),
        ],
    ),
    Scenario(
        "presence_forced_join_leave",
        [
            *connect("a"),
            *connect("b", user="bob-{run}"),
            Send("a", [sub(2, "presall:room-{run}")]),
            Recv("a", 2),
            Send("b", [sub(2, "presall:room-{run}")]),
            Recv("b", 2),
            Recv("a", 1),
            Send("b", [{"id": 3, "unsubscribe": {"channel": "presall:room-{run}"}}]),
            Recv("b", 1),
            Recv("a", 1),
            Send(
                "a",
                [
                    {"id": 3, "presence": {"channel": "presall:room-{run}"}},
                    {"id": 4, "presence_stats": {"channel": "presall:room-{run}"}},
                ],
            ),
            Recv("a", 2),
            Send(
                "b",
                [
                    {"id": 4, "presence": {"channel": "presall:room-{run}"}},
                    {"id": 5, "presence_stats": {"channel": "presall:empty-{run}"}},
                ],
            ),
            Recv("b", 2),
            Sync("a"),
            Sync("b"),
        ],
    ),
    # --- refresh, rpc, send, ping -------------------------------------------------------------------
    Scenario(
        "refresh",
        [
            Open("a"),
            Send("a", [{"id": 1, "connect": {"token": Tok(USER, exp=600)}}]),
            Recv("a", 1),
            Send("a", [{"id": 2, "refresh": {"token": Tok(USER, exp=3600)}}]),
            Recv("a", 1, check=[{"id": 2, "refresh": {"expires": True}}]),
            Send("a", [{"id": 3, "refresh": {"token": Tok(USER, exp=None)}}]),
            Recv("a", 1),
            Sync("a"),
        ],
    ),
    Scenario(
        "refresh_invalid_token",
        [*connect("a"), Send("a", [{"id": 2, "refresh": {"token": "garbage"}}]), Closed("a", 3500)],
    ),
    Scenario(
        "refresh_other_user",
        [*connect("a"), Send("a", [{"id": 2, "refresh": {"token": Tok("mallory-{run}")}}]), Closed("a", 3500)],
    ),
    Scenario(
        "refresh_expired_token",
        [*connect("a"), Send("a", [{"id": 2, "refresh": {"token": Tok(USER, exp=-60)}}]), Closed("a", 3005)],
    ),
    Scenario(
        "refresh_without_token",
        [*connect("a"), Send("a", [{"id": 2, "refresh": {}}]), Closed("a", 3501)],
    ),
    Scenario(
        "rpc_without_handler",
        [
            *connect("a"),
            Send("a", [{"id": 2, "rpc": {"method": "getUser", "data": {"id": 1}}}, {"id": 3, "rpc": {"data": {}}}]),
            Recv("a", 2, check=[{"id": 2, "error": {}}, {"id": 3, "error": {}}]),
            Sync("a"),
        ],
    ),
    Scenario("send_message", [*connect("a"), Send("a", [{"id": 2, "send": {"data": {"x": 1}}}]), Closed("a")]),
    Scenario(
        "ping_pong",
        [
            *connect("a"),
            Recv("a", 1, check=[{}], timeout=8),
            Raw("a", "{}", b"\x00"),
            Recv("a", 1, check=[{}], timeout=8),
            Closed("a", 3012, timeout=10),
        ],
        profile="ping",
    ),
    Scenario(
        "pong_without_ping",
        [*connect("a"), Raw("a", "{}", b"\x00"), Closed("a", 3501)],
    ),
    Scenario(
        "ping_command_not_supported",
        [*connect("a"), Send("a", [{"id": 2, "ping": {}}]), Closed("a")],
    ),
    Scenario(
        "connection_expires",
        [
            Open("a"),
            Send("a", [{"id": 1, "connect": {"token": Tok(USER, exp=2)}}]),
            Recv("a", 1, check=[{"id": 1, "connect": {"expires": True}}]),
            Closed("a", 3005, timeout=10),
        ],
        profile="limits",
    ),
    Scenario(
        "subscription_token_expires",
        [
            *connect("a"),
            Send("a", [sub(2, "priv:x-{run}", token=SubTok(USER, "priv:x-{run}", exp=2))]),
            Recv("a", 1, check=[{"id": 2, "subscribe": {"expires": True}}]),
            Recv("a", 1, check=[{"push": {"channel": "priv:x-{run}", "unsubscribe": {"code": 2501}}}], timeout=10),
            Sync("a"),
        ],
        profile="limits",
    ),
    # --- adversarial --------------------------------------------------------------------------------
    Scenario("garbage_before_connect", [Open("a"), Raw("a", "garbage", b"\xff\xff\xff"), Closed("a", 3501)]),
    Scenario("text_garbage_on_protobuf", [Open("a"), Raw("a", "not json", "not protobuf"), Closed("a", 3501)]),
    Scenario(
        "json_array_frame",
        [Open("a"), Raw("a", '[{"id":1,"connect":{}}]'), Closed("a", 3501)],
        protocols=JSON_ONLY,
    ),
    Scenario(
        "command_before_connect",
        [Open("a"), Send("a", [sub(1, "ch-{run}")]), Closed("a", 3501)],
    ),
    Scenario(
        "second_connect",
        [*connect("a"), Send("a", [{"id": 2, "connect": {"token": Tok(USER)}}]), Closed("a", 3501)],
    ),
    Scenario(
        "connect_without_id",
        [Open("a"), Send("a", [{"connect": {"token": Tok(USER)}}]), Closed("a", 3501)],
    ),
    Scenario(
        "command_without_id",
        [*connect("a"), Send("a", [{"subscribe": {"channel": "ch-{run}"}}]), Closed("a", 3501)],
    ),
    Scenario(
        "command_without_method",
        [*connect("a"), Send("a", [{"id": 2}]), Closed("a", 3501)],
    ),
    Scenario(
        "unknown_method_field",
        [*connect("a"), Raw("a", '{"id":2,"frobnicate":{"channel":"x"}}'), Closed("a", 3501)],
        protocols=JSON_ONLY,
    ),
    Scenario(
        "truncated_frame",
        [
            Open("a"),
            Raw("a", '{"id":1,"connect":{"token":"', _pb([{"id": 1, "connect": {"token": "abcdef"}}])[:-3]),
            Closed("a", 3501),
        ],
    ),
    Scenario(
        "truncated_second_command",
        [
            *connect("a"),
            Raw(
                "a",
                '{"id":2,"subscribe":{"channel":"ch-{run}"}}\n{"id":3,"subscr',
                _pb([sub(2, "ch-{run}"), sub(3, "ch2-{run}")])[:-4],
            ),
            Recv("a", 1, check=[ok(2, "subscribe")]),
            Closed("a", 3501),
        ],
    ),
    Scenario("empty_frame_after_connect", [*connect("a"), Raw("a", "", b""), Closed("a", 3501)]),
    Scenario(
        "binary_frame_on_json",
        [*connect("a"), Raw("a", b'{"id":2,"subscribe":{"channel":"ch-{run}"}}'), Recv("a", 1), Sync("a")],
        protocols=JSON_ONLY,
    ),
    Scenario(
        "several_methods_in_one_command",
        [
            *connect("a"),
            Raw("a", '{"id":2,"subscribe":{"channel":"ch-{run}"},"publish":{"channel":"ch-{run}","data":1}}'),
            Recv("a", 1),
            Sync("a"),
        ],
        protocols=JSON_ONLY,
    ),
    Scenario("empty_channel_subscribe", [*connect("a"), Send("a", [sub(2, "")]), Closed("a", 3501)]),
    Scenario(
        "empty_channel_publish",
        [*connect("a"), Send("a", [{"id": 2, "publish": {"channel": "", "data": 1}}]), Closed("a", 3501)],
    ),
    Scenario(
        "empty_channel_unsubscribe",
        [*connect("a"), Send("a", [{"id": 2, "unsubscribe": {"channel": ""}}]), Closed("a", 3501)],
    ),
    Scenario(
        "empty_channel_history_presence",
        [*connect("a"), Send("a", [{"id": 2, "history": {"channel": ""}}]), Closed("a", 3501)],
    ),
    Scenario("oversized_frame", [Open("a"), Raw("a", "x" * 2000, b"\x00" * 2000), Closed("a", 1009)], profile="limits"),
    Scenario(
        "oversized_frame_after_connect",
        [
            *connect("a"),
            Send("a", [{"id": 2, "publish": {"channel": "pub:x-{run}", "data": "y" * 1500}}]),
            Closed("a", 1009),
        ],
        profile="limits",
    ),
    Scenario("stale_connection", [Open("a"), Closed("a", 3502, timeout=10)], profile="limits"),
    # --- server HTTP API ----------------------------------------------------------------------------
    Scenario(
        "api_publish_variants",
        [
            Api("publish", {"channel": "ch-{run}", "data": {"a": 1}}, check={"result": {}}),
            Api("publish", {"channel": "hist:a-{run}", "data": {"a": 1}}, check={"result": {"offset": 1}}),
            Api("publish", {"channel": "hist:a-{run}", "data": {"a": 2}, "idempotency_key": "k1"}),
            Api("publish", {"channel": "hist:a-{run}", "data": {"a": 3}, "idempotency_key": "k1"}),
            Api("publish", {"channel": "hist:a-{run}", "data": {"a": 4}, "skip_history": True}),
            Api("publish", {"channel": "hist:a-{run}", "data": {"a": 5}, "tags": {"t": "1"}}),
            Api("publish", {"channel": "hist:a-{run}", "b64data": "eyJiNjQiOnRydWV9"}),
            Api("history", {"channel": "hist:a-{run}", "limit": -1}),
            Api("publish", {"channel": "unknown:a-{run}", "data": 1}),
            Api("publish", {"channel": "", "data": 1}),
            Api("publish", {"channel": "ch-{run}"}),
            Api("publish", {"channel": "b" * 256, "data": 1}),
            Api("publish", {"channel": "priv:x-{run}", "data": 1}),
        ],
        protocols=API_ONLY,
    ),
    Scenario(
        "api_publish_seed_example",
        [
            ApiRaw("publish", SEED_BODY, check_status=200),
            Api("history", {"channel": "tenant:123:deployments", "limit": 1, "reverse": True}),
        ],
        protocols=API_ONLY,
    ),
    Scenario(
        "api_broadcast",
        [
            *connect("a"),
            Send("a", [sub(2, "ch-{run}"), sub(3, "hist:b-{run}")]),
            Recv("a", 2),
            Api("broadcast", {"channels": ["ch-{run}", "unknown:x-{run}", "hist:b-{run}"], "data": {"b": 1}}),
            # Centrifugo publishes to the channels of a broadcast concurrently: push order is not defined.
            Recv("a", 2, unordered=True),
            Api("broadcast", {"channels": [], "data": {"b": 1}}),
            Api("broadcast", {"channels": ["ch-{run}"]}),
            Api("broadcast", {"channels": ["ch-{run}"], "data": {"b": 2}, "idempotency_key": "bk", "tags": {"x": "y"}}),
            Recv("a", 1),
            Sync("a"),
        ],
    ),
    Scenario(
        "api_subscribe_unsubscribe_user",
        [
            *connect("a"),
            Api("subscribe", {"user": USER, "channel": "pub:srv-{run}"}),
            Recv("a", 1, check=[{"push": {"channel": "pub:srv-{run}", "subscribe": {}}}]),
            Api("publish", {"channel": "pub:srv-{run}", "data": 1}),
            Recv("a", 1),
            Api("subscribe", {"user": USER, "channel": "hist:srv-{run}"}),
            Recv("a", 1),
            Api("unsubscribe", {"user": USER, "channel": "pub:srv-{run}"}),
            Recv("a", 1, check=[{"push": {"channel": "pub:srv-{run}", "unsubscribe": {"code": 2000}}}]),
            Api("unsubscribe", {"user": USER, "channel": "never-{run}"}),
            Recv("a", 1, check=[{"push": {"channel": "never-{run}", "unsubscribe": {"code": 2000}}}]),
            Api("subscribe", {"user": "nobody-{run}", "channel": "x-{run}"}),
            Api("subscribe", {"user": USER, "channel": ""}),
            Api("subscribe", {"user": "", "channel": "x-{run}"}),
            Sync("a"),
        ],
    ),
    Scenario(
        "api_disconnect",
        [
            *connect("a"),
            *connect("b", user="bob-{run}"),
            Api("disconnect", {"user": USER}),
            Closed("a", 3503),
            Api("disconnect", {"user": "bob-{run}", "disconnect": {"code": 4501, "reason": "custom reason"}}),
            Closed("b", 4501),
            Api("disconnect", {"user": "nobody-{run}"}),
            Api("disconnect", {"user": ""}),
        ],
    ),
    Scenario(
        "api_refresh",
        [
            *connect("a"),
            Api("refresh", {"user": USER, "expire_at": Now(3600)}),
            Recv("a", 1, check=[{"push": {"refresh": {"expires": True}}}]),
            Api("refresh", {"user": USER, "expire_at": 4102444800}),
            Recv("a", 1, check=[{"push": {"refresh": {"expires": True}}}]),
            Sync("a"),
            Api("refresh", {"user": USER, "expired": True}),
            Closed("a", 3005),
            Api("refresh", {"user": "nobody-{run}"}),
        ],
    ),
    Scenario(
        "api_history_presence_channels",
        [
            *connect("a"),
            Send("a", [sub(2, "pres:c-{run}"), sub(3, "hist:c-{run}")]),
            Recv("a", 2),
            Api("publish", {"channel": "hist:c-{run}", "data": 1}),
            Api("publish", {"channel": "hist:c-{run}", "data": 2}),
            Recv("a", 2),
            Api("history", {"channel": "hist:c-{run}", "limit": 10}),
            Api("history", {"channel": "hist:c-{run}", "limit": 1, "reverse": True}),
            Api("history", {"channel": "hist:c-{run}"}),
            Api("history", {"channel": "hist:c-{run}", "limit": 10, "since": {"offset": 1, "epoch": "bad"}}),
            Api("history", {"channel": "ch-{run}", "limit": 10}),
            Api("history_remove", {"channel": "hist:c-{run}"}),
            Api("history", {"channel": "hist:c-{run}", "limit": 10}),
            Api("history_remove", {"channel": "ch-{run}"}),
            Api("presence", {"channel": "pres:c-{run}"}),
            Api("presence_stats", {"channel": "pres:c-{run}"}),
            Api("presence", {"channel": "ch-{run}"}),
            Api("presence_stats", {"channel": "pres:nobody-{run}"}),
            Api("channels", {"pattern": "*{run}*"}),
            Api("channels", {"pattern": "hist:*{run}"}),
            Sync("a"),
        ],
    ),
    Scenario(
        "api_info_and_channels",
        [
            Api("info", {}),
            *connect("a"),
            Send("a", [sub(2, "ch-{run}")]),
            Recv("a", 1),
            Api("info", {}),
            Api("channels", {}),
        ],
        profile="fresh",
        protocols=API_ONLY,
    ),
    Scenario(
        "api_batch",
        [
            Api(
                "batch",
                {
                    "commands": [
                        {"publish": {"channel": "hist:bt-{run}", "data": 1}},
                        {"publish": {"channel": "unknown:x", "data": 1}},
                        {"presence": {"channel": "ch-{run}"}},
                        {"broadcast": {"channels": ["ch-{run}", "hist:bt-{run}"], "data": 2}},
                        {"history": {"channel": "hist:bt-{run}", "limit": -1}},
                    ]
                },
            ),
            Api("batch", {"commands": [{"publish": {"channel": "ch-{run}", "data": 1}}], "parallel": True}),
            Api("batch", {"commands": []}),
        ],
        protocols=API_ONLY,
    ),
    Scenario(
        "api_errors",
        [
            ApiRaw("publish", b"{", check_status=400),
            ApiRaw("publish", b"[]"),
            ApiRaw("publish", b""),
            ApiRaw("publish", b'{"channel": 1, "data": 1}'),
            ApiRaw("no_such_method", b"{}", check_status=404),
            ApiRaw("publish", b'{"channel": "x", "data": 1}', api_key=None, check_status=401),
            ApiRaw("publish", b'{"channel": "x", "data": 1}', api_key="wrong-key", check_status=401),
            ApiRaw("publish", b'{"channel": "x", "data": 1}', api_key="", check_status=401),
            ApiRaw(
                "publish",
                b'{"channel": "x", "data": 1}',
                api_key=None,
                headers={"Authorization": "apikey neoevents-test-api-key"},
                check_status=200,
            ),
            ApiRaw(
                "publish",
                b'{"channel": "x", "data": 1}',
                api_key=None,
                headers={"Authorization": "Bearer neoevents-test-api-key"},
            ),
        ],
        protocols=API_ONLY,
    ),
]

SCENARIO_BY_NAME = {scenario.name: scenario for scenario in SCENARIOS}
assert len(SCENARIO_BY_NAME) == len(SCENARIOS), "scenario names must be unique"

"""Django Channels 4 peer of the benchmark suite: ``channels_redis`` (``RedisChannelLayer``) on uvicorn.

Subscribers open ``/ws/<group>``: the consumer adds itself to the group and accepts, so the WebSocket upgrade
completes once it is a member. Publications arrive on a ``/pub`` WebSocket: a frame holds one or more
``<group>\\n<payload>`` pairs (lines alternate) and each is a ``group_send`` of ``{"type": "pub", "text":
payload}``, which every member's consumer writes out as a text frame unchanged.

The layer's ``capacity`` is raised from 100 to 100,000 messages: the benchmark bounds the backlog itself, and
with the default a channel (or this process's shared receive key) that falls behind drops messages. Its Redis
connection pool may hold 2,000 connections instead of redis-py's 100, which connect bursts exceed, and reads
have no timeout (redis-py 8's default of 5 s breaks channels_redis's 5 s blocking pops).

Usage: ``python -m bench.peers.channels_server --port PORT --redis redis://127.0.0.1:PORT/0``
"""

from __future__ import annotations

import argparse
from typing import Any

import django
from django.conf import settings


def configure(redis_url: str) -> None:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench-only-not-secret",
        ALLOWED_HOSTS=["*"],
        INSTALLED_APPS=["channels"],
        USE_TZ=True,
        LOGGING_CONFIG=None,
        CHANNEL_LAYERS={
            "default": {
                "BACKEND": "channels_redis.core.RedisChannelLayer",
                # redis-py's pool refuses more than 100 connections in use by default (MaxConnectionsError),
                # which a burst of connects (one group_add each) exceeds. redis-py 8 also reads with a 5 s
                # socket timeout by default, the time channels_redis's BZPOPMIN waits: an empty pop then
                # raises TimeoutError in the consumer and its connection is dropped. No read timeout, as
                # before redis-py 8.
                "CONFIG": {
                    "hosts": [{"address": redis_url, "max_connections": 2000, "socket_timeout": None}],
                    "capacity": 100_000,
                    "expiry": 60,
                },
            }
        },
    )
    django.setup()


def make_app() -> Any:
    from channels.generic.websocket import AsyncWebsocketConsumer
    from channels.routing import ProtocolTypeRouter, URLRouter
    from django.urls import path

    class GroupSubscriber(AsyncWebsocketConsumer):
        group = ""

        async def connect(self) -> None:
            self.group = self.scope["url_route"]["kwargs"]["group"]
            await self.channel_layer.group_add(self.group, self.channel_name)
            await self.accept()

        async def disconnect(self, code: int) -> None:
            if self.group:
                await self.channel_layer.group_discard(self.group, self.channel_name)

        async def pub(self, event: dict[str, Any]) -> None:
            await self.send(text_data=event["text"])

    class GroupPublisher(AsyncWebsocketConsumer):
        async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
            lines = (text_data or (bytes_data or b"").decode()).split("\n")
            for k in range(0, len(lines) - 1, 2):
                await self.channel_layer.group_send(lines[k], {"type": "pub", "text": lines[k + 1]})

    return ProtocolTypeRouter(
        {
            "websocket": URLRouter(
                [path("ws/<str:group>", GroupSubscriber.as_asgi()), path("pub", GroupPublisher.as_asgi())]
            )
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis", required=True)
    args = parser.parse_args()
    configure(args.redis)
    import uvicorn

    uvicorn.run(
        make_app(),
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        ws="websockets-sansio",
        ws_ping_interval=None,  # as for the floors: the load generator's subscribers answer no WebSocket pings
        ws_per_message_deflate=False,
        backlog=4096,
        log_level="warning",
        access_log=False,
        lifespan="off",
    )


if __name__ == "__main__":
    main()

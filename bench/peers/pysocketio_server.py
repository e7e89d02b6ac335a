"""python-socketio 5 peer of the benchmark suite, served by uvicorn (uvloop, httptools, websockets-sansio).

Subscribers connect to ``/socket.io/?EIO=4&transport=websocket&room=<room>`` and the ``connect`` handler puts
them in that room (socket.io answers the connect only after the handler returned). Publications arrive on a
``/pub`` WebSocket: a frame holds one or more ``<room>\\n<JSON payload>`` pairs (lines alternate) and each
payload is emitted to its room as the event ``pub``, one ``emit`` after the other.

``--redis URL`` uses ``AsyncRedisManager``: every emit goes through Redis pub/sub, as with several server
processes behind a load balancer.

Usage: ``python -m bench.peers.pysocketio_server --port PORT [--redis redis://127.0.0.1:PORT/0]``
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

import socketio
import uvicorn

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def make_app(redis_url: str = "") -> Any:
    manager = socketio.AsyncRedisManager(redis_url) if redis_url else None
    sio = socketio.AsyncServer(
        async_mode="asgi",
        client_manager=manager,
        transports=["websocket"],
        cors_allowed_origins="*",
        ping_interval=25,
        ping_timeout=20,
    )

    @sio.event
    async def connect(sid: str, environ: dict[str, Any], auth: Any) -> None:
        room = parse_qs(environ.get("QUERY_STRING", "")).get("room", [""])[0]
        if room:
            await sio.enter_room(sid, room)

    async def publish_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                pass
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "websocket" or scope["path"] != "/pub":
            if scope["type"] == "http":
                await send({"type": "http.response.start", "status": 404, "headers": []})
                await send({"type": "http.response.body", "body": b""})
            return
        message = await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] != "websocket.receive":
                return
            text = message.get("text") or (message.get("bytes") or b"").decode()
            lines = text.split("\n")
            for k in range(0, len(lines) - 1, 2):
                await sio.emit("pub", json.loads(lines[k + 1]), room=lines[k])

    return socketio.ASGIApp(sio, other_asgi_app=publish_endpoint)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis", default="")
    args = parser.parse_args()
    uvicorn.run(
        make_app(args.redis),
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        ws="websockets-sansio",
        ws_ping_interval=None,  # Engine.IO pings the clients itself
        ws_per_message_deflate=False,
        backlog=4096,
        log_level="warning",
        access_log=False,
        lifespan="off",
    )


if __name__ == "__main__":
    main()

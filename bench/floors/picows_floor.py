"""Floor server on ``picows``: see :mod:`bench.floors`."""

from __future__ import annotations

import argparse
import asyncio
import logging

import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest, ws_create_server

from bench.wire import server_frame

channels: dict[str, set[asyncio.Transport]] = {}


class Subscriber(WSListener):
    def __init__(self, channel: str) -> None:
        self.subs = channels.setdefault(channel, set())
        self.transport: asyncio.Transport | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport.underlying_transport
        self.subs.add(self.transport)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if self.transport is not None:
            self.subs.discard(self.transport)


class Publisher(WSListener):
    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type not in (WSMsgType.TEXT, WSMsgType.BINARY):
            return
        channel, _, payload = frame.get_payload_as_bytes().partition(b"\n")
        subs = channels.get(channel.decode())
        if subs:
            out = server_frame(payload)
            for t in subs:
                t.write(out)


def listener(request: WSUpgradeRequest) -> WSListener | None:
    path = request.path.decode()
    if path == "/pub":
        return Publisher()
    if path.startswith("/sub/"):
        return Subscriber(path[5:])
    return None


async def main(host: str, port: int, read_buffer: int) -> None:
    server = await ws_create_server(listener, host, port, read_buffer_init_size=read_buffer, backlog=4096)
    await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--read-buffer", type=int, default=2048)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    uvloop.run(main(args.host, args.port, args.read_buffer))

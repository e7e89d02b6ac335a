"""Floor server on ``websockets`` (asyncio implementation): see :mod:`bench.floors`."""

from __future__ import annotations

import argparse
import asyncio
import logging

import uvloop
from websockets.asyncio.server import ServerConnection, serve

from bench.wire import server_frame

channels: dict[str, set[asyncio.Transport]] = {}


async def handler(ws: ServerConnection) -> None:
    path = ws.request.path if ws.request is not None else ""
    if path == "/pub":
        while True:
            data = await ws.recv(decode=False)
            channel, _, payload = data.partition(b"\n")
            subs = channels.get(channel.decode())
            if subs:
                frame = server_frame(payload)
                for transport in subs:
                    transport.write(frame)
    elif path.startswith("/sub/"):
        subs = channels.setdefault(path[5:], set())
        subs.add(ws.transport)
        try:
            await ws.wait_closed()
        finally:
            subs.discard(ws.transport)


async def main(host: str, port: int) -> None:
    async with serve(
        handler, host, port, ping_interval=None, compression=None, max_size=1 << 20, backlog=4096
    ) as server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    uvloop.run(main(args.host, args.port))

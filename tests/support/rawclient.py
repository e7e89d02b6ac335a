"""A raw Centrifugal protocol v2 client over WebSocket, for tests that need exact control of frames."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Origin, Subprotocol

from tests.support.protocol import JSON, PROTOBUF, SUBPROTOCOLS, decode_frame, encode_commands


class RawClient:
    """One WebSocket connection speaking the client protocol (or deliberately not).

    Pings from the server (empty replies) are returned like any other reply unless ``auto_pong`` is set,
    in which case they are answered and left out of the returned replies.
    """

    def __init__(self, ws: ClientConnection, protocol: str, auto_pong: bool = False) -> None:
        self.ws = ws
        self.protocol = protocol
        self.auto_pong = auto_pong
        self.pings_seen = 0
        self.frames_after_close: list[str | bytes] = []

    @classmethod
    async def connect(
        cls,
        url: str,
        protocol: str = JSON,
        origin: str | None = None,
        extra_headers: dict[str, str] | None = None,
        *,
        auto_pong: bool = False,
        use_subprotocol: bool = True,
        max_size: int | None = 16 * 1024 * 1024,
        open_timeout: float = 10.0,
    ) -> RawClient:
        """Open a WebSocket; the Protobuf protocol is selected with the ``centrifuge-protobuf`` subprotocol
        (or, with ``use_subprotocol=False``, with ``?format=protobuf``)."""
        if protocol not in (JSON, PROTOBUF):
            raise ValueError(f"unknown protocol {protocol!r}")
        subprotocols = None
        if use_subprotocol:
            subprotocols = [Subprotocol(SUBPROTOCOLS[protocol])]
        elif protocol == PROTOBUF:
            url += ("&" if "?" in url else "?") + "format=protobuf"
        ws = await connect(
            url,
            origin=Origin(origin) if origin else None,
            additional_headers=extra_headers,
            subprotocols=subprotocols,
            compression=None,
            ping_interval=None,
            max_size=max_size,
            open_timeout=open_timeout,
            close_timeout=2,
            proxy=None,
        )
        return cls(ws, protocol, auto_pong)

    # Sending ------------------------------------------------------------------------------------------
    async def send_frame(self, frame: str | bytes) -> None:
        """Send one frame exactly as given (str = text frame, bytes = binary frame)."""
        await self.ws.send(frame)

    async def send_commands(self, commands: list[dict[str, Any]]) -> None:
        """Send commands (JSON-shaped dicts) in one frame of this client's protocol."""
        await self.ws.send(encode_commands(commands, self.protocol))

    async def send_command(self, command: dict[str, Any]) -> None:
        await self.send_commands([command])

    async def pong(self) -> None:
        await self.ws.send("{}" if self.protocol == JSON else b"\x00")

    # Receiving ----------------------------------------------------------------------------------------
    async def recv_frame(self, timeout: float = 5.0) -> str | bytes:
        """The next raw frame; raises TimeoutError or websockets ConnectionClosed."""
        return await asyncio.wait_for(self.ws.recv(), timeout)

    async def recv_replies(self, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Replies of the next frame (with ``auto_pong``, the next frame that is not only pings)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            replies = decode_frame(await self.recv_frame(max(0.0, deadline - loop.time())), self.protocol)
            if not self.auto_pong:
                return replies
            kept = [r for r in replies if r]
            pings = len(replies) - len(kept)
            for _ in range(pings):
                self.pings_seen += 1
                await self.pong()
            if kept:
                return kept

    async def recv_n(self, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """At least ``n`` replies, over as many frames as needed, within ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        out: list[dict[str, Any]] = []
        while len(out) < n:
            out.extend(await self.recv_replies(max(0.0, deadline - loop.time())))
        return out

    async def wait_close(self, timeout: float = 5.0) -> tuple[int | None, str]:
        """Wait until the server closes the connection; frames received meanwhile are kept in
        ``frames_after_close``. Returns the close code and reason from the server (None if none)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise TimeoutError("the server did not close the connection")
                frame = await asyncio.wait_for(self.ws.recv(), remaining)
                if self.auto_pong and frame in ("{}", b"\x00"):
                    await self.pong()
                    continue
                self.frames_after_close.append(frame)
        except ConnectionClosed as exc:
            rcvd = exc.rcvd
            if rcvd is None:
                return None, ""
            return int(rcvd.code), rcvd.reason

    async def close(self) -> None:
        with contextlib.suppress(TimeoutError, ConnectionClosed, OSError):
            await asyncio.wait_for(self.ws.close(), 3)

    async def __aenter__(self) -> RawClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

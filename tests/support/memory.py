"""An in-memory client transport: drives a session (``neoevents.client.Client``) without sockets."""

from __future__ import annotations

import asyncio

import msgspec

from neoevents.protocol import codes
from neoevents.protocol.codec import JSON, Codec


class MemoryTransport:
    """Collects what the session sends; frames are the payloads themselves."""

    def __init__(self, codec: Codec = JSON) -> None:
        self.codec = codec
        self.framing = 0
        self.sent: list[bytes] = []
        self.closed: codes.Disconnect | None = None

    def frame(self, payload: bytes) -> bytes:
        return payload

    def send(self, payload: bytes) -> None:
        self.sent.append(payload)

    def send_frame(self, frame: bytes) -> None:
        self.sent.append(frame)

    def close(self, disconnect: codes.Disconnect) -> None:
        self.closed = disconnect

    def replies(self) -> list[dict[str, object]]:
        """Decode and forget everything sent so far (JSON codec)."""
        out = [msgspec.json.decode(s) for s in self.sent]
        self.sent.clear()
        return out


async def settle() -> None:
    """Let spawned command tasks run to completion."""
    for _ in range(5):
        await asyncio.sleep(0)

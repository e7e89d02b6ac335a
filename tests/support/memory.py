"""An in-memory client transport: drives a session (``neoevents.client.Client``) without sockets."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import msgspec

from neoevents.protocol import codes
from neoevents.protocol.codec import JSON, Codec

if TYPE_CHECKING:
    from neoevents.hub import SharedFrames


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

    def send_shared(self, batch: SharedFrames) -> bool:
        """Takes the channel batch's publications at once, each as its own payload; False, so that the batch
        collects no more publications for this transport to miss."""
        self.sent.extend(batch.payloads)
        return False

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

"""What arrives over PUB/SUB: messages decoded and handed to the node, and the check that none was lost.

Every channel this node subscribed to is known here by its PUB/SUB name. A publication with history carries
its position (``__p1:<offset>:<epoch>__``); the last position seen per channel tells whether the next one
follows it. When it does not (an offset skipped, or a new epoch: the stream was lost and started again), or
when the PUB/SUB connection itself was lost and re-established, the handler's
``handle_insufficient_state(channel)`` is called, before the publication is delivered.
"""

from __future__ import annotations

import logging
import time
from typing import Final

from neoevents.engines.base import BrokerEventHandler, StreamPosition
from neoevents.engines.redis_codec import (
    JOIN_PREFIX,
    LEAVE_PREFIX,
    PUB_PREFIX,
    MalformedMessage,
    decode_info,
    decode_publication,
    split_position,
)

log = logging.getLogger("neoevents.redis")

NO_POSITION: Final = StreamPosition()
UNKNOWN_OFFSET: Final = -1  # the epoch is known (from a history read), the offset is not


class Receiver:
    def __init__(self, control: bytes) -> None:
        self.handler: BrokerEventHandler | None = None
        self.names: dict[bytes, str] = {}  # PUB/SUB channel -> channel, for the channels subscribed here
        self._control = control
        self._positions: dict[str, tuple[int, str]] = {}  # last position seen per channel
        self._malformed_logged = 0.0

    def add(self, key: bytes, channel: str) -> None:
        self.names[key] = channel

    def remove(self, key: bytes, channel: str) -> None:
        self.names.pop(key, None)
        self._positions.pop(channel, None)

    def seen(self, channel: str, epoch: str) -> None:
        """The stream's epoch as a history read found it, when nothing came over PUB/SUB yet."""
        self._positions.setdefault(channel, (UNKNOWN_OFFSET, epoch))

    def resubscribed(self, keys: list[bytes]) -> None:
        """The PUB/SUB connection was re-established: anything may have been missed meanwhile."""
        handler = self.handler
        for key in keys:
            channel = self.names.get(key)
            if channel is None:
                continue
            self._positions.pop(channel, None)
            if handler is not None:
                handler.handle_insufficient_state(channel)

    def on_message(self, key: bytes, data: bytes) -> None:
        channel = self.names.get(key)
        handler = self.handler
        if handler is None:
            return
        if channel is None:
            if key == self._control:
                handler.handle_control(data)
            return
        try:
            if not data.startswith(b"__"):
                handler.handle_publication(channel, decode_publication(data), NO_POSITION)
            elif data.startswith(PUB_PREFIX):
                offset, epoch, body = split_position(data)
                pub = decode_publication(body)
                pub.offset = offset
                self._check(handler, channel, offset, epoch)
                if offset == 1:
                    pub.epoch = epoch  # a subscriber of an empty stream learns its epoch here
                handler.handle_publication(channel, pub, StreamPosition(offset, epoch))
            elif data.startswith(JOIN_PREFIX):
                handler.handle_join(channel, decode_info(data[5:]))
            elif data.startswith(LEAVE_PREFIX):
                handler.handle_leave(channel, decode_info(data[5:]))
            else:
                raise MalformedMessage("unknown prefix")
        except (MalformedMessage, UnicodeDecodeError) as exc:
            now = time.monotonic()
            if now - self._malformed_logged > 60:
                self._malformed_logged = now
                log.error("malformed message on Redis channel %r: %s", key[:200], exc)
        except Exception:
            log.exception("handling a message from Redis failed")

    def _check(self, handler: BrokerEventHandler, channel: str, offset: int, epoch: str) -> None:
        last = self._positions.get(channel)
        if last is None or (epoch == last[1] and (offset == last[0] + 1 or last[0] == UNKNOWN_OFFSET)):
            self._positions[channel] = (offset, epoch)
            return
        if epoch == last[1] and offset <= last[0]:
            return  # older than what was seen: nothing missed
        self._positions[channel] = (offset, epoch)
        handler.handle_insufficient_state(channel)

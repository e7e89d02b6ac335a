"""What arrives over PUB/SUB: messages decoded and handed to the node, and the check that none was lost.

Every channel this node subscribed to is known here by its PUB/SUB name. A publication with history carries
its position (``__p1:<offset>:<epoch>__``); the last position seen per channel tells whether the next one
follows it. When it does not (an offset skipped, or a new epoch: the stream was lost and started again), the
handler's ``handle_insufficient_state(channel)`` is called, before the publication is delivered.

When the PUB/SUB connection was lost and re-established, publications may have been missed meanwhile; the
broker compares each channel's last seen position with its stream (:meth:`Receiver.resubscribed` says which
channels need that, and which cannot be checked) and reports only the channels that really missed some.
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
        self.controls = {control}  # the control channel, and this node's own once it has an ID
        self._positions: dict[str, tuple[int, str]] = {}  # last position seen per channel
        self._malformed_logged = 0.0

    def add(self, key: bytes, channel: str) -> None:
        self.names[key] = channel

    def remove(self, key: bytes, channel: str) -> None:
        self.names.pop(key, None)
        self._positions.pop(channel, None)

    def seen(self, channel: str, position: StreamPosition) -> None:
        """The stream's position as a history read found it (every publication up to it has been handled),
        when nothing came over PUB/SUB yet."""
        self._positions.setdefault(channel, (position.offset, position.epoch))

    def position(self, channel: str) -> tuple[int, str] | None:
        """The last position seen for ``channel`` (offset, epoch), if any."""
        return self._positions.get(channel)

    def resubscribed(self, keys: list[bytes]) -> list[str]:
        """The PUB/SUB connection was re-established and ``keys`` subscribed again. Channels whose position
        is unknown may have missed anything: they are reported at once. The others are returned, for the
        broker to compare with their streams (:meth:`checked`)."""
        handler = self.handler
        to_check = []
        for key in keys:
            channel = self.names.get(key)
            if channel is None:
                continue
            last = self._positions.get(channel)
            if last is not None and last[0] != UNKNOWN_OFFSET:
                to_check.append(channel)
                continue
            self._positions.pop(channel, None)
            if handler is not None:
                handler.handle_insufficient_state(channel)
        return to_check

    def checked(self, channel: str, top: StreamPosition | None) -> None:
        """The stream of a re-subscribed channel is at ``top`` (None: it could not be read), and everything
        published up to it has arrived: report the channel if it is ahead of what this node saw."""
        last = self._positions.get(channel)
        if last is None:
            return  # unsubscribed meanwhile (the position goes with the subscription)
        if top is not None and last[1] == top.epoch and last[0] >= top.offset:
            return
        if top is None:
            self._positions.pop(channel, None)
        else:
            self._positions[channel] = (top.offset, top.epoch)
        if self.handler is not None:
            self.handler.handle_insufficient_state(channel)

    def on_message(self, key: bytes, data: bytes) -> None:
        channel = self.names.get(key)
        handler = self.handler
        if handler is None:
            return
        if channel is None:
            if key in self.controls:
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

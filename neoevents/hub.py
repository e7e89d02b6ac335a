"""The registry of local subscribers, and fan-out.

Fan-out encodes a push once per wire format and frames it once per frame format, then writes the very
same bytes object to every subscriber: the per-subscriber cost is a dictionary lookup and a list append.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from neoevents.protocol.messages import ClientInfo, Join, Leave, Publication, Push, Reply

if TYPE_CHECKING:
    from neoevents.client import Client, Subscription


class Hub:
    __slots__ = ("_subs",)

    def __init__(self) -> None:
        self._subs: dict[str, dict[Client, Subscription]] = {}

    def add(self, channel: str, client: Client, sub: Subscription) -> bool:
        """Add a subscriber; True when it is the channel's first on this node."""
        subs = self._subs.get(channel)
        if subs is None:
            self._subs[channel] = {client: sub}
            return True
        subs[client] = sub
        return False

    def remove(self, channel: str, client: Client) -> bool:
        """Remove a subscriber; True when the channel has no subscribers left on this node."""
        subs = self._subs.get(channel)
        if subs is None:
            return False
        subs.pop(client, None)
        if not subs:
            del self._subs[channel]
            return True
        return False

    def num_subscribers(self, channel: str) -> int:
        subs = self._subs.get(channel)
        return len(subs) if subs else 0

    def subscribers(self, channel: str) -> list[tuple[Client, Subscription]]:
        """A snapshot of the channel's local subscribers."""
        subs = self._subs.get(channel)
        return list(subs.items()) if subs else []

    def num_channels(self) -> int:
        return len(self._subs)

    def channels(self) -> dict[str, int]:
        return {channel: len(subs) for channel, subs in self._subs.items()}

    def num_subscriptions(self) -> int:
        return sum(len(subs) for subs in self._subs.values())

    def broadcast_publication(self, channel: str, pub: Publication) -> int:
        """Deliver a publication to every local subscriber; returns how many got it."""
        subs = self._subs.get(channel)
        if not subs:
            return 0
        return _fan_out(subs, Reply(push=Push(channel=channel, pub=pub)), only_join_leave=False)

    def broadcast_join(self, channel: str, info: ClientInfo) -> int:
        subs = self._subs.get(channel)
        if not subs:
            return 0
        return _fan_out(subs, Reply(push=Push(channel=channel, join=Join(info=info))), only_join_leave=True)

    def broadcast_leave(self, channel: str, info: ClientInfo) -> int:
        subs = self._subs.get(channel)
        if not subs:
            return 0
        return _fan_out(subs, Reply(push=Push(channel=channel, leave=Leave(info=info))), only_join_leave=True)


def _fan_out(subs: dict[Client, Subscription], reply: Reply, *, only_join_leave: bool) -> int:
    if only_join_leave:
        subs = {client: sub for client, sub in subs.items() if sub.join_leave}
    # Subscribers of one channel nearly always share one frame format: keep the last frame at hand and look
    # the others up only when the format changes.
    frames: dict[int, bytes] = {}
    framing = -1
    frame = b""
    for client in subs:
        transport = client.transport
        if transport.framing != framing:
            framing = transport.framing
            cached = frames.get(framing)
            if cached is None:
                cached = frames[framing] = transport.frame(transport.codec.encode_reply(reply))
            frame = cached
        transport.send_frame(frame)
    return len(subs)

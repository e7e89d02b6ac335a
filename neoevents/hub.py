"""The registry of local subscribers, and fan-out.

Fan-out encodes a push once per wire format and frames it once per frame format, then writes the very
same bytes object to every subscriber: the per-subscriber cost is a dictionary lookup and a list append.

A busy channel (at least :data:`SHARED_MIN` subscribers, all of one frame format) goes further: its
publications of one event-loop iteration are collected in one :class:`SharedFrames` batch that every
subscriber's output queue refers to. The first publication of the iteration adds the batch to each queue;
the next ones are appended to the batch alone, whatever the number of subscribers, and at the flush the
batch is framed once (several publications to a WebSocket frame) and the same bytes are written to every
subscriber.

The batch stays open for appends only while that is exactly what each of its subscribers would have
received one frame at a time, so per-connection order is never changed. It is closed (later publications
start a new one) when:

* the channel gains or loses a subscriber (:meth:`Hub.add`, :meth:`Hub.remove`);
* any of its subscribers is given anything else to send (a reply, a ping, another channel's publication,
  a join or leave): the connection closes the batch before queueing it;
* it is flushed, or its connection closes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from neoevents.protocol.messages import ClientInfo, Join, Leave, Publication, Push, Reply

if TYPE_CHECKING:
    from neoevents.client import Client, ClientTransport, Subscription


#: Fewest subscribers for which a channel's publications are batched in :class:`SharedFrames`.
SHARED_MIN: Final = 8
#: Largest payload of one WebSocket frame carrying several publications of a batch (a single bigger
#: publication still travels alone in its own frame).
MERGED_FRAME_MAX: Final = 65536


class SharedFrames:
    """Publications queued for all subscribers of one channel during one event-loop iteration (see the module
    docstring). ``payloads`` may grow while the batch is open; :meth:`data` closes it and frames them once.

    As the protocol allows (and the reference server does), several publications share one WebSocket frame:
    JSON messages joined by newlines, Protobuf messages each behind its varint length. A frame carries at most
    :data:`MERGED_FRAME_MAX` bytes of them."""

    __slots__ = ("_channel", "_codec", "_data", "_frame", "_open", "payloads")

    def __init__(
        self, transport: ClientTransport, first: Reply, open_batches: dict[str, SharedFrames], channel: str
    ) -> None:
        # The wire and frame formats of every subscriber are the first one's.
        self._codec = transport.codec
        self._frame = transport.frame
        self.payloads = [self._codec.encode_reply(first)]
        self._data: bytes | None = None
        self._open = open_batches
        self._channel = channel

    def add(self, reply: Reply) -> None:
        self.payloads.append(self._codec.encode_reply(reply))

    def close(self) -> None:
        """No more publications: the next one of the channel starts a new batch."""
        if self._open.get(self._channel) is self:
            del self._open[self._channel]

    def data(self) -> bytes:
        """The batch's frames, built once (the batch is closed from here on)."""
        data = self._data
        if data is None:
            self.close()
            payloads = self.payloads
            if len(payloads) == 1:
                data = self._frame(payloads[0])
            else:
                data = b"".join([self._frame(self._codec.join(chunk)) for chunk in _chunks(payloads)])
            self._data = data
            self.payloads = []
        return data


def _chunks(payloads: list[bytes]) -> list[list[bytes]]:
    """Consecutive runs of ``payloads`` of at most MERGED_FRAME_MAX bytes (or one bigger payload) each."""
    chunks: list[list[bytes]] = []
    chunk: list[bytes] = []
    size = 0
    for payload in payloads:
        if chunk and size + len(payload) > MERGED_FRAME_MAX:
            chunks.append(chunk)
            chunk, size = [], 0
        chunk.append(payload)
        size += len(payload) + 1
    chunks.append(chunk)
    return chunks


class Hub:
    __slots__ = ("_shared", "_subs")

    def __init__(self) -> None:
        self._subs: dict[str, dict[Client, Subscription]] = {}
        # The open SharedFrames batch of each channel that has one in this loop iteration.
        self._shared: dict[str, SharedFrames] = {}

    def add(self, channel: str, client: Client, sub: Subscription) -> bool:
        """Add a subscriber; True when it is the channel's first on this node."""
        self._shared.pop(channel, None)
        subs = self._subs.get(channel)
        if subs is None:
            self._subs[channel] = {client: sub}
            return True
        subs[client] = sub
        return False

    def remove(self, channel: str, client: Client) -> bool:
        """Remove a subscriber; True when the channel has no subscribers left on this node."""
        self._shared.pop(channel, None)
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
        shared = self._shared.get(channel)
        if shared is not None:
            # Every subscriber's queue ends with this batch: one append delivers to all of them.
            shared.add(Reply(push=Push(channel=channel, pub=pub)))
            return len(subs)
        reply = Reply(push=Push(channel=channel, pub=pub))
        if len(subs) >= SHARED_MIN:
            batch = self._share(channel, subs, reply)
            if batch is not None:
                return len(subs)
        return _fan_out(subs, reply, only_join_leave=False)

    def _share(self, channel: str, subs: dict[Client, Subscription], reply: Reply) -> SharedFrames | None:
        """Start a batch for the channel and queue it for every subscriber; None (nothing queued) when the
        subscribers do not all share one frame format."""
        transport = next(iter(subs)).transport
        framing = transport.framing
        for client in subs:
            if client.transport.framing != framing:
                return None
        batch = SharedFrames(transport, reply, self._shared, channel)
        taken = False
        for client in subs:
            taken = client.transport.send_shared(batch) or taken
        if taken:  # a batch nobody will flush (every subscriber closing) must not collect publications
            self._shared[channel] = batch
        return batch

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

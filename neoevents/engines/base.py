"""The narrow interfaces between the node and its engine.

A *broker* moves publications between nodes and keeps each channel's history stream; a *presence
manager* keeps who is in a channel. The node never looks behind these interfaces, so the in-memory
engine and the Redis engine are interchangeable, and one contract test suite runs against both.

Contract shared by every implementation:

* ``publish`` is atomic per channel: the offset is incremented, the publication appended to history
  (unless history is off or ``skip_history``) and delivered to subscribed nodes as one step, so that
  every node sees a channel's publications in offset order, without gaps for the same epoch.
* Offsets start at 1 for a new stream and never repeat within an epoch; a new epoch (random 8-char
  string) starts when a stream is created or its metadata expired, and makes older positions invalid.
* History keeps at most ``history_size`` publications for ``history_ttl`` seconds after the last
  publish; the position (offset, epoch) outlives the publications for ``history_meta_ttl`` seconds.
* An idempotency key makes a repeated publish within ``idempotent_result_ttl`` return the first
  position and deliver nothing.
* Presence entries expire after ``presence_ttl`` unless refreshed by ``add_presence``; an engine shared by
  several nodes keeps refreshing the entries its node added until ``remove_presence``, so only the entries
  of a node that died expire.
* ``subscribe`` may be called again for a channel already subscribed (it then waits for the pending
  subscription, if any); when it returns, every publication made afterwards reaches this node.
* Operations that cannot be done (storage unreachable) raise :class:`EngineError`; ``unsubscribe``,
  ``publish_join``, ``publish_leave`` and ``remove_presence`` are best effort and do not raise.
* A broker whose publications travel over a network may also offer ``publish_many`` (:class:`BatchPublisher`):
  callers with several publications at hand (batch and broadcast API calls) then hand them over in one call
  that costs one round trip, not one per publication. Without it they call ``publish`` once per publication.
* A broker that can lose publications on their way to the node (a network between them) calls
  ``handle_insufficient_state`` when it notices; the in-memory broker never does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from msgspec import Struct

from neoevents.exceptions import ProtocolError
from neoevents.protocol import codes
from neoevents.protocol.messages import ClientInfo, Publication


class EngineError(ProtocolError):
    """The engine cannot do an operation now (its storage is unreachable, timed out or refused).

    Callers get ``100 internal server error``, like any ProtocolError reply; ``reason`` is for logs. The
    engine logs the underlying problem itself, once, not per failed operation.
    """

    def __init__(self, reason: str = "") -> None:
        super().__init__(codes.ERROR_INTERNAL)
        self.reason = reason


class StreamPosition(Struct, frozen=True, gc=False):
    offset: int = 0
    epoch: str = ""


class PublishOptions(Struct, frozen=True):
    """Per-publication options (a msgspec struct: built on every publish, so construction must be cheap)."""

    history_size: int = 0
    history_ttl: float = 0.0
    history_meta_ttl: float = 0.0
    skip_history: bool = False
    idempotency_key: str = ""
    idempotent_result_ttl: float = 300.0
    tags: dict[str, str] = {}
    info: ClientInfo | None = None


class HistoryFilter(Struct, frozen=True, gc=False):
    """``limit`` 0 returns only the position, -1 returns everything kept; ``since`` is exclusive."""

    since: StreamPosition | None = None
    limit: int = 0
    reverse: bool = False


class BrokerEventHandler(Protocol):
    """Implemented by the node: what a broker delivers."""

    def handle_publication(self, channel: str, pub: Publication, position: StreamPosition) -> None: ...

    def handle_join(self, channel: str, info: ClientInfo) -> None: ...

    def handle_leave(self, channel: str, info: ClientInfo) -> None: ...

    def handle_control(self, data: bytes) -> None: ...

    def handle_insufficient_state(self, channel: str) -> None:
        """Publications of ``channel`` may have been lost on their way to this node (a gap in offsets, a new
        epoch, a lost PUB/SUB connection): subscribers that track positions must recover."""


class Broker(Protocol):
    async def start(self, handler: BrokerEventHandler, node_id: str = "") -> None:
        """Begin delivering events to ``handler``; ``node_id`` names this node for control messages sent to it
        alone (:meth:`publish_control`)."""

    async def close(self) -> None: ...

    async def subscribe(self, channel: str) -> None:
        """This node now has subscribers in ``channel``: deliver its events here."""

    async def unsubscribe(self, channel: str) -> None: ...

    async def publish(self, channel: str, data: bytes, options: PublishOptions) -> tuple[StreamPosition, bool]:
        """Publish and return (position, suppressed); suppressed is True for a repeated idempotency key."""

    async def publish_join(self, channel: str, info: ClientInfo) -> None: ...

    async def publish_leave(self, channel: str, info: ClientInfo) -> None: ...

    async def publish_control(self, data: bytes, node_id: str = "") -> None:
        """Send a control message to every node (including this one), or with ``node_id`` to that node only.
        At most once: a node not connected at that moment does not get it."""

    async def history(
        self, channel: str, flt: HistoryFilter, history_ttl: float = 0.0, meta_ttl: float = 0.0
    ) -> tuple[list[Publication], StreamPosition]:
        """Publications after ``flt.since`` (or from the start) and the stream's current position.

        For a channel this node is subscribed to, every publication up to the returned position has been
        passed to the handler when this returns: what the handler gets afterwards is newer."""

    async def remove_history(self, channel: str) -> None: ...


class BatchPublisher(Protocol):
    """What a broker offers when publishing several publications at once is cheaper than one by one."""

    async def publish_many(
        self, items: Sequence[tuple[str, bytes, PublishOptions]]
    ) -> list[tuple[StreamPosition, bool] | EngineError]:
        """Publish every ``(channel, data, options)`` of ``items``, each exactly as :meth:`Broker.publish` would.

        * Each publication is atomic on its own (offset, history, delivery); the call as a whole is not: one
          publication can fail while the others succeed.
        * They are applied in the order of ``items``, so publications of one channel keep that order, and they
          come after every publication this broker was asked for before the call.
        * The result has one entry per item, in the same order: ``(position, suppressed)`` as ``publish``
          returns it, or the :class:`EngineError` that failed that publication (a lost connection fails all
          of them). The call itself never raises :class:`EngineError`.
        * No limit on ``len(items)`` beyond memory; callers pass what one API request holds.
        """
        ...


class SharedBudgets(Protocol):
    """What a broker offers when rate-limit budgets can be shared by every node of a cluster (Redis engine).

    The algorithm is :mod:`neoevents.ratelimit`'s GCRA, on the store's clock. Budgets are named (``name``, one
    per kind of limit) and keyed (a tenant, a user); a key's state expires one period after its last use.
    """

    async def spend(self, name: str, costs: Mapping[str, int], interval: float, period: float) -> float:
        """Admit ``costs[key]`` requests of each key of budget ``name`` (``period / interval`` requests per
        ``period`` seconds) and return 0.0, or refuse them and return the seconds until they would be admitted.

        * A refusal counts nothing when it can be seen before counting starts; two nodes spending the same keys
          at the same moment can make a request refused after some of its keys were counted.
        * Each key is atomic on its own; the keys of one call are not one transaction.
        * When the store cannot be reached the requests are admitted (the limit is lifted, not the service).
        """
        ...


class PresenceManager(Protocol):
    async def presence(self, channel: str) -> dict[str, ClientInfo]: ...

    async def presence_stats(self, channel: str) -> tuple[int, int]:
        """(number of clients, number of unique users)."""

    async def add_presence(self, channel: str, client_id: str, info: ClientInfo) -> None: ...

    async def remove_presence(self, channel: str, client_id: str, user: str) -> None: ...

    async def close(self) -> None: ...

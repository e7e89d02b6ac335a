"""The engine contract (see neoevents.engines.base), run against every engine implementation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from neoevents.engines.base import Broker, HistoryFilter, PresenceManager, PublishOptions, StreamPosition
from neoevents.engines.memory import MemoryBroker, MemoryPresenceManager
from neoevents.protocol.messages import ClientInfo, Publication

HISTORY = PublishOptions(history_size=3, history_ttl=60)


@dataclass
class Recorder:
    pubs: list[tuple[str, int, bytes]] = field(default_factory=list)
    joins: list[tuple[str, str]] = field(default_factory=list)
    leaves: list[tuple[str, str]] = field(default_factory=list)

    def handle_publication(self, channel: str, pub: Publication, position: StreamPosition) -> None:
        self.pubs.append((channel, pub.offset, bytes(pub.data)))

    def handle_join(self, channel: str, info: ClientInfo) -> None:
        self.joins.append((channel, info.client))

    def handle_leave(self, channel: str, info: ClientInfo) -> None:
        self.leaves.append((channel, info.client))

    def handle_control(self, data: bytes) -> None:
        return None


@dataclass
class Engine:
    broker: Broker
    presence: PresenceManager
    events: Recorder


@pytest.fixture(params=["memory"])
async def engine(request: pytest.FixtureRequest) -> AsyncIterator[Engine]:
    events = Recorder()
    broker: Broker = MemoryBroker()
    presence: PresenceManager = MemoryPresenceManager()
    await broker.start(events)
    await broker.subscribe("c")
    yield Engine(broker, presence, events)
    await broker.close()
    await presence.close()


async def test_offsets_start_at_one_and_increase_within_one_epoch(engine: Engine) -> None:
    positions = [(await engine.broker.publish("c", b"%d" % i, HISTORY))[0] for i in range(5)]
    assert [p.offset for p in positions] == [1, 2, 3, 4, 5]
    assert len({p.epoch for p in positions}) == 1 and len(positions[0].epoch) == 8


async def test_delivery_follows_offset_order(engine: Engine) -> None:
    for i in range(4):
        await engine.broker.publish("c", b"%d" % i, HISTORY)
    assert engine.events.pubs == [("c", i + 1, b"%d" % i) for i in range(4)]


async def test_history_keeps_the_last_history_size_publications(engine: Engine) -> None:
    for i in range(5):
        await engine.broker.publish("c", b"%d" % i, HISTORY)
    pubs, position = await engine.broker.history("c", HistoryFilter(limit=-1))
    assert [p.offset for p in pubs] == [3, 4, 5]
    assert position.offset == 5


async def test_history_since_limit_reverse(engine: Engine) -> None:
    big = PublishOptions(history_size=100, history_ttl=60)
    for i in range(6):
        await engine.broker.publish("c", b"%d" % i, big)
    _, position = await engine.broker.history("c", HistoryFilter(limit=0))
    since = StreamPosition(2, position.epoch)
    pubs, _ = await engine.broker.history("c", HistoryFilter(since=since, limit=-1))
    assert [p.offset for p in pubs] == [3, 4, 5, 6]
    pubs, _ = await engine.broker.history("c", HistoryFilter(since=since, limit=2))
    assert [p.offset for p in pubs] == [3, 4]
    pubs, _ = await engine.broker.history("c", HistoryFilter(limit=2, reverse=True))
    assert [p.offset for p in pubs] == [6, 5]
    pubs, _ = await engine.broker.history(
        "c", HistoryFilter(since=StreamPosition(4, position.epoch), limit=-1, reverse=True)
    )
    assert [p.offset for p in pubs] == [3, 2, 1]


async def test_limit_zero_returns_only_the_position(engine: Engine) -> None:
    await engine.broker.publish("c", b"x", HISTORY)
    pubs, position = await engine.broker.history("c", HistoryFilter(limit=0))
    assert pubs == [] and position.offset == 1


async def test_idempotency_key_suppresses_the_repeat(engine: Engine) -> None:
    opts = PublishOptions(history_size=3, history_ttl=60, idempotency_key="k1")
    first, suppressed1 = await engine.broker.publish("c", b"x", opts)
    again, suppressed2 = await engine.broker.publish("c", b"x", opts)
    assert (suppressed1, suppressed2) == (False, True)
    assert first == again
    assert len(engine.events.pubs) == 1


async def test_skip_history_delivers_without_appending(engine: Engine) -> None:
    await engine.broker.publish("c", b"a", HISTORY)
    await engine.broker.publish("c", b"b", PublishOptions(history_size=3, history_ttl=60, skip_history=True))
    pubs, position = await engine.broker.history("c", HistoryFilter(limit=-1))
    assert [bytes(p.data) for p in pubs] == [b"a"] and position.offset == 1
    assert [d for _, _, d in engine.events.pubs] == [b"a", b"b"]


async def test_remove_history_keeps_the_position(engine: Engine) -> None:
    for _ in range(2):
        await engine.broker.publish("c", b"x", HISTORY)
    _, before = await engine.broker.history("c", HistoryFilter(limit=0))
    await engine.broker.remove_history("c")
    pubs, after = await engine.broker.history("c", HistoryFilter(limit=-1))
    assert pubs == [] and after == before


async def test_no_history_means_no_offsets(engine: Engine) -> None:
    position, _ = await engine.broker.publish("c", b"x", PublishOptions())
    assert position == StreamPosition()
    assert engine.events.pubs == [("c", 0, b"x")]


async def test_join_and_leave_are_delivered(engine: Engine) -> None:
    info = ClientInfo(user="u", client="c1")
    await engine.broker.publish_join("c", info)
    await engine.broker.publish_leave("c", info)
    assert engine.events.joins == [("c", "c1")] and engine.events.leaves == [("c", "c1")]


async def test_presence_add_remove_and_stats(engine: Engine) -> None:
    p = engine.presence
    await p.add_presence("c", "c1", ClientInfo(user="u1", client="c1"))
    await p.add_presence("c", "c2", ClientInfo(user="u1", client="c2"))
    await p.add_presence("c", "c3", ClientInfo(user="u2", client="c3"))
    assert await p.presence_stats("c") == (3, 2)
    await p.remove_presence("c", "c2", "u1")
    assert sorted(await p.presence("c")) == ["c1", "c3"]
    assert await p.presence_stats("other") == (0, 0)

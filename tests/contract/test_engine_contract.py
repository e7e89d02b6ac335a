"""The engine contract (see neoevents.engines.base), run against every engine implementation.

Each test runs against the in-memory engine and against the Redis engine on a real redis-server of its
own. Deliveries through Redis are asynchronous, so tests call ``engine.settle()`` before looking at what
was delivered: it returns once everything published so far has come back over PUB/SUB.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from msgspec import Raw

from neoevents.engines.base import (
    BatchPublisher,
    Broker,
    EngineError,
    HistoryFilter,
    PresenceManager,
    PublishOptions,
    StreamPosition,
)
from neoevents.engines.memory import MemoryBroker, MemoryPresenceManager
from neoevents.engines.redis_address import parse_address
from neoevents.engines.redis_broker import RedisBroker
from neoevents.engines.redis_presence import RedisPresenceManager
from neoevents.protocol.messages import ClientInfo, Publication

HISTORY = PublishOptions(history_size=3, history_ttl=60)


@dataclass
class Recorder:
    pubs: list[tuple[str, int, bytes]] = field(default_factory=list)
    full: list[Publication] = field(default_factory=list)
    joins: list[tuple[str, str]] = field(default_factory=list)
    leaves: list[tuple[str, str]] = field(default_factory=list)
    infos: list[ClientInfo] = field(default_factory=list)
    insufficient: list[str] = field(default_factory=list)

    def handle_publication(self, channel: str, pub: Publication, position: StreamPosition) -> None:
        self.pubs.append((channel, pub.offset, bytes(pub.data)))
        self.full.append(pub)

    def handle_join(self, channel: str, info: ClientInfo) -> None:
        self.joins.append((channel, info.client))
        self.infos.append(info)

    def handle_leave(self, channel: str, info: ClientInfo) -> None:
        self.leaves.append((channel, info.client))

    def handle_control(self, data: bytes) -> None:
        return None

    def handle_insufficient_state(self, channel: str) -> None:
        self.insufficient.append(channel)


@dataclass
class Engine:
    broker: Broker
    presence: PresenceManager
    events: Recorder

    async def settle(self) -> None:
        """Wait until what was published so far has been delivered (a PING behind it on PUB/SUB)."""
        if isinstance(self.broker, RedisBroker):
            for shard in self.broker.shards:
                assert shard.pubsub is not None
                await shard.pubsub.execute("PING")


@pytest.fixture(params=["memory", "redis"])
async def engine(request: pytest.FixtureRequest) -> AsyncIterator[Engine]:
    events = Recorder()
    broker: Broker
    presence: PresenceManager
    if request.param == "memory":
        broker, presence = MemoryBroker(), MemoryPresenceManager()
    else:
        server = request.getfixturevalue("redis_server")
        redis = RedisBroker([parse_address(server.address)], prefix=f"t{uuid.uuid4().hex[:8]}")
        broker, presence = redis, RedisPresenceManager(redis.shards, redis.prefix)
    await broker.start(events)
    await broker.subscribe("c")
    yield Engine(broker, presence, events)
    await presence.close()
    await broker.close()


async def test_offsets_start_at_one_and_increase_within_one_epoch(engine: Engine) -> None:
    positions = [(await engine.broker.publish("c", b"%d" % i, HISTORY))[0] for i in range(5)]
    assert [p.offset for p in positions] == [1, 2, 3, 4, 5]
    assert len({p.epoch for p in positions}) == 1 and len(positions[0].epoch) == 8


async def test_delivery_follows_offset_order(engine: Engine) -> None:
    for i in range(4):
        await engine.broker.publish("c", b"%d" % i, HISTORY)
    await engine.settle()
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
    await engine.settle()
    assert len(engine.events.pubs) == 1


async def test_skip_history_delivers_without_appending(engine: Engine) -> None:
    await engine.broker.publish("c", b"a", HISTORY)
    await engine.broker.publish("c", b"b", PublishOptions(history_size=3, history_ttl=60, skip_history=True))
    pubs, position = await engine.broker.history("c", HistoryFilter(limit=-1))
    assert [bytes(p.data) for p in pubs] == [b"a"] and position.offset == 1
    await engine.settle()
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
    await engine.settle()
    assert engine.events.pubs == [("c", 0, b"x")]


async def test_join_and_leave_are_delivered(engine: Engine) -> None:
    info = ClientInfo(user="u", client="c1")
    await engine.broker.publish_join("c", info)
    await engine.broker.publish_leave("c", info)
    await engine.settle()
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


async def test_publications_keep_info_tags_and_binary_data(engine: Engine) -> None:
    info = ClientInfo(user="u", client="c1", conn_info=Raw(b'{"a":1}'), chan_info=Raw(b'{"b":[2]}'))
    data = bytes(range(256)) * 3
    options = PublishOptions(history_size=3, history_ttl=60, tags={"k": "v", "ключ": "значение"}, info=info)
    await engine.broker.publish("c", data, options)
    await engine.settle()
    (delivered,) = engine.events.full
    pubs, _ = await engine.broker.history("c", HistoryFilter(limit=-1))
    for pub in (delivered, pubs[0]):
        assert bytes(pub.data) == data
        assert pub.tags == {"k": "v", "ключ": "значение"}
        assert pub.info is not None
        assert (pub.info.user, pub.info.client) == ("u", "c1")
        assert (bytes(pub.info.conn_info), bytes(pub.info.chan_info)) == (b'{"a":1}', b'{"b":[2]}')


async def test_the_first_publication_of_a_stream_carries_its_epoch(engine: Engine) -> None:
    first, _ = await engine.broker.publish("c", b"1", HISTORY)
    await engine.broker.publish("c", b"2", HISTORY)
    await engine.settle()
    assert [p.epoch for p in engine.events.full] == [first.epoch, ""]


async def test_an_unknown_stream_gets_a_position_that_stays(engine: Engine) -> None:
    _, position = await engine.broker.history("new", HistoryFilter(limit=0))
    _, again = await engine.broker.history("new", HistoryFilter(limit=-1))
    assert position.offset == 0 and len(position.epoch) == 8 and again == position
    published, _ = await engine.broker.publish("new", b"x", HISTORY)
    assert published == StreamPosition(1, position.epoch)


async def test_history_edges(engine: Engine) -> None:
    for i in range(3):
        await engine.broker.publish("c", b"%d" % i, HISTORY)
    _, position = await engine.broker.history("c", HistoryFilter(limit=0))
    reverse_from_first = HistoryFilter(since=StreamPosition(1, position.epoch), limit=-1, reverse=True)
    assert (await engine.broker.history("c", reverse_from_first))[0] == []
    beyond = HistoryFilter(since=StreamPosition(10, position.epoch), limit=-1)
    assert (await engine.broker.history("c", beyond))[0] == []
    pubs, _ = await engine.broker.history("c", HistoryFilter(limit=-1, reverse=True))
    assert [p.offset for p in pubs] == [3, 2, 1]


async def test_offsets_are_per_channel(engine: Engine) -> None:
    a, _ = await engine.broker.publish("a", b"x", HISTORY)
    b, _ = await engine.broker.publish("b", b"x", HISTORY)
    a2, _ = await engine.broker.publish("a", b"x", HISTORY)
    assert (a.offset, b.offset, a2.offset) == (1, 1, 2)


async def test_publishing_continues_after_remove_history(engine: Engine) -> None:
    await engine.broker.publish("c", b"x", HISTORY)
    await engine.broker.remove_history("c")
    position, _ = await engine.broker.publish("c", b"y", HISTORY)
    pubs, _ = await engine.broker.history("c", HistoryFilter(limit=-1))
    assert position.offset == 2 and [p.offset for p in pubs] == [2]


async def test_idempotency_without_history_and_per_channel(engine: Engine) -> None:
    opts = PublishOptions(idempotency_key="k")
    assert await engine.broker.publish("c", b"x", opts) == (StreamPosition(), False)
    assert await engine.broker.publish("c", b"x", opts) == (StreamPosition(), True)
    assert await engine.broker.publish("other", b"x", opts) == (StreamPosition(), False)
    await engine.settle()
    assert [c for c, _, _ in engine.events.pubs if c == "c"] == ["c"]


async def test_subscribing_twice_is_harmless(engine: Engine) -> None:
    await engine.broker.subscribe("c")
    await engine.broker.publish("c", b"x", HISTORY)
    await engine.settle()
    assert engine.events.pubs == [("c", 1, b"x")]


async def test_presence_keeps_the_client_info(engine: Engine) -> None:
    p = engine.presence
    info = ClientInfo(user="u1", client="c1", conn_info=Raw(b'{"name":"A"}'), chan_info=Raw(b"[1]"))
    await p.add_presence("c", "c1", info)
    await p.add_presence("c", "c1", info)  # a refresh, not a second entry
    assert await p.presence("c") == {"c1": info}
    assert await p.presence_stats("c") == (1, 1)
    await p.remove_presence("c", "unknown", "u9")
    await p.remove_presence("c", "c1", "u1")
    assert await p.presence("c") == {}


async def test_concurrent_publications_get_distinct_offsets(engine: Engine) -> None:
    big = PublishOptions(history_size=100, history_ttl=60)
    results = await asyncio.gather(*(engine.broker.publish("c", b"%d" % i, big) for i in range(50)))
    assert sorted(p.offset for p, _ in results) == list(range(1, 51))
    await engine.settle()
    assert [offset for _, offset, _ in engine.events.pubs] == list(range(1, 51))
    assert engine.events.insufficient == []


class _OneByOne:
    """What the node does for an engine without ``publish_many``: one publication after another."""

    def __init__(self, broker: Any) -> None:
        self.broker = broker

    async def publish_many(
        self, items: list[tuple[str, bytes, PublishOptions]]
    ) -> list[tuple[StreamPosition, bool] | EngineError]:
        results: list[tuple[StreamPosition, bool] | EngineError] = []
        for channel, data, options in items:
            try:
                results.append(await self.broker.publish(channel, data, options))
            except EngineError as exc:
                results.append(exc)
        return results


async def test_publish_many_is_each_publication_in_order(engine: Engine) -> None:
    """A batching engine's ``publish_many`` gives what publishing one by one gives (the node's fallback)."""
    broker = cast(BatchPublisher, engine.broker) if hasattr(engine.broker, "publish_many") else _OneByOne(engine.broker)
    await engine.broker.subscribe("d")
    key = PublishOptions(history_size=3, history_ttl=60, idempotency_key="k")
    items = [
        ("c", b"1", HISTORY),
        ("d", b"2", PublishOptions()),
        ("c", b"3", key),
        ("c", b"4", key),  # the same key again: suppressed, the first position
        ("c", b"5", PublishOptions(history_size=3, history_ttl=60, skip_history=True)),  # the position as it is
        ("d", b"6", PublishOptions()),
        ("c", b"7", HISTORY),
    ]
    results = await broker.publish_many(items)
    assert [(r[0].offset, r[1]) for r in results if isinstance(r, tuple)] == [
        (1, False),
        (0, False),
        (2, False),
        (2, True),
        (2, False),
        (0, False),
        (3, False),
    ]
    assert len({r[0].epoch for r in results if isinstance(r, tuple) and r[0].offset}) == 1
    assert await broker.publish_many([]) == []
    await engine.settle()
    assert [p for p in engine.events.pubs if p[0] == "c"] == [
        ("c", 1, b"1"),
        ("c", 2, b"3"),
        ("c", 0, b"5"),
        ("c", 3, b"7"),
    ]
    assert [p for p in engine.events.pubs if p[0] == "d"] == [("d", 0, b"2"), ("d", 0, b"6")]
    pubs, _ = await engine.broker.history("c", HistoryFilter(limit=-1))
    assert [(p.offset, bytes(p.data)) for p in pubs] == [(1, b"1"), (2, b"3"), (3, b"7")]


async def test_plain_publications_to_many_channels_and_of_any_size_arrive_intact(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More channels than the Redis engine keeps encoded command heads for, and data whose length needs one,
    two or three bytes in the encoded publication: every publication arrives whole, in its channel."""
    monkeypatch.setattr("neoevents.engines.redis_broker.CACHE_SIZE", 2)
    channels = [f"m{i}" for i in range(5)]
    for channel in channels:
        await engine.broker.subscribe(channel)
    sizes = [1, 127, 128, 16383, 16384, 70000]
    items = [
        (channel, bytes([65 + k]) * size, PublishOptions()) for k, size in enumerate(sizes) for channel in channels
    ]
    if hasattr(engine.broker, "publish_many"):
        await cast(BatchPublisher, engine.broker).publish_many(items)
    for channel, data, options in items:
        await engine.broker.publish(channel, data, options)
    await engine.settle()
    got = [(channel, data) for channel, _, data in engine.events.pubs if channel in channels]
    expected = [(channel, data) for channel, data, _ in items]
    assert got == (expected * 2 if hasattr(engine.broker, "publish_many") else expected)

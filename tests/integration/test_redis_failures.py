"""The Redis engine against a real redis-server that dies, pauses, restarts, forgets its scripts or its
data, asks for a password, or is one of several shards; and the bytes it exchanges with Redis."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from neoevents.engines.base import EngineError, HistoryFilter, PublishOptions, StreamPosition
from neoevents.engines.redis_address import parse_address, shard_index
from neoevents.engines.redis_broker import RedisBroker
from neoevents.engines.redis_codec import encode_info, encode_publication
from neoevents.engines.redis_presence import RedisPresenceManager
from neoevents.protocol.messages import ClientInfo, Publication
from tests.support.redisserver import RedisServer

HISTORY = PublishOptions(history_size=10, history_ttl=60)


@dataclass
class Events:
    pubs: list[tuple[str, Publication, StreamPosition]] = field(default_factory=list)
    joins: list[tuple[str, ClientInfo]] = field(default_factory=list)
    control: list[bytes] = field(default_factory=list)
    insufficient: list[str] = field(default_factory=list)

    def handle_publication(self, channel: str, pub: Publication, position: StreamPosition) -> None:
        self.pubs.append((channel, pub, position))

    def handle_join(self, channel: str, info: ClientInfo) -> None:
        self.joins.append((channel, info))

    def handle_leave(self, channel: str, info: ClientInfo) -> None:
        return None

    def handle_control(self, data: bytes) -> None:
        self.control.append(data)

    def handle_insufficient_state(self, channel: str) -> None:
        self.insufficient.append(channel)


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


def connected(broker: RedisBroker) -> bool:
    return all(
        conn is not None and not conn.closed for shard in broker.shards for conn in (shard.commands, shard.pubsub)
    )


@pytest.fixture
async def engine(redis_server: RedisServer) -> AsyncIterator[tuple[RedisBroker, RedisPresenceManager, Events]]:
    events = Events()
    broker = RedisBroker([parse_address(redis_server.address)], f"f{uuid.uuid4().hex[:8]}", timeout=1.0)
    presence = RedisPresenceManager(broker.shards, broker.prefix, ttl=3)
    await broker.start(events)
    yield broker, presence, events
    await presence.close()
    await broker.close()


async def test_without_redis_everything_fails_at_once_then_recovers(
    engine: tuple[RedisBroker, RedisPresenceManager, Events], redis_server: RedisServer
) -> None:
    broker, presence, events = engine
    await broker.subscribe("c")
    redis_server.kill()
    await until(lambda: not connected(broker))
    started = time.monotonic()
    for failing in (
        broker.publish("c", b"{}", HISTORY),
        broker.publish("c", b"{}", PublishOptions()),
        broker.history("c", HistoryFilter(limit=-1)),
        broker.remove_history("c"),
        broker.subscribe("d"),
        presence.add_presence("c", "c1", ClientInfo(user="u", client="c1")),
        presence.presence("c"),
        presence.presence_stats("c"),
    ):
        with pytest.raises(EngineError):
            await failing
    results = await broker.publish_many([("c", b"{}", HISTORY), ("d", b"{}", PublishOptions())])
    assert [type(r) for r in results] == [EngineError, EngineError]
    assert time.monotonic() - started < 0.5
    # Best effort: nothing to report to anyone.
    await broker.publish_join("c", ClientInfo(user="u", client="c1"))
    await broker.unsubscribe("d")
    await presence.remove_presence("c", "c1", "u")

    redis_server.start()
    await until(lambda: connected(broker) and events.insufficient == ["c"])
    position, _ = await broker.publish("c", b"{}", HISTORY)
    assert position.offset == 1
    await until(lambda: len(events.pubs) == 1)


async def test_a_redis_that_stops_answering_is_given_up(
    engine: tuple[RedisBroker, RedisPresenceManager, Events], redis_server: RedisServer
) -> None:
    broker, _, _ = engine
    assert (await broker.publish("c", b"{}", HISTORY))[0].offset == 1  # the publish script is loaded
    redis_server.pause()
    try:
        started = time.monotonic()
        with pytest.raises(EngineError):
            await broker.publish("c", b"{}", HISTORY)
        assert time.monotonic() - started < 4  # timeout 1 s, checked every second
    finally:
        redis_server.resume()
    await until(lambda: connected(broker))
    # The caller was told the publication failed, but a command already written may still run once Redis
    # answers again: its outcome is unknown, as with any timed-out network call. The stream stays consistent.
    offset = (await broker.publish("c", b"{}", HISTORY))[0].offset
    assert offset in (2, 3)


async def test_subscriptions_of_one_loop_iteration_share_one_command(
    engine: tuple[RedisBroker, RedisPresenceManager, Events], redis_server: RedisServer
) -> None:
    broker, _, events = engine
    before = _subscribe_calls(redis_server)
    await asyncio.gather(*(broker.subscribe(f"ch{i}") for i in range(300)))
    assert _subscribe_calls(redis_server) - before == 1
    await broker.publish("ch299", b"{}", PublishOptions())
    await until(lambda: [c for c, _, _ in events.pubs] == ["ch299"])
    await asyncio.gather(*(broker.unsubscribe(f"ch{i}") for i in range(300)))
    channels = redis_server.command("PUBSUB", "CHANNELS", f"{broker.prefix}.client.*")
    assert channels == b"*0\r\n"


def _subscribe_calls(redis: RedisServer) -> int:
    stats = redis.command("INFO", "commandstats").decode()
    for line in stats.splitlines():
        if line.startswith("cmdstat_subscribe:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


async def test_scripts_are_loaded_again_when_redis_forgot_them(
    engine: tuple[RedisBroker, RedisPresenceManager, Events], redis_server: RedisServer
) -> None:
    broker, _, _ = engine
    await broker.publish("c", b"{}", HISTORY)
    redis_server.command("SCRIPT", "FLUSH")
    assert (await broker.publish("c", b"{}", HISTORY))[0].offset == 2
    redis_server.command("SCRIPT", "FLUSH")
    results = await broker.publish_many([("c", b"{}", HISTORY), ("c", b"{}", HISTORY), ("d", b"{}", PublishOptions())])
    assert [r[0].offset for r in results if isinstance(r, tuple)] == [3, 4, 0]
    redis_server.command("SCRIPT", "FLUSH")
    assert [p.offset for p in (await broker.history("c", HistoryFilter(limit=-1)))[0]] == [1, 2, 3, 4]


async def test_a_gap_or_a_new_epoch_on_pubsub_is_reported(
    engine: tuple[RedisBroker, RedisPresenceManager, Events], redis_server: RedisServer
) -> None:
    broker, _, events = engine
    await broker.subscribe("c")
    await broker.publish("c", b"1", HISTORY)
    redis_server.command("HINCRBY", f"{broker.prefix}.stream.meta.c", "s", "3")  # three publications lost
    await broker.publish("c", b"5", HISTORY)
    await until(lambda: len(events.pubs) == 2)
    assert events.insufficient == ["c"]
    assert [p.offset for _, p, _ in events.pubs] == [1, 5]  # still delivered (to the unpositioned)
    redis_server.command("DEL", f"{broker.prefix}.stream.meta.c")  # a new epoch
    await broker.publish("c", b"1", HISTORY)
    await until(lambda: len(events.pubs) == 3)
    assert events.insufficient == ["c", "c"]


async def test_a_pubsub_reconnect_reports_only_channels_that_missed_publications(
    engine: tuple[RedisBroker, RedisPresenceManager, Events],
) -> None:
    broker, _, events = engine
    for channel in ("quiet", "missed"):
        await broker.subscribe(channel)
        await broker.publish(channel, b"{}", HISTORY)
    await until(lambda: len(events.pubs) == 2)
    shard = broker.shards[0]
    lost = shard.pubsub
    # Drop the PUB/SUB connection and publish to "missed" in the same write, before the node can subscribe again.
    await asyncio.gather(shard.call("CLIENT", "KILL", "TYPE", "pubsub"), broker.publish("missed", b"{}", HISTORY))
    await until(lambda: connected(broker) and shard.pubsub is not lost)
    await until(lambda: events.insufficient == ["missed"])
    await asyncio.sleep(0.2)
    assert events.insufficient == ["missed"]  # "quiet" missed nothing: its subscribers keep their subscriptions
    assert len(events.pubs) == 2
    await broker.publish("quiet", b"{}", HISTORY)
    await broker.publish("missed", b"{}", HISTORY)
    await until(lambda: len(events.pubs) == 4)
    assert [pub.offset for _, pub, _ in events.pubs] == [1, 1, 2, 3]
    assert events.insufficient == ["missed"]


async def test_a_pubsub_reconnect_reports_a_channel_whose_stream_cannot_be_read(
    engine: tuple[RedisBroker, RedisPresenceManager, Events], redis_server: RedisServer
) -> None:
    broker, _, events = engine
    await broker.subscribe("c")
    await broker.publish("c", b"{}", HISTORY)
    await until(lambda: len(events.pubs) == 1)
    redis_server.kill()
    await until(lambda: not connected(broker))
    redis_server.start()  # an empty Redis: the stream is gone, a new epoch starts
    await until(lambda: events.insufficient == ["c"])


async def test_presence_is_refreshed_by_its_node_and_expires_without_it(
    engine: tuple[RedisBroker, RedisPresenceManager, Events], redis_server: RedisServer
) -> None:
    broker, presence, _ = engine
    other = RedisPresenceManager(broker.shards, broker.prefix, ttl=1)  # a node that is about to die
    await presence.add_presence("c", "alive", ClientInfo(user="a", client="alive"))
    await other.add_presence("c", "dying", ClientInfo(user="b", client="dying"))
    await other.close()  # stops refreshing, removes nothing
    assert sorted(await presence.presence("c")) == ["alive", "dying"]
    await asyncio.sleep(2.2)
    assert sorted(await presence.presence("c")) == ["alive"]  # refreshed every second (ttl 3)
    redis_server.restart()  # empty
    await until(lambda: connected(broker))

    async def back() -> bool:
        try:
            return sorted(await presence.presence("c")) == ["alive"]
        except EngineError:
            return False

    async with asyncio.timeout(5):
        while not await back():
            await asyncio.sleep(0.05)


async def test_the_bytes_are_those_of_centrifugo(
    engine: tuple[RedisBroker, RedisPresenceManager, Events], redis_server: RedisServer
) -> None:
    """What a Centrifugo node writes is understood here, and the other way round."""
    broker, presence, events = engine
    prefix = broker.prefix
    await broker.subscribe("c")
    info = ClientInfo(user="u", client="c1")
    payload = encode_publication(b'{"n":1}', info, {"k": "v"})
    redis_server.command("PUBLISH", f"{prefix}.client.c", "__p1:1:AbCdEfGh__" + payload.decode("latin-1"))
    await until(lambda: len(events.pubs) == 1)
    channel, pub, position = events.pubs[0]
    assert (channel, bytes(pub.data), pub.info, pub.tags) == ("c", b'{"n":1}', info, {"k": "v"})
    assert (pub.offset, pub.epoch, position) == (1, "AbCdEfGh", StreamPosition(1, "AbCdEfGh"))
    redis_server.command("PUBLISH", f"{prefix}.client.c", "__j__" + encode_info(info).decode("latin-1"))
    await until(lambda: events.joins == [("c", info)])
    await broker.publish_control(b"\x01\x02")
    await until(lambda: events.control == [b"\x01\x02"])

    await broker.publish("s", b'{"n":2}', HISTORY)
    assert redis_server.command("HGET", f"{prefix}.stream.meta.s", "s") == b"$1\r\n1\r\n"
    entry = redis_server.command("XRANGE", f"{prefix}.stream.s", "-", "+")
    assert b"$3\r\n1-0\r\n" in entry and b"$1\r\nd\r\n" in entry and encode_publication(b'{"n":2}', None, {}) in entry
    await presence.add_presence("s", "c1", info)
    assert redis_server.command("HGET", f"{prefix}.presence.data.s", "c1").endswith(encode_info(info) + b"\r\n")
    assert redis_server.command("ZSCORE", f"{prefix}.presence.expire.s", "c1").startswith(b"$10\r\n")


async def test_password_and_database(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "secured", password="s3cret").start()
    try:
        events = Events()
        broker = RedisBroker([parse_address(redis.address, password="s3cret", db=3)], "p", timeout=1.0)
        await broker.start(events)
        await broker.publish("c", b"{}", HISTORY)
        assert redis.command("EXISTS", "p.stream.c", db=3) == b":1\r\n"
        assert redis.command("EXISTS", "p.stream.c") == b":0\r\n"
        await broker.close()

        wrong = RedisBroker([parse_address(redis.address, password="wrong")], "p", timeout=1.0, start_wait=0.5)
        await wrong.start(events)
        with pytest.raises(EngineError):
            await wrong.publish("c", b"{}", HISTORY)
        await wrong.close()
    finally:
        redis.kill()


async def test_channels_are_sharded_over_several_servers(tmp_path: Path) -> None:
    servers = [RedisServer(tmp_path / f"shard{i}").start() for i in range(2)]
    try:
        events = Events()
        broker = RedisBroker([parse_address(s.address) for s in servers], "sh", timeout=1.0)
        presence = RedisPresenceManager(broker.shards, "sh")
        await broker.start(events)
        channels = [f"chat:{i}" for i in range(20)]
        assert {shard_index(ch, 2) for ch in channels} == {0, 1}
        for ch in channels:
            await broker.subscribe(ch)
            await broker.publish(ch, b"{}", HISTORY)
            await presence.add_presence(ch, "c1", ClientInfo(user="u", client="c1"))
        for ch in channels:
            home = shard_index(ch, 2)
            for index, server in enumerate(servers):
                assert server.command("EXISTS", f"sh.stream.{ch}") == (b":1\r\n" if index == home else b":0\r\n")
            assert (await broker.history(ch, HistoryFilter(limit=0)))[1].offset == 1
            assert await presence.presence_stats(ch) == (1, 1)
        await until(lambda: sorted(c for c, _, _ in events.pubs) == sorted(channels))
        results = await broker.publish_many([(ch, ch.encode(), HISTORY) for ch in channels])
        assert [r[0].offset for r in results if isinstance(r, tuple)] == [2] * len(channels)
        await until(lambda: len(events.pubs) == 2 * len(channels))
        assert sorted((c, bytes(p.data), p.offset) for c, p, _ in events.pubs[len(channels) :]) == sorted(
            (ch, ch.encode(), 2) for ch in channels
        )
        await presence.close()
        await broker.close()
    finally:
        for server in servers:
            server.kill()

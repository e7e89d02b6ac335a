"""The Redis engine alone: publications per second and CPU per publication, publish and receive included.

``python -m bench.redis_engine [--publications N] [--concurrency C]`` starts its own redis-server (Debian's
``redis-server``), publishes through :class:`~neoevents.engines.redis_broker.RedisBroker` from ``C``
concurrent tasks into 100 subscribed channels and waits until every publication came back over PUB/SUB.
CPU is this process's (user + system), so it is what a node spends in the engine per publication, without
fan-out; redis-server runs on the same machine and competes for CPU with it.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
import time
from pathlib import Path

import uvloop

from neoevents.engines.base import PublishOptions, StreamPosition
from neoevents.engines.redis_address import parse_address
from neoevents.engines.redis_broker import RedisBroker
from neoevents.protocol.messages import ClientInfo, Publication
from tests.support.redisserver import RedisServer

CHANNELS = 100
PAYLOAD = b'{"x":"' + b"y" * 90 + b'"}'


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class _Counter:
    def __init__(self) -> None:
        self.received = 0

    def handle_publication(self, channel: str, pub: Publication, position: StreamPosition) -> None:
        self.received += 1

    def handle_join(self, channel: str, info: ClientInfo) -> None: ...

    def handle_leave(self, channel: str, info: ClientInfo) -> None: ...

    def handle_control(self, data: bytes) -> None: ...

    def handle_insufficient_state(self, channel: str) -> None:
        raise AssertionError(f"publications lost in {channel}")


async def _measure(broker: RedisBroker, counter: _Counter, options: PublishOptions, total: int, tasks: int) -> str:
    counter.received = 0
    per_task = total // tasks

    async def publisher(index: int) -> None:
        channel = f"bench{index % CHANNELS}"
        for _ in range(per_task):
            await broker.publish(channel, PAYLOAD, options)

    started, cpu = time.perf_counter(), _cpu()
    await asyncio.gather(*(publisher(i) for i in range(tasks)))
    while counter.received < per_task * tasks:
        await asyncio.sleep(0.001)
    elapsed, spent = time.perf_counter() - started, _cpu() - cpu
    count = per_task * tasks
    return f"{count / elapsed:,.0f} publications/s, {spent / count * 1e6:.2f} µs CPU each"


async def run(total: int, tasks: int) -> None:
    with tempfile.TemporaryDirectory() as workdir:
        redis = RedisServer(Path(workdir)).start()
        try:
            counter = _Counter()
            broker = RedisBroker([parse_address(redis.address)], "bench")
            await broker.start(counter)
            await asyncio.gather(*(broker.subscribe(f"bench{i}") for i in range(CHANNELS)))
            for label, options in (
                ("without history (PUBLISH)", PublishOptions()),
                ("with history (publish script)", PublishOptions(history_size=10, history_ttl=300)),
            ):
                print(f"{label}: {await _measure(broker, counter, options, total, tasks)}")
            await broker.close()
        finally:
            redis.kill()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.redis_engine", description=__doc__)
    parser.add_argument("--publications", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=100)
    args = parser.parse_args()
    uvloop.run(run(args.publications, args.concurrency))


if __name__ == "__main__":
    main()

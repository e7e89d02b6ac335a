"""In-process nodes sharing one real Redis (tests of the Redis engine without server processes)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from neoevents.config import Config
from neoevents.engines.redis_engine import create_redis_engine
from neoevents.node import Node


@contextlib.asynccontextmanager
async def redis_nodes(config: Config, count: int = 2) -> AsyncIterator[list[Node]]:
    """``count`` started nodes, each with its own Redis engine from ``config``; shut down on exit."""
    nodes: list[Node] = []
    try:
        for _ in range(count):
            node = Node(config, *create_redis_engine(config))
            await node.start()
            nodes.append(node)
        yield nodes
    finally:
        for node in nodes:
            await node.shutdown()

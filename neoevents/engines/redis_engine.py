"""The Redis engine for several nodes sharing one Redis (or several, sharded by channel).

Modules, one concept each:

* ``redis_connection`` — one auto-pipelined connection on ``asyncio.Protocol`` + ``hiredis`` (and why
  not redis-py);
* ``redis_shard`` — one Redis server: command and PUB/SUB connections kept alive, failure behaviour;
* ``redis_subscriptions`` — the PUB/SUB channels wanted from a server, subscribed in batches;
* ``redis_receiver`` — messages arriving over PUB/SUB, and the check that none was lost;
* ``redis_scripts`` — the Lua scripts (atomic publish, history, presence);
* ``redis_codec`` — the bytes stored and published, the same as Centrifugo's;
* ``redis_address`` — addresses, credentials and the channel -> shard hash;
* ``redis_broker`` / ``redis_presence`` — the :class:`~neoevents.engines.base.Broker` and
  :class:`~neoevents.engines.base.PresenceManager` implementations.
"""

from __future__ import annotations

from neoevents.config import Config
from neoevents.engines.redis_address import parse_address
from neoevents.engines.redis_broker import RedisBroker
from neoevents.engines.redis_presence import DEFAULT_PRESENCE_TTL, RedisPresenceManager

DEFAULT_ADDRESS = "127.0.0.1:6379"


def create_redis_engine(config: Config) -> tuple[RedisBroker, RedisPresenceManager]:
    """Broker and presence manager on the configured Redis server(s); they share the connections."""
    addresses = [
        parse_address(address, config.redis_password, config.redis_db)
        for address in config.redis_address or (DEFAULT_ADDRESS,)
    ]
    broker = RedisBroker(addresses, config.redis_prefix)
    ttl = config.redis_presence_ttl or DEFAULT_PRESENCE_TTL
    presence = RedisPresenceManager(broker.shards, config.redis_prefix, ttl)
    return broker, presence

"""The Lua scripts of the Redis engine. Each runs atomically inside Redis.

Keys and values are those of Centrifugo's Redis engine (``<prefix>.stream.<ch>`` with entries ``<offset>-0``
holding a field ``d``, ``<prefix>.stream.meta.<ch>`` with fields ``e`` epoch and ``s`` top offset,
``<prefix>.result.<ch>.<key>`` with ``e``/``s``, presence in ``<prefix>.presence.data.<ch>`` and
``<prefix>.presence.expire.<ch>``), so both servers can read each other's data.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Final


@dataclass(frozen=True, slots=True)
class Script:
    name: str
    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())


# One step per publication: idempotency, epoch, offset, history append, expiry and PUB/SUB.
# KEYS: 1 stream, 2 stream meta, 3 idempotency result (only read when ARGV[6] is not "")
# ARGV: 1 mode ("1" append to history, "0" history kept but skipped: position only, "-" no history)
#       2 history size, 3 history ttl s, 4 meta ttl s ("0": none), 5 PUB/SUB channel,
#       6 idempotent result ttl s or "", 7 epoch for a stream that has none, 8 publication
# Returns {offset, epoch, suppressed (0/1)}.
PUBLISH: Final = Script(
    "publish",
    """
local result_ttl = ARGV[6]
if result_ttl ~= "" then
  local cached = redis.call("hmget", KEYS[3], "e", "s")
  if cached[1] then
    return {tonumber(cached[2]) or 0, cached[1], 1}
  end
end
local mode = ARGV[1]
local offset, epoch = 0, ""
if mode ~= "-" then
  epoch = redis.call("hget", KEYS[2], "e")
  if not epoch then
    epoch = ARGV[7]
    redis.call("hset", KEYS[2], "e", epoch)
  end
  if mode == "1" then
    offset = redis.call("hincrby", KEYS[2], "s", 1)
  else
    offset = tonumber(redis.call("hget", KEYS[2], "s")) or 0
  end
  if ARGV[4] ~= "0" then
    redis.call("expire", KEYS[2], ARGV[4])
  end
end
if mode == "1" then
  if offset == 1 then
    redis.call("del", KEYS[1])
  end
  redis.call("xadd", KEYS[1], "MAXLEN", ARGV[2], offset, "d", ARGV[8])
  redis.call("expire", KEYS[1], ARGV[3])
  redis.call("publish", ARGV[5], "__p1:" .. offset .. ":" .. epoch .. "__" .. ARGV[8])
else
  redis.call("publish", ARGV[5], ARGV[8])
end
if result_ttl ~= "" then
  redis.call("hset", KEYS[3], "e", epoch, "s", offset)
  redis.call("expire", KEYS[3], result_ttl)
end
return {offset, epoch, 0}
""",
)

# The stream's position, and publications when asked (creates the epoch of a stream that has none).
# KEYS: 1 stream, 2 stream meta
# ARGV: 1 include publications "0"/"1", 2 first entry id ("-" / "+" for the ends), 3 limit ("0": all),
#       4 reverse "0"/"1", 5 meta ttl s ("0": none), 6 epoch for a stream that has none
# Returns {top offset, epoch, entries or nothing}.
HISTORY: Final = Script(
    "history",
    """
local meta = redis.call("hmget", KEYS[2], "e", "s")
local epoch, top = meta[1], tonumber(meta[2]) or 0
if not epoch then
  epoch = ARGV[6]
  redis.call("hset", KEYS[2], "e", epoch)
end
if ARGV[5] ~= "0" then
  redis.call("expire", KEYS[2], ARGV[5])
end
if ARGV[1] == "0" then
  return {top, epoch}
end
local pubs
if ARGV[4] == "0" then
  if ARGV[3] ~= "0" then
    pubs = redis.call("xrange", KEYS[1], ARGV[2], "+", "COUNT", ARGV[3])
  else
    pubs = redis.call("xrange", KEYS[1], ARGV[2], "+")
  end
else
  if ARGV[3] ~= "0" then
    pubs = redis.call("xrevrange", KEYS[1], ARGV[2], "-", "COUNT", ARGV[3])
  else
    pubs = redis.call("xrevrange", KEYS[1], ARGV[2], "-")
  end
end
return {top, epoch, pubs}
""",
)

# Add or refresh presence entries.
# KEYS: 1 expiry zset, 2 data hash; ARGV: 1 key ttl s, 2 expire-at unix s, then client id / info pairs.
PRESENCE_ADD: Final = Script(
    "presence_add",
    """
for i = 3, #ARGV, 2 do
  redis.call("hset", KEYS[2], ARGV[i], ARGV[i + 1])
  redis.call("zadd", KEYS[1], ARGV[2], ARGV[i])
end
redis.call("expire", KEYS[1], ARGV[1])
redis.call("expire", KEYS[2], ARGV[1])
""",
)

# KEYS: 1 expiry zset, 2 data hash; ARGV: 1 client id.
PRESENCE_REMOVE: Final = Script(
    "presence_remove",
    """
redis.call("hdel", KEYS[2], ARGV[1])
redis.call("zrem", KEYS[1], ARGV[1])
""",
)

# Drop expired entries, return the rest as a flat client id / info list.
# KEYS: 1 expiry zset, 2 data hash; ARGV: 1 now unix s.
PRESENCE_GET: Final = Script(
    "presence_get",
    """
local expired = redis.call("zrangebyscore", KEYS[1], "0", ARGV[1])
if #expired > 0 then
  for i = 1, #expired do
    redis.call("hdel", KEYS[2], expired[i])
  end
  redis.call("zremrangebyscore", KEYS[1], "0", ARGV[1])
end
return redis.call("hgetall", KEYS[2])
""",
)

# GCRA (see neoevents.ratelimit) on Redis's own clock, so that every node shares one budget per key.
# KEYS: 1 the key's theoretical arrival time (ms); ARGV: 1 interval ms, 2 period ms, 3 cost, 4 "1" to count the
# requests when they are admitted, "0" to only check.
# Returns 0 when admitted, else the milliseconds until they would be (rounded up; nothing is counted).
RATE_LIMIT: Final = Script(
    "rate_limit",
    """
local t = redis.call("time")
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local tat = tonumber(redis.call("get", KEYS[1])) or now
if tat < now then
  tat = now
end
local after = tat + tonumber(ARGV[3]) * tonumber(ARGV[1])
local wait = after - tonumber(ARGV[2]) - now
if wait > 0.001 then
  return math.ceil(wait)
end
if ARGV[4] == "1" then
  redis.call("set", KEYS[1], string.format("%.3f", after), "px", math.ceil(after - now) + 1)
end
return 0
""",
)

ALL: Final = (PUBLISH, HISTORY, PRESENCE_ADD, PRESENCE_REMOVE, PRESENCE_GET, RATE_LIMIT)

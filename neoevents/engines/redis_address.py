"""Where a Redis shard is and how to log in to it; which shard a channel lives on.

``redis_address`` entries are ``host:port`` (``[v6addr]:port``) or URLs:
``redis://[user][:password]@host[:port][/db]``, ``rediss://...`` (TLS), ``tcp://host:port`` and
``unix:///path/to/socket[?db=N&password=...]``. A password or database in the URL wins over
``redis_password`` / ``redis_db``; a user name (Redis 6 ACL) is sent with the password.

With several addresses every channel lives on one of them, chosen as Centrifugo chooses it (jump
consistent hash of the FNV-1a 64-bit hash of the channel name), so a channel's history, presence and
PUB/SUB are all on the same Redis and the same channel maps to the same shard on every node.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qs, unquote, urlsplit

DEFAULT_PORT: Final = 6379


@dataclass(frozen=True, slots=True)
class RedisAddress:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    path: str = ""  # Unix socket
    tls: bool = False
    username: str = ""
    password: str = ""
    db: int = 0

    def __str__(self) -> str:
        """For logs: never shows credentials."""
        if self.path:
            return f"unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'rediss' if self.tls else 'redis'}://{host}:{self.port}/{self.db}"


def parse_address(address: str, password: str = "", db: int = 0) -> RedisAddress:
    """One ``redis_address`` entry, with the global password and database as fallbacks."""
    if "://" not in address:
        host, _, port = address.rpartition(":")
        return RedisAddress(host=host.strip("[]"), port=int(port), password=password, db=db)
    url = urlsplit(address)
    query = parse_qs(url.query)
    if url.password is not None:
        password = unquote(url.password)
    elif "password" in query:
        password = query["password"][0]
    if url.path.strip("/") and url.scheme != "unix":
        db = int(url.path.strip("/"))
    if "db" in query:
        db = int(query["db"][0])
    username = unquote(url.username) if url.username else ""
    if url.scheme == "unix":
        return RedisAddress(path=url.path, password=password, db=db, username=username)
    return RedisAddress(
        host=url.hostname or "127.0.0.1",
        port=url.port or DEFAULT_PORT,
        tls=url.scheme == "rediss",
        username=username,
        password=password,
        db=db,
    )


_FNV_OFFSET: Final = 0xCBF29CE484222325
_FNV_PRIME: Final = 0x100000001B3
_MASK64: Final = 0xFFFFFFFFFFFFFFFF


def _fnv1a64(data: bytes) -> int:
    h = _FNV_OFFSET
    for byte in data:
        h = ((h ^ byte) * _FNV_PRIME) & _MASK64
    return h


def shard_index(channel: str, shards: int) -> int:
    """Jump consistent hash (Lamping and Veach) of FNV-1a 64 of ``channel`` over ``shards`` buckets."""
    if shards <= 1:
        return 0
    key = _fnv1a64(channel.encode())
    b, j = -1, 0
    while j < shards:
        b = j
        key = (key * 2862933555777941757 + 1) & _MASK64
        j = int(float(b + 1) * (float(1 << 31) / float((key >> 33) + 1)))
    return b

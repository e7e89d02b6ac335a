"""Binding a port on every address of a host, before anything listens on it.

A server listens with several ``SO_REUSEPORT`` sockets (see :data:`neoevents.server.LISTENERS`), and the
workers of ``serve --workers`` share one port the same way. Any socket of the same user that sets
``SO_REUSEPORT`` may join such a group, so two checks happen first, on every address the host resolves to
(as ``asyncio`` binds them: IPv6 sockets with ``IPV6_V6ONLY``):

- :func:`claim_port` binds without ``SO_REUSEPORT`` and lets go: a port already taken fails as a plain bind
  would, instead of a second server silently taking a share of the first one's connections;
- :func:`hold_port` binds with ``SO_REUSEPORT`` and keeps the sockets (never listening, so they take no
  connections): port 0 then means one port for every worker, and a restarted worker binds the same one.

The held sockets set ``SO_REUSEPORT`` but not ``SO_REUSEADDR``. Two sockets that both set ``SO_REUSEADDR``
may share a port while neither listens, so with it :func:`claim_port` would pass against a held port with no
worker listening yet (during start-up, or while every worker is being restarted) and a second server could
join the group. Without it, only sockets that set ``SO_REUSEPORT`` (the workers' listeners) may bind the held
port. ``TIME_WAIT`` connections of an earlier run do not stop the hold: they come from ``SO_REUSEPORT``
listeners too.
"""

from __future__ import annotations

import socket


def _bind_all(host: str | None, port: int, *, reuse_port: bool) -> tuple[list[socket.socket], int]:
    """Sockets bound to ``port`` on every address of ``host`` (port 0: the port the first one got), and the
    port; ``OSError`` (nothing left open) if any address cannot be bound. With ``reuse_port`` they set
    ``SO_REUSEPORT``, else ``SO_REUSEADDR`` (see the module docstring)."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    bound: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            bound.append(sock)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            else:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((address[0], port, *address[2:]))
            port = int(sock.getsockname()[1])
    except OSError:
        for sock in bound:
            sock.close()
        raise
    return bound, port


def claim_port(host: str | None, port: int) -> int:
    """Fail as a plain bind would if ``host:port`` is taken (``OSError``, EADDRINUSE); returns the port (a free
    one for port 0)."""
    probes, port = _bind_all(host, port, reuse_port=False)
    for probe in probes:
        probe.close()
    return port


def hold_port(host: str | None, port: int) -> tuple[list[socket.socket], int]:
    """Bound, never listening ``SO_REUSEPORT`` sockets holding ``port`` on every address of ``host`` (port 0: a
    port free on all of them), and the port. The caller closes them."""
    return _bind_all(host, port, reuse_port=True)

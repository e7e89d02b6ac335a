"""The client's address behind reverse proxies.

Behind a load balancer every connection comes from the proxy, so per-address limits would count all clients as
one. When the TCP peer is one of the configured trusted proxies (``client_trusted_proxies``, networks in CIDR
notation), the client's address is taken from the request: the rightmost address of ``X-Forwarded-For`` that is
not itself a trusted proxy (each proxy appends the address it received the request from, so addresses left of
the first untrusted hop were written by the client and cannot be believed), or ``X-Real-IP`` when there is no
``X-Forwarded-For``. A peer that is not trusted is the client, whatever its headers say; a malformed header
from a trusted peer is ignored (the peer's address is used).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_network(text: str) -> Network:
    """A network in CIDR notation, or one address; raises ValueError."""
    return ipaddress.ip_network(text.strip(), strict=False)


class TrustedProxies:
    __slots__ = ("_networks",)

    def __init__(self, networks: Iterable[str]) -> None:
        self._networks = tuple(parse_network(n) for n in networks)

    def __bool__(self) -> bool:
        return bool(self._networks)

    def trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self._networks)

    def client(self, peer: str, headers: Mapping[str, str]) -> str:
        """The client's address for a request from ``peer`` with ``headers`` (names in lower case)."""
        if not self.trusted(peer):
            return peer
        forwarded = headers.get("x-forwarded-for")
        if forwarded is not None:
            hops = [hop.strip() for hop in forwarded.split(",")]
            for hop in reversed(hops):
                if not _valid(hop):
                    return peer
                if not self.trusted(hop):
                    return hop
            return hops[0] if hops else peer  # only proxies: the first one is as close as we get
        real = headers.get("x-real-ip", "").strip()
        return real if real and _valid(real) else peer


def _valid(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True

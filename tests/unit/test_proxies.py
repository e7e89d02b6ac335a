"""The client's address behind trusted reverse proxies (transport/proxies.py)."""

from __future__ import annotations

import pytest

from neoevents.configfile import ConfigError, load_config
from neoevents.transport.proxies import TrustedProxies

PROXIES = TrustedProxies(["10.0.0.0/8", "192.168.1.1", "fd00::/8"])


@pytest.mark.parametrize(
    ("peer", "headers", "client"),
    [
        ("203.0.113.5", {"x-forwarded-for": "1.2.3.4"}, "203.0.113.5"),  # untrusted peer: headers ignored
        ("10.1.2.3", {}, "10.1.2.3"),  # a trusted peer without headers is the client
        ("10.1.2.3", {"x-forwarded-for": "198.51.100.1"}, "198.51.100.1"),
        ("10.1.2.3", {"x-forwarded-for": "6.6.6.6, 198.51.100.1, 192.168.1.1"}, "198.51.100.1"),  # rightmost untrusted
        ("10.1.2.3", {"x-forwarded-for": "10.9.9.9, 192.168.1.1"}, "10.9.9.9"),  # only proxies: the first
        ("10.1.2.3", {"x-forwarded-for": "198.51.100.1, not-an-ip"}, "10.1.2.3"),  # malformed: the peer
        ("10.1.2.3", {"x-real-ip": "198.51.100.2"}, "198.51.100.2"),
        ("10.1.2.3", {"x-real-ip": "garbage"}, "10.1.2.3"),
        ("10.1.2.3", {"x-forwarded-for": "198.51.100.1", "x-real-ip": "198.51.100.2"}, "198.51.100.1"),
        ("fd00::1", {"x-forwarded-for": "2001:db8::7"}, "2001:db8::7"),
        ("::ffff:10.0.0.1", {"x-forwarded-for": "198.51.100.3"}, "198.51.100.3"),  # IPv4-mapped peer
        ("", {"x-forwarded-for": "198.51.100.1"}, ""),
    ],
)
def test_client_address(peer: str, headers: dict[str, str], client: str) -> None:
    assert PROXIES.client(peer, headers) == client


def test_no_proxies_is_false() -> None:
    assert not TrustedProxies([])
    assert PROXIES


def test_networks_are_validated_when_the_configuration_loads() -> None:
    assert load_config(None, {"NEOEVENTS_CLIENT_TRUSTED_PROXIES": '["10.0.0.0/8"]'}).client_trusted_proxies == (
        "10.0.0.0/8",
    )
    with pytest.raises(ConfigError, match="client_trusted_proxies"):
        load_config(None, {"NEOEVENTS_CLIENT_TRUSTED_PROXIES": '["10.0.0.0/33"]'})

"""Binding a port on every address before listening (neoevents.ports)."""

from __future__ import annotations

import errno
import socket

import pytest

from neoevents.ports import claim_port, hold_port


def _plain_bind(family: socket.AddressFamily, host: str, port: int) -> None:
    """Bind and close a socket without SO_REUSEPORT (OSError if the port is held)."""
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))


def _has_ipv6() -> bool:
    try:
        _plain_bind(socket.AF_INET6, "::1", 0)
    except OSError:
        return False
    return True


def test_claim_port_picks_a_free_port_and_lets_it_go() -> None:
    port = claim_port("127.0.0.1", 0)
    assert port > 0
    _plain_bind(socket.AF_INET, "127.0.0.1", port)  # nothing left holding it


def test_claim_port_fails_on_a_port_taken_even_by_a_reuse_port_listener() -> None:
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError) as failed:
            claim_port("127.0.0.1", port)
        assert failed.value.errno == errno.EADDRINUSE


def test_hold_port_keeps_the_port_and_lets_reuse_port_sockets_join() -> None:
    held, port = hold_port("127.0.0.1", 0)
    try:
        assert [s.getsockname()[1] for s in held] == [port]
        with pytest.raises(OSError):
            _plain_bind(socket.AF_INET, "127.0.0.1", port)
        with socket.socket() as worker:  # what a worker's listener does
            worker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            worker.bind(("127.0.0.1", port))
            worker.listen()
    finally:
        for sock in held:
            sock.close()
    _plain_bind(socket.AF_INET, "127.0.0.1", port)


def test_claim_port_fails_on_a_held_port_before_any_worker_listens() -> None:
    # The supervisor holds the port from before its workers start until after the last one stopped, and
    # while every worker is being restarted nothing listens on it: a second server must still be refused.
    held, port = hold_port("127.0.0.1", 0)
    try:
        with pytest.raises(OSError) as failed:
            claim_port("127.0.0.1", port)
        assert failed.value.errno == errno.EADDRINUSE
    finally:
        for sock in held:
            sock.close()


def test_hold_port_is_not_stopped_by_connections_of_an_earlier_run_in_time_wait() -> None:
    with socket.socket() as listener:  # an earlier run's listener, which closed its connections first
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = listener.accept()
            accepted.close()  # the server side closes first: its end goes to TIME_WAIT
            assert client.recv(1) == b""
    with pytest.raises(OSError):
        _plain_bind(socket.AF_INET, "127.0.0.1", port)  # the TIME_WAIT connection is there
    held, again = hold_port("127.0.0.1", port)
    for sock in held:
        sock.close()
    assert again == port


@pytest.mark.skipif(not _has_ipv6(), reason="no IPv6 on this machine")
def test_hold_port_on_all_interfaces_holds_every_address_family() -> None:
    held, port = hold_port("", 0)
    try:
        assert {s.family for s in held} == {socket.AF_INET, socket.AF_INET6}
        for family, host in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
            with pytest.raises(OSError):
                _plain_bind(family, host, port)
    finally:
        for sock in held:
            sock.close()
    assert claim_port("", port) == port


@pytest.mark.skipif(not _has_ipv6(), reason="no IPv6 on this machine")
def test_nothing_stays_bound_when_one_address_fails() -> None:
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as taken:
        taken.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        taken.bind(("::", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError):
            hold_port("", port)
        _plain_bind(socket.AF_INET, "0.0.0.0", port)  # the IPv4 socket bound first was closed

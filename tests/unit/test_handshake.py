"""The WebSocket opening handshake, checked without sockets (RFC 6455 §4.2.1 and its example key)."""

from __future__ import annotations

import pytest

from neoevents.transport.handshake import accept_key, handshake

SUBPROTOCOLS = ("centrifuge-protobuf", "centrifuge-json")


def request(**overrides: str) -> dict[str, str]:
    headers = {
        "host": "example.com",
        "upgrade": "websocket",
        "connection": "keep-alive, Upgrade",
        "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
        "sec-websocket-version": "13",
    }
    headers.update(overrides)
    return {k: v for k, v in headers.items() if v != "-"}


def test_rfc_example_accept_key() -> None:
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_valid_request_is_switched() -> None:
    result = handshake("GET", request(), SUBPROTOCOLS)
    assert result.status == 101 and result.subprotocol is None
    assert result.response.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in result.response
    assert result.response.endswith(b"\r\n\r\n")


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [
        ("centrifuge-json", "centrifuge-json"),
        ("centrifuge-json, centrifuge-protobuf", "centrifuge-protobuf"),
        ("chat", None),
    ],
)
def test_subprotocol_selection(offered: str, chosen: str | None) -> None:
    result = handshake("GET", request(**{"sec-websocket-protocol": offered}), SUBPROTOCOLS)
    assert result.status == 101 and result.subprotocol == chosen
    assert (b"Sec-WebSocket-Protocol: " in result.response) == (chosen is not None)


@pytest.mark.parametrize(
    ("method", "overrides", "status"),
    [
        ("POST", {}, 405),
        ("GET", {"upgrade": "h2c"}, 400),
        ("GET", {"connection": "keep-alive"}, 400),
        ("GET", {"sec-websocket-version": "8"}, 426),
        ("GET", {"sec-websocket-version": "-"}, 426),
        ("GET", {"sec-websocket-key": "short"}, 400),
        ("GET", {"sec-websocket-key": "-"}, 400),
        ("GET", {"sec-websocket-key": "!!!!!!!!!!!!!!!!!!!!!!=="}, 400),
    ],
)
def test_invalid_requests_are_refused_with_a_status(method: str, overrides: dict[str, str], status: int) -> None:
    result = handshake(method, request(**overrides), SUBPROTOCOLS)
    assert result.status == status
    assert result.response.startswith(f"HTTP/1.1 {status} ".encode())
    assert b"Connection: close\r\n" in result.response
    if status == 426:
        assert b"Sec-WebSocket-Version: 13\r\n" in result.response


@pytest.mark.parametrize(
    ("key", "valid"),
    [
        ("AAAAAAAAAAAAAAAAAAAAAA==", True),
        ("AAAAAAAAAAAAAAAAAAAAAB==", True),  # non-zero padding bits: decodes to 16 bytes all the same
        ("  dGhlIHNhbXBsZSBub25jZQ==  ", True),
        ("AAAAAAAAAAAAAAAAAAAAAAA=", False),  # 17 bytes
        ("AAAAAAAAAAAAAAAAAAAAAA=", False),
        ("AAAAAAAAAAAAAAAAAAAAAA", False),
        ("AAAAAAAAAAA AAAAAAAAAA==", False),
        ("AAAAAAAAAAAAAAAAAAAAA-==", False),  # URL-safe alphabet
        ("AAAAAAAAAAAAAAAAAAAAAA==AAAA", False),
        ("AAAAAAAAAAAAAAAAAAAAAé==", False),
    ],
)
def test_key_must_be_the_base64_of_16_bytes(key: str, valid: bool) -> None:
    result = handshake("GET", request(**{"sec-websocket-key": key}), SUBPROTOCOLS)
    assert result.status == (101 if valid else 400)
    if valid:
        assert f"Sec-WebSocket-Accept: {accept_key(key.strip())}\r\n".encode() in result.response

"""A test-only WebSocket echo endpoint on the real endpoint's machinery.

Mounted at :data:`TEST_ECHO_PATH` only when the configuration sets ``test_echo_endpoint`` (never in
production). Everything — handshake, frame parsing, fragmentation, UTF-8 validation, size limit
(``websocket_message_size_limit``), ping/pong, closing handshake and the coalesced write path with its queue
limit — is :class:`~neoevents.transport.websocket.WebSocketConnection`'s; only the session differs: instead
of a protocol :class:`~neoevents.client.Client`, every complete message is sent back as it came (text as
text, binary as binary). It exists so that the Autobahn test suite can check the WebSocket layer the
clients actually talk to.
"""

from __future__ import annotations

from neoevents.transport.frames import ws_frame
from neoevents.transport.websocket import WebSocketConnection

TEST_ECHO_PATH = "/test/echo"


class EchoConnection(WebSocketConnection):
    __slots__ = ()

    def _session_opened(self) -> None:
        return

    def _deliver(self, data: bytes, text: bool) -> None:
        self.send_frame(ws_frame(data, binary=not text))

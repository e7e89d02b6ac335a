"""Exceptions raised inside neoevents.

Hierarchy::

    NeoEventsError
    ├── ProtocolError        an error reply for one command (carries an ErrorCode: 100-113)
    ├── DisconnectError      the connection must be closed (carries a Disconnect: 3000-3999)
    └── ListenError          the server cannot listen on its address (the operator gets one line, exit 1)

The first two map one-to-one onto the catalogs in :mod:`neoevents.protocol.codes`; nothing else is ever
shown to a client. Any other exception escaping a command handler is a bug: it is logged with its traceback
and the client gets ``100 internal server error``.
"""

from __future__ import annotations

from neoevents.protocol.codes import Disconnect, ErrorCode


class NeoEventsError(Exception):
    """Base class of every neoevents exception."""


class ProtocolError(NeoEventsError):
    """A command failed with a documented error code; the connection stays open."""

    def __init__(self, error: ErrorCode, message: str | None = None) -> None:
        super().__init__(message or error.message)
        self.error = error

    @property
    def code(self) -> int:
        return self.error.code


class DisconnectError(NeoEventsError):
    """The client must be disconnected with a documented close code and reason."""

    def __init__(self, disconnect: Disconnect) -> None:
        super().__init__(f"{disconnect.code} {disconnect.reason}")
        self.disconnect = disconnect


class ListenError(NeoEventsError):
    """The server could not listen on ``host:port`` (the port is taken, the address is not local...)."""

    def __init__(self, host: str | None, port: int, error: OSError) -> None:
        super().__init__(f"cannot listen on {host or '*'}:{port}: {error}")
        self.error = error

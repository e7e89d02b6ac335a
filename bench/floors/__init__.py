"""Floor servers: no protocol, one pre-encoded frame written to every subscriber of a channel.

Subscribers connect to ``/sub/<channel>``; the publisher sends ``<channel>\\n<payload>`` frames on ``/pub``.
They show what a WebSocket stack costs before any real-time protocol is added on top. The Python ones live
here, the Node.js one in ``node_ws_floor.js`` and the compiled one (Go standard library) in ``gofloor/``.
"""

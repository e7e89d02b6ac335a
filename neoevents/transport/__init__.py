"""Network adapters: the HTTP/1.1 server, the WebSocket connection and the write scheduler."""

"""Peer servers of the benchmark suite: real-time stacks applications use instead of a Centrifugo-style server.

* ``socketio_server.js`` — socket.io 4.8 on Node.js (npm packages pinned in ``package.json``/``package-lock.json``
  here, installed by ``make bench``).
* ``pysocketio_server.py`` — python-socketio 5 on uvicorn, in-memory or Redis client manager.
* ``channels_server.py`` — Django Channels 4 with ``channels_redis`` on uvicorn.

Each takes publications on a ``/pub`` WebSocket whose frames hold one or more ``<room>\\n<payload>`` pairs and
emits each payload to the room's subscribers with the framework's own broadcast (room emit, ``group_send``).
"""

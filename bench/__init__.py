"""Benchmark suite: a multi-process WebSocket load generator with compiled live receivers (``bench/receiver``),
a compiled connect-storm client (``bench/stormgen``), targets (neoevents, Centrifugo, peers and floors),
scenarios and a report writer. Run it with ``python -m bench run`` (or ``make bench``)."""

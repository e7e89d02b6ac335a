"""Prometheus metrics of one server process.

Hot paths (every publication, connection and API command) only bump plain integers in dictionaries; the
Prometheus families are built from them when ``/metrics`` is scraped, by a collector registered in this
object's own registry (no process-wide globals, so several nodes can live in one test process). This keeps
the accounting cost of a publication at a few dictionary operations instead of a locked
``prometheus_client`` child per update.

Names follow the platform's dashboards: ``events_published_total``, ``event_publish_duration_seconds``,
``active_connections``, ``auth_failures_total``.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator
from typing import TypeVar

import msgspec
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE_LATEST", "PUBLISH_BUCKETS", "Metrics", "Snapshot"]

#: Upper bounds (seconds) of the publish duration histogram.
PUBLISH_BUCKETS: tuple[float, ...] = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)

K = TypeVar("K")

RATE_LIMIT_KINDS = ("connection_command", "user_command", "connection_attempt", "api_publish")


class Snapshot(msgspec.Struct, forbid_unknown_fields=True):
    """Every figure of a :class:`Metrics`, as sent between the workers of one server (see
    :mod:`neoevents.workermetrics`) to be added up."""

    connections: int
    subscriptions: int
    delivered_total: int
    published_by_namespace: dict[str, int]
    publish_buckets: list[int]
    publish_seconds: float
    auth_failures: dict[str, int]
    command_errors: list[tuple[int, int]]
    disconnects: list[tuple[int, int]]
    recoveries: list[tuple[bool, int]]
    api_requests: list[tuple[str, bool, int]]
    rate_limits: dict[str, int]


class Metrics:
    """Counters and gauges of one node; every update is a plain integer operation."""

    def __init__(self) -> None:
        self.workers = 1  # serving processes whose figures these are (see combined())
        self.connections = 0  # connected (authenticated) clients
        self.subscriptions = 0  # channel subscriptions of connected clients
        self.delivered_total = 0
        self.published_by_namespace: dict[str, int] = {}
        self.publish_buckets = [0] * (len(PUBLISH_BUCKETS) + 1)  # the last one is +Inf
        self.publish_seconds = 0.0
        self.auth_failures: dict[str, int] = {}
        self.command_errors: dict[int, int] = {}
        self.disconnects: dict[int, int] = {}
        self.recoveries: dict[bool, int] = {}
        self.api_requests: dict[tuple[str, bool], int] = {}
        self.rate_limits: dict[str, int] = dict.fromkeys(RATE_LIMIT_KINDS, 0)  # exported as 0 from the start
        self.registry = CollectorRegistry()
        self.registry.register(_Collector(self))

    # ---- updates (hot paths) -------------------------------------------------------------------

    def published(self, namespace: str, seconds: float) -> None:
        """A publication into a channel of ``namespace`` (its configured name; "" for the top level)."""
        ns = namespace
        by_ns = self.published_by_namespace
        by_ns[ns] = by_ns.get(ns, 0) + 1
        self.publish_buckets[bisect_left(PUBLISH_BUCKETS, seconds)] += 1
        self.publish_seconds += seconds

    def published_together(self, counts: dict[str, int], seconds: float) -> None:
        """Publications made one after another in ``seconds`` (a run of an API batch), counted per namespace;
        each goes into the duration histogram with their average duration."""
        total = self._count_published(counts)
        if total:
            self.publish_buckets[bisect_left(PUBLISH_BUCKETS, seconds / total)] += total
            self.publish_seconds += seconds

    def published_concurrently(self, counts: dict[str, int], seconds: float) -> None:
        """Publications issued together that all completed in ``seconds`` (a batch pipelined to the engine),
        counted per namespace; each goes into the duration histogram with that duration."""
        total = self._count_published(counts)
        if total:
            self.publish_buckets[bisect_left(PUBLISH_BUCKETS, seconds)] += total
            self.publish_seconds += seconds * total

    def _count_published(self, counts: dict[str, int]) -> int:
        total = 0
        by_ns = self.published_by_namespace
        for ns, n in counts.items():
            by_ns[ns] = by_ns.get(ns, 0) + n
            total += n
        return total

    def delivered(self, count: int) -> None:
        self.delivered_total += count

    def auth_failure(self, reason: str) -> None:
        self.auth_failures[reason] = self.auth_failures.get(reason, 0) + 1

    def command_error(self, code: int) -> None:
        self.command_errors[code] = self.command_errors.get(code, 0) + 1

    def disconnect(self, code: int) -> None:
        self.disconnects[code] = self.disconnects.get(code, 0) + 1

    def recovery(self, recovered: bool) -> None:
        self.recoveries[recovered] = self.recoveries.get(recovered, 0) + 1

    def api_request(self, method: str, ok: bool, count: int = 1) -> None:
        """``method`` must come from the closed set of API methods (label values are never caller text)."""
        key = (method, ok)
        self.api_requests[key] = self.api_requests.get(key, 0) + count

    def rate_limited(self, kind: str) -> None:
        self.rate_limits[kind] = self.rate_limits.get(kind, 0) + 1

    # ---- several workers ------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        return Snapshot(
            connections=self.connections,
            subscriptions=self.subscriptions,
            delivered_total=self.delivered_total,
            published_by_namespace=dict(self.published_by_namespace),
            publish_buckets=list(self.publish_buckets),
            publish_seconds=self.publish_seconds,
            auth_failures=dict(self.auth_failures),
            command_errors=list(self.command_errors.items()),
            disconnects=list(self.disconnects.items()),
            recoveries=list(self.recoveries.items()),
            api_requests=[(method, ok, n) for (method, ok), n in self.api_requests.items()],
            rate_limits=dict(self.rate_limits),
        )

    @classmethod
    def combined(cls, snapshots: Iterable[Snapshot]) -> Metrics:
        """The figures of several workers added up (``workers`` is how many there were)."""
        total = cls()
        total.workers = 0
        for snap in snapshots:
            total.workers += 1
            total.connections += snap.connections
            total.subscriptions += snap.subscriptions
            total.delivered_total += snap.delivered_total
            total.publish_seconds += snap.publish_seconds
            for i, n in enumerate(snap.publish_buckets[: len(total.publish_buckets)]):
                total.publish_buckets[i] += n
            _add(total.published_by_namespace, snap.published_by_namespace.items())
            _add(total.auth_failures, snap.auth_failures.items())
            _add(total.command_errors, snap.command_errors)
            _add(total.disconnects, snap.disconnects)
            _add(total.recoveries, snap.recoveries)
            _add(total.api_requests, (((method, ok), n) for method, ok, n in snap.api_requests))
            _add(total.rate_limits, snap.rate_limits.items())
        return total

    # ---- exposition ----------------------------------------------------------------------------

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Collector(Collector):
    """Builds the Prometheus families from a :class:`Metrics` at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    def collect(self) -> Iterator[Metric]:
        m = self._m
        c = CounterMetricFamily(
            "events_published", "Publications accepted, by channel namespace.", labels=["namespace"]
        )
        for ns, n in sorted(m.published_by_namespace.items()):
            c.add_metric([ns], n)
        yield c
        buckets: list[tuple[str, float]] = []
        total = 0
        for bound, n in zip((*PUBLISH_BUCKETS, float("inf")), m.publish_buckets, strict=True):
            total += n
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), total))
        yield HistogramMetricFamily(
            "event_publish_duration_seconds",
            "Time to publish (engine append + local fan-out).",
            buckets=buckets,
            sum_value=m.publish_seconds,
        )
        yield GaugeMetricFamily(
            "server_workers", "Serving processes whose figures this scrape adds up (serve --workers).", value=m.workers
        )
        yield GaugeMetricFamily("active_connections", "Connected (authenticated) clients.", value=m.connections)
        yield GaugeMetricFamily(
            "active_subscriptions", "Channel subscriptions of connected clients.", value=m.subscriptions
        )
        yield _counter(
            "auth_failures", "Authentication and authorisation failures, by reason.", "reason", m.auth_failures
        )
        yield CounterMetricFamily(
            "messages_delivered", "Publications written to subscriber connections.", value=m.delivered_total
        )
        yield _counter("client_command_errors", "Error replies sent to clients, by code.", "code", m.command_errors)
        yield _counter("client_disconnects", "Connections closed by the server, by code.", "code", m.disconnects)
        recoveries = {"true" if k else "false": v for k, v in m.recoveries.items()}
        yield _counter("client_recoveries", "Subscription recovery attempts.", "recovered", recoveries)
        api = CounterMetricFamily(
            "api_requests", "Server API commands, by method and result.", labels=["method", "result"]
        )
        for (method, ok), n in sorted(m.api_requests.items()):
            api.add_metric([method, "ok" if ok else "error"], n)
        yield api
        yield _counter(
            "rate_limited",
            "Requests refused by a rate limit, by kind: connection_command, user_command (error 111), "
            "connection_attempt (WebSocket upgrade 429), api_publish (server API 429).",
            "kind",
            m.rate_limits,
        )


def _add(into: dict[K, int], items: Iterable[tuple[K, int]]) -> None:
    for key, n in items:
        into[key] = into.get(key, 0) + n


def _counter(name: str, documentation: str, label: str, values: dict[str, int] | dict[int, int]) -> Metric:
    family = CounterMetricFamily(name, documentation, labels=[label])
    for key, n in sorted(values.items()):
        family.add_metric([str(key)], n)
    return family

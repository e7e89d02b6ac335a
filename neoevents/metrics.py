"""Prometheus metrics of one server process.

Each :class:`Metrics` owns its own registry (no process-wide globals), so several nodes can live in one
test process. Names follow the platform's dashboards: ``events_published_total``,
``event_publish_duration_seconds``, ``active_connections``, ``auth_failures_total``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]


def _namespace(channel: str) -> str:
    idx = channel.find(":")
    return channel[:idx] if idx > 0 else ""


class _Children:
    """Labelled children of one metric, looked up once per label tuple (``labels()`` is slow on hot paths)."""

    __slots__ = ("_cache", "_metric")

    def __init__(self, metric: Counter) -> None:
        self._metric = metric
        self._cache: dict[tuple[str, ...], Counter] = {}

    def inc(self, *values: str, amount: float = 1) -> None:
        child = self._cache.get(values)
        if child is None:
            child = self._cache[values] = self._metric.labels(*values)
        child.inc(amount)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events_published = Counter(
            "events_published_total",
            "Publications accepted, by channel namespace.",
            ["namespace"],
            registry=r,
        )
        self.publish_duration = Histogram(
            "event_publish_duration_seconds",
            "Time to publish (engine append + local fan-out).",
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=r,
        )
        self.connections = Gauge("active_connections", "Connected (authenticated) clients.", registry=r)
        self.subscriptions = Gauge("active_subscriptions", "Channel subscriptions of connected clients.", registry=r)
        self.auth_failures = Counter(
            "auth_failures_total",
            "Authentication and authorisation failures, by reason.",
            ["reason"],
            registry=r,
        )
        self.messages_delivered = Counter(
            "messages_delivered_total", "Publications written to subscriber connections.", registry=r
        )
        self.command_errors = Counter(
            "client_command_errors_total", "Error replies sent to clients, by code.", ["code"], registry=r
        )
        self.disconnects = Counter(
            "client_disconnects_total", "Connections closed by the server, by code.", ["code"], registry=r
        )
        self.recoveries = Counter(
            "client_recoveries_total", "Subscription recovery attempts.", ["recovered"], registry=r
        )
        self.api_requests = Counter(
            "api_requests_total",
            "Server API commands, by method and result.",
            ["method", "result"],
            registry=r,
        )
        self.rate_limits = Counter(
            "rate_limited_total",
            "Requests refused by a rate limit, by kind: connection_command, user_command (error 111), "
            "connection_attempt (WebSocket upgrade 429), api_publish (server API 429).",
            ["kind"],
            registry=r,
        )
        self._published = _Children(self.events_published)
        self._auth_failures = _Children(self.auth_failures)
        self._command_errors = _Children(self.command_errors)
        self._disconnects = _Children(self.disconnects)
        self._recoveries = _Children(self.recoveries)
        self._api_requests = _Children(self.api_requests)
        self._rate_limited = _Children(self.rate_limits)
        for kind in ("connection_command", "user_command", "connection_attempt", "api_publish"):
            self._rate_limited.inc(kind, amount=0)  # exported as 0 from the start

    def published(self, channel: str, seconds: float) -> None:
        self._published.inc(_namespace(channel))
        self.publish_duration.observe(seconds)

    def delivered(self, count: int) -> None:
        if count:
            self.messages_delivered.inc(count)

    def auth_failure(self, reason: str) -> None:
        self._auth_failures.inc(reason)

    def command_error(self, code: int) -> None:
        self._command_errors.inc(str(code))

    def disconnect(self, code: int) -> None:
        self._disconnects.inc(str(code))

    def recovery(self, recovered: bool) -> None:
        self._recoveries.inc("true" if recovered else "false")

    def api_request(self, method: str, ok: bool) -> None:
        """``method`` must come from the closed set of API methods (label values are never caller text)."""
        self._api_requests.inc(method, "ok" if ok else "error")

    def rate_limited(self, kind: str) -> None:
        self._rate_limited.inc(kind)

    def render(self) -> bytes:
        return generate_latest(self.registry)

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
        kinds = ("connection_command", "user_command", "connection_attempt", "api_publish")
        self._rate_limited = {kind: self.rate_limits.labels(kind) for kind in kinds}

    def published(self, channel: str, seconds: float) -> None:
        self.events_published.labels(_namespace(channel)).inc()
        self.publish_duration.observe(seconds)

    def delivered(self, count: int) -> None:
        if count:
            self.messages_delivered.inc(count)

    def auth_failure(self, reason: str) -> None:
        self.auth_failures.labels(reason).inc()

    def command_error(self, code: int) -> None:
        self.command_errors.labels(str(code)).inc()

    def disconnect(self, code: int) -> None:
        self.disconnects.labels(str(code)).inc()

    def recovery(self, recovered: bool) -> None:
        self.recoveries.labels("true" if recovered else "false").inc()

    def api_request(self, method: str, ok: bool) -> None:
        self.api_requests.labels(method, "ok" if ok else "error").inc()

    def rate_limited(self, kind: str) -> None:
        counter = self._rate_limited.get(kind)
        (counter if counter is not None else self.rate_limits.labels(kind)).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)

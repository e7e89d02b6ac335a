"""Metrics of several workers added up: snapshots survive the trip between workers and sum exactly."""

from __future__ import annotations

import msgspec
from prometheus_client.parser import text_string_to_metric_families

from neoevents.metrics import Metrics, Snapshot


def busy_metrics(scale: int) -> Metrics:
    m = Metrics()
    m.connections = 3 * scale
    m.subscriptions = 5 * scale
    for _ in range(scale):
        m.published("tenant", 0.0002)
        m.published("", 0.03)
        m.auth_failure("expired")
        m.command_error(103)
        m.disconnect(3001)
        m.recovery(True)
        m.recovery(False)
        m.api_request("publish", True)
        m.api_request("broadcast", False)
        m.rate_limited("api_publish")
    m.published_concurrently({"admin": scale}, 0.004)
    m.delivered(100 * scale)
    return m


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_one_workers_figures_render_exactly_as_its_own() -> None:
    m = busy_metrics(2)
    assert Metrics.combined([m.snapshot()]).render() == m.render()


def test_a_snapshot_survives_json_between_workers() -> None:
    snap = busy_metrics(3).snapshot()
    data = msgspec.json.encode(snap)
    assert msgspec.json.decode(data, type=Snapshot) == snap  # int and bool keys included


def test_workers_figures_add_up() -> None:
    a, b = busy_metrics(1), busy_metrics(4)
    both = samples(Metrics.combined([a.snapshot(), b.snapshot()]).render())
    single_a, single_b = samples(a.render()), samples(b.render())
    assert both[("server_workers", ())] == 2
    assert single_a[("server_workers", ())] == 1
    for key, value in single_a.items():
        if key[0] == "server_workers":
            continue
        assert both[key] == value + single_b[key], key
    assert both[("active_connections", ())] == 15
    assert both[("client_recoveries_total", (("recovered", "true"),))] == 5
    assert both[("api_requests_total", (("method", "broadcast"), ("result", "error")))] == 5


def test_a_worker_with_other_label_values_adds_them() -> None:
    a, b = Metrics(), Metrics()
    a.command_error(101)
    b.command_error(109)
    b.published("chat", 0.001)
    both = samples(Metrics.combined([a.snapshot(), b.snapshot()]).render())
    assert both[("client_command_errors_total", (("code", "101"),))] == 1
    assert both[("client_command_errors_total", (("code", "109"),))] == 1
    assert both[("events_published_total", (("namespace", "chat"),))] == 1

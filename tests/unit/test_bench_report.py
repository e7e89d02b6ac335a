"""The benchmark report's comparisons across rounds and across runs."""

from __future__ import annotations

from typing import Any

from bench.report import _machine, _redis_factor


def _max_rate(target: str, repeat: int, cost: float, *, drift: bool = False) -> dict[str, Any]:
    row: dict[str, Any] = {
        "target": target,
        "scenario": "fanout",
        "phase": "max-rate",
        "params": {"subscribers": 2000, "repeat": repeat},
        "metrics": {"cpu_us_per_delivery": cost},
        "status": "ok",
    }
    if drift:
        row["drift_check"] = True
    return row


def test_the_redis_factor_is_the_ratio_of_the_engines_medians_not_of_one_round_each() -> None:
    rows = [
        _max_rate("neoevents", 0, 0.86),
        _max_rate("neoevents-redis", 0, 1.18),  # a round with little coalescing
        _max_rate("neoevents", 1, 0.89),
        _max_rate("neoevents-redis", 1, 0.82),
        _max_rate("neoevents", 0, 3.00, drift=True),  # the drift check is not a round
    ]
    factor, mem, red, per_round = _redis_factor(rows, "fanout", {"subscribers": 2000})
    assert mem == 0.875 and red == 1.0
    assert factor is not None and round(factor, 3) == 1.143
    assert [round(f, 2) for f in per_round] == [1.37, 0.92]


def test_the_redis_factor_needs_both_engines() -> None:
    rows = [_max_rate("neoevents", 0, 0.86)]
    assert _redis_factor(rows, "fanout", {"subscribers": 2000}) == (None, None, None, [])
    assert _redis_factor(rows, "fanout", {"subscribers": 10000}) == (None, None, None, [])


def test_a_run_names_its_machine_by_cpu_model() -> None:
    assert _machine({"machine": {"cpu_model": "AMD EPYC"}}) == "AMD EPYC"
    assert _machine({}) == "?"

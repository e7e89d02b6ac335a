"""The connect-storm row: the median of a target's storms, and what happens when one of them fails."""

from __future__ import annotations

from typing import Any

from bench.scenarios import median_storm


def _storm(rate: float, failed: int = 0, lost: int = 0) -> tuple[dict[str, Any], dict[str, Any]]:
    opened = {"ok": 100 - failed, "failed": failed, "errors": ["set-up not finished within 20s"] if failed else []}
    return opened, {"connects_per_s": rate, "cpu_us_per_connect": 1e6 / rate, "connections_lost": lost}


def test_the_row_is_the_median_storm_with_every_rate_in_order() -> None:
    m, status, note = median_storm([_storm(5000.0), _storm(4000.0), _storm(6000.0)], 3)
    assert (status, note) == ("ok", "")
    assert m["connects_per_s"] == 5000.0 and m["cpu_us_per_connect"] == 200.0
    assert m["connects_per_s_rounds"] == [5000.0, 4000.0, 6000.0]


def test_of_two_storms_the_slower_one_is_the_row() -> None:
    m, _, _ = median_storm([_storm(5000.0), _storm(4000.0)], 2)
    assert m["connects_per_s"] == 4000.0


def test_a_later_storm_that_failed_is_named_but_the_ones_before_it_make_the_row() -> None:
    m, status, note = median_storm([_storm(700.0), _storm(120.0, failed=713)], 3)
    assert status == "ok" and m["connects_per_s"] == 700.0
    assert note == "storm 2 of 3: 713 failed: ['set-up not finished within 20s']"
    assert m["connects_per_s_rounds"] == [700.0, 120.0]


def test_a_first_storm_that_failed_fails_the_row() -> None:
    m, status, note = median_storm([_storm(120.0, failed=5)], 3)
    assert status == "failed" and note.startswith("5 failed")
    assert m["connects_per_s"] == 120.0


def test_connections_lost_after_their_set_up_are_noted() -> None:
    _, status, note = median_storm([_storm(5000.0, lost=3)], 1)
    assert status == "ok" and note == "3 connections lost after their set-up"


def test_connections_lost_in_any_storm_are_noted_not_only_in_the_median_one() -> None:
    m, status, note = median_storm([_storm(5000.0, lost=2), _storm(4000.0), _storm(6000.0, lost=1)], 3)
    assert status == "ok" and m["connects_per_s"] == 5000.0
    assert note == "3 connections lost after their set-up"

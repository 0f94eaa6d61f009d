"""Time weighting, gaps, merging and the best window, by hand-computed numbers."""

from __future__ import annotations

import calendar

import pytest

from carbon_callbacks.intensity.series import (
    ESTIMATED,
    FORECAST,
    MEASURED,
    Point,
    best_window,
    first_gap,
    format_time,
    integrate,
    merge,
    parse_time,
)

H = 3600.0
T0 = float(calendar.timegm((2026, 3, 2, 10, 0, 0)))  # 2026-03-02T10:00Z


def hourly(*values: float, status: str = MEASURED) -> tuple[Point, ...]:
    return tuple(Point(T0 + i * H, T0 + (i + 1) * H, v, status) for i, v in enumerate(values))


def test_a_lap_across_two_hour_boundaries_is_weighted_by_its_minutes_in_each() -> None:
    # 10:30-12:15: 30 min at 60, 60 min at 80, 15 min at 30 -> (1800 + 4800 + 450) / 105
    found = integrate(hourly(60, 80, 30), T0 + 0.5 * H, T0 + 2.25 * H)
    assert found.covered_s == 1.75 * H
    assert found.uncovered_s == 0
    assert found.mean_g_per_kwh == pytest.approx(7050 / 105, rel=1e-15)
    assert found.statuses == {MEASURED}


def test_a_lap_inside_one_hour_takes_its_value() -> None:
    found = integrate(hourly(60, 80), T0 + 600, T0 + 1200)
    assert found.mean_g_per_kwh == 60


def test_time_past_the_newest_value_is_held_at_most_hold_s_then_uncovered() -> None:
    points = hourly(60)  # 10:00-11:00
    held = integrate(points, T0 + 0.5 * H, T0 + 1.5 * H, hold_s=2 * H)
    assert held.mean_g_per_kwh == 60 and held.uncovered_s == 0
    assert held.statuses == {MEASURED, ESTIMATED}  # the held half hour is an estimate
    beyond = integrate(points, T0 + 0.5 * H, T0 + 4 * H, hold_s=2 * H)
    assert beyond.covered_s == 2.5 * H  # 10:30-11:00 measured, 11:00-13:00 held
    assert beyond.uncovered_s == 1 * H
    nothing = integrate(points, T0 + 0.5 * H, T0 + 1.5 * H)
    assert nothing.covered_s == 0.5 * H and nothing.uncovered_s == 0.5 * H


def test_a_gap_between_values_is_held_by_the_value_before_it() -> None:
    points = (Point(T0, T0 + H, 100.0), Point(T0 + 2 * H, T0 + 3 * H, 300.0))
    found = integrate(points, T0, T0 + 3 * H, hold_s=0.5 * H)
    # 1 h at 100, 0.5 h held at 100, 0.5 h uncovered, 1 h at 300
    assert found.covered_s == 2.5 * H
    assert found.weighted == 100 * 1.5 * H + 300 * H


def test_a_zero_length_lap_takes_the_value_at_its_time() -> None:
    assert integrate(hourly(60, 80), T0 + H, T0 + H).mean_g_per_kwh == 80
    assert integrate(hourly(60), T0 - 1, T0 - 1).mean_g_per_kwh is None


def test_first_gap_skips_estimates_and_forecasts() -> None:
    points = (
        Point(T0, T0 + H, 1.0, MEASURED),
        Point(T0 + H, T0 + 2 * H, 1.0, ESTIMATED),
        Point(T0 + 2 * H, T0 + 3 * H, 1.0, MEASURED),
    )
    assert first_gap(points, T0, T0 + 3 * H) == T0 + H
    assert first_gap(points, T0, T0 + H) is None
    assert first_gap(points[:1], T0, T0 + 2 * H) == T0 + H
    assert first_gap((), T0, T0 + 1) == T0


def test_merge_takes_corrections_but_never_lets_a_forecast_replace_a_figure() -> None:
    old = (Point(T0, T0 + H, 80.0, ESTIMATED), Point(T0 + H, T0 + 2 * H, 30.0, MEASURED))
    new = (Point(T0, T0 + H, 70.0, MEASURED), Point(T0 + H, T0 + 2 * H, 99.0, FORECAST))
    merged = merge(old, new)
    assert [(p.g_per_kwh, p.status) for p in merged] == [(70.0, MEASURED), (30.0, MEASURED)]


def test_best_window_of_a_known_forecast() -> None:
    # Hourly forecast from 10:00: 60 80 30 25 20 35 70; two hours from 10:00 on.
    points = hourly(60, 80, 30, 25, 20, 35, 70, status=FORECAST)
    w = best_window(points, T0, 2 * H)
    assert w is not None
    assert (w.start, w.end) == (T0 + 3 * H, T0 + 5 * H)  # 13:00-15:00, (25 + 20) / 2
    assert w.mean_g_per_kwh == 22.5
    assert w.now_g_per_kwh == 70.0  # (60 + 80) / 2
    assert w.saving_percent == pytest.approx((70 - 22.5) * 100 / 70, rel=1e-15)
    # Within the next four hours only the windows starting by 12:00 fit: 12:00-14:00 wins.
    w4 = best_window(points, T0, 2 * H, within_s=4 * H)
    assert w4 is not None and w4.start == T0 + 2 * H and w4.mean_g_per_kwh == 27.5


def test_best_window_from_inside_a_period_weights_the_first_one() -> None:
    points = hourly(60, 80, 30, status=FORECAST)
    w = best_window(points, T0 + 0.5 * H, 1 * H)
    assert w is not None
    assert w.now_g_per_kwh == 70.0  # half an hour at 60, half at 80
    assert (w.start, w.mean_g_per_kwh) == (T0 + 2 * H, 30.0)


def test_no_window_when_the_forecast_is_shorter_than_the_run() -> None:
    assert best_window(hourly(60, 80, status=FORECAST), T0, 3 * H) is None


def test_times_as_providers_write_them() -> None:
    assert parse_time("2026-03-02T10:00Z") == T0
    assert parse_time("2026-03-02T10:00:00.000Z") == T0
    assert parse_time("2026-03-02T11:00:00+01:00") == T0
    assert parse_time("2026-03-02T10:00:00") == T0
    assert format_time(T0) == "2026-03-02T10:00:00Z"
    assert format_time(T0, seconds=False) == "2026-03-02T10:00Z"
    for bad in ("yesterday", "2026-13-02T10:00Z", 1234, None):
        with pytest.raises(ValueError):
            parse_time(bad)

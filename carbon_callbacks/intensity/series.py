"""Time series of grid intensity: time weighting over an interval, gaps, the best window.

Pure functions over `Point` tuples sorted by start; no I/O, no clock. A provider's value
covers ``[start, end)`` (an hour, a half-hour, five minutes). Energy is assumed uniform
within a lap, so a lap is priced at the mean of the values it spans, each weighted by the
seconds of the lap it covers:

    g_lap = sum(g_i * overlap_i) / sum(overlap_i)

Example:
    >>> pts = (Point(0.0, 3600.0, 100.0), Point(3600.0, 7200.0, 200.0))
    >>> integrate(pts, 1800.0, 5400.0).mean_g_per_kwh
    150.0
"""

from __future__ import annotations

import bisect
import calendar
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

# How far a value is trusted, in order: a provider's final figure, its own estimate (or a
# value held past its period, see `integrate`), a forecast.
MEASURED = "measured"
ESTIMATED = "estimated"
FORECAST = "forecast"
STATUS_RANK = {FORECAST: 0, ESTIMATED: 1, MEASURED: 2}


@dataclass(frozen=True)
class Point:
    """One published value.

    Args:
        start: unix seconds (UTC) where the value starts to apply.
        end: unix seconds where it stops (exclusive).
        g_per_kwh: grams per kWh.
        status: ``"measured"`` (the provider's figure for a past period), ``"estimated"``
            (the provider flags it as an estimate) or ``"forecast"``.
        basis: ``"life-cycle"``, ``"direct"``, ``"co2-only"`` or ``"marginal"``.
    """

    start: float
    end: float
    g_per_kwh: float
    status: str = MEASURED
    basis: str = "life-cycle"


@dataclass
class Integral:
    """What `integrate` found over ``[start, end)``.

    ``covered_s`` seconds had a value (held values included), their time-weighted sum is
    ``weighted``; the rest (``end - start - covered_s``) had none. ``statuses`` and ``bases``
    are those of the values used.
    """

    start: float
    end: float
    covered_s: float = 0.0
    weighted: float = 0.0
    statuses: set[str] = field(default_factory=set)
    bases: set[str] = field(default_factory=set)

    @property
    def uncovered_s(self) -> float:
        return max(0.0, self.end - self.start - self.covered_s)

    @property
    def mean_g_per_kwh(self) -> float | None:
        """The time-weighted mean of the covered part, or None when nothing was covered."""
        if self.covered_s <= 0:
            return None
        return self.weighted / self.covered_s


def starts_of(points: Sequence[Point]) -> list[float]:
    """The start times, for `integrate`'s bisection (compute once per series)."""
    return [p.start for p in points]


def integrate(
    points: Sequence[Point],
    start: float,
    end: float,
    *,
    hold_s: float = 0.0,
    starts: Sequence[float] | None = None,
) -> Integral:
    """Time-weight the values over ``[start, end)``.

    A gap right after a value (the next one not published yet) is covered by that value for
    at most `hold_s` seconds past its end, counted as ``"estimated"``; beyond, the time is
    uncovered (the caller prices it otherwise). A zero-length interval takes the value that
    covers `start`.

    Args:
        points: sorted by start, not overlapping.
        start, end: unix seconds, ``start <= end``.
        hold_s: how long a value may be held past its end, in seconds.
        starts: ``starts_of(points)``, when the caller has it.
    """
    result = Integral(start, end)
    if not points:
        return result
    if end <= start:
        return _at(points, start, hold_s, starts, result)
    keys = starts if starts is not None else starts_of(points)
    i = max(0, bisect.bisect_right(keys, start) - 1)
    t = start
    previous: Point | None = None
    for p in points[i:]:
        if p.start >= end:
            break
        if p.end <= t:
            previous = p
            continue
        if p.start > t:  # a gap before this value: the previous one may hold it
            t = _hold(previous, t, min(p.start, end), hold_s, result)
            t = max(t, p.start)
        stop = min(p.end, end)
        if stop > t:
            _add(result, p.g_per_kwh, stop - t, p.status, p.basis)
            t = stop
        previous = p
        if t >= end:
            return result
    _hold(previous, t, end, hold_s, result)
    return result


def _hold(previous: Point | None, t: float, until: float, hold_s: float, out: Integral) -> float:
    """Cover ``[t, until)`` with `previous` for up to `hold_s` past its end; the new `t`."""
    if previous is None or hold_s <= 0:
        return t
    stop = min(until, previous.end + hold_s)
    if stop > t:
        _add(out, previous.g_per_kwh, stop - t, ESTIMATED, previous.basis)
        return stop
    return t


def _add(out: Integral, g: float, seconds: float, status: str, basis: str) -> None:
    out.covered_s += seconds
    out.weighted += g * seconds
    out.statuses.add(status)
    out.bases.add(basis)


def _at(
    points: Sequence[Point],
    when: float,
    hold_s: float,
    starts: Sequence[float] | None,
    out: Integral,
) -> Integral:
    keys = starts if starts is not None else starts_of(points)
    i = bisect.bisect_right(keys, when) - 1
    if i < 0:
        return out
    p = points[i]
    if when < p.end:
        status = p.status
    elif when < p.end + hold_s:
        status = ESTIMATED
    else:
        return out
    out.weighted, out.covered_s = p.g_per_kwh, 1.0  # a mean with a weight of one
    out.statuses.add(status)
    out.bases.add(p.basis)
    return out


def first_gap(points: Sequence[Point], start: float, end: float) -> float | None:
    """The first time in ``[start, end)`` that no ``"measured"`` value covers, or None."""
    t = start
    for p in points:
        if p.end <= t or p.status != MEASURED:
            continue
        if p.start > t:
            return t
        t = p.end
        if t >= end:
            return None
    return t if t < end else None


def merge(old: Sequence[Point], new: Sequence[Point]) -> tuple[Point, ...]:
    """`old` updated with `new`: a later answer replaces an earlier one for the same start
    (providers publish corrections), except that a forecast never replaces a figure of a
    past period. Points that overlap a kept point without sharing its start are dropped."""
    by_start = {p.start: p for p in old}
    for p in new:
        kept = by_start.get(p.start)
        if kept is None or STATUS_RANK[p.status] >= STATUS_RANK[kept.status]:
            by_start[p.start] = p
    out: list[Point] = []
    for p in sorted(by_start.values(), key=lambda q: q.start):
        if out and p.start < out[-1].end:
            continue
        out.append(p)
    return tuple(out)


@dataclass(frozen=True)
class Window:
    """The lowest-intensity window of a forecast (see `best_window`).

    Args:
        start, end: unix seconds.
        mean_g_per_kwh: its time-weighted mean.
        now_g_per_kwh: the mean of the window of the same length starting at `now`.
    """

    start: float
    end: float
    mean_g_per_kwh: float
    now_g_per_kwh: float

    @property
    def saving_percent(self) -> float:
        """How much lower the best window is than starting now, in percent of now's mean."""
        if self.now_g_per_kwh <= 0:
            return 0.0
        return (self.now_g_per_kwh - self.mean_g_per_kwh) * 100.0 / self.now_g_per_kwh


def best_window(
    points: Sequence[Point], now: float, duration_s: float, within_s: float | None = None
) -> Window | None:
    """The start, among `now` and every value's start after it, of the window of
    `duration_s` seconds with the lowest mean that the series covers entirely and that ends
    within `within_s` of `now` (default: where the series ends). Ties go to the earliest.
    None when no window fits (the series is shorter than the window).
    """
    if not points or duration_s <= 0:
        return None
    begin = max(now, points[0].start)
    horizon = points[-1].end if within_s is None else min(points[-1].end, now + within_s)
    keys = starts_of(points)
    at_begin = integrate(points, begin, begin + duration_s, starts=keys)
    if begin + duration_s > horizon + 1e-9 or at_begin.uncovered_s > 1e-9:
        return None
    now_mean = at_begin.weighted / at_begin.covered_s
    best = (begin, now_mean)
    for s in (p.start for p in points if p.start > begin):
        e = s + duration_s
        if e > horizon + 1e-9:
            break
        found = integrate(points, s, e, starts=keys)
        if found.uncovered_s > 1e-9:
            continue
        mean = found.weighted / found.covered_s
        if mean < best[1] - 1e-12:
            best = (s, mean)
    return Window(best[0], best[0] + duration_s, best[1], now_mean)


def parse_time(text: object) -> float:
    """Unix seconds of an ISO 8601 UTC time as providers write it: ``2026-03-02T10:00Z``,
    ``…T10:00:00.000Z``, ``…T10:00:00+00:00``; a time without an offset is UTC.

    Raises:
        ValueError: not such a time.
    """
    if not isinstance(text, str):
        raise ValueError(f"not a time: {text!r}")
    s = text.strip()
    offset = 0
    if s.endswith(("Z", "z")):
        s = s[:-1]
    elif len(s) > 6 and s[-6] in "+-" and s[-3] == ":":
        sign = -1 if s[-6] == "-" else 1
        offset = sign * (int(s[-5:-3]) * 3600 + int(s[-2:]) * 60)
        s = s[:-6]
    date, _, clock = s.partition("T")
    if not clock:
        date, _, clock = s.partition(" ")
    try:
        year, month, day = (int(x) for x in date.split("-"))
        parts = clock.split(":")
        hour, minute = int(parts[0]), int(parts[1])
        second = float(parts[2]) if len(parts) > 2 else 0.0
    except (ValueError, IndexError):
        raise ValueError(f"not an ISO 8601 time: {text!r}") from None
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 61):
        raise ValueError(f"not an ISO 8601 time: {text!r}")
    whole = calendar.timegm((year, month, day, hour, minute, 0, 0, 0, 0))
    return whole + second - offset


def format_time(unix_s: float, *, seconds: bool = True) -> str:
    """``2026-03-02T10:00:00Z`` (or ``…T10:00Z`` without seconds), UTC."""
    if not math.isfinite(unix_s):
        raise ValueError(f"not a time: {unix_s!r}")
    pattern = "%Y-%m-%dT%H:%M:%SZ" if seconds else "%Y-%m-%dT%H:%MZ"
    return time.strftime(pattern, time.gmtime(unix_s))


def utc_year(unix_s: float) -> int:
    return time.gmtime(unix_s).tm_year

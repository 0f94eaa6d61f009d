"""`LiveIntensity`: a provider's values fetched off the training thread, and each lap priced
at the values over the hours it spanned.

One daemon thread (``carbon-callbacks-intensity``) asks the provider for what the run has not
got yet, every 10 minutes and when a lap finds the newest value too old (at most once a
minute), and keeps the values in memory and in the disk cache. `price` reads what has
arrived: no I/O, no lock, a bisection and a few additions. At start the tracker waits at
most 2 s, once, for the first answer; at stop, at most 2 s for a last one, and the laps are
priced again with it (providers publish estimates first and corrections later).

When the provider cannot answer (down, a refused key, rate limiting, a malformed answer, a
timeout) the failure is warned once per cause, the thread backs off, and the time it left
uncovered is priced with the run's bundled yearly value, labelled so in the lap's source.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from carbon_callbacks import humanize
from carbon_callbacks.errors import ErrorLog
from carbon_callbacks.intensity import cache, series
from carbon_callbacks.intensity._http import (
    AUTH,
    NOT_FOUND,
    RATE_LIMIT,
    REFUSED,
    ProviderError,
    redact,
)
from carbon_callbacks.intensity._model import Intensity
from carbon_callbacks.intensity.providers import IntensityProvider
from carbon_callbacks.intensity.series import ESTIMATED, FORECAST, Point
from carbon_callbacks.measurement import Measurement, merge_method

logger = logging.getLogger(__name__)

START_WAIT_S = 2.0  # the longest `start` waits for the first answer, once
SETTLE_WAIT_S = 2.0  # the longest `settle` waits for the last one
REFRESH_S = 600.0
MIN_INTERVAL_S = 60.0  # between two requests a lap may trigger
FORECAST_REFRESH_S = 3600.0
HOLD_S = 2 * 3600.0  # a value priced past its period, while the next is not published
LOOK_BACK_S = 23 * 3600.0  # the periodic requests look back at most this far
MAX_BACKOFF_S = 1800.0
RATE_LIMIT_WAIT_S = 900.0
FALLBACK = "yearly fallback"


class Pricing(NamedTuple):
    """What a lap is priced at: g/kWh, its source, year and basis."""

    g_per_kwh: float
    source: str
    year: int | None
    basis: str


class LiveIntensity:
    """A provider's values for one run at a time (`start` ... `stop`, then again).

    Args:
        provider: the provider (see `carbon_callbacks.intensity.providers`).
        fallback: the run's bundled value, for the time the provider does not cover.
        errors: where failures are recorded (warned once per cause).
        wall_clock: unix seconds (the tracker's).
        hold_s: how long a value is used past its period while the next is missing.

    Example:
        >>> live = LiveIntensity(provider, resolve(country="DE"), errors=ErrorLog(),
        ...                      wall_clock=time.time)
        >>> live.start(time.time(), cache_dir=None)
        >>> live.price(t0, t1).g_per_kwh
    """

    def __init__(
        self,
        provider: IntensityProvider,
        fallback: Intensity,
        *,
        errors: ErrorLog,
        wall_clock: Callable[[], float],
        hold_s: float = HOLD_S,
    ) -> None:
        self.provider = provider
        self.fallback = fallback
        self.errors = errors
        self.hold_s = hold_s
        self._wall = wall_clock
        self._series: tuple[tuple[Point, ...], list[float]] = ((), [])
        self._lock = threading.Lock()  # writers only: readers take `_series` whole
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._first = threading.Event()
        self._settled = threading.Event()
        self._stop = threading.Event()  # one per thread: a stopped one never runs on
        self._settle: tuple[float, float] | None = None
        self._run_start = 0.0
        self._cache_file: Path | None = None
        self._last_try = -1e18
        self._retry_at = -1e18
        self._failures = 0
        self._forecast_at: float | None = None
        self.fallback_source = f"{fallback.source} ({FALLBACK}: no {provider.label} value)"

    # -- what the tracker calls --------------------------------------------------------------

    @property
    def spec(self) -> str:
        return self.provider.spec

    @property
    def basis(self) -> str:
        return self.provider.basis

    @property
    def running(self) -> bool:
        return self._thread is not None

    def describe(self) -> str:
        """The run's intensity source in words, for the tags and the summary."""
        fb = self.fallback
        return f"{self.provider.source} (live; {FALLBACK} {fb.g_per_kwh:g} g/kWh, {fb.source})"

    def start(self, run_start: float, cache_dir: Path | None) -> None:
        """Start fetching for a run that began at `run_start` (unix s); wait at most
        `START_WAIT_S` for the first answer."""
        self.stop()
        self._run_start = run_start
        self._stop = stop = threading.Event()
        self._settle = None
        self._failures, self._retry_at, self._forecast_at = 0, -1e18, None
        self._first.clear()
        self._cache_file = (
            None
            if cache_dir is None
            else cache.cache_path(cache_dir, self.provider.name, self.provider.zone)
        )
        self._thread = threading.Thread(
            target=self._run, args=(stop,), name="carbon-callbacks-intensity", daemon=True
        )
        self._thread.start()
        if not self._first.wait(START_WAIT_S):
            logger.info(
                "carbon-callbacks: %s has not answered after %g s; laps are priced with the "
                "bundled yearly value until it does",
                self.provider.label,
                START_WAIT_S,
            )

    def price(self, start: float, end: float) -> Pricing:
        """The time-weighted intensity of ``[start, end)`` (unix s) from what has arrived."""
        points, starts = self._series
        found = series.integrate(points, start, end, hold_s=self.hold_s, starts=starts)
        fb = self.fallback
        if found.covered_s <= 0:
            self._kick()
            return Pricing(fb.g_per_kwh, self.fallback_source, fb.year, fb.basis)
        basis = "+".join(sorted(found.bases))
        source = self._source(found.statuses)
        mean = found.weighted / found.covered_s
        uncovered = found.uncovered_s if end > start else 0.0
        if uncovered > 0:
            self._kick()
            mean = (found.weighted + fb.g_per_kwh * uncovered) / (end - start)
            source = f"{source} + {FALLBACK}"
            basis = merge_method(basis, fb.basis)
        return Pricing(mean, source, series.utc_year(start), basis)

    def reprice(self, m: Measurement) -> Measurement:
        """`m` priced again with what has arrived since (the same energy)."""
        p = self.price(m.start_time, m.end_time)
        kg_per_kwh = p.g_per_kwh / 1000.0
        return dataclasses.replace(
            m,
            emissions_kg=m.energy_kwh * kg_per_kwh,
            emissions_kg_low=m.energy_kwh_low * kg_per_kwh,
            emissions_kg_high=m.energy_kwh_high * kg_per_kwh,
            intensity_g_per_kwh=p.g_per_kwh,
            intensity_source=p.source,
            intensity_year=p.year,
            intensity_basis=p.basis,
        )

    def settle(self, start: float, end: float, timeout_s: float = SETTLE_WAIT_S) -> None:
        """Ask for ``[start, end)`` once more (backoff or not) and wait up to `timeout_s`."""
        if self._thread is None:
            return
        self._settled.clear()
        self._settle = (start, end)
        self._wake.set()
        self._settled.wait(timeout_s)

    def stop(self) -> None:
        """Stop the thread (a request under way ends by its own timeout, in the background)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        self._wake.set()
        thread.join(timeout=0.2)

    def window(self, duration_s: float, now: float) -> series.Window | None:
        """The lowest window of `duration_s` in what is known from `now` on (the forecast)."""
        points = [p for p in self._series[0] if p.end > now]
        return series.best_window(points, now, duration_s)

    def points(self) -> tuple[Point, ...]:
        return self._series[0]

    def saving_note(self, duration_s: float, energy_kwh: float) -> str | None:
        """What starting the run at the forecast's best window would have saved, in words:
        the mean over the run's own span (what is known, the forecast for the rest) against
        the lowest window of the same length from now on. None when there is no forecast."""
        if duration_s <= 0 or not any(p.status == FORECAST for p in self._series[0]):
            return None
        now = self._wall()
        best = self.window(duration_s, now)
        label = self.provider.label
        if best is None:
            return f"the {label} forecast is shorter than the run ({duration_s / 3600:.1f} h)"
        run = self.price(self._run_start, self._run_start + duration_s).g_per_kwh
        if best.mean_g_per_kwh >= run:
            return f"no window of the {label} forecast is lower than this run's {run:.0f} g/kWh"
        saved_kg = energy_kwh * (run - best.mean_g_per_kwh) / 1000.0
        return (
            f"starting at {series.format_time(best.start, seconds=False)} ({label} forecast "
            f"{best.mean_g_per_kwh:.0f} g/kWh against {run:.0f} for this run) would have saved "
            f"about {(run - best.mean_g_per_kwh) * 100.0 / run:.0f} % "
            f"({humanize.emissions(saved_kg, 2, humanize.emissions_unit(self.basis))})"
        )

    # -- the thread -------------------------------------------------------------------------

    def _run(self, stop: threading.Event) -> None:
        ok = False
        try:
            if self._cache_file is not None:
                self._merge(cache.load(self._cache_file), save=False)
            ok = self._cycle()
        finally:
            self._first.set()
        if ok:
            self._fetch_forecast(self._wall())
        while True:
            now = time.monotonic()
            delay = REFRESH_S if self._retry_at <= now else self._retry_at - now
            self._wake.wait(delay)
            self._wake.clear()
            if stop.is_set():
                return
            settle = self._settle
            if settle is None and time.monotonic() < self._retry_at:
                continue
            if self._cycle(settle) and settle is None:
                self._fetch_forecast(self._wall())
            if settle is not None:
                self._settle = None
                self._settled.set()

    def _cycle(self, settle: tuple[float, float] | None = None) -> bool:
        """Fetch what the run (or `settle`'s span) lacks; False when the provider failed."""
        self._last_try = time.monotonic()
        provider = self.provider
        now = self._wall()
        if settle is None:
            # From a little before the run (a value published then holds at its start), but
            # never further back than a day: older hours were fetched while they were recent.
            start = max(self._run_start - self.hold_s, now - LOOK_BACK_S)
            end = max(now, self._run_start + 1.0)
        else:
            start, end = settle[0], min(settle[1], now)
        try:
            gap = series.first_gap(self._series[0], start, end)
            if gap is not None:
                self._merge(provider.history(gap, max(end, gap + provider.period_s), now))
            self._failures = 0
            return True
        except ProviderError as exc:
            self._failed(exc)
        except Exception as exc:  # a bug of ours must not reach training: recorded, skipped
            logger.debug("carbon-callbacks: intensity fetch failed", exc_info=True)
            text = redact(f"{type(exc).__name__}: {exc}", getattr(provider, "_secrets", ()))
            self.errors.record(
                f"intensity:{provider.name}:error",
                f"live intensity from {provider.label} failed ({text}); {self._fallback_words()}",
            )
        return False

    def _fetch_forecast(self, now: float) -> None:
        if not self.provider.has_forecast:
            return
        mono = time.monotonic()
        if self._forecast_at is not None and mono - self._forecast_at < FORECAST_REFRESH_S:
            return
        self._forecast_at = mono
        try:
            self._merge(self.provider.forecast(now), save=False)
        except ProviderError as exc:  # pricing does not need it: said at INFO
            logger.info("carbon-callbacks: no forecast: %s", exc.message)
            if exc.cause in (AUTH, NOT_FOUND, REFUSED):  # not in the plan: not asked again
                self._forecast_at = math.inf
        except Exception:  # a bug of ours must not reach training
            logger.info("carbon-callbacks: reading the forecast failed", exc_info=True)

    def _failed(self, exc: ProviderError) -> None:
        self._failures += 1
        if exc.cause == RATE_LIMIT:
            wait = exc.retry_after_s if exc.retry_after_s is not None else RATE_LIMIT_WAIT_S
        else:
            wait = min(MAX_BACKOFF_S, MIN_INTERVAL_S * 2 ** (self._failures - 1))
        self._retry_at = time.monotonic() + wait
        name = self.provider.name
        text = exc.message
        if exc.cause != AUTH:
            text += f" (zone {self.provider.zone})"
        self.errors.record(f"intensity:{name}:{exc.cause}", f"{text}; {self._fallback_words()}")

    def _fallback_words(self) -> str:
        fb = self.fallback
        return (
            f"the time it does not cover is priced with the bundled yearly value "
            f"({fb.g_per_kwh:g} g/kWh, {fb.source}), labelled '{FALLBACK}'"
        )

    def _merge(self, new: Sequence[Point], *, save: bool = True) -> None:
        if not new:
            return
        with self._lock:
            points = series.merge(self._series[0], new)
            self._series = (points, series.starts_of(points))
        if save and self._cache_file is not None:
            try:
                cache.save(self._cache_file, points)
            except OSError as exc:
                self.errors.record(
                    "intensity:cache", f"cannot write the intensity cache {self._cache_file}: {exc}"
                )

    def _kick(self) -> None:
        """A lap found no value for some of its time: fetch soon (at most once a minute)."""
        now = time.monotonic()
        if now - self._last_try >= MIN_INTERVAL_S and now >= self._retry_at:
            self._wake.set()

    def _source(self, statuses: set[str]) -> str:
        source = self.provider.source
        if FORECAST in statuses:
            return f"{source}, forecast"
        if ESTIMATED in statuses:
            return f"{source}, estimated"
        return source


def make_live(
    spec: object,
    intensity: Intensity,
    env: Mapping[str, str],
    *,
    errors: ErrorLog,
    wall_clock: Callable[[], float],
    what: str = "intensity_provider",
) -> tuple[LiveIntensity, Intensity]:
    """The live source a spec names, and the bundled value it falls back to.

    With no location configured, the fallback is the bundled value of the provider's own
    country (GB for the GB API, DK for Energi Data Service, the zone's country for
    Electricity Maps) rather than the world average.

    Raises:
        ValueError: as `providers.make_provider`; also a spec combined with a forced
            intensity (`intensity_g_per_kwh`).
        TypeError: `spec` is not a string.
    """
    from carbon_callbacks.intensity.lookup import resolve
    from carbon_callbacks.intensity.providers import make_provider

    location = None if intensity.kind == "forced" else intensity
    provider = make_provider(spec, location, env, what=what)
    if intensity.kind == "forced":
        raise ValueError(
            f"{what}={spec!r} cannot be combined with a forced intensity "
            f"(intensity_g_per_kwh={intensity.g_per_kwh:g}): drop one of them"
        )
    if intensity.is_default and provider.country is not None:
        intensity = resolve(country=provider.country)
    return LiveIntensity(provider, intensity, errors=errors, wall_clock=wall_clock), intensity

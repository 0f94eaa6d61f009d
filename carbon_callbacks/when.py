"""``carbon-callbacks when``: the start of the lowest-intensity window in a provider's forecast.

Reads the provider's current forecast and, among starting now and starting at each forecast
value's start, picks the window of ``--hours`` that the forecast covers entirely, ends within
``--within`` hours (default: the forecast's end) and has the lowest time-weighted mean. Ties
go to the earliest start.

Example:
    $ carbon-callbacks when --provider carbonintensity-uk --hours 3 --json
    {"start": "2026-03-02T15:30:00Z", "end": "2026-03-02T18:30:00Z", "mean_g_per_kwh": 98.75,
     "now_g_per_kwh": 228.3, "saving_percent": 56.8}
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence

from carbon_callbacks.intensity._model import Intensity
from carbon_callbacks.intensity.providers import EXAMPLES, MODULES, make_provider
from carbon_callbacks.intensity.series import Window, best_window, format_time

EXIT_NO_WINDOW = 1
EXIT_BAD_INPUT = 2


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="carbon-callbacks when",
        description=(
            "When to start a job of N hours so that it runs on the least carbon-intensive "
            "electricity the provider forecasts. Contacts the provider named (only)."
        ),
    )
    p.add_argument(
        "--provider",
        required=True,
        help=f"{', '.join(MODULES)}, optionally with ':ZONE' (e.g. {EXAMPLES})",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument("--zone", help="the provider's zone: DE, 13, DK1, CAISO_NORTH...")
    where.add_argument("--country", help="ISO country code or name (its zone)")
    where.add_argument("--cloud", help="cloud region, e.g. gcp:europe-west1 (its country)")
    p.add_argument("--hours", type=float, required=True, help="the job's length in hours")
    p.add_argument(
        "--within", type=float, help="start and finish within this many hours (default: "
        "as far as the forecast goes)",
    )  # fmt: skip
    p.add_argument("--json", action="store_true", help="print JSON: start, end, means, saving")
    return p


def main(argv: Sequence[str] | None = None, *, now: float | None = None) -> int:
    """Run the command; `now` (unix seconds) replaces the clock (tests)."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        spec = _spec(args.provider, args.zone)
        location = _location(args.country, args.cloud)
        provider = make_provider(spec, location, os.environ, what="--provider")
        hours = _positive("--hours", args.hours)
        within = None if args.within is None else _positive("--within", args.within)
        if within is not None and within < hours:
            raise ValueError(f"--within ({within:g} h) must be at least --hours ({hours:g} h)")
    except (ValueError, TypeError) as exc:
        print(f"carbon-callbacks when: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    from carbon_callbacks.intensity._http import ProviderError

    now = time.time() if now is None else now
    try:
        points = provider.forecast(now)
    except ProviderError as exc:
        print(f"carbon-callbacks when: {exc.message}", file=sys.stderr)
        return EXIT_NO_WINDOW
    window = best_window(points, now, hours * 3600.0, None if within is None else within * 3600.0)
    if window is None:
        covered = max((p.end for p in points), default=now) - now
        print(
            f"carbon-callbacks when: the {provider.label} forecast covers "
            f"{max(covered, 0) / 3600:.1f} h from now, less than a {hours:g} h window"
            + ("" if within is None else f" within {within:g} h"),
            file=sys.stderr,
        )
        return EXIT_NO_WINDOW
    if args.json:
        print(json.dumps(as_json(window)))
    else:
        print(describe(window, now, provider.source, provider.basis))
    return 0


def as_json(w: Window) -> dict[str, object]:
    """The contract's ``{"start", "end", "mean_g_per_kwh", "now_g_per_kwh",
    "saving_percent"}`` (times in ISO 8601 UTC)."""
    return {
        "start": format_time(w.start),
        "end": format_time(w.end),
        "mean_g_per_kwh": w.mean_g_per_kwh,
        "now_g_per_kwh": w.now_g_per_kwh,
        "saving_percent": w.saving_percent,
    }


def describe(w: Window, now: float, source: str, basis: str) -> str:
    def local(t: float) -> str:
        return time.strftime("%Y-%m-%d %H:%M %Z", time.localtime(t))

    hours = (w.end - w.start) / 3600.0
    return "\n".join(
        [
            f"Best start: {format_time(w.start, seconds=False)} ({local(w.start)} local), "
            f"until {format_time(w.end, seconds=False)}",
            f"  mean over those {hours:g} h: {w.mean_g_per_kwh:.1f} g/kWh "
            f"(forecast, {source}, {basis})",
            f"  starting now ({format_time(now, seconds=False)}, {local(now)} local): "
            f"{w.now_g_per_kwh:.1f} g/kWh",
            f"  saving: {w.saving_percent:.1f} %",
        ]
    )


def _spec(provider: str, zone: str | None) -> str:
    if zone is None:
        return provider
    name, colon, own = provider.partition(":")
    if colon and own.strip() and own.strip().upper() != zone.strip().upper():
        raise ValueError(f"--provider {provider!r} names zone {own!r}, --zone names {zone!r}")
    return f"{name}:{zone}"


def _location(country: str | None, cloud: str | None) -> Intensity | None:
    if country is None and cloud is None:
        return None
    from carbon_callbacks.intensity import resolve

    return resolve(country=country, cloud=cloud)


def _positive(name: str, value: float) -> float:
    if not (value > 0 and value < 1e6):
        raise ValueError(f"{name} must be a number of hours > 0, got {value!r}")
    return float(value)

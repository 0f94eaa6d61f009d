"""Price a finished run's laps again with the provider's newer figures (``carbon-callbacks
sync``): providers publish estimates first and correct them later.

A journal whose ``"run"`` record names an ``intensity_provider`` is read lap by lap; the
provider's values over the run are taken from the disk cache next to the journal, and what
the cache lacks in final form is fetched once. Each lap whose price changed gets a
``"reprice"`` record (the value used in training, and the corrected one), and, for the runs
the journal's sinks write to, ``"metrics"`` records that sync then sends like any other:
``carbon/corrected_epoch_emissions_kg`` and ``carbon/corrected_intensity_g_per_kwh`` at each
changed epoch's step, ``carbon/corrected_emissions_kg`` (the run's corrected total) at the
step of the run's final metrics. Keys come from the environment, never from the journal.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from carbon_callbacks.errors import ErrorLog
from carbon_callbacks.intensity import cache, series
from carbon_callbacks.intensity._http import ProviderError
from carbon_callbacks.intensity._model import Intensity
from carbon_callbacks.intensity.live import LiveIntensity
from carbon_callbacks.intensity.providers import make_provider
from carbon_callbacks.journal import Journal, read_journal
from carbon_callbacks.measurement import Measurement
from carbon_callbacks.outputs import CORRECTED_EMISSIONS, corrected_metrics

_FIELDS = {f.name for f in fields(Measurement)}
logger = logging.getLogger(__name__)


@dataclass
class Repriced:
    """What re-pricing one journal did: laps changed, whether the provider was asked, and
    why it could not be done (None when it was)."""

    journal: Path
    provider: str
    laps: int = 0
    fetched: bool = False
    error: str | None = None

    def describe(self) -> str:
        if self.error is not None:
            return f"{self.journal.name}: not re-priced ({self.provider}): {self.error}"
        if not self.laps:
            return f"{self.journal.name}: {self.provider} figures unchanged"
        return (
            f"{self.journal.name}: {self.laps} lap(s) re-priced with newer {self.provider} figures"
        )


def reprice_journal(
    journal: Path,
    *,
    env: Mapping[str, str] | None = None,
    now: float | None = None,
    dry_run: bool = False,
) -> Repriced | None:
    """Re-price the laps of one journal (see the module docstring); None when its run used
    no live provider. Never raises for a provider's failure: `Repriced.error` says it.

    Raises:
        OSError, ValueError: the journal cannot be read or appended to.
    """
    records = read_journal(journal)
    run = next((r for r in records if r.get("type") == "run"), None)
    spec = None if run is None else run.get("intensity_provider")
    if run is None or not isinstance(spec, str):
        return None
    result = Repriced(journal, spec)
    laps = _laps(records)
    if not laps:
        return result
    env = os.environ if env is None else env
    try:
        provider = make_provider(spec, None, env, what="the journal's intensity_provider")
    except (ValueError, TypeError) as exc:
        result.error = str(exc)
        return result
    live = LiveIntensity(provider, _fallback(run), errors=ErrorLog(), wall_clock=time.time)
    path = cache.cache_path(journal.parent, provider.name, provider.zone)
    live._merge(cache.load(path), save=False)
    start = min(lap.start_time for _, _, lap, _ in laps)
    end = max(lap.end_time for _, _, lap, _ in laps)
    now = time.time() if now is None else now
    gap = series.first_gap(live.points(), start, min(end, now))
    if gap is not None:
        result.fetched = True
        try:
            fetched = provider.history(gap, max(end, gap + provider.period_s), now)
        except ProviderError as exc:
            result.error = exc.message
            return result
        live._merge(fetched, save=False)
        if not dry_run:
            _save(path, live)
    changed = []
    for index, kind, used, current in laps:
        new = live.reprice(used)
        if (new.intensity_g_per_kwh, new.intensity_source) != (
            current.intensity_g_per_kwh,
            current.intensity_source,
        ):
            changed.append((index, kind, used, current, new))
    result.laps = len(changed)
    if changed and not dry_run:
        _append(journal, records, run, changed)
    return result


def reprice_laps(
    live: LiveIntensity, priced: list[tuple[int, str, Measurement]], run_id: str | None
) -> tuple[Measurement | None, list[tuple[int, Measurement, Measurement]], list[dict[str, Any]]]:
    """A run's laps (``(lap, kind, measurement)``) priced again with what `live` has now,
    after asking the provider once more (`LiveIntensity.settle`): the new totals, the laps
    that changed (``(lap, used, corrected)``) and their ``"reprice"`` journal records."""
    if priced:
        live.settle(priced[0][2].start_time, priced[-1][2].end_time)
    totals: Measurement | None = None
    corrections: list[tuple[int, Measurement, Measurement]] = []
    records: list[dict[str, Any]] = []
    for index, kind, used in priced:
        new = live.reprice(used)
        if (new.intensity_g_per_kwh, new.intensity_source) != (
            used.intensity_g_per_kwh,
            used.intensity_source,
        ):
            corrections.append((index, used, new))
            records.append(reprice_record(run_id, index, kind, used, new, "stop"))
        totals = new if totals is None else totals + new
    return totals, corrections, records


def reprice_record(
    run_id: str | None, lap: int, kind: str, used: Measurement, new: Measurement, by: str
) -> dict[str, Any]:
    """The journal record of a lap priced again: the value used and the corrected one."""
    return {
        "type": "reprice",
        "run_id": run_id,
        "lap": lap,
        "kind": kind,
        "by": by,
        "start_time": used.start_time,
        "end_time": used.end_time,
        "energy_kwh": used.energy_kwh,
        "intensity_g_per_kwh_used": used.intensity_g_per_kwh,
        "intensity_source_used": used.intensity_source,
        "emissions_kg_used": used.emissions_kg,
        "intensity_g_per_kwh": new.intensity_g_per_kwh,
        "intensity_source": new.intensity_source,
        "intensity_basis": new.intensity_basis,
        "intensity_year": new.intensity_year,
        "emissions_kg": new.emissions_kg,
        "emissions_kg_low": new.emissions_kg_low,
        "emissions_kg_high": new.emissions_kg_high,
    }


def _laps(records: list[dict[str, Any]]) -> list[tuple[int, str, Measurement, Measurement]]:
    """``(lap, kind, as used in training, as last priced)`` for every lap of the journal."""
    used: dict[tuple[int, str], Measurement] = {}
    current: dict[tuple[int, str], Measurement] = {}
    for r in records:
        lap, kind = r.get("lap"), r.get("kind")
        if not isinstance(lap, int) or not isinstance(kind, str):
            continue
        key = (lap, kind)
        if r.get("type") == "lap":
            used[key] = current[key] = _measurement(r)
        elif r.get("type") == "reprice" and key in used:
            corrected = {k: r[k] for k in _CORRECTED if k in r}
            current[key] = Measurement(**{**_args(used[key]), **corrected})
    return [(lap, kind, m, current[(lap, kind)]) for (lap, kind), m in used.items()]


_CORRECTED = (
    "intensity_g_per_kwh",
    "intensity_year",
    "intensity_source",
    "intensity_basis",
    "emissions_kg",
    "emissions_kg_low",
    "emissions_kg_high",
)


def _measurement(record: Mapping[str, Any]) -> Measurement:
    args = {k: v for k, v in record.items() if k in _FIELDS}
    args["errors"] = tuple(args.get("errors", ()))
    return Measurement(**args)


def _args(m: Measurement) -> dict[str, Any]:
    return {name: getattr(m, name) for name in _FIELDS}


def _fallback(run: Mapping[str, Any]) -> Intensity:
    return Intensity(
        g_per_kwh=float(run["intensity_g_per_kwh"]),
        source=str(run["intensity_source"]),
        year=None,
        basis=str(run.get("intensity_basis", "life-cycle")),
        kind=str(run.get("intensity_kind", "country")),
        location=str(run.get("location", "")),
    )


def _save(path: Path, live: LiveIntensity) -> None:
    try:
        cache.save(path, live.points())
    except OSError as exc:  # the cache only saves requests; the re-pricing itself is done
        logger.info("carbon-callbacks: cannot write the intensity cache %s: %s", path, exc)


def _append(
    journal: Path,
    records: list[dict[str, Any]],
    run: Mapping[str, Any],
    changed: list[tuple[int, str, Measurement, Measurement, Measurement]],
) -> None:
    run_id = run.get("run_id")
    steps, final_step = _steps(records)
    sinks = sorted({r["sink"] for r in records if r.get("type") == "sink" and "sink" in r})
    stop = next((r for r in reversed(records) if r.get("type") == "stop"), None)
    out: list[dict[str, Any]] = []
    for index, kind, used, _current, new in changed:
        out.append(reprice_record(run_id, index, kind, used, new, "sync"))
        step = steps.get(index)
        if sinks and step is not None:
            out.append(_metrics(run_id, sinks, step, corrected_metrics(new)))
    if sinks and stop is not None and final_step is not None:
        # The corrected total: the stop record's, plus what this sync changed.
        total = float(stop["emissions_kg"]) + sum(
            new.emissions_kg - current.emissions_kg for _, _, _, current, new in changed
        )
        out.append(_metrics(run_id, sinks, final_step, {CORRECTED_EMISSIONS: total}))
    j = Journal(journal)
    try:
        for record in out:
            j.append(record)
    finally:
        j.close()


def _steps(records: list[dict[str, Any]]) -> tuple[dict[int, int], int | None]:
    """The step each epoch lap was logged at (lap number -> step), and the step of the run's
    final metrics. Epoch laps and their metrics are journaled in the same order; each pair
    is checked on its duration and emissions as used."""
    logged: list[tuple[float, float, int]] = []
    final = None
    for r in records:
        metrics, step = r.get("metrics"), r.get("step")
        if r.get("type") != "metrics" or not isinstance(metrics, dict) or step is None:
            continue
        if "carbon/epoch_emissions_kg" in metrics and "carbon/epoch_duration_s" in metrics:
            logged.append(
                (metrics["carbon/epoch_duration_s"], metrics["carbon/epoch_emissions_kg"], step)
            )
        if "carbon/duration_s" in metrics:
            final = step
    steps: dict[int, int] = {}
    i = 0
    for lap in _laps(records):
        if lap[1] != "epoch":
            continue
        m = lap[2]
        while i < len(logged) and logged[i][:2] != (m.duration_s, m.emissions_kg):
            i += 1
        if i < len(logged):
            steps[lap[0]] = logged[i][2]
            i += 1
    return steps, final


def _metrics(
    run_id: object, sinks: list[str], step: int, metrics: Mapping[str, float]
) -> dict[str, Any]:
    return {
        "type": "metrics",
        "key": os.urandom(8).hex(),
        "sinks": sinks,
        "step": step,
        "metrics": dict(metrics),
        "time_ms": int(time.time() * 1000),
        "run_id": run_id,
    }

"""The end-of-training artifacts: ``carbon/summary.json`` and ``carbon/energy_per_epoch.png``.

When training ends the session builds one summary document (`run_summary`: plain JSON data
from what it already holds, no I/O) and hands it to the sinks that store files (`MlflowSink`:
run artifacts; `CometSink`: assets). They write it from their own thread (`artifact_files`):
the document as ``carbon/summary.json``, and a chart of its per-epoch values as
``carbon/energy_per_epoch.png`` (`render_chart`: matplotlib is imported only then, only if it
is installed, and draws on its Agg canvas directly, never through pyplot, so the user's
backend is left as it is). The journal keeps the document, so ``carbon-callbacks sync`` can
write both files again.

Example:
    >>> doc = run_summary(totals, epochs=[epoch_row(0, lap)], tags=run_tags(tracker))
    >>> sorted(artifact_files(doc))
    ['carbon/energy_per_epoch.png', 'carbon/summary.json']
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from carbon_callbacks import humanize
from carbon_callbacks._version import __version__
from carbon_callbacks.outputs import short_source
from carbon_callbacks.sensors.base import METHOD_DESCRIPTIONS, energy_bounds, is_estimate

if TYPE_CHECKING:
    from carbon_callbacks.equivalents import Equivalent
    from carbon_callbacks.measurement import Measurement
    from carbon_callbacks.prediction import Prediction
    from carbon_callbacks.regions import Alternative

SUMMARY_FILE = "carbon/summary.json"
CHART_FILE = "carbon/energy_per_epoch.png"
FORMAT = 1  # the document's ``"format"``: raised when a key changes meaning or goes away

# Tags that describe the location, the intensity or the methods: the rest describe the
# machine and the software (``carbon.cpu_model``, ``carbon.torch_version``...).
_NOT_HARDWARE = frozenset(
    f"carbon.{name}"
    for name in (
        "country", "region", "cloud", "intensity_source", "intensity_basis", "intensity_kind",
        "pue", "cpu_method", "gpu_method", "ram_method", "estimated", "cpu_estimate",
        "gpu_estimate", "ram_estimate", "greener_region",
    )
)  # fmt: skip


# The fields of one epoch in the document's ``"epochs"`` (and, as a list, in checkpoints).
EPOCH_FIELDS = (
    "epoch", "energy_kwh", "energy_kwh_low", "energy_kwh_high",
    "emissions_kg", "emissions_kg_low", "emissions_kg_high", "duration_s",
)  # fmt: skip


def epoch_row(step: int, lap: Measurement) -> dict[str, Any]:
    """One epoch of the document's ``"epochs"`` list: its step and the lap's figures."""
    return {"epoch": step, **{name: getattr(lap, name) for name in EPOCH_FIELDS[1:]}}


def run_summary(
    totals: Measurement,
    *,
    epochs: Sequence[Mapping[str, Any]],
    tags: Mapping[str, str],
    equivalents: Mapping[str, Equivalent] | None = None,
    prediction: Prediction | None = None,
    greener: Alternative | None = None,
    advice: str | None = None,
) -> dict[str, Any]:
    """The document stored as ``carbon/summary.json`` (JSON-able; energies in kWh, emissions
    in kg CO2eq, or kg CO2 when the intensity's basis is ``co2-only``, durations in s).

    Args:
        totals: the run's totals (`Tracker.stop()`).
        epochs: `epoch_row` of each epoch logged to the run, in order.
        tags: the run's ``carbon.*`` tags (`carbon_callbacks.outputs.run_tags`): the location,
            the hardware and software versions, the estimates' inputs.
        equivalents: the totals' equivalents (`carbon_callbacks.equivalents.equivalents`).
        prediction: the whole-run prediction made during training, if one was.
        greener: the region where the same run would have emitted least
            (`carbon_callbacks.regions.greener_alternatives`), None in the lowest already.
        advice: the summary's line about it (`carbon_callbacks.regions.advice_line`).
    """
    methods = {
        "cpu": totals.cpu_method,
        "gpu": totals.gpu_method,
        "ram": totals.ram_method,
    }
    components = {
        "cpu": totals.cpu_energy_kwh,
        "gpu": totals.gpu_energy_kwh,
        "ram": totals.ram_energy_kwh,
    }
    return {
        "format": FORMAT,
        "generator": f"carbon-callbacks {__version__}",
        "estimated": totals.estimated,
        "totals": {
            "energy_kwh": totals.energy_kwh,
            "emissions_kg": totals.emissions_kg,
            "duration_s": totals.duration_s,
            "epochs": len(epochs),
            "power_w": totals.power_w,
            "pue": totals.pue,
            "start_time": totals.start_time,
            "end_time": totals.end_time,
        },
        "ranges": {
            "energy_kwh": {"low": totals.energy_kwh_low, "high": totals.energy_kwh_high},
            "emissions_kg": {"low": totals.emissions_kg_low, "high": totals.emissions_kg_high},
        },
        "methods": {
            component: {
                "method": method,
                "description": METHOD_DESCRIPTIONS.get(method, method),
                "estimated": is_estimate(method),
                "energy_kwh": components[component],  # device energy, before PUE
                "error_factors": list(energy_bounds(method, 1.0)),
                "inputs": tags.get(f"carbon.{component}_estimate"),
            }
            for component, method in methods.items()
        },
        "intensity": {
            "g_per_kwh": totals.intensity_g_per_kwh,
            "source": totals.intensity_source,
            "year": totals.intensity_year,
            "basis": totals.intensity_basis,
            "kind": tags.get("carbon.intensity_kind"),
            "country": tags.get("carbon.country") or None,
            "region": tags.get("carbon.region") or None,
            "cloud": tags.get("carbon.cloud") or None,
        },
        "hardware": {
            key.removeprefix("carbon."): value
            for key, value in tags.items()
            if key.startswith("carbon.") and key not in _NOT_HARDWARE
        },
        "equivalents": {
            key: {k: v for k, v in dataclasses.asdict(eq).items() if k != "key"}
            for key, eq in (equivalents or {}).items()
        },
        "prediction": None if prediction is None else dataclasses.asdict(prediction),
        "greener_region": None
        if greener is None
        else {**dataclasses.asdict(greener), "advice": advice},
        "errors": list(totals.errors),
        "epochs": [dict(row) for row in epochs],
    }


def summary_json(summary: Mapping[str, Any]) -> bytes:
    """The document as UTF-8 JSON text, indented (NaN or infinity raise ValueError)."""
    return (json.dumps(summary, indent=2, allow_nan=False, ensure_ascii=False) + "\n").encode()


def render_chart(summary: Mapping[str, Any]) -> bytes | None:
    """A PNG of the energy and emissions of each epoch of `summary` (in the units a person
    reads for the values shown: mWh or Wh, mg or g...), with each
    epoch's range shaded when it is an estimate; None when matplotlib is not installed or the
    document has no epoch.

    Draws on a `matplotlib.figure.Figure` with the Agg canvas: pyplot is not imported and the
    process's backend is not changed.
    """
    rows = list(summary.get("epochs") or [])
    if not rows:
        return None
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        return None
    unit = humanize.emissions_unit(str(summary.get("intensity", {}).get("basis", "")))
    x = [row["epoch"] for row in rows]
    fig = Figure(figsize=(8, 5.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    energy, emissions = fig.subplots(2, 1, sharex=True)
    for axes, key, ladder, what, color in (
        (energy, "energy_kwh", humanize.ENERGY_KWH, "energy per epoch", "C0"),
        (emissions, "emissions_kg", humanize.MASS_KG, "emissions per epoch", "C2"),
    ):
        # The unit a person reads for the largest value shown (mWh, Wh...; mg, g...).
        name, size = humanize.pick_unit(
            max(row.get(f"{key}_high", row[key]) for row in rows), ladder
        )
        values = [row[key] / size for row in rows]
        low = [row.get(f"{key}_low", row[key]) / size for row in rows]
        high = [row.get(f"{key}_high", row[key]) / size for row in rows]
        if low != values or high != values:
            axes.fill_between(x, low, high, color=color, alpha=0.2, label="range (estimated)")
        axes.plot(x, values, marker="o", color=color, label=what)
        axes.set_ylabel(f"{what} ({name}{f' {unit}' if key == 'emissions_kg' else ''})")
        axes.set_ylim(bottom=0)
        axes.grid(alpha=0.3)
        axes.legend(loc="lower right", fontsize="small")
    emissions.set_xlabel("epoch")
    emissions.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(chart_title(summary), fontsize="medium")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def chart_title(summary: Mapping[str, Any]) -> str:
    """The chart's title, e.g. ``"6 mWh, 0.27 mg CO2eq in 3 epoch(s) (estimated; Ember 2024)"``:
    units a person reads, never scientific notation."""
    unit = humanize.emissions_unit(str(summary.get("intensity", {}).get("basis", "")))
    totals = summary.get("totals", {})
    kind = "estimated" if summary.get("estimated") else "measured"
    source = short_source(str(summary.get("intensity", {}).get("source", "")))
    return (
        f"{humanize.energy(totals.get('energy_kwh', 0.0))}, "
        f"{humanize.emissions(totals.get('emissions_kg', 0.0), unit=unit)} in "
        f"{len(summary.get('epochs') or [])} epoch(s) ({kind}; {source})"
    )


def artifact_files(summary: Mapping[str, Any]) -> dict[str, bytes]:
    """``{SUMMARY_FILE: json, CHART_FILE: png}``: the files to store (no chart without
    matplotlib or without an epoch)."""
    files = {SUMMARY_FILE: summary_json(summary)}
    chart = render_chart(summary)
    if chart is not None:
        files[CHART_FILE] = chart
    return files

"""What the trackers receive: metric dicts, the ``carbon.*`` tags, and the run summary.

The framework callbacks do no arithmetic: they pass a lap and the totals here and log what
comes back. Keys are a public contract (see the README's "Metrics and tags").
"""

from __future__ import annotations

from collections.abc import Mapping

from carbon_callbacks import humanize
from carbon_callbacks.equivalents import MAIN_EQUIVALENTS, Equivalent
from carbon_callbacks.hardware import hardware_metadata
from carbon_callbacks.measurement import Measurement
from carbon_callbacks.sensors.base import METHOD_DESCRIPTIONS, is_estimate
from carbon_callbacks.tracker import Tracker

PREFIX = "carbon/"

# The tags every run carries (DESIGN.md's contract); `run_tags` adds more.
CONTRACT_TAGS = (
    "carbon.country",
    "carbon.region",
    "carbon.cloud",
    "carbon.intensity_source",
    "carbon.pue",
    "carbon.cpu_model",
    "carbon.cpu_count",
    "carbon.cpu_method",
    "carbon.gpu_model",
    "carbon.gpu_count",
    "carbon.gpu_method",
    "carbon.ram_gb",
    "carbon.ram_method",
    "carbon.estimated",
    "carbon.nodes",
    "carbon.version",
    "carbon.intensity_basis",
    "carbon.node_method",
)

# The range of the run's energy and emissions, logged once when training ends.
RANGE_KEYS = (
    "carbon/energy_kwh_low",
    "carbon/energy_kwh_high",
    "carbon/emissions_kg_low",
    "carbon/emissions_kg_high",
)


# Running totals: one value per step (a later fit into the same run never writes them twice).
CUMULATIVE_KEYS = ("carbon/energy_kwh", "carbon/emissions_kg")

# Logged in the end-of-training metrics only, so it marks them (`final_metrics`).
RUN_END_KEY = "carbon/duration_s"

# An epoch priced again with a provider's later figures (at the end of training, or by
# `carbon-callbacks sync`), at that epoch's step; the run's corrected total at the last step.
CORRECTED_EPOCH_EMISSIONS = "carbon/corrected_epoch_emissions_kg"
CORRECTED_INTENSITY = "carbon/corrected_intensity_g_per_kwh"
CORRECTED_EMISSIONS = "carbon/corrected_emissions_kg"


def corrected_metrics(lap: Measurement) -> dict[str, float]:
    """An epoch's emissions and intensity priced again (see `CORRECTED_EPOCH_EMISSIONS`)."""
    return {
        CORRECTED_EPOCH_EMISSIONS: lap.emissions_kg,
        CORRECTED_INTENSITY: lap.intensity_g_per_kwh,
    }


def epoch_metrics(lap: Measurement, totals: Measurement) -> dict[str, float]:
    """Per-epoch metrics (logged with step = epoch index) plus the running totals."""
    metrics = {
        "carbon/epoch_energy_kwh": lap.energy_kwh,
        "carbon/epoch_emissions_kg": lap.emissions_kg,
        "carbon/epoch_duration_s": lap.duration_s,
        "carbon/energy_kwh": totals.energy_kwh,
        "carbon/emissions_kg": totals.emissions_kg,
        "carbon/intensity_g_per_kwh": lap.intensity_g_per_kwh,
    }
    for name, value in (
        ("cpu", lap.cpu_energy_kwh),
        ("gpu", lap.gpu_energy_kwh),
        ("ram", lap.ram_energy_kwh),
    ):
        if value is not None:
            metrics[f"carbon/epoch_{name}_energy_kwh"] = value
    power = lap.power_w
    if power is not None:
        metrics["carbon/epoch_power_w"] = power
    return metrics


def interrupted_metrics(lap: Measurement) -> dict[str, float]:
    """The epoch training stopped in (raised), under keys of its own: a resume logs that
    epoch again, in full, under the per-epoch keys."""
    return {
        "carbon/interrupted_epoch_energy_kwh": lap.energy_kwh,
        "carbon/interrupted_epoch_emissions_kg": lap.emissions_kg,
        "carbon/interrupted_epoch_duration_s": lap.duration_s,
    }


def final_metrics(
    totals: Measurement, equivalents: Mapping[str, Equivalent] | None = None
) -> dict[str, float]:
    """Run totals, logged once when training ends (the last value of the cumulative keys)."""
    metrics = {
        "carbon/energy_kwh": totals.energy_kwh,
        "carbon/emissions_kg": totals.emissions_kg,
        RUN_END_KEY: totals.duration_s,
        "carbon/energy_kwh_low": totals.energy_kwh_low,
        "carbon/energy_kwh_high": totals.energy_kwh_high,
        "carbon/emissions_kg_low": totals.emissions_kg_low,
        "carbon/emissions_kg_high": totals.emissions_kg_high,
    }
    for key, eq in (equivalents or {}).items():
        if key in MAIN_EQUIVALENTS:
            metrics[f"carbon/equivalent_{key}"] = eq.value
    return metrics


def run_tags(
    tracker: Tracker, *, nodes: int | None = None, world_size: int | None = None
) -> dict[str, str]:
    """The ``carbon.*`` tags of a run, all strings (nodes and world size: the tracker's)."""
    intensity = tracker.intensity
    methods = tracker.methods
    meta = hardware_metadata(tracker.sensors)
    tags = {
        "carbon.country": intensity.country or "",
        "carbon.region": intensity.region or "",
        "carbon.cloud": intensity.cloud or "",
        "carbon.intensity_source": intensity.source,
        "carbon.intensity_basis": intensity.basis,
        "carbon.intensity_kind": intensity.kind,
        "carbon.pue": f"{tracker.pue:g}",
        "carbon.cpu_method": methods["cpu"],
        "carbon.gpu_method": methods["gpu"],
        "carbon.ram_method": methods["ram"],
        "carbon.estimated": str(any(is_estimate(m) for m in methods.values())).lower(),
        "carbon.nodes": str(tracker.nodes if nodes is None else nodes),
        "carbon.world_size": str(tracker.world_size if world_size is None else world_size),
        "carbon.node_method": tracker.node_method,
    }
    source = tracker.node_source
    if source is not None:  # the kind of meter only: never a BMC's address
        tags["carbon.node_source"] = source
    live = tracker.live
    if live is not None:  # a live provider prices the laps; the bundled value is its fallback
        tags["carbon.intensity_source"] = live.describe()
        tags["carbon.intensity_basis"] = live.basis
        tags["carbon.intensity_kind"] = "live"
        tags["carbon.intensity_provider"] = live.spec
    tags.update({f"carbon.{k}": v for k, v in meta.items()})
    for component, sensor in tracker.sensors.items():
        describe = getattr(sensor, "describe", None)  # an estimate's inputs, in words
        if describe is not None:
            tags[f"carbon.{component}_estimate"] = describe()
    if tracker.gpu_count is not None:  # summed over ranks; the model list is this rank's
        tags["carbon.gpu_count"] = str(tracker.gpu_count)
    return tags


def summary(
    totals: Measurement,
    equivalents: Mapping[str, Equivalent] | None = None,
    *,
    title: str = "carbon-callbacks",
) -> str:
    """A short plain-text summary of a run: totals with their range, the intensity and its
    basis, how each part was obtained, equivalents.

    Quantities are in units a person reads (``"3.4 Wh (3.2–4.9 Wh, estimated), 1.2 g CO2eq
    ... in 5.2 min"``, see `carbon_callbacks.humanize`); the metrics keep kWh and kg. An
    intensity that counts combustion CO2 only is printed as CO2, never CO2eq.
    """
    unit = humanize.emissions_unit(totals.intensity_basis)
    kind = "estimated" if totals.estimated else "measured"
    effective = " effective" if totals.mixed_intensity else ""
    energy = _with_range(
        totals.energy_kwh, totals.energy_kwh_low, totals.energy_kwh_high, humanize.ENERGY_KWH, kind
    )
    mass = _with_range(
        totals.emissions_kg, totals.emissions_kg_low, totals.emissions_kg_high,
        humanize.MASS_KG, kind, f" {unit}",
    )  # fmt: skip
    lines = [
        f"{title}: {energy}, {mass} in {humanize.duration(totals.duration_s, 3)} "
        f"(intensity {humanize.number(totals.intensity_g_per_kwh, 4)} g {unit}/kWh{effective}, "
        f"{totals.intensity_basis}, {short_source(totals.intensity_source)}; "
        f"PUE {humanize.number(totals.pue, 3)})",
    ]
    for component, method in (
        ("CPU", totals.cpu_method),
        ("GPU", totals.gpu_method),
        ("RAM", totals.ram_method),
    ):
        lines.append(f"  {component}: {METHOD_DESCRIPTIONS.get(method, method)}")
    if totals.node_method != "none":
        node = (
            ""
            if totals.node_energy_kwh is None
            else f" ({humanize.energy(totals.node_energy_kwh)})"
        )
        lines.append(
            f"  Node: {METHOD_DESCRIPTIONS.get('node-meter')}{node}: it replaces the "
            "components' sum in the total"
            + (
                "; nodes without a meter count their components"
                if "+" in totals.node_method
                else ""
            )
        )
    if totals.estimated:
        lines.append("  Some components are estimates, not measurements (see above).")
    bases = totals.intensity_basis.split("+")
    if "marginal" in bases:
        lines.append(
            "  Marginal intensity (MOER): the emissions of the plants that answered the extra "
            "load, not an average share of the grid; compare it with marginal figures only."
            + (
                " This total mixes it with an average (the yearly fallback)."
                if len(bases) > 1
                else ""
            )
        )
    main = [eq for key, eq in (equivalents or {}).items() if key in MAIN_EQUIVALENTS]
    if main:
        lines.append("  That is about " + ", ".join(str(eq) for eq in main) + ".")
    if totals.errors:
        lines.append(f"  {len(totals.errors)} measurement problem(s): " + "; ".join(totals.errors))
    return "\n".join(lines)


def short_source(source: str) -> str:
    """A source without its caveat (the text after ``"; "``, kept in the tags and docs)."""
    return source.split("; ", 1)[0]


def _with_range(
    value: float, low: float, high: float, ladder: humanize.Ladder, kind: str, suffix: str = ""
) -> str:
    """``"21 Wh (20–30 Wh, estimated)"``: the value and its range in the value's unit (then
    `suffix`); the value alone when it is exact."""
    text = humanize.quantity(value, ladder) + suffix
    if low == high:
        return text
    unit, size = humanize.pick_unit(abs(value), ladder)
    ends = f"{humanize.number(low / size, 3)}–{humanize.number(high / size, 3)}"
    return f"{text} ({ends} {unit}{suffix}, {kind})"

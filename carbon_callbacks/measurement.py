"""Frozen results of the tracker: one `Measurement` per lap, and the same type for totals."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from carbon_callbacks.sensors.base import METHOD_DESCRIPTIONS, NONE, is_estimate

MIXED = "mixed"  # the prefix of a sum's source when its laps were priced differently
_MAX_SOURCES = 4  # sources named in a mixed source before "+ N more"
_SAME = math.nan  # a range bound left out: the value itself


def _add_optional(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return a + b


@dataclass(frozen=True)
class Measurement:
    """Energy and emissions over one interval (a lap, or a whole run).

    Energies are in kWh. A component's energy is ``None`` when it was not counted, never 0.0
    for "unknown". ``energy_kwh`` is the facility energy: the sum of the components times
    ``pue``. Each ``*_method`` says how the component was obtained (see
    `carbon_callbacks.sensors.base`); `estimated` is true when any of them is an estimate.

    ``intensity_basis`` says what the intensity counts: ``"life-cycle"`` (CO2eq of
    generation, upstream included), ``"direct"`` (combustion only), ``"co2-only"``
    (combustion CO2, no other gases), ``"user"`` (a value the user gave), ``"marginal"``; a
    sum of laps priced on different bases joins them with ``+``.

    ``energy_kwh_low`` <= ``energy_kwh`` <= ``energy_kwh_high`` is the range the true energy
    lies in, given each component's method (`carbon_callbacks.sensors.base.energy_bounds`);
    likewise for emissions (the range of the energy at the same intensity: the intensity's
    own uncertainty is not in it). Both ends equal the value when every component is exact
    (the user's own watts); left out, they are the value.

    ``node_method`` is ``"node-meter"`` when the node's own power meter gave the energy:
    ``energy_kwh`` is then the meter's energy times PUE, not the components' sum (they are
    still given, for insight), and ``node_energy_kwh`` the meter's energy before PUE;
    ``"node-meter+none"`` when only some nodes have a meter (the others count their
    components); ``"none"`` otherwise, with ``node_energy_kwh`` None.

    A sum of laps priced at different intensities (or PUEs) carries the effective values,
    ``emissions_kg * 1000 / energy_kwh`` (and energy over the components' sum), and a source
    that begins with ``"mixed: "`` and names the sources summed.
    """

    start_time: float  # unix seconds
    end_time: float  # unix seconds
    duration_s: float
    energy_kwh: float
    cpu_energy_kwh: float | None
    gpu_energy_kwh: float | None
    ram_energy_kwh: float | None
    emissions_kg: float
    intensity_g_per_kwh: float
    intensity_source: str
    intensity_year: int | None
    pue: float
    cpu_method: str = NONE
    gpu_method: str = NONE
    ram_method: str = NONE
    errors: tuple[str, ...] = ()
    intensity_basis: str = "life-cycle"
    energy_kwh_low: float = _SAME
    energy_kwh_high: float = _SAME
    emissions_kg_low: float = _SAME
    emissions_kg_high: float = _SAME
    node_method: str = NONE
    node_energy_kwh: float | None = None

    def __post_init__(self) -> None:
        # A range left out (NaN, or None from an old journal) is the value itself.
        for name, value in (
            ("energy_kwh_low", self.energy_kwh),
            ("energy_kwh_high", self.energy_kwh),
            ("emissions_kg_low", self.emissions_kg),
            ("emissions_kg_high", self.emissions_kg),
        ):
            bound = getattr(self, name)
            if bound is None or bound != bound:
                object.__setattr__(self, name, value)

    @property
    def estimated(self) -> bool:
        return any(is_estimate(m) for m in (self.cpu_method, self.gpu_method, self.ram_method))

    @property
    def it_energy_kwh(self) -> float | None:
        """The IT energy before PUE: the components' sum, or the node-basis energy when a
        node meter was read; None when nothing was counted."""
        if self.node_method != NONE:
            return self.energy_kwh / self.pue
        parts = [e for e in (self.cpu_energy_kwh, self.gpu_energy_kwh, self.ram_energy_kwh)]
        if all(e is None for e in parts):
            return None
        return sum(e for e in parts if e is not None)

    @property
    def power_w(self) -> float | None:
        """Mean facility power over the interval, or None for an empty interval."""
        if self.duration_s <= 0:
            return None
        return self.energy_kwh * 3_600_000.0 / self.duration_s

    @property
    def mixed_intensity(self) -> bool:
        """True when the interval's laps were priced at different intensities."""
        return self.intensity_source.startswith(MIXED + ":")

    def method_descriptions(self) -> dict[str, str]:
        return {
            "cpu": METHOD_DESCRIPTIONS.get(self.cpu_method, self.cpu_method),
            "gpu": METHOD_DESCRIPTIONS.get(self.gpu_method, self.gpu_method),
            "ram": METHOD_DESCRIPTIONS.get(self.ram_method, self.ram_method),
        }

    def __add__(self, other: Measurement) -> Measurement:
        """Combine consecutive intervals (laps into totals) or parallel ones (ranks).

        Durations add for consecutive intervals; for parallel intervals use `combine_parallel`.
        """
        if not isinstance(other, Measurement):
            return NotImplemented
        summed = _summed_energy(self, other)
        # Built directly rather than with dataclasses.replace: this runs at every lap.
        return Measurement(
            start_time=min(self.start_time, other.start_time),
            end_time=max(self.end_time, other.end_time),
            duration_s=self.duration_s + other.duration_s,
            **summed,
            **_summed_pricing(self, other, summed),
        )

    def combine_parallel(self, other: Measurement) -> Measurement:
        """Add the energy of an interval measured at the same time elsewhere (another rank)."""
        summed = _summed_energy(self, other)
        return dataclasses.replace(
            self,
            start_time=min(self.start_time, other.start_time),
            end_time=max(self.end_time, other.end_time),
            duration_s=max(self.duration_s, other.duration_s),
            **summed,
            **_summed_pricing(self, other, summed),
        )

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["errors"] = list(self.errors)
        d["estimated"] = self.estimated
        d["power_w"] = self.power_w
        return d


def merge_method(a: str, b: str) -> str:
    """Join two method (or basis) labels: ``"rapl"`` and ``"estimate-tdp"`` give
    ``"rapl+estimate-tdp"``; ``"none"`` joins as nothing; each part appears once."""
    if a == b or b == NONE:
        return a
    if a == NONE:
        return b
    parts = dict.fromkeys(a.split("+"))
    parts.update(dict.fromkeys(b.split("+")))
    return "+".join(parts)


def merge_source(a: str, b: str) -> str:
    """The source of a sum of laps priced from sources `a` and `b`: `a` when they are the
    same, else ``"mixed: A + B"`` (at most four named, then ``"+ N more"``)."""
    if a == b:
        return a
    names: dict[str, None] = {}
    more = 0
    for source in (a, b):
        body = source[len(MIXED) + 2 :] if source.startswith(MIXED + ": ") else source
        for part in body.split(" + "):
            if part.endswith(" more") and part[:-5].isdigit():
                more += int(part[:-5])
            else:
                names[part] = None
    listed = list(names)
    more += max(0, len(listed) - _MAX_SOURCES)
    text = f"{MIXED}: " + " + ".join(listed[:_MAX_SOURCES])
    return text + (f" + {more} more" if more else "")


def _summed_energy(a: Measurement, b: Measurement) -> dict[str, Any]:
    return {
        "energy_kwh": a.energy_kwh + b.energy_kwh,
        "cpu_energy_kwh": _add_optional(a.cpu_energy_kwh, b.cpu_energy_kwh),
        "gpu_energy_kwh": _add_optional(a.gpu_energy_kwh, b.gpu_energy_kwh),
        "ram_energy_kwh": _add_optional(a.ram_energy_kwh, b.ram_energy_kwh),
        "emissions_kg": a.emissions_kg + b.emissions_kg,
        "cpu_method": merge_method(a.cpu_method, b.cpu_method),
        "gpu_method": merge_method(a.gpu_method, b.gpu_method),
        "ram_method": merge_method(a.ram_method, b.ram_method),
        "errors": tuple(dict.fromkeys(a.errors + b.errors)) if b.errors else a.errors,
        "node_method": merge_method(a.node_method, b.node_method),
        "node_energy_kwh": _add_optional(a.node_energy_kwh, b.node_energy_kwh),
        # Bounds add: a method's error is systematic (the same model errs the same way in
        # every lap), so the errors of consecutive laps do not cancel.
        "energy_kwh_low": a.energy_kwh_low + b.energy_kwh_low,
        "energy_kwh_high": a.energy_kwh_high + b.energy_kwh_high,
        "emissions_kg_low": a.emissions_kg_low + b.emissions_kg_low,
        "emissions_kg_high": a.emissions_kg_high + b.emissions_kg_high,
    }


def _summed_pricing(a: Measurement, b: Measurement, summed: dict[str, Any]) -> dict[str, Any]:
    """Intensity, source, year, basis and PUE of a sum: `a`'s when `b` was priced the same,
    else the effective values of the sum."""
    if (
        a.intensity_g_per_kwh == b.intensity_g_per_kwh
        and a.intensity_source == b.intensity_source
        and a.intensity_basis == b.intensity_basis
        and a.pue == b.pue
    ):
        return {
            "intensity_g_per_kwh": a.intensity_g_per_kwh,
            "intensity_source": a.intensity_source,
            "intensity_year": a.intensity_year,
            "intensity_basis": a.intensity_basis,
            "pue": a.pue,
        }
    energy = summed["energy_kwh"]
    if energy > 0:
        intensity = summed["emissions_kg"] * 1000.0 / energy
    else:  # nothing to weight by: the plain mean of the two
        intensity = (a.intensity_g_per_kwh + b.intensity_g_per_kwh) / 2.0
    pue = a.pue
    if a.pue != b.pue:
        it_kwh = _add_optional(a.it_energy_kwh, b.it_energy_kwh)
        pue = energy / it_kwh if it_kwh else (a.pue + b.pue) / 2.0
    source = merge_source(a.intensity_source, b.intensity_source)
    if not source.startswith(MIXED + ": ") and a.intensity_g_per_kwh != b.intensity_g_per_kwh:
        source = f"{MIXED}: {source}"  # one source, several of its values (two countries...)
    return {
        "intensity_g_per_kwh": intensity,
        "intensity_source": source,
        "intensity_year": a.intensity_year if a.intensity_year == b.intensity_year else None,
        "intensity_basis": merge_method(a.intensity_basis, b.intensity_basis),
        "pue": pue,
    }

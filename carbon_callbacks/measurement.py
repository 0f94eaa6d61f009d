"""Frozen results of the tracker: one `Measurement` per lap, and the same type for totals."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from carbon_callbacks.sensors.base import METHOD_DESCRIPTIONS, NONE, is_estimate


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

    @property
    def estimated(self) -> bool:
        return any(is_estimate(m) for m in (self.cpu_method, self.gpu_method, self.ram_method))

    @property
    def power_w(self) -> float | None:
        """Mean facility power over the interval, or None for an empty interval."""
        if self.duration_s <= 0:
            return None
        return self.energy_kwh * 3_600_000.0 / self.duration_s

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
        # Built directly rather than with dataclasses.replace: this runs at every lap.
        return Measurement(
            start_time=min(self.start_time, other.start_time),
            end_time=max(self.end_time, other.end_time),
            duration_s=self.duration_s + other.duration_s,
            intensity_g_per_kwh=self.intensity_g_per_kwh,
            intensity_source=self.intensity_source,
            intensity_year=self.intensity_year,
            pue=self.pue,
            **_summed_energy(self, other),
        )

    def combine_parallel(self, other: Measurement) -> Measurement:
        """Add the energy of an interval measured at the same time elsewhere (another rank)."""
        return dataclasses.replace(
            self,
            start_time=min(self.start_time, other.start_time),
            end_time=max(self.end_time, other.end_time),
            duration_s=max(self.duration_s, other.duration_s),
            **_summed_energy(self, other),
        )

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["errors"] = list(self.errors)
        d["estimated"] = self.estimated
        d["power_w"] = self.power_w
        return d


def _merge_method(a: str, b: str) -> str:
    if a == b or b == NONE:
        return a
    if a == NONE:
        return b
    return f"{a}+{b}"


def _summed_energy(a: Measurement, b: Measurement) -> dict[str, Any]:
    return {
        "energy_kwh": a.energy_kwh + b.energy_kwh,
        "cpu_energy_kwh": _add_optional(a.cpu_energy_kwh, b.cpu_energy_kwh),
        "gpu_energy_kwh": _add_optional(a.gpu_energy_kwh, b.gpu_energy_kwh),
        "ram_energy_kwh": _add_optional(a.ram_energy_kwh, b.ram_energy_kwh),
        "emissions_kg": a.emissions_kg + b.emissions_kg,
        "cpu_method": _merge_method(a.cpu_method, b.cpu_method),
        "gpu_method": _merge_method(a.gpu_method, b.gpu_method),
        "ram_method": _merge_method(a.ram_method, b.ram_method),
        "errors": tuple(dict.fromkeys(a.errors + b.errors)) if b.errors else a.errors,
    }

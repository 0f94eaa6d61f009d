"""Human-scale equivalents of a footprint (km driven, hours of TV), from bundled factors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from carbon_callbacks.data import load_json
from carbon_callbacks.measurement import Measurement

MAIN_EQUIVALENTS = ("car_km", "tv_hours", "phone_charges")


@dataclass(frozen=True)
class Equivalent:
    key: str
    value: float
    label: str
    basis: str  # "emissions" (from kg CO2eq) or "energy" (from kWh)
    source: str
    year: Any

    def __str__(self) -> str:
        return f"{self.value:,.3g} {self.label}"


def factors() -> dict[str, dict[str, Any]]:
    """The bundled factors, keyed like ``car_km`` (see equivalents.json for sources)."""
    return dict(load_json("equivalents.json")["factors"])


def equivalents(m: Measurement, keys: tuple[str, ...] | None = None) -> dict[str, Equivalent]:
    """Equivalents of `m`: emission-based ones from kg CO2eq, energy-based ones from kWh."""
    out = {}
    for key, f in factors().items():
        if keys is not None and key not in keys:
            continue
        if f["basis"] == "emissions":
            value = m.emissions_kg / f["kg_co2e_per_unit"]
        else:
            value = m.energy_kwh / f["kwh_per_unit"]
        out[key] = Equivalent(key, value, f["label"], f["basis"], f["source"], f.get("year"))
    return out

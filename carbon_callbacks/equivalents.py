"""Human-scale equivalents of a footprint (km driven, hours of TV), from bundled factors.

The values are in the factors' units (km, hours, charges); `str()` shows them in units a
person reads (see `carbon_callbacks.humanize`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from carbon_callbacks import humanize
from carbon_callbacks.data import load_json
from carbon_callbacks.measurement import Measurement

MAIN_EQUIVALENTS = ("car_km", "tv_hours", "phone_charges")
HOUR_S = 3600.0
YEAR_S = 365.25 * 86_400.0


@dataclass(frozen=True)
class Equivalent:
    key: str
    value: float
    label: str
    basis: str  # "emissions" (from kg CO2eq) or "energy" (from kWh)
    source: str
    year: Any

    def __str__(self) -> str:
        """In units a person reads: ``"7 mm driven by ..."``, ``"1.2 s of a ... TV ..."``."""
        return human(self.value, self.label)


def human(value: float, label: str) -> str:
    """`value` units of a factor whose `label` starts with its unit, in human-scale units.

    A label's first word is the factor's unit (``"km driven by ..."``, ``"hours of ..."``,
    ``"years of ..."``, ``"litres of ..."``, ``"passenger-km ..."``); a label without one counts
    things (``"full smartphone charges"``).

    Example:
        >>> human(7.04e-6, "km driven by an average gasoline passenger car (US)")
        '7 mm driven by an average gasoline passenger car (US)'
    """
    unit, _, rest = label.partition(" ")
    if unit == "km":
        return f"{humanize.length(value)} {rest}"
    if unit == "passenger-km":
        return f"{humanize.length(value)} {rest} (one passenger)"
    if unit == "hours":
        return f"{humanize.duration(value * HOUR_S)} {rest}"
    if unit == "years":
        return f"{humanize.duration(value * YEAR_S)} {rest}"
    if unit == "litres":
        return f"{humanize.volume(value)} {rest}"
    return f"{humanize.count(value)} {label}"


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

"""Numbers a person reads: "3.4 Wh", "7 mm", "1.2 s", "0.02"; never scientific notation.

Every line meant for people (the summary, the equivalents, the prediction line, the live line
of ``carbon-callbacks run``, the report's text) formats its quantities here; the metrics and
JSON outputs keep their SI units (kWh, kg, s, km) untouched.

Each quantity is shown in the largest unit of its ladder that is at most its size (energy
mWh/Wh/kWh/MWh/GWh, mass mg/g/kg/t, length mm/m/km, time ms/s/min/h/days/years, volume
ml/l/m³), rounded to a few significant digits. A value below 0.001 of the smallest unit is
written ``"less than 0.001 mWh"``: true, and readable.

Example:
    >>> energy(0.0034)
    '3.4 Wh'
    >>> length(7.04e-6), duration(3600 * 0.01), number(0.0216)
    ('7 mm', '36 s', '0.022')
"""

from __future__ import annotations

import math
from collections.abc import Sequence

# Each ladder: (unit, size of the unit in the base unit of the quantity), smallest first.
Ladder = Sequence[tuple[str, float]]
ENERGY_KWH: Ladder = (("mWh", 1e-6), ("Wh", 1e-3), ("kWh", 1.0), ("MWh", 1e3), ("GWh", 1e6))
MASS_KG: Ladder = (("mg", 1e-6), ("g", 1e-3), ("kg", 1.0), ("t", 1e3))
LENGTH_KM: Ladder = (("mm", 1e-6), ("m", 1e-3), ("km", 1.0))
VOLUME_L: Ladder = (("ml", 1e-3), ("l", 1.0), ("m³", 1e3))
DURATION_S: Ladder = (
    ("ms", 1e-3),
    ("s", 1.0),
    ("min", 60.0),
    ("h", 3600.0),
    ("days", 86_400.0),
    ("years", 365.25 * 86_400.0),  # a Julian year
)
SINGULAR = {"days": "day", "years": "year"}
SMALLEST = 0.001  # below this many of the smallest unit: "less than 0.001 <unit>"


def number(value: float, digits: int = 2) -> str:
    """`value` rounded to `digits` significant digits, in positional notation.

    Trailing zeros are dropped and thousands are separated by commas: ``number(123456)`` is
    ``"120,000"``, ``number(7.04)`` is ``"7"``, ``number(0.000123)`` is ``"0.00012"``.

    Args:
        value: any float; NaN and infinities come back as ``"nan"``, ``"inf"``, ``"-inf"``.
        digits: significant digits (>= 1).
    """
    if value == 0 or not math.isfinite(value):
        return "0" if value == 0 else str(value)
    rounded = float(f"{value:.{digits - 1}e}")  # 9.99 -> 10.0 moves the exponent: redo it
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(rounded))))
    text = f"{rounded:,.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def quantity(value: float, ladder: Ladder, digits: int = 3) -> str:
    """`value` (in the ladder's base unit) in the unit a person reads, e.g. ``"3.4 Wh"``.

    Args:
        value: the quantity in the base unit of `ladder` (kWh for `ENERGY_KWH`, ...).
        ladder: (unit, size in the base unit) pairs, smallest first.
        digits: significant digits (>= 1).
    """
    unit, size = pick_unit(abs(value), ladder, digits)
    if value != 0 and abs(value) / size < SMALLEST:
        return f"less than {number(SMALLEST)} {unit}"
    text = number(value / size, digits)
    return f"{text} {SINGULAR.get(unit, unit) if text == '1' else unit}"


def pick_unit(magnitude: float, ladder: Ladder, digits: int = 3) -> tuple[str, float]:
    """The largest unit of `ladder` that `magnitude` (base unit, >= 0) rounds to at least 1 of.

    Also the unit for a column or an axis: pass the largest value shown.

    Returns:
        (unit, size of the unit in the base unit); for 0, the base unit itself ("0 kWh").
    """
    if magnitude == 0:
        return next(((u, s) for u, s in ladder if s == 1.0), ladder[0])
    chosen = ladder[0]
    for unit, size in ladder:
        # Compare after rounding, so that 999.7 Wh is "1 kWh", not "1000 Wh".
        if float(f"{magnitude / size:.{digits - 1}e}") >= 1.0:
            chosen = (unit, size)
    return chosen


def energy(kwh: float, digits: int = 3) -> str:
    """Energy given in kWh, e.g. ``energy(0.0034) == "3.4 Wh"``."""
    return quantity(kwh, ENERGY_KWH, digits)


def mass(kg: float, digits: int = 3) -> str:
    """Mass given in kg, e.g. ``mass(0.00046) == "460 mg"``."""
    return quantity(kg, MASS_KG, digits)


def emissions_unit(basis: str) -> str:
    """``"CO2"`` for an intensity that counts combustion CO2 only (basis ``"co2-only"``),
    else ``"CO2eq"``: a CO2-only figure is never printed as CO2eq."""
    return "CO2" if basis == "co2-only" else "CO2eq"


def emissions(kg: float, digits: int = 3, unit: str = "CO2eq") -> str:
    """Emissions given in kg CO2eq, e.g. ``emissions(0.0025) == "2.5 g CO2eq"``; `unit`
    ``"CO2"`` for an intensity that counts combustion CO2 only."""
    return f"{mass(kg, digits)} {unit}"


def length(km: float, digits: int = 2) -> str:
    """Length given in km, e.g. ``length(7.04e-6) == "7 mm"``."""
    return quantity(km, LENGTH_KM, digits)


def volume(litres: float, digits: int = 2) -> str:
    """Volume given in litres, e.g. ``volume(0.0123) == "12 ml"``."""
    return quantity(litres, VOLUME_L, digits)


def duration(seconds: float, digits: int = 2) -> str:
    """Time given in seconds, e.g. ``duration(312) == "5.2 min"``, ``duration(1) == "1 s"``."""
    return quantity(seconds, DURATION_S, digits)


def count(value: float, digits: int = 2) -> str:
    """A count of things (phone charges), e.g. ``"0.022"``; ``"less than 0.001"`` below that."""
    if value != 0 and abs(value) < SMALLEST:
        return f"less than {number(SMALLEST)}"
    return number(value, digits)


def percent(part: float, whole: float) -> str:
    """``part`` as a share of ``whole``: ``"64 %"``, ``"0.5 %"``; ``"-"`` when `whole` is 0."""
    if whole == 0:
        return "-"
    share = 100.0 * part / whole
    return f"{number(share, 2) if share < 10 else f'{share:.0f}'} %"

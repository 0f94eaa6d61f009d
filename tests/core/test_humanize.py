"""Human-scale numbers: exact strings, and every line meant for people over 1e-9 .. 1e4 kWh."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest

from carbon_callbacks import Measurement, humanize
from carbon_callbacks.cli import Progress
from carbon_callbacks.data import load_json
from carbon_callbacks.equivalents import equivalents, human
from carbon_callbacks.intensity import resolve
from carbon_callbacks.outputs import summary
from carbon_callbacks.prediction import predict_run
from carbon_callbacks.regions import advice_line
from carbon_callbacks.report import RunRow
from carbon_callbacks.report_chart import format_table

# Scientific notation: a digit, then e/E, an optional sign and a digit ("4.6e-05", "1E+04").
SCIENTIFIC = re.compile(r"\d[eE][+-]?\d")
# Every decade from 1e-9 to 1e4 kWh, with values that round up into the next unit.
MAGNITUDES_KWH = [m * 10.0**e for e in range(-9, 4) for m in (1.0, 2.5, 9.9996)] + [1e4]
INTENSITIES = (0.5, 41.44, 472.99, 1000.0)  # g/kWh: a near-zero grid up to coal


@pytest.mark.parametrize(
    ("value", "digits", "text"),
    [
        (0.0, 2, "0"),
        (7.04, 2, "7"),
        (0.0216, 2, "0.022"),
        (0.000123, 2, "0.00012"),
        (9.99, 2, "10"),
        (123456.0, 2, "120,000"),
        (-0.5, 2, "-0.5"),
        (41.44, 4, "41.44"),
        (1e-9, 3, "0.000000001"),
        (float("nan"), 2, "nan"),
    ],
)
def test_number(value: float, digits: int, text: str) -> None:
    assert humanize.number(value, digits) == text


@pytest.mark.parametrize(
    ("call", "text"),
    [
        (lambda: humanize.energy(0.0034), "3.4 Wh"),
        (lambda: humanize.energy(1e-9), "0.001 mWh"),  # 3.6 mJ
        (lambda: humanize.energy(3e-10), "less than 0.001 mWh"),
        (lambda: humanize.energy(0.9997), "1 kWh"),  # rounds up into the next unit
        (lambda: humanize.energy(0.99949), "999 Wh"),
        (lambda: humanize.energy(1e4), "10 MWh"),
        (lambda: humanize.energy(0.0), "0 kWh"),
        (lambda: humanize.mass(0.00046), "460 mg"),
        (lambda: humanize.emissions(2.4864e-3), "2.49 g CO2eq"),
        (lambda: humanize.emissions(12_345.0), "12.3 t CO2eq"),
        (lambda: humanize.length(7.04e-6), "7 mm"),
        (lambda: humanize.length(41_000.0), "41,000 km"),
        (lambda: humanize.volume(0.0123), "12 ml"),
        (lambda: humanize.duration(1.2), "1.2 s"),
        (lambda: humanize.duration(0.25), "250 ms"),
        (lambda: humanize.duration(312.0), "5.2 min"),
        (lambda: humanize.duration(86_400.0), "1 day"),
        (lambda: humanize.duration(3 * 365.25 * 86_400.0), "3 years"),
        (lambda: humanize.count(0.0216), "0.022"),
        (lambda: humanize.count(5e-8), "less than 0.001"),
        (lambda: humanize.percent(16.0, 25.0), "64 %"),
        (lambda: humanize.percent(1.0, 200.0), "0.5 %"),
        (lambda: humanize.percent(1.0, 0.0), "-"),
    ],
)
def test_quantities(call: Any, text: str) -> None:
    assert call() == text


LADDERS = {
    "energy": (humanize.energy, 1.0, ["mWh", "Wh", "kWh", "MWh", "GWh"]),
    "mass": (humanize.mass, 1.0, ["mg", "g", "kg", "t"]),
    "length": (humanize.length, 1.0, ["mm", "m", "km"]),
    "duration": (humanize.duration, 3600.0, ["ms", "s", "min", "h", "days", "years"]),
}


@pytest.mark.parametrize("kind", sorted(LADDERS))
@pytest.mark.parametrize("value", MAGNITUDES_KWH)
def test_each_quantity_is_in_a_unit_a_person_reads(kind: str, value: float) -> None:
    """Between 1 and 1000 of a unit, except below the smallest unit or above the largest."""
    function, scale, units = LADDERS[kind]
    text = function(value * scale)
    assert not SCIENTIFIC.search(text), text
    number, unit = text.removeprefix("less than ").rsplit(" ", 1)
    unit = {"day": "days", "year": "years"}.get(unit, unit)
    assert unit in units, text
    amount = float(number.replace(",", ""))
    if text.startswith("less than "):
        assert unit == units[0] and amount == 0.001
    elif unit == units[0]:
        assert 0.001 <= amount < 1000, text
    elif unit != units[-1]:
        assert amount >= 1, text
        assert amount < {"s": 60, "min": 60, "h": 24, "days": 366}.get(unit, 1000), text


def _measurement(kwh: float, g_per_kwh: float, seconds: float) -> Measurement:
    return Measurement(
        start_time=0.0,
        end_time=seconds,
        duration_s=seconds,
        energy_kwh=kwh,
        cpu_energy_kwh=kwh,
        gpu_energy_kwh=None,
        ram_energy_kwh=None,
        emissions_kg=kwh * g_per_kwh / 1000,
        intensity_g_per_kwh=g_per_kwh,
        intensity_source="user-given",
        intensity_year=None,
        pue=1.0,
        cpu_method="constant",
    )


class _Tracker:
    """What `Progress` reads: `peek()` (the lap so far) and `totals` (laps done)."""

    def __init__(self, m: Measurement) -> None:
        self.m, self.totals = m, None

    def peek(self) -> Measurement:
        return self.m


def lines_for_people(kwh: float, g_per_kwh: float) -> list[str]:
    """Every line a person reads about a run of `kwh` at `g_per_kwh`."""
    seconds = kwh * 3.6e6 / 300.0  # 300 W: from 12 us to 1.4 days
    m = _measurement(kwh, g_per_kwh, seconds)
    lines = summary(m, equivalents(m)).splitlines()
    lines += [str(eq) for eq in equivalents(m).values()]
    lines.append(predict_run(m, epochs_done=1, total_epochs=10).line())
    intensity = resolve(intensity_g_per_kwh=g_per_kwh)
    lines.append(advice_line(m, intensity) or "")
    progress, err = Progress(_Tracker(m)), io.StringIO()  # type: ignore[arg-type]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("sys.stderr", err)
        progress.show()
    lines.append(err.getvalue())
    row = RunRow("r", "run", seconds, kwh, m.emissions_kg, 3, m.emissions_kg / 3, g_per_kwh,
                 "user-given", "user", "cpu", ((0, kwh / 3),))  # fmt: skip
    lines += format_table([row]).splitlines()
    return lines


@pytest.mark.parametrize("g_per_kwh", INTENSITIES)
@pytest.mark.parametrize("kwh", MAGNITUDES_KWH)
def test_no_line_for_people_has_scientific_notation(kwh: float, g_per_kwh: float) -> None:
    for line in lines_for_people(kwh, g_per_kwh):
        assert not SCIENTIFIC.search(line), line


def test_summary_line_of_a_tiny_and_a_huge_run() -> None:
    tiny = summary(_measurement(1e-9, 41.44, 0.012)).splitlines()[0]  # 0.00004 mg
    assert tiny == (
        "carbon-callbacks: 0.001 mWh, less than 0.001 mg CO2eq in 12 ms "
        "(intensity 41.44 g CO2eq/kWh, life-cycle, user-given; PUE 1)"
    )
    huge = summary(_measurement(1e4, 472.99, 1e4 * 3.6e6 / 300.0)).splitlines()[0]
    # 1e4 kWh x 472.99 g/kWh = 4,729.9 kg; 1.2e8 s / 86,400 = 1,389 days = 3.8 years
    assert huge == (
        "carbon-callbacks: 10 MWh, 4.73 t CO2eq in 3.8 years "
        "(intensity 473 g CO2eq/kWh, life-cycle, user-given; PUE 1)"
    )


def test_every_bundled_equivalent_has_a_human_unit() -> None:
    """The first word of each label is the unit `human` converts, or the label counts things."""
    firsts = {f["label"].split()[0] for f in load_json("equivalents.json")["factors"].values()}
    assert firsts == {"km", "passenger-km", "hours", "years", "litres", "full", "urban"}
    assert human(0.5, "hours of laptop use") == "30 min of laptop use"
    assert human(0.01, "years of CO2 uptake by one tree") == "3.7 days of CO2 uptake by one tree"
    assert human(2.5e-3, "passenger-km flown in economy class") == (
        "2.5 m flown in economy class (one passenger)"
    )
    assert human(0.0216, "full smartphone charges") == "0.022 full smartphone charges"

from __future__ import annotations

from pathlib import Path

import pytest

from carbon_callbacks import Tracker
from carbon_callbacks.data import load_json
from carbon_callbacks.equivalents import MAIN_EQUIVALENTS, equivalents
from carbon_callbacks.outputs import CONTRACT_TAGS, epoch_metrics, final_metrics, run_tags, summary
from tests.fakes.clock import FakeClock


@pytest.fixture
def run() -> tuple[Tracker, FakeClock]:
    clock = FakeClock()
    tracker = Tracker(
        cloud="aws:eu-west-3", cpu_power_w=50, ram_power_w=10, clock=clock, output_dir=None
    )
    tracker.start()
    return tracker, clock


def test_epoch_metrics_keys_and_values(run: tuple[Tracker, FakeClock]) -> None:
    tracker, clock = run
    clock.advance(3600)
    first = tracker.lap()
    clock.advance(1800)
    second = tracker.lap()
    totals = tracker.totals
    assert totals is not None
    m = epoch_metrics(second, totals)
    assert m["carbon/epoch_energy_kwh"] == pytest.approx(0.03)
    assert m["carbon/epoch_cpu_energy_kwh"] == pytest.approx(0.025)
    assert m["carbon/epoch_ram_energy_kwh"] == pytest.approx(0.005)
    assert "carbon/epoch_gpu_energy_kwh" not in m  # not counted: absent, never 0.0
    assert m["carbon/epoch_power_w"] == pytest.approx(60)
    assert m["carbon/epoch_duration_s"] == 1800
    assert m["carbon/energy_kwh"] == pytest.approx(first.energy_kwh + second.energy_kwh)
    assert m["carbon/emissions_kg"] == pytest.approx(
        m["carbon/energy_kwh"] * m["carbon/intensity_g_per_kwh"] / 1000
    )
    tracker.stop()


def test_tags_follow_the_contract(run: tuple[Tracker, FakeClock]) -> None:
    tracker, _ = run
    tags = run_tags(tracker, nodes=2, world_size=4)
    assert set(tags) >= set(CONTRACT_TAGS)
    assert all(isinstance(v, str) for v in tags.values())
    assert tags["carbon.cloud"] == "aws:eu-west-3" and tags["carbon.country"] == "FR"
    assert tags["carbon.cpu_method"] == "constant" and tags["carbon.estimated"] == "true"
    assert tags["carbon.gpu_method"] == "none" and tags["carbon.gpu_count"] == "0"
    assert (tags["carbon.nodes"], tags["carbon.world_size"]) == ("2", "4")
    assert int(tags["carbon.cpu_count"]) >= 1 and float(tags["carbon.ram_gb"]) > 0
    tracker.stop()


def test_an_estimates_inputs_are_a_tag(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """How an estimate was made (the TDP and share; the GB of RAM) is kept with the run."""
    monkeypatch.setenv("CARBON_CALLBACKS_POWERCAP_ROOT", str(tmp_path))  # no RAPL
    tracker = Tracker(country="FR", count_gpu=False, output_dir=None)
    tags = run_tags(tracker)
    assert tags["carbon.cpu_method"] == "estimate-tdp"
    assert tags["carbon.cpu_estimate"].startswith("load-curve model for ")
    assert tags["carbon.cpu_estimate"] == tracker.sensors["cpu"].describe()  # type: ignore[attr-defined]
    assert tags["carbon.ram_estimate"].startswith("0.3725 W/GB x ")
    constant = Tracker(country="FR", cpu_power_w=5, ram_power_w=1, count_gpu=False, output_dir=None)
    assert not {"carbon.cpu_estimate", "carbon.ram_estimate"} & set(run_tags(constant))


def test_equivalents_and_summary(run: tuple[Tracker, FakeClock]) -> None:
    tracker, clock = run
    clock.advance(3600)
    totals = tracker.stop()
    eq = equivalents(totals)
    factors = load_json("equivalents.json")["factors"]
    assert set(MAIN_EQUIVALENTS) <= set(eq)
    assert eq["car_km"].value == pytest.approx(
        totals.emissions_kg / factors["car_km"]["kg_co2e_per_unit"]
    )
    assert eq["phone_charges"].value == pytest.approx(
        totals.energy_kwh / factors["phone_charges"]["kwh_per_unit"]
    )
    assert all(e.source for e in eq.values())
    final = final_metrics(totals, eq)
    assert final["carbon/equivalent_car_km"] == eq["car_km"].value
    assert {"carbon/equivalent_tv_hours", "carbon/equivalent_phone_charges"} <= set(final)
    text = summary(totals, eq).splitlines()
    # 60 W for 1 h = 60 Wh; x 41.44 g/kWh (Ember/OWID 2025, FR) = 2.4864 g
    assert totals.intensity_g_per_kwh == 41.44
    # the user's own watts are exact: no range
    assert text[0].startswith(
        "carbon-callbacks: 60 Wh, 2.49 g CO2eq in 1 h (intensity 41.44 g CO2eq/kWh, life-cycle"
    )
    assert text[1] == "  CPU: estimated (constant power given by the user)"
    assert "estimates" in text[4]
    # 2.4864 g / 244.2 g/km = 10.2 m; 0.06 kWh / 0.019 = 3.16 charges; / 0.12 kWh = 0.5 h
    assert text[5] == (
        "  That is about 10 m driven by an average gasoline passenger car (US), "
        "3.2 full smartphone charges, 30 min of a flat-screen TV switched on."
    )

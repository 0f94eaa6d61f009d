"""Numbers you can defend: ranges from each method's accuracy, sums of laps priced at
different intensities or PUEs, the basis of the intensity, and the summary that prints them.
Every figure is a hand computation written out here."""

from __future__ import annotations

import dataclasses

import pytest

from carbon_callbacks import Measurement, Tracker
from carbon_callbacks.data import load_json
from carbon_callbacks.outputs import final_metrics, run_tags, summary
from carbon_callbacks.sensors.base import METHOD_ERROR_BOUNDS
from carbon_callbacks.sensors.estimate import ConstantPowerSensor
from tests.fakes.clock import FakeClock


class CounterSensor:
    """A GPU energy counter at a steady 100 W (measured: `nvml-energy`, +-5 %)."""

    component = "gpu"
    method = "nvml-energy"

    def start(self, now: float) -> None:
        self.t0 = now

    def energy_j(self, now: float) -> float:
        return 100.0 * (now - self.t0)

    def close(self) -> None:
        pass


def lap(kwh: float, g_per_kwh: float, source: str, **changes: object) -> Measurement:
    m = Measurement(
        start_time=0.0,
        end_time=3600.0,
        duration_s=3600.0,
        energy_kwh=kwh,
        cpu_energy_kwh=kwh,
        gpu_energy_kwh=None,
        ram_energy_kwh=None,
        emissions_kg=kwh * g_per_kwh / 1000,
        intensity_g_per_kwh=g_per_kwh,
        intensity_source=source,
        intensity_year=2024,
        pue=1.0,
        cpu_method="rapl",
    )
    return dataclasses.replace(m, **changes)  # type: ignore[arg-type]


def test_a_sum_of_laps_in_two_grids_carries_the_effective_intensity() -> None:
    a = lap(1.0, 100.0, "Ember 2024")
    b = lap(3.0, 300.0, "Ember 2025", intensity_year=2025, intensity_basis="direct")
    total = a + b
    assert total.energy_kwh == 4.0
    assert total.emissions_kg == pytest.approx(0.1 + 0.9)
    # (1 x 100 + 3 x 300) / 4 = 250 g/kWh, not the first lap's 100
    assert total.intensity_g_per_kwh == pytest.approx(250.0)
    assert total.intensity_source == "mixed: Ember 2024 + Ember 2025"
    assert total.mixed_intensity and total.intensity_year is None
    assert total.intensity_basis == "life-cycle+direct"
    # The same grid again adds no name; a third one does.
    assert (total + a).intensity_source == "mixed: Ember 2024 + Ember 2025"
    third = total + lap(4.0, 50.0, "user-given")
    assert third.intensity_source == "mixed: Ember 2024 + Ember 2025 + user-given"
    assert third.intensity_g_per_kwh == pytest.approx((100 + 900 + 200) / 8.0)


def test_a_sum_of_laps_at_two_pues_carries_the_effective_pue() -> None:
    a = lap(1.2, 100.0, "x", cpu_energy_kwh=1.0, pue=1.2)  # 1 kWh of IT energy x 1.2
    b = lap(3.0, 100.0, "x", cpu_energy_kwh=2.0, pue=1.5)  # 2 kWh x 1.5
    assert (a + b).pue == pytest.approx(4.2 / 3.0)  # facility energy over IT energy
    assert (a + b).intensity_source == "x" and (a + b).intensity_g_per_kwh == 100.0


def test_a_mixed_source_names_four_then_counts_the_rest() -> None:
    total = lap(1.0, 10.0, "s0")
    for i in range(1, 7):
        total = total + lap(1.0, 10.0 * (i + 1), f"s{i}")
    assert total.intensity_source == "mixed: s0 + s1 + s2 + s3 + 3 more"


def test_totals_restored_in_another_grid_carry_the_effective_intensity() -> None:
    fr = load_json("countries.json")["countries"]["FR"]["g_per_kwh"]
    de = load_json("countries.json")["countries"]["DE"]["g_per_kwh"]
    clock = FakeClock()
    first = Tracker(country="FR", cpu_power_w=50, count_ram=False, count_gpu=False,
                    clock=clock, output_dir=None)  # fmt: skip
    first.start()
    clock.advance(3600)
    first.lap()
    state = first.state_dict()
    first.stop()
    # Resumed in Germany (another machine, another grid): 2 hours at 50 W there.
    second = Tracker(country="DE", cpu_power_w=50, count_ram=False, count_gpu=False,
                     clock=clock, output_dir=None)  # fmt: skip
    second.load_state_dict(state)
    second.start()
    clock.advance(7200)
    second.lap()
    totals = second.stop()
    assert totals.energy_kwh == pytest.approx(0.15)
    assert totals.emissions_kg == pytest.approx((0.05 * fr + 0.1 * de) / 1000)
    assert totals.intensity_g_per_kwh == pytest.approx((0.05 * fr + 0.1 * de) / 0.15)
    assert totals.intensity_source.startswith("mixed: ")
    assert "Ember" in totals.intensity_source


def test_each_components_range_comes_from_its_method() -> None:
    clock = FakeClock()
    tracker = Tracker(
        sensors=[ConstantPowerSensor("cpu", 50.0), CounterSensor()],
        intensity_g_per_kwh=200, pue=1.1, clock=clock, output_dir=None,
    )  # fmt: skip
    tracker.start()
    clock.advance(3600)
    m = tracker.lap()
    # CPU 0.05 kWh given by the user (exact); GPU 0.1 kWh from NVML's counter (+-5 %).
    low, high = METHOD_ERROR_BOUNDS["nvml-energy"]
    assert (low, high) == (0.95, 1.05)
    assert m.energy_kwh == pytest.approx(0.15 * 1.1)
    assert m.energy_kwh_low == pytest.approx((0.05 + 0.1 * 0.95) * 1.1)
    assert m.energy_kwh_high == pytest.approx((0.05 + 0.1 * 1.05) * 1.1)
    assert m.emissions_kg_low == pytest.approx(m.energy_kwh_low * 0.2)
    assert m.emissions_kg_high == pytest.approx(m.energy_kwh_high * 0.2)
    clock.advance(1800)
    totals = tracker.stop()
    # Ranges add over laps: the same model errs the same way in each.
    assert totals.energy_kwh_low == pytest.approx((0.075 + 0.15 * 0.95) * 1.1)
    assert totals.energy_kwh_high == pytest.approx((0.075 + 0.15 * 1.05) * 1.1)
    metrics = final_metrics(totals)
    assert metrics["carbon/energy_kwh_low"] == totals.energy_kwh_low
    assert metrics["carbon/emissions_kg_high"] == totals.emissions_kg_high


def test_the_users_own_watts_are_exact() -> None:
    clock = FakeClock()
    tracker = Tracker(cpu_power_w=50, ram_power_w=10, count_gpu=False, intensity_g_per_kwh=100,
                      clock=clock, output_dir=None)  # fmt: skip
    tracker.start()
    clock.advance(3600)
    m = tracker.lap()
    assert m.energy_kwh_low == m.energy_kwh == m.energy_kwh_high == pytest.approx(0.06)
    assert m.intensity_basis == "user"
    tracker.stop()


def test_the_basis_is_in_the_tags_the_measurement_and_the_summary() -> None:
    clock = FakeClock()
    tracker = Tracker(region="CN-BJ", sensors=[CounterSensor()], clock=clock, output_dir=None)
    tracker.start()
    clock.advance(3600)
    totals = tracker.stop()
    assert totals.intensity_basis == "co2-only"
    assert run_tags(tracker)["carbon.intensity_basis"] == "co2-only"
    text = summary(totals)
    # China's provincial factors count combustion CO2 only: never printed as CO2eq.
    assert "CO2eq" not in text
    assert " g CO2 (" in text and "g CO2/kWh, co2-only" in text
    # 0.1 kWh measured by NVML: 0.095-0.105 kWh
    assert "100 Wh (95–105 Wh, measured)" in text


def test_the_summary_prints_the_range_and_the_basis_of_an_estimate() -> None:
    clock = FakeClock()
    tracker = Tracker(country="FR", sensors=[CounterSensor()], clock=clock, output_dir=None)
    tracker.start()
    clock.advance(3600)
    totals = tracker.stop()
    totals = dataclasses.replace(totals, gpu_method="estimate-gpu-tdp")
    first = summary(totals).splitlines()[0]
    assert "100 Wh (95–105 Wh, estimated)" in first
    assert "g CO2eq/kWh, life-cycle" in first

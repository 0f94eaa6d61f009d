from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import pytest

from carbon_callbacks import CarbonWarning, Measurement, Tracker
from carbon_callbacks.data import load_json
from carbon_callbacks.journal import read_journal
from carbon_callbacks.sensors.base import SensorError
from tests.fakes.clock import FakeClock


class FlakySensor:
    """A GPU-like counter sensor whose reads can be made to fail."""

    component = "gpu"
    method = "nvml-energy"

    def __init__(self) -> None:
        self.joules = 0.0
        self.fail = False
        self.closed = False

    def start(self, now: float) -> None:
        self.base = self.joules

    def energy_j(self, now: float) -> float:
        if self.fail:
            raise SensorError("counter read failed")
        return self.joules - self.base

    def close(self) -> None:
        self.closed = True


def constant_tracker(clock: FakeClock, **kwargs: object) -> Tracker:
    return Tracker(cpu_power_w=50, ram_power_w=10, clock=clock, count_gpu=False, **kwargs)  # type: ignore[arg-type]


def test_one_hour_at_60_w_is_0_06_kwh_and_fr_emissions(tmp_path: Path) -> None:
    clock = FakeClock()
    tracker = constant_tracker(clock, country="FR", output_dir=tmp_path)
    tracker.start()
    clock.advance(3600)
    lap = tracker.lap()
    assert lap.energy_kwh == pytest.approx(0.06, rel=1e-12)
    assert lap.cpu_energy_kwh == pytest.approx(0.05, rel=1e-12)
    assert lap.ram_energy_kwh == pytest.approx(0.01, rel=1e-12)
    assert lap.gpu_energy_kwh is None
    assert lap.duration_s == 3600
    fr = load_json("countries.json")["countries"]["FR"]["g_per_kwh"]
    assert lap.intensity_g_per_kwh == fr
    assert lap.emissions_kg == pytest.approx(0.06 * fr / 1000, rel=1e-12)
    assert (lap.cpu_method, lap.ram_method, lap.gpu_method) == ("constant", "constant", "none")
    assert lap.estimated
    tracker.stop()


def test_laps_sum_to_stop_totals(tmp_path: Path) -> None:
    clock = FakeClock()
    tracker = constant_tracker(clock, country="DE", output_dir=tmp_path)
    tracker.start()
    laps = []
    for seconds in (10, 20.5, 0.25, 300):
        clock.advance(seconds)
        laps.append(tracker.lap())
    clock.advance(7)  # the tail after the last lap
    totals = tracker.stop()
    assert tracker.lap_count == 4  # the final lap of stop() takes no number
    assert tracker.journal_path is not None
    records = [json.loads(line) for line in tracker.journal_path.read_text().splitlines()]
    laps_journaled = [(r["lap"], r["kind"]) for r in records if r["type"] == "lap"]
    assert laps_journaled == [(0, "epoch"), (1, "epoch"), (2, "epoch"), (3, "epoch"), (4, "final")]
    assert totals.duration_s == pytest.approx(10 + 20.5 + 0.25 + 300 + 7)
    tail_kwh = 60 * 7 / 3.6e6
    assert totals.energy_kwh == pytest.approx(sum(m.energy_kwh for m in laps) + tail_kwh)
    assert totals.emissions_kg == pytest.approx(
        totals.energy_kwh * totals.intensity_g_per_kwh / 1000, rel=1e-12
    )


def test_pue_scales_facility_energy_not_components(tmp_path: Path) -> None:
    clock = FakeClock()
    tracker = constant_tracker(clock, intensity_g_per_kwh=100, pue=1.5, output_dir=None)
    tracker.start()
    clock.advance(3600)
    lap = tracker.lap()
    assert lap.cpu_energy_kwh == pytest.approx(0.05)
    assert lap.energy_kwh == pytest.approx(0.09)
    assert lap.emissions_kg == pytest.approx(0.009)
    assert lap.power_w == pytest.approx(90)
    tracker.stop()


def test_journal_has_one_record_per_lap(tmp_path: Path) -> None:
    clock = FakeClock()
    tracker = constant_tracker(clock, country="FR", output_dir=tmp_path)
    tracker.start()
    for _ in range(3):
        clock.advance(60)
        tracker.lap()
    totals = tracker.stop()
    path = tracker.journal_path
    assert path is not None and path.parent == tmp_path and path.suffix == ".jsonl"
    records = read_journal(path)
    assert [r["type"] for r in records] == ["run", "lap", "lap", "lap", "lap", "stop"]
    laps = [r for r in records if r["type"] == "lap"]
    assert [r["lap"] for r in laps] == [0, 1, 2, 3]
    assert {r["run_id"] for r in records} == {tracker.run_id}
    assert sum(r["energy_kwh"] for r in laps) == pytest.approx(totals.energy_kwh)
    assert laps[0]["cpu_method"] == "constant" and laps[0]["estimated"] is True
    assert records[-1]["energy_kwh"] == pytest.approx(totals.energy_kwh)
    assert path.stat().st_mode & 0o002 == 0  # not world-writable


def test_restart_is_a_new_run_and_context_manager(tmp_path: Path) -> None:
    clock = FakeClock()
    tracker = constant_tracker(clock, country="FR", output_dir=tmp_path)
    with tracker:
        clock.advance(100)
    first = tracker.run_id
    with tracker:
        clock.advance(50)
    assert tracker.run_id != first
    assert tracker.totals is not None and tracker.totals.duration_s == 50
    assert len(list(tmp_path.glob("*.jsonl"))) == 2


def test_state_dict_continues_totals(tmp_path: Path) -> None:
    clock = FakeClock()
    tracker = constant_tracker(clock, country="FR", output_dir=tmp_path)
    tracker.start()
    clock.advance(3600)
    tracker.lap()
    state = json.loads(json.dumps(tracker.state_dict()))  # survives a checkpoint file
    tracker.stop()

    resumed = constant_tracker(clock, country="FR", output_dir=tmp_path)
    resumed.load_state_dict(state)
    resumed.start()
    assert resumed.run_id == state["run_id"]
    clock.advance(3600)
    lap = resumed.lap()
    assert resumed.lap_count == 2
    totals = resumed.stop()
    assert lap.energy_kwh == pytest.approx(0.06)
    assert totals.energy_kwh == pytest.approx(0.06 * 2)  # lap 0 + lap 1 + an empty tail


def test_sensor_failure_is_recorded_and_the_run_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    gpu = FlakySensor()
    tracker = Tracker(intensity_g_per_kwh=50, sensors=[gpu], clock=clock, output_dir=tmp_path)
    tracker.start()
    gpu.joules += 3600.0
    clock.advance(10)
    assert tracker.lap().gpu_energy_kwh == pytest.approx(0.001)
    gpu.fail = True
    for _ in range(3):
        gpu.joules += 3600.0
        clock.advance(10)
        failed = tracker.lap()
        assert failed.gpu_energy_kwh is None and failed.errors
    gpu.fail = False
    gpu.joules += 3600.0
    clock.advance(10)
    recovered = tracker.lap()
    # The counter spans the failed laps, so nothing is lost from the totals.
    assert recovered.gpu_energy_kwh == pytest.approx(0.004)
    totals = tracker.stop()
    assert totals.energy_kwh == pytest.approx(0.005)
    warnings_logged = [r for r in caplog.records if "gpu sensor failed" in r.getMessage()]
    assert len(warnings_logged) == 1
    assert tracker.errors.messages() == ["gpu sensor failed: counter read failed"]


def test_unwritable_journal_dir_warns_and_goes_on(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    clock = FakeClock()
    tracker = constant_tracker(clock, country="FR", output_dir=blocker / "sub")
    tracker.start()
    clock.advance(3600)
    assert tracker.lap().energy_kwh == pytest.approx(0.06)
    tracker.stop()
    assert tracker.journal_path is None
    assert any("journal" in m for m in tracker.errors.messages())


def test_symlinked_journal_is_refused(tmp_path: Path) -> None:
    from carbon_callbacks.journal import Journal

    target = tmp_path / "elsewhere.txt"
    target.write_text("keep me\n")
    link = tmp_path / "run.jsonl"
    link.symlink_to(target)
    with pytest.raises((ValueError, OSError)):
        Journal(link)
    assert target.read_text() == "keep me\n"


def test_no_location_uses_world_average_and_says_so(tmp_path: Path) -> None:
    with pytest.warns(CarbonWarning, match="world average"):
        tracker = Tracker(cpu_power_w=1, ram_power_w=1, count_gpu=False, output_dir=None)
    assert tracker.intensity.is_default
    assert "world" in tracker.intensity.source.lower()


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"pue": 0.9}, "0.9"),
        ({"pue": math.nan}, "nan"),
        ({"cpu_power_w": -5}, "-5"),
        ({"ram_power_w": math.inf}, "inf"),
        ({"country": "Frnace"}, "Frnace"),
    ],
)
def test_bad_config_raises_value_error_naming_it(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(ValueError, match=needle), warnings.catch_warnings():
        warnings.simplefilter("ignore", CarbonWarning)
        Tracker(output_dir=None, **kwargs)  # type: ignore[arg-type]


def test_lap_before_start_is_a_usage_error() -> None:
    tracker = Tracker(intensity_g_per_kwh=1, sensors=[], output_dir=None)
    with pytest.raises(RuntimeError, match="start"):
        tracker.lap()


def test_measurements_add_up_and_stay_frozen() -> None:
    a = Measurement(0, 1, 1, 1.0, 0.5, None, 0.5, 0.1, 100, "x", 2024, 1.0, "rapl", "none", "rapl")
    b = Measurement(
        1, 3, 2, 2.0, 1.0, 0.5, 0.5, 0.2, 100, "x", 2024, 1.0, "rapl", "nvml-energy", "rapl"
    )
    s = a + b
    assert (s.duration_s, s.energy_kwh, s.gpu_energy_kwh) == (3, 3.0, 0.5)
    assert s.gpu_method == "nvml-energy" and not s.estimated
    p = a.combine_parallel(b)
    assert p.duration_s == 2 and p.energy_kwh == 3.0
    with pytest.raises(AttributeError):
        a.energy_kwh = 2  # type: ignore[misc]

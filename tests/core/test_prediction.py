from __future__ import annotations

import dataclasses

import pytest

from carbon_callbacks import Measurement, Tracker
from carbon_callbacks.prediction import EMISSIONS_KEY, ENERGY_KEY, Prediction, predict_run
from tests.fakes.clock import FakeClock

EPOCH_S = 30.0


def _tracker(clock: FakeClock) -> Tracker:
    return Tracker(
        cpu_power_w=50,
        ram_power_w=10,
        intensity_g_per_kwh=100,
        clock=clock,
        output_dir=None,
        count_gpu=False,
    )


def test_prediction_after_epoch_1_of_5_is_within_1_percent_of_the_final_total() -> None:
    clock = FakeClock()
    tracker = _tracker(clock)
    tracker.start()
    predictions: list[Prediction] = []
    for epoch in range(5):
        clock.advance(EPOCH_S)
        tracker.lap()
        if epoch == 0:
            assert tracker.totals is not None
            predictions.append(predict_run(tracker.totals, epochs_done=1, total_epochs=5))
    final = tracker.stop()
    (p,) = predictions
    assert final.energy_kwh == pytest.approx(60 * 5 * EPOCH_S / 3.6e6, rel=1e-12)
    assert p.energy_kwh == pytest.approx(final.energy_kwh, rel=0.01)
    assert p.emissions_kg == pytest.approx(final.emissions_kg, rel=0.01)
    assert p.duration_s == pytest.approx(final.duration_s, rel=0.01)
    assert p.metrics() == {ENERGY_KEY: p.energy_kwh, EMISSIONS_KEY: p.emissions_kg}
    assert p.metrics().keys() == {"carbon/predicted_energy_kwh", "carbon/predicted_emissions_kg"}


def test_prediction_uses_the_mean_of_the_completed_epochs() -> None:
    clock = FakeClock()
    tracker = _tracker(clock)
    tracker.start()
    for seconds in (10.0, 30.0):  # unequal epochs: the mean (20 s) is extrapolated
        clock.advance(seconds)
        tracker.lap()
    assert tracker.totals is not None
    p = predict_run(tracker.totals, epochs_done=2, total_epochs=10)
    tracker.stop()
    assert p.duration_s == pytest.approx(200.0)
    assert p.energy_kwh == pytest.approx(60 * 200.0 / 3.6e6)
    assert p.emissions_kg == pytest.approx(p.energy_kwh * 100 / 1000)
    assert (p.epochs_done, p.total_epochs) == (2, 10)


def _measurement(**changes: object) -> Measurement:
    m = Measurement(
        start_time=0.0,
        end_time=60.0,
        duration_s=60.0,
        energy_kwh=0.002,
        cpu_energy_kwh=0.002,
        gpu_energy_kwh=None,
        ram_energy_kwh=None,
        emissions_kg=0.0002,
        intensity_g_per_kwh=100.0,
        intensity_source="user-given",
        intensity_year=None,
        pue=1.0,
    )
    return dataclasses.replace(m, **changes)  # type: ignore[arg-type]


def test_done_equals_total_returns_the_measured_totals() -> None:
    p = predict_run(_measurement(), epochs_done=3, total_epochs=3)
    assert (p.energy_kwh, p.emissions_kg, p.duration_s) == (0.002, 0.0002, 60.0)


@pytest.mark.parametrize(
    ("done", "total", "message"),
    [
        (0, 5, "epochs_done must be >= 1"),
        (-1, 5, "epochs_done must be >= 1"),
        (3, 2, "total_epochs (2) must be >= epochs_done (3)"),
        (1.5, 5, "epochs_done must be a whole number"),
        (1, "5", "total_epochs must be a number"),
        (True, 5, "epochs_done must be a whole number"),
    ],
)
def test_bad_epoch_counts_raise_value_error(done: object, total: object, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        predict_run(_measurement(), done, total)  # type: ignore[arg-type]


def test_not_a_measurement_raises_type_error() -> None:
    with pytest.raises(TypeError, match="Measurement"):
        predict_run({"energy_kwh": 1.0}, 1, 2)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("seconds", "text"), [(42.0, "42 s"), (312.0, "5.2 min"), (7200.0, "2 h"), (0.25, "250 ms")]
)
def test_line(seconds: float, text: str) -> None:
    p = Prediction(0.0123, 0.00123, seconds, epochs_done=1, total_epochs=10)
    assert p.line() == f"predicted for 10 epochs (from 1): about 12 Wh, 1.2 g CO2eq, {text}"

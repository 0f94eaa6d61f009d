from __future__ import annotations

from typing import Any

import pytest

from carbon_callbacks import Tracker
from carbon_callbacks.session import CarbonSession
from tests.fakes.clock import FakeClock


class MemorySink:
    """A sink that keeps what it is given."""

    def __init__(self) -> None:
        self.metrics: list[tuple[int, dict[str, float]]] = []
        self.tags: dict[str, str] = {}

    def log_tags(self, tags: dict[str, str], **_: Any) -> None:
        self.tags.update(tags)

    def log_metrics(self, metrics: dict[str, float], step: int, **_: Any) -> None:
        self.metrics.append((step, dict(metrics)))

    def flush(self, timeout_s: float) -> bool:
        return True

    def close(self) -> None:
        pass

    def values(self, key: str) -> list[tuple[int, float]]:
        return [(step, m[key]) for step, m in self.metrics if key in m]


def test_prediction_after_epoch_one_of_five_matches_the_final_total(
    capsys: pytest.CaptureFixture[str],
) -> None:
    clock = FakeClock()
    tracker = Tracker(
        cpu_power_w=50, ram_power_w=10, intensity_g_per_kwh=100, count_gpu=False,
        clock=clock, output_dir=None,
    )  # fmt: skip
    sink = MemorySink()
    session = CarbonSession(tracker, [sink])
    session.begin(total_epochs=5)
    for epoch in range(5):
        clock.advance(10.0)
        session.epoch_end(epoch)
    totals = session.end()
    assert totals is not None
    [(step, predicted)] = sink.values("carbon/predicted_energy_kwh")
    assert step == 0  # logged once, after epoch 1
    assert predicted == pytest.approx(totals.energy_kwh, rel=0.01)
    [(_, predicted_kg)] = sink.values("carbon/predicted_emissions_kg")
    assert predicted_kg == pytest.approx(totals.emissions_kg, rel=0.01)
    assert "predicted for 5 epochs" in capsys.readouterr().out
    assert sink.tags["carbon.greener_region"]  # the advice tag, set at the end


def test_no_prediction_without_a_known_epoch_count() -> None:
    clock = FakeClock()
    tracker = Tracker(cpu_power_w=5, intensity_g_per_kwh=1, clock=clock, output_dir=None)
    sink = MemorySink()
    session = CarbonSession(tracker, [sink], summary=False)
    session.begin(total_epochs=None)
    clock.advance(1.0)
    session.epoch_end(0)
    session.end()
    assert sink.values("carbon/predicted_energy_kwh") == []

"""A run through `CarbonSession` with a live provider: the per-epoch intensity follows the
served values, the tags name provider and basis, corrections are logged at their epochs, and
the prediction says what the forecast's best window would have saved."""

from __future__ import annotations

import calendar
import time
from pathlib import Path
from typing import Any

import pytest

from carbon_callbacks import Tracker
from carbon_callbacks.intensity.series import FORECAST
from carbon_callbacks.session import CarbonSession
from tests.fakes.clock import FakeClock
from tests.fakes.replay import ReplayServer

H = 3600.0
T0 = float(calendar.timegm((2026, 3, 2, 10, 30, 0)))
KWH_HALF_HOUR = 60.0 * 1800 / 3.6e6  # 60 W for 30 minutes


class MemorySink:
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


def test_a_session_with_electricity_maps(
    tmp_path: Path, replay: ReplayServer, capsys: pytest.CaptureFixture[str]
) -> None:
    clock, wall = FakeClock(), FakeClock(T0)
    tracker = Tracker(
        country="FR", intensity_provider="electricitymaps", cpu_power_w=50, ram_power_w=10,
        count_gpu=False, clock=clock, wall_clock=wall, output_dir=tmp_path,
    )  # fmt: skip
    sink = MemorySink()
    session = CarbonSession(tracker, [sink])
    session.begin(total_epochs=3)
    assert tracker.live is not None
    deadline = time.monotonic() + 2.0  # the forecast is fetched right after the first answer
    while not any(p.status == FORECAST for p in tracker.live.points()):
        assert time.monotonic() < deadline, "no forecast fetched"
        time.sleep(0.01)
    for epoch in range(3):  # 10:30-11:00 (60), 11:00-11:30 (80, estimate), 11:30-12:00 (80)
        clock.advance(0.5 * H)
        wall.advance(0.5 * H)
        session.epoch_end(epoch)
    replay.variant = "corrected"  # 11:00 becomes 70, final
    session.end()

    assert sink.values("carbon/intensity_g_per_kwh") == [(0, 60.0), (1, 80.0), (2, 80.0)]
    assert sink.tags["carbon.intensity_provider"] == "electricitymaps:FR"
    assert sink.tags["carbon.intensity_basis"] == "life-cycle"
    assert sink.tags["carbon.intensity_kind"] == "live"
    assert sink.tags["carbon.intensity_source"].startswith(
        "Electricity Maps FR hourly (live; yearly fallback 41.44 g/kWh, Ember"
    )
    corrected = sink.values("carbon/corrected_intensity_g_per_kwh")
    assert corrected == [(1, 70.0), (2, 70.0)]
    assert sink.values("carbon/corrected_epoch_emissions_kg") == [
        (1, pytest.approx(KWH_HALF_HOUR * 70 / 1000, rel=1e-12)),
        (2, pytest.approx(KWH_HALF_HOUR * 70 / 1000, rel=1e-12)),
    ]
    [(step, total)] = [(s, v) for s, v in sink.values("carbon/emissions_kg") if s == 3]
    assert total == pytest.approx(KWH_HALF_HOUR * (60 + 70 + 70) / 1000, rel=1e-12)

    # The prediction after epoch 0: 1.5 h of 60 W. The run's own span 10:30-12:00 averages
    # (0.5 * 60 + 1 * 80) / 1.5 = 73.33 g/kWh; the lowest 1.5 h from 11:00 starts at 13:00:
    # (1 * 25 + 0.5 * 20) / 1.5 = 23.33 g/kWh, 68 % lower, 0.09 kWh * 50 g = 0.0045 kg.
    assert session.prediction is not None
    assert session.prediction.window == (
        "starting at 2026-03-02T13:00Z (Electricity Maps forecast 23 g/kWh against 73 for this "
        "run) would have saved about 68 % (4.5 g CO2eq)"
    )
    out = capsys.readouterr().out
    assert "would have saved about 68 %" in out
    assert "Electricity Maps FR hourly" in out

"""`carbon-callbacks sync` re-prices a live-priced run when the provider corrects its history."""

from __future__ import annotations

import calendar
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from carbon_callbacks import Tracker
from carbon_callbacks.delivery import BackgroundSink, Record
from carbon_callbacks.intensity.reprice import reprice_journal
from carbon_callbacks.journal import read_journal
from carbon_callbacks.session import CarbonSession
from carbon_callbacks.sync import main, sync_journal
from tests.fakes.clock import FakeClock
from tests.fakes.replay import ReplayServer

H = 3600.0
T0 = float(calendar.timegm((2026, 3, 2, 10, 30, 0)))
KWH = 60.0 * 1800 / 3.6e6  # each epoch: 60 W for 30 minutes


class JournaledSink(BackgroundSink):
    """A sink that knows its target (so the session journals for it) and delivers nothing:
    the server is down for the whole run."""

    def __init__(self) -> None:
        super().__init__("run-1", name="memory", min_interval_s=0.0, max_retries=0)

    def target(self) -> dict[str, Any]:
        return {"kind": "memory", "run": "run-1"}

    def _send(self, records: Sequence[Record]) -> None:
        raise ConnectionError("server down")


class Resender:
    def __init__(self) -> None:
        self.received: list[Mapping[str, Any]] = []

    def __call__(self, target: Any, records: Any, mark: Any, *, tracking_uri: Any = None) -> None:
        self.received.extend(records)
        mark([r["key"] for r in records], False)

    def metrics(self, key: str) -> list[tuple[int, float]]:
        return [
            (r["step"], r["metrics"][key])
            for r in self.received
            if r["type"] == "metrics" and key in r["metrics"]
        ]


def run_three_epochs(folder: Path) -> Path:
    clock, wall = FakeClock(), FakeClock(T0)
    tracker = Tracker(
        country="FR", intensity_provider="electricitymaps", cpu_power_w=50, ram_power_w=10,
        count_gpu=False, clock=clock, wall_clock=wall, output_dir=folder,
    )  # fmt: skip
    session = CarbonSession(tracker, [JournaledSink()], summary=False, flush_timeout_s=0.5)
    session.begin(total_epochs=3)
    for epoch in range(3):  # 10:30-11:00 (60), 11:00-11:30 (80, estimate), 11:30-12:00 (80)
        clock.advance(0.5 * H)
        wall.advance(0.5 * H)
        session.epoch_end(epoch)
    session.end()
    assert tracker.journal_path is not None
    return tracker.journal_path


def test_sync_reprices_corrected_history_once_and_sends_the_corrected_metrics(
    tmp_path: Path, replay: ReplayServer
) -> None:
    journal = run_three_epochs(tmp_path)
    replay.variant = "corrected"  # Electricity Maps now says 11:00 = 70, final
    requests = len(replay.requests)

    result = reprice_journal(journal)
    assert result is not None and result.error is None
    assert result.laps == 2  # epochs 1 and 2
    # The run is months old here: /past-range, the endpoint for a span older than 24 h.
    assert replay.paths("electricitymaps")[requests:] == ["/v3/carbon-intensity/past-range"]
    records = read_journal(journal)
    reprices = [r for r in records if r["type"] == "reprice"]
    assert [(r["lap"], r["intensity_g_per_kwh_used"], r["intensity_g_per_kwh"], r["by"])
            for r in reprices] == [(1, 80.0, 70.0, "sync"), (2, 80.0, 70.0, "sync")]  # fmt: skip

    resender = Resender()
    sync_journal(journal, senders={"memory": resender})
    assert resender.metrics("carbon/corrected_intensity_g_per_kwh") == [(1, 70.0), (2, 70.0)]
    assert resender.metrics("carbon/corrected_epoch_emissions_kg") == [
        (1, pytest.approx(KWH * 70 / 1000, rel=1e-12)),
        (2, pytest.approx(KWH * 70 / 1000, rel=1e-12)),
    ]
    assert resender.metrics("carbon/corrected_emissions_kg") == [
        (3, pytest.approx(KWH * (60 + 70 + 70) / 1000, rel=1e-12))
    ]
    # The original per-epoch values, as used in training, went out unchanged.
    assert [v for _, v in resender.metrics("carbon/intensity_g_per_kwh")] == [60.0, 80.0, 80.0]

    # Again: the cache holds the final figures, so nothing is fetched and nothing changes.
    requests = len(replay.requests)
    again = reprice_journal(journal)
    assert again is not None and (again.laps, again.fetched) == (0, False)
    assert len(replay.requests) == requests


def test_sync_command_reports_the_repricing_and_a_missing_key(
    tmp_path: Path,
    replay: ReplayServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    journal = run_three_epochs(tmp_path)
    replay.variant = "corrected"
    monkeypatch.delenv("ELECTRICITYMAPS_API_KEY")
    main([str(tmp_path), "--dry-run"])
    err = capsys.readouterr().err
    assert f"{journal.name}: not re-priced (electricitymaps:FR): " in err
    assert "needs ELECTRICITYMAPS_API_KEY" in err
    monkeypatch.setenv("ELECTRICITYMAPS_API_KEY", replay_key())
    main([str(tmp_path), "--dry-run"])
    assert f"{journal.name}: 2 lap(s) would be re-priced (electricitymaps:FR)" in (
        capsys.readouterr().out
    )
    assert not [r for r in read_journal(journal) if r["type"] == "reprice"]  # a dry run


def replay_key() -> str:
    from tests.fakes.replay import EM_KEY

    return EM_KEY

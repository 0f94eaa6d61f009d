"""`Tracker(intensity_provider=...)` against the replay server: each lap priced at the
provider's values over the hours it spanned, the fallback, the re-pricing at stop."""

from __future__ import annotations

import calendar
import logging
import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from carbon_callbacks import Tracker
from carbon_callbacks.data import load_json
from carbon_callbacks.journal import read_journal
from tests.fakes.clock import FakeClock
from tests.fakes.replay import ReplayServer

H = 3600.0
T0 = float(calendar.timegm((2026, 3, 2, 10, 30, 0)))  # 2026-03-02T10:30Z
WATTS = 60.0  # 50 W CPU + 10 W RAM, constant
FR = load_json("countries.json")["countries"]["FR"]


def kwh(seconds: float) -> float:
    return WATTS * seconds / 3.6e6


def live_tracker(tmp_path: Path, **kwargs: Any) -> tuple[Tracker, FakeClock, FakeClock]:
    clock, wall = FakeClock(), FakeClock(T0)
    kwargs.setdefault("country", "FR")
    kwargs.setdefault("intensity_provider", "electricitymaps")
    tracker = Tracker(
        cpu_power_w=50, ram_power_w=10, count_gpu=False, clock=clock, wall_clock=wall,
        output_dir=tmp_path, **kwargs,
    )  # fmt: skip
    return tracker, clock, wall


def advance(clocks: tuple[FakeClock, FakeClock], seconds: float) -> None:
    for c in clocks:
        c.advance(seconds)


def fetch_now(tracker: Tracker) -> None:
    """What the fetch thread does every 10 minutes of a real run, now (the clock is fake)."""
    assert tracker.live is not None
    tracker.live.settle(T0, tracker.live._wall())


def test_fr_laps_are_priced_at_electricity_maps_hours_and_repriced_at_stop(
    tmp_path: Path, replay: ReplayServer
) -> None:
    tracker, clock, wall = live_tracker(tmp_path)
    tracker.start()
    laps = []
    for seconds in (0.5 * H, 1 * H, 0.25 * H):  # 10:30-11:00, 11:00-12:00, 12:00-12:15
        advance((clock, wall), seconds)
        laps.append(tracker.lap())
    # history.json: 10:00 60 (measured), 11:00 80 and 12:00 30 (estimates)
    assert [m.intensity_g_per_kwh for m in laps] == [60.0, 80.0, 30.0]
    assert [m.intensity_source for m in laps] == [
        "Electricity Maps FR hourly",
        "Electricity Maps FR hourly, estimated",
        "Electricity Maps FR hourly, estimated",
    ]
    assert {m.intensity_basis for m in laps} == {"life-cycle"}
    assert {m.intensity_year for m in laps} == {2026}
    assert laps[1].emissions_kg == pytest.approx(kwh(H) * 80 / 1000, rel=1e-12)
    history = [p for p in replay.paths("electricitymaps") if p.endswith("/history")]
    assert history == ["/v3/carbon-intensity/history"]  # from 2 h before the start: one request

    replay.variant = "corrected"  # the provider publishes 11:00 = 70, 12:00 = 35, final
    advance((clock, wall), 0.25 * H)  # a tail 12:15-12:30
    totals = tracker.stop()
    assert replay.paths("electricitymaps")[-1] == "/v3/carbon-intensity/history"
    expected_kg = (kwh(0.5 * H) * 60 + kwh(H) * 70 + kwh(0.5 * H) * 35) / 1000
    assert totals.emissions_kg == pytest.approx(expected_kg, rel=1e-12)
    assert totals.energy_kwh == pytest.approx(kwh(2 * H), rel=1e-12)
    assert totals.intensity_g_per_kwh == pytest.approx(expected_kg * 1000 / kwh(2 * H), rel=1e-12)
    assert totals.intensity_source == "mixed: Electricity Maps FR hourly"  # several hours, final
    assert [
        (i, u.intensity_g_per_kwh, c.intensity_g_per_kwh) for i, u, c in tracker.corrections
    ] == [
        (1, 80.0, 70.0),
        (2, 30.0, 35.0),
        (3, 30.0, 35.0),
    ]
    journal = read_journal(tracker.journal_path)  # type: ignore[arg-type]
    run = journal[0]
    assert run["intensity_provider"] == "electricitymaps:FR"
    reprices = [r for r in journal if r["type"] == "reprice"]
    assert [
        (r["lap"], r["intensity_g_per_kwh_used"], r["intensity_g_per_kwh"]) for r in reprices
    ] == [
        (1, 80.0, 70.0),
        (2, 30.0, 35.0),
        (3, 30.0, 35.0),
    ]
    used = [r for r in journal if r["type"] == "lap"]
    assert [r["intensity_g_per_kwh"] for r in used] == [60.0, 80.0, 30.0, 30.0]  # kept as used
    assert journal[-1]["type"] == "stop"
    assert journal[-1]["emissions_kg"] == pytest.approx(expected_kg, rel=1e-12)


def test_one_lap_across_hour_boundaries_is_time_weighted(
    tmp_path: Path, replay: ReplayServer
) -> None:
    replay.variant = "corrected"
    tracker, clock, wall = live_tracker(tmp_path)
    tracker.start()
    advance((clock, wall), 1.75 * H)  # 10:30-12:15: 30 min at 60, 60 at 70, 15 at 35
    lap = tracker.lap()
    assert lap.intensity_g_per_kwh == pytest.approx((30 * 60 + 60 * 70 + 15 * 35) / 105, rel=1e-15)
    assert lap.emissions_kg == pytest.approx(kwh(1.75 * H) * lap.intensity_g_per_kwh / 1000)
    tracker.stop()


FAILURES = {
    "down": "unreachable",
    "401": "auth",
    "429": "rate-limit",
    "garbage": "garbage",
    "slow": "timeout",
}


@pytest.mark.parametrize("failure", sorted(FAILURES))
def test_a_failing_provider_costs_one_warning_and_the_yearly_value_labelled(
    failure: str,
    tmp_path: Path,
    replay: ReplayServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    if failure == "down":
        monkeypatch.setenv("CARBON_CALLBACKS_ELECTRICITYMAPS_URL", closed_port_url())
    else:
        replay.mode["electricitymaps"] = failure
    tracker, clock, wall = live_tracker(tmp_path)
    caplog.set_level(logging.WARNING, logger="carbon_callbacks")
    began = time.monotonic()
    tracker.start()
    assert time.monotonic() - began < 2.0  # the timeout is 1 s here; the start waits <= 2 s
    laps = []
    for _ in range(3):
        advance((clock, wall), 0.5 * H)
        began = time.monotonic()
        laps.append(tracker.lap())
        assert time.monotonic() - began < 0.05  # a lap never waits for the network
    assert {m.intensity_g_per_kwh for m in laps} == {FR["g_per_kwh"]}
    assert {m.intensity_source for m in laps} == {
        f"{FR['source']} (yearly fallback: no Electricity Maps value)"
    }
    tracker.stop()
    causes = [c for c, _ in tracker.errors.items() if c.startswith("intensity:")]
    assert causes == [f"intensity:electricitymaps:{FAILURES[failure]}"]
    warned = [r for r in caplog.records if "Electricity Maps" in r.getMessage()]
    assert len(warned) == 1, [r.getMessage() for r in warned]
    assert "bundled yearly value" in warned[0].getMessage()


def closed_port_url() -> str:
    import socket

    with socket.socket() as s:  # a port nobody listens on once this closes
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_gb_half_hours_forecast_and_settled_values(tmp_path: Path, replay: ReplayServer) -> None:
    tracker, clock, wall = live_tracker(
        tmp_path, country="GB", intensity_provider="carbonintensity-uk"
    )
    tracker.start()
    advance((clock, wall), 0.75 * H)  # 10:30-11:15: 30 min at actual 214, 15 at 226
    fetch_now(tracker)
    lap = tracker.lap()
    assert lap.intensity_g_per_kwh == pytest.approx((30 * 214 + 15 * 226) / 45, rel=1e-15)
    assert lap.intensity_basis == "direct"
    assert lap.intensity_source == "Carbon Intensity API GB half-hourly"
    advance((clock, wall), 1.0 * H)  # 11:15-12:15: 15 min at 226, 30 at 233, 15 forecast 250
    fetch_now(tracker)
    lap = tracker.lap()
    assert lap.intensity_g_per_kwh == pytest.approx((15 * 226 + 30 * 233 + 15 * 250) / 60)
    assert lap.intensity_source == "Carbon Intensity API GB half-hourly, forecast"
    tracker.stop()


def test_gb_region_is_priced_from_its_forecasts(tmp_path: Path, replay: ReplayServer) -> None:
    tracker, clock, wall = live_tracker(
        tmp_path, country="GB", intensity_provider="carbonintensity-uk:13"
    )
    tracker.start()
    advance((clock, wall), 0.5 * H)  # 10:30-11:00 in region 13: 184
    lap = tracker.lap()
    assert lap.intensity_g_per_kwh == 184.0
    assert (
        lap.intensity_source == "Carbon Intensity API GB region 13 (London) half-hourly, forecast"
    )
    assert replay.paths("carbonintensity-uk")[0] == (
        "/regional/intensity/2026-03-02T08:30Z/2026-03-02T11:00Z/regionid/13"
    )
    tracker.stop()


def test_energidataservice_dk1_five_minutes_and_the_cache(
    tmp_path: Path, replay: ReplayServer
) -> None:
    for _run in range(2):
        tracker, clock, wall = live_tracker(
            tmp_path, country="DK", intensity_provider="energidataservice:DK1"
        )
        tracker.start()
        advance((clock, wall), 1.0 * H)  # 10:30-11:30: 30 min at 120, 30 at 130 g CO2/kWh
        fetch_now(tracker)
        lap = tracker.lap()
        assert lap.intensity_g_per_kwh == 125.0
        assert lap.intensity_basis == "co2-only"
        assert lap.intensity_source == "Energi Data Service DK1 5-minute"
        tracker.stop()
        history = [p for p in replay.paths("energidataservice") if p.endswith("/CO2Emis")]
        assert len(history) == 2  # at start and before the lap; the second run asks nothing
    cache = tmp_path / "intensity-energidataservice-DK1.json"
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600


def test_watttime_is_marginal_and_labelled(tmp_path: Path, replay: ReplayServer) -> None:
    tracker, clock, wall = live_tracker(
        tmp_path, country="US", intensity_provider="watttime:CAISO_NORTH"
    )
    tracker.start()
    advance((clock, wall), 1.0 * H)  # 10:30-11:30: 30 min at 800 lbs/MWh, 30 at 1000
    fetch_now(tracker)
    lap = tracker.lap()
    assert lap.intensity_g_per_kwh == pytest.approx(900 * 0.45359237, rel=1e-12)
    assert lap.intensity_basis == "marginal"
    assert lap.intensity_source == "WattTime CAISO_NORTH 5-minute marginal (MOER)"
    assert replay.paths("watttime")[:2] == ["/login", "/v3/historical"]
    tracker.stop()


def test_the_secrets_reach_no_file_no_log_and_no_output(
    tmp_path: Path,
    replay: ReplayServer,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from carbon_callbacks.session import CarbonSession
    from tests.fakes.replay import EM_KEY, WT_PASSWORD, WT_TOKEN

    caplog.set_level(logging.DEBUG)
    for spec, country in (("electricitymaps", "FR"), ("watttime:CAISO_NORTH", "US")):
        for mode in ("ok", "401"):
            replay.mode = {} if mode == "ok" else {spec.split(":")[0]: mode}
            tracker, clock, wall = live_tracker(tmp_path, country=country, intensity_provider=spec)
            session = CarbonSession(tracker, [])
            session.begin(total_epochs=3)
            for epoch in range(2):
                advance((clock, wall), 0.5 * H)
                session.epoch_end(epoch)
            session.end()
    text = caplog.text + capsys.readouterr().out
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".jsonl" for p in files) and any(p.suffix == ".json" for p in files)
    text += "".join(p.read_text() for p in files)
    for secret in (EM_KEY, WT_PASSWORD, WT_TOKEN, os.environ["WATTTIME_PASSWORD"]):
        assert secret not in text


def test_a_tracker_restarted_runs_one_fetch_thread_and_prices_again(
    tmp_path: Path, replay: ReplayServer
) -> None:
    import threading

    tracker, clock, wall = live_tracker(tmp_path)
    for _ in range(2):
        tracker.start()
        advance((clock, wall), 0.25 * H)
        assert tracker.lap().intensity_source.startswith("Electricity Maps FR hourly")
        tracker.stop()
        assert not tracker.live.running  # type: ignore[union-attr]
    tracker.close()
    time.sleep(0.3)
    alive = [t for t in threading.enumerate() if t.name == "carbon-callbacks-intensity"]
    assert alive == []

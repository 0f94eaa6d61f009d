"""``carbon-callbacks when`` on known forecasts served by the replay server, and
``--intensity-provider`` on the other commands."""

from __future__ import annotations

import calendar
import json
from pathlib import Path

import pytest

from carbon_callbacks import cli, when
from tests.fakes.replay import ReplayServer

H = 3600.0
T10 = float(calendar.timegm((2026, 3, 2, 10, 0, 0)))


def run_json(capsys: pytest.CaptureFixture[str], argv: list[str], now: float) -> dict[str, object]:
    assert when.main([*argv, "--json"], now=now) == 0
    result: dict[str, object] = json.loads(capsys.readouterr().out)
    return result


def test_gb_national_forecast_lowest_two_hours_exactly(
    replay: ReplayServer, capsys: pytest.CaptureFixture[str]
) -> None:
    now = T10 + 600  # 10:10Z, inside the first half-hour of national-fw48h.json
    result = run_json(capsys, ["--provider", "carbonintensity-uk", "--hours", "2"], now)
    # Half-hours from 10:00: 210 220 230 240 250 245 240 235 190 150 120 | 100 90 95 110 | 130..
    # The lowest four in a row start at 15:30: (100 + 90 + 95 + 110) / 4 = 98.75.
    # From now (10:10): 20 min at 210, 30 at 220, 30 at 230, 30 at 240, 10 at 250 = 27400/120.
    now_mean = (20 * 210 + 30 * 220 + 30 * 230 + 30 * 240 + 10 * 250) / 120
    assert result == {
        "start": "2026-03-02T15:30:00Z",
        "end": "2026-03-02T17:30:00Z",
        "mean_g_per_kwh": 98.75,
        "now_g_per_kwh": pytest.approx(now_mean, rel=1e-15),
        "saving_percent": pytest.approx((now_mean - 98.75) * 100 / now_mean, rel=1e-15),
    }
    assert replay.paths("carbonintensity-uk") == ["/intensity/2026-03-02T10:00Z/fw48h"]


def test_electricity_maps_by_country_and_within(
    replay: ReplayServer, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--provider", "electricitymaps", "--country", "FR", "--hours", "2"]
    # Hourly from 10:00: 60 80 30 25 20 35 70 110 ...: 13:00-15:00 at (25 + 20) / 2.
    result = run_json(capsys, argv, T10)
    assert (result["start"], result["mean_g_per_kwh"], result["now_g_per_kwh"]) == (
        "2026-03-02T13:00:00Z", 22.5, 70.0,
    )  # fmt: skip
    assert result["saving_percent"] == pytest.approx((70 - 22.5) * 100 / 70, rel=1e-15)
    # Done within 3 hours: only the starts at 10:00 and 11:00 fit; 11:00 (80 + 30) / 2 = 55.
    result = run_json(capsys, [*argv, "--within", "3"], T10)
    assert (result["start"], result["end"], result["mean_g_per_kwh"]) == (
        "2026-03-02T11:00:00Z", "2026-03-02T13:00:00Z", 55.0,
    )  # fmt: skip


def test_text_output_names_utc_local_and_the_saving(
    replay: ReplayServer, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--provider", "energidataservice", "--zone", "DK1", "--hours", "1"]
    assert when.main(argv, now=T10) == 0
    out = capsys.readouterr().out
    # CO2EmisProg DK1 hourly blocks from 10:00: 120 130 90 80 70 60 75 ...: 15:00 at 60.
    assert "Best start: 2026-03-02T15:00Z" in out
    assert "mean over those 1 h: 60.0 g/kWh (forecast, Energi Data Service DK1 5-minute" in out
    assert "starting now (2026-03-02T10:00Z" in out and ": 120.0 g/kWh" in out
    assert "saving: 50.0 %" in out and " local" in out


def test_when_refuses_bad_input_and_reports_a_short_forecast(
    replay: ReplayServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert when.main(["--provider", "nope", "--hours", "1"], now=T10) == 2
    assert "unknown --provider 'nope'" in capsys.readouterr().err
    assert when.main(["--provider", "electricitymaps", "--hours", "1"], now=T10) == 2
    assert "needs a zone" in capsys.readouterr().err
    assert when.main(["--provider", "carbonintensity-uk", "--hours", "0"], now=T10) == 2
    assert when.main(["--provider", "watttime:CAISO_NORTH", "--hours", "13"], now=T10) == 1
    assert "forecast covers 12.0 h from now, less than a 13 h window" in capsys.readouterr().err
    replay.mode["carbonintensity-uk"] = "500"
    assert when.main(["--provider", "carbonintensity-uk", "--hours", "1"], now=T10) == 1
    assert "Carbon Intensity API failed (HTTP 500)" in capsys.readouterr().err


def test_run_and_detect_take_intensity_provider(
    replay: ReplayServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        cli.main(["detect", "--country", "GB", "--intensity-provider", "carbonintensity-uk:13"])
        == 0
    )
    out = capsys.readouterr().out
    assert "Live: Carbon Intensity API GB region 13 (London) half-hourly (live;" in out
    assert replay.requests == []  # detect contacts nobody
    code = cli.main(
        ["run", "--country", "GB", "--intensity-provider", "carbonintensity-uk",
         "--cpu-power-w", "10", "--output-dir", str(tmp_path), "--", "true"]
    )  # fmt: skip
    assert code == 0
    assert replay.paths("carbonintensity-uk")  # the run asked the provider
    # The replayed hours are in March 2026, not now: the run is priced, and labelled, yearly.
    assert "(yearly fallback: no Carbon Intensity API value)" in capsys.readouterr().err
    assert cli.main(["detect", "--intensity-provider", "bogus"]) == 2
    assert "unknown intensity_provider 'bogus'" in capsys.readouterr().err

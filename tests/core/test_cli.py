from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from carbon_callbacks import Tracker
from carbon_callbacks.cli import main
from carbon_callbacks.journal import read_journal
from tests.fakes.clock import FakeClock

FRAMEWORKS = ("torch", "mlflow", "comet_ml", "pandas", "lightning", "transformers", "keras")


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "carbon_callbacks.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
    )


def test_core_imports_no_framework() -> None:
    code = (
        "import sys, carbon_callbacks\n"
        "from carbon_callbacks import Tracker, Measurement\n"
        "import carbon_callbacks.cli, carbon_callbacks.outputs, carbon_callbacks.sensors.detect\n"
        f"print(sorted(m for m in {FRAMEWORKS!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_run_propagates_exit_code_and_prints_summary(tmp_path: Path) -> None:
    out = cli(
        "run",
        "--country",
        "FR",
        "--output-dir",
        str(tmp_path),
        "--",
        sys.executable,
        "-c",
        "import sys; print('child ran'); sys.exit(7)",
    )
    assert out.returncode == 7, out.stderr
    assert "child ran" in out.stdout
    # each total with its range (the CPU and RAM here are estimates)
    summary = (
        r"^carbon-callbacks run: [\d.,]+ (mWh|Wh) \([\d.,]+–[\d.,]+ (mWh|Wh), estimated\), "
        r"[\d.,]+ (mg|g) CO2eq \([\d.,]+–[\d.,]+ (mg|g) CO2eq, estimated\) in "
    )
    assert re.search(summary, out.stderr, re.M)
    assert "CPU: estimated" in out.stderr or "CPU: measured" in out.stderr
    journals = list(tmp_path.glob("*.jsonl"))
    assert len(journals) == 1
    records = read_journal(journals[0])
    assert records[0]["type"] == "run" and records[-1]["type"] == "stop"
    stop = records[-1]
    assert stop["energy_kwh"] > 0
    fr = stop["intensity_g_per_kwh"]
    assert stop["emissions_kg"] == pytest.approx(stop["energy_kwh"] * fr / 1000, rel=1e-12)


def test_run_exit_codes_of_signals_and_missing_commands(tmp_path: Path) -> None:
    killed = cli(
        "run", "--intensity", "100", "--output-dir", str(tmp_path), "--",
        sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGTERM)",
    )  # fmt: skip
    assert killed.returncode == 128 + 15
    missing = cli("run", "--intensity", "100", "--", "no-such-command-here")
    assert missing.returncode == 127 and "no-such-command-here" in missing.stderr


def test_run_with_bad_location_is_a_clear_error() -> None:
    out = cli("run", "--country", "Frnace", "--", sys.executable, "-c", "pass")
    assert out.returncode == 2
    assert "'Frnace'" in out.stderr and "FRA" in out.stderr
    assert "Traceback" not in out.stderr


def test_detect_json_reports_every_component() -> None:
    out = cli("detect", "--json", "--cloud", "gcp:europe-west1")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert {s["component"] for s in report["sensors"]} == {"cpu", "gpu", "ram", "node"}
    assert all(s["reason"] for s in report["sensors"])
    assert report["location"] == "gcp:europe-west1"
    assert report["intensity_g_per_kwh"] > 0
    assert set(report["methods"]) == {"cpu", "gpu", "ram"}


def test_core_opens_no_socket(
    no_network: list[object], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A full start/lap/stop, the summary and the CLI's detect, with every socket blocked."""
    from carbon_callbacks.equivalents import equivalents
    from carbon_callbacks.outputs import epoch_metrics, run_tags, summary

    clock = FakeClock()
    with pytest.warns(Warning):  # no location: the world-average warning
        tracker = Tracker(output_dir=tmp_path, clock=clock)
    tracker.start()
    clock.advance(60)
    lap = tracker.lap()
    totals = tracker.stop()
    assert epoch_metrics(lap, totals)["carbon/energy_kwh"] > 0
    assert run_tags(tracker)["carbon.cpu_method"]
    assert re.search(r": [\d.,]+ (mWh|Wh) \(", summary(totals, equivalents(totals)))  # 60 s
    assert main(["detect", "--country", "DE"]) == 0
    assert "Location: DE" in capsys.readouterr().out
    run = ["run", "--country", "DE", "--output-dir", str(tmp_path), "--", sys.executable, "-c", ""]
    assert main(run) == 0
    assert " CO2eq, estimated) in " in capsys.readouterr().err
    tracker.close()


def test_progress_line_only_when_asked_or_on_a_terminal(tmp_path: Path) -> None:
    child = [sys.executable, "-c", "import time; time.sleep(2.3)"]
    shown = cli(
        "run", "--intensity", "100", "--output-dir", str(tmp_path), "--progress", "--", *child
    )
    assert shown.returncode == 0
    # text mode turns each "\r" rewrite into a line of its own
    updates = [u for u in shown.stderr.splitlines() if u.startswith("carbon-callbacks: ")]
    assert len(updates) >= 2 and all(" W " in u and "Wh  " in u and " s" in u for u in updates)
    quiet = cli("run", "--intensity", "100", "--output-dir", str(tmp_path), "--", *child)
    assert not [u for u in quiet.stderr.splitlines() if u.startswith("carbon-callbacks: ")]


def test_peek_reads_without_taking_a_lap(tmp_path: Path) -> None:
    clock = FakeClock()
    tracker = Tracker(
        cpu_power_w=36, count_ram=False, intensity_g_per_kwh=1, clock=clock, output_dir=tmp_path
    )
    tracker.start()
    clock.advance(100)
    assert tracker.peek().energy_kwh == pytest.approx(0.001)
    clock.advance(100)
    assert tracker.lap().energy_kwh == pytest.approx(0.002)  # the peek moved nothing
    assert tracker.lap_count == 1
    tracker.stop()

"""The end-of-training summary document and chart (``carbon/summary.json``, the PNG).

Exact figures: constant watts and a fake clock, so every number is a hand computation. The
tracking clients are not needed: sinks are in-memory; the real MLflow and Comet artifacts
are read back in ``tests/integrations`` (``check_artifacts``, ``check_archive``).
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from carbon_callbacks import Tracker
from carbon_callbacks.artifacts import (
    CHART_FILE,
    FORMAT,
    SUMMARY_FILE,
    artifact_files,
    chart_title,
    render_chart,
    summary_json,
)
from carbon_callbacks.delivery import ArtifactSink, BackgroundSink, Record, Sink, sink_id
from carbon_callbacks.journal import read_journal
from carbon_callbacks.regions import greener_alternatives
from carbon_callbacks.session import CarbonSession
from carbon_callbacks.sync import pending, sync_journal
from tests.core.test_sync import MemorySink, Resender
from tests.fakes.clock import FakeClock

REPO = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# 50 W CPU + 10 W RAM, 10 s epochs, 100 g/kWh: 600 J = 1/6000 kWh and 1/60000 kg an epoch.
EPOCH_KWH = 60.0 * 10.0 / 3.6e6
EPOCH_KG = EPOCH_KWH * 100.0 / 1000.0


class FileSink(MemorySink):
    """A journal-backed in-memory sink that also takes the end-of-training document."""

    def log_artifacts(self, summary: Mapping[str, Any], *, key: str | None = None) -> None:
        self._put(Record("artifacts", self.run, dict(summary), key=key))


def make_session(
    tmp_path: Path, sinks: Sequence[Any], clock: FakeClock, **kwargs: Any
) -> CarbonSession:
    tracker = Tracker(
        cpu_power_w=50, ram_power_w=10, count_gpu=False, intensity_g_per_kwh=100,
        output_dir=tmp_path, clock=clock,
    )  # fmt: skip
    return CarbonSession(tracker, sinks, summary=False, flush_timeout_s=5.0, **kwargs)


def run_epochs(session: CarbonSession, clock: FakeClock, epochs: Sequence[int]) -> None:
    for epoch in epochs:
        clock.advance(10.0)
        session.epoch_end(epoch)


def documents(sink: MemorySink) -> list[Mapping[str, Any]]:
    return [r.data for r in sink.sent if r.kind == "artifacts"]


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def test_the_summary_holds_the_totals_ranges_methods_and_every_epoch(tmp_path: Path) -> None:
    clock = FakeClock()
    sink = FileSink()
    session = make_session(tmp_path, [sink], clock)
    session.begin(total_epochs=3)
    run_epochs(session, clock, range(3))
    totals = session.end()
    assert totals is not None
    [doc] = documents(sink)
    assert doc == session.summary_document
    assert (doc["format"], doc["estimated"]) == (FORMAT, True)  # constant watts: an estimate
    assert doc["totals"]["energy_kwh"] == pytest.approx(3 * EPOCH_KWH, rel=1e-12)
    assert doc["totals"]["emissions_kg"] == pytest.approx(3 * EPOCH_KG, rel=1e-12)
    assert doc["totals"]["duration_s"] == pytest.approx(30.0, rel=1e-12)
    assert doc["totals"]["power_w"] == pytest.approx(60.0, rel=1e-12)
    assert doc["totals"]["epochs"] == 3
    # The user's own watts are exact: each range is the value itself.
    assert doc["ranges"]["energy_kwh"] == {"low": totals.energy_kwh, "high": totals.energy_kwh}
    assert doc["ranges"]["emissions_kg"] == {
        "low": totals.emissions_kg,
        "high": totals.emissions_kg,
    }
    cpu, gpu, ram = (doc["methods"][c] for c in ("cpu", "gpu", "ram"))
    assert (cpu["method"], cpu["estimated"], cpu["error_factors"]) == ("constant", True, [1, 1])
    assert cpu["energy_kwh"] == pytest.approx(3 * 50.0 * 10.0 / 3.6e6, rel=1e-12)
    assert ram["energy_kwh"] == pytest.approx(3 * 10.0 * 10.0 / 3.6e6, rel=1e-12)
    assert (gpu["method"], gpu["energy_kwh"]) == ("none", None)
    assert doc["intensity"]["g_per_kwh"] == 100.0 and doc["intensity"]["basis"] == "user"
    assert doc["hardware"]["cpu_model"] == session._tags["carbon.cpu_model"]
    assert "cpu_method" not in doc["hardware"] and "country" not in doc["hardware"]
    assert [row["epoch"] for row in doc["epochs"]] == [0, 1, 2]
    for row in doc["epochs"]:
        assert row["energy_kwh"] == pytest.approx(EPOCH_KWH, rel=1e-12)
        assert row["emissions_kg"] == pytest.approx(EPOCH_KG, rel=1e-12)
        assert row["energy_kwh_low"] == row["energy_kwh"] == row["energy_kwh_high"]
        assert row["duration_s"] == pytest.approx(10.0, rel=1e-12)
    # Predicted after epoch 1 of 3: exact with equal epochs.
    assert doc["prediction"]["energy_kwh"] == pytest.approx(3 * EPOCH_KWH, rel=1e-12)
    assert doc["prediction"]["total_epochs"] == 3
    best = greener_alternatives(totals, session.tracker.intensity, n=1)[0]
    assert doc["greener_region"]["region"] == best.region
    assert doc["greener_region"]["advice"] == session.advice
    assert set(doc["equivalents"]) >= {"car_km", "tv_hours", "phone_charges"}
    assert doc["equivalents"]["car_km"]["source"]
    json.loads(summary_json(doc))  # plain JSON


def test_only_sinks_that_store_files_get_it_and_it_is_journaled_for_them(
    tmp_path: Path,
) -> None:
    class PlainSink:  # the four Sink methods only
        def __init__(self) -> None:
            self.calls: list[str] = []

        def log_tags(self, tags: Mapping[str, str], **_: Any) -> None:
            self.calls.append("tags")

        def log_metrics(self, metrics: Mapping[str, float], step: int, **_: Any) -> None:
            self.calls.append("metrics")

        def flush(self, timeout_s: float | None = None) -> bool:
            return True

        def close(self) -> None:
            pass

    clock = FakeClock()
    files, metrics_only, plain = FileSink("files"), MemorySink("metrics"), PlainSink()
    assert isinstance(files, ArtifactSink) and not isinstance(metrics_only, ArtifactSink)
    assert isinstance(plain, Sink) and not isinstance(plain, ArtifactSink)
    session = make_session(tmp_path, [files, metrics_only, plain], clock)
    session.begin()
    run_epochs(session, clock, range(2))
    session.end()
    assert len(documents(files)) == 1
    assert [r.kind for r in metrics_only.sent].count("artifacts") == 0
    assert plain.calls == ["tags", "metrics", "metrics", "tags", "metrics"]  # and nothing else
    assert session.journal_path is not None
    [record] = [r for r in read_journal(session.journal_path) if r["type"] == "artifacts"]
    assert record["artifacts"] == documents(files)[0]
    assert record["sinks"] == [sink_id(files.target())]  # not the sink without the method
    assert session.undelivered == []


def test_no_document_when_training_raised_or_artifacts_is_off(tmp_path: Path) -> None:
    clock = FakeClock()
    crashed, off = FileSink("crashed"), FileSink("off")
    session = make_session(tmp_path / "a", [crashed], clock)
    session.begin()
    run_epochs(session, clock, [0])
    session.fail(RuntimeError("boom"), epoch=1)
    quiet = make_session(tmp_path / "b", [off], clock, artifacts=False)
    quiet.begin()
    run_epochs(quiet, clock, [0])
    quiet.end()
    assert documents(crashed) == [] and documents(off) == []


def test_a_sink_that_was_down_gets_the_document_from_sync(tmp_path: Path) -> None:
    clock = FakeClock()
    sink = FileSink(max_retries=0)
    sink.down = True
    session = make_session(tmp_path, [sink], clock)
    session.begin()
    run_epochs(session, clock, range(2))
    session.end()
    assert session.journal_path is not None
    [(_, _, todo)] = pending(session.journal_path)
    assert [r["type"] for r in todo][-1] == "artifacts"
    resend = Resender()
    [result] = sync_journal(session.journal_path, senders={"memory": resend})
    assert result.error is None and result.sent == len(todo)
    [document] = [r["artifacts"] for r in resend.received if r["type"] == "artifacts"]
    assert document == session.summary_document


def test_a_restored_checkpoint_keeps_the_earlier_epochs_in_the_document(tmp_path: Path) -> None:
    clock = FakeClock()
    first = make_session(tmp_path, [], clock)
    first.begin(total_epochs=3)
    run_epochs(first, clock, range(2))
    state = json.loads(json.dumps(first.state_dict()))  # as a checkpoint keeps it
    first.end()
    sink = FileSink()
    second = make_session(tmp_path, [sink], clock)
    second.load_state_dict(state)
    second.begin(total_epochs=3)
    run_epochs(second, clock, [2])
    totals = second.end()
    assert totals is not None
    [doc] = documents(sink)
    assert [row["epoch"] for row in doc["epochs"]] == [0, 1, 2]
    assert doc["totals"]["energy_kwh"] == pytest.approx(3 * EPOCH_KWH, rel=1e-12)
    assert sum(row["energy_kwh"] for row in doc["epochs"]) == pytest.approx(
        totals.energy_kwh, rel=1e-12
    )


def sample_document(estimated: bool = True) -> dict[str, Any]:
    rows = [
        {
            "epoch": i,
            "energy_kwh": kwh,
            "energy_kwh_low": kwh * (0.7 if estimated else 1.0),
            "energy_kwh_high": kwh * (1.4 if estimated else 1.0),
            "emissions_kg": kwh * 0.05,
            "emissions_kg_low": kwh * 0.05 * (0.7 if estimated else 1.0),
            "emissions_kg_high": kwh * 0.05 * (1.4 if estimated else 1.0),
            "duration_s": 60.0,
        }
        for i, kwh in enumerate([0.002, 0.0018, 0.0019])
    ]
    return {
        "estimated": estimated,
        "totals": {"energy_kwh": 0.0057, "emissions_kg": 0.000285},
        "intensity": {"basis": "life-cycle", "source": "Ember/OWID 2025"},
        "epochs": rows,
    }


def test_the_chart_is_a_png_of_fixed_size_and_only_the_json_without_matplotlib(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("matplotlib", reason="matplotlib is not installed")
    for estimated in (True, False):
        files = artifact_files(sample_document(estimated))
        assert sorted(files) == sorted([SUMMARY_FILE, CHART_FILE])
        assert png_size(files[CHART_FILE]) == (800, 550)  # 8 x 5.5 in at 100 dpi
    assert render_chart({"epochs": []}) is None  # no epoch: no chart
    for module in ("matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    files = artifact_files(sample_document())
    assert list(files) == [SUMMARY_FILE]
    assert json.loads(files[SUMMARY_FILE])["epochs"][0]["energy_kwh"] == 0.002


def test_drawing_leaves_the_users_backend_and_importing_the_core_imports_no_matplotlib() -> None:
    pytest.importorskip("matplotlib", reason="matplotlib is not installed")
    code = f"""
import sys
import carbon_callbacks.session, carbon_callbacks.artifacts
assert "matplotlib" not in sys.modules, "imported by the core"
import matplotlib
matplotlib.use("svg")  # the user's choice
from carbon_callbacks.artifacts import render_chart
from tests.core.test_artifacts import sample_document
assert render_chart(sample_document()).startswith({PNG_MAGIC!r})
assert "matplotlib.pyplot" not in sys.modules, "pyplot imported"
assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
"""
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr


def test_a_failing_sink_never_reaches_training(tmp_path: Path) -> None:
    class Broken(BackgroundSink):
        def log_artifacts(self, summary: Mapping[str, Any], *, key: str | None = None) -> None:
            raise OSError("disk full")

        def _send(self, records: Sequence[Record]) -> None:
            pass

    clock = FakeClock()
    session = make_session(tmp_path, [Broken("run-1", name="broken")], clock)
    session.begin()
    run_epochs(session, clock, [0])
    assert session.end() is not None  # the error is recorded, not raised
    assert any("disk full" in m for m in session.tracker.errors.messages())


@pytest.mark.parametrize("kwh", [1e-9, 6e-6, 0.0034, 2.5, 1e4])
def test_the_chart_title_is_in_units_a_person_reads(kwh: float) -> None:
    doc = {
        "epochs": [{"epoch": 0, "energy_kwh": kwh, "emissions_kg": kwh * 0.04144}],
        "totals": {"energy_kwh": kwh, "emissions_kg": kwh * 0.04144},
        "estimated": True,
        "intensity": {"basis": "co2-only", "source": "China MEE/NBS 2023; not the series..."},
    }
    title = chart_title(doc)
    assert "e-" not in title and "e+" not in title, title
    assert " CO2 in 1 epoch(s) (estimated; China MEE/NBS 2023)" in title
    assert chart_title({**doc, "totals": {"energy_kwh": 0.006, "emissions_kg": 0.00027}}) == (
        "6 Wh, 270 mg CO2 in 1 epoch(s) (estimated; China MEE/NBS 2023)"
    )

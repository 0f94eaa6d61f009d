"""`carbon-callbacks report` on runs written with the contract's metric and tag names."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

pytest.importorskip("mlflow", reason="MLflow is not installed")
pytest.importorskip("matplotlib", reason="matplotlib is not installed")

from mlflow.entities import Metric, RunTag  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from carbon_callbacks import cli, humanize  # noqa: E402
from carbon_callbacks.report import main, redact  # noqa: E402
from scripts.mlflow_server import free_port  # noqa: E402

INTENSITY = 100.0
# name -> (watts, epochs, cpu method): emissions order small < medium < big.
RUNS = {
    "big-model": (300.0, 4, "estimate-tdp"),
    "small-model": (60.0, 3, "rapl"),
    "medium-model": (150.0, 5, "constant"),
}
TAIL_KWH = 1e-5  # energy after the last epoch: only in the final value of the cumulative keys


def log_contract_run(client: MlflowClient, experiment_id: str, name: str) -> float:
    """One run as a `CarbonCallback` writes it; returns its total emissions in kg."""
    watts, epochs, cpu_method = RUNS[name]
    run_id = client.create_run(experiment_id, run_name=name).info.run_id
    ts = int(time.time() * 1000)
    metrics, total = [], 0.0
    for epoch in range(epochs):
        seconds = 30.0 + 3 * epoch
        kwh = watts * seconds / 3.6e6
        total += kwh
        for key, value in (
            ("carbon/epoch_energy_kwh", kwh),
            ("carbon/epoch_emissions_kg", kwh * INTENSITY / 1000),
            ("carbon/epoch_duration_s", seconds),
            ("carbon/epoch_cpu_energy_kwh", kwh),
            ("carbon/epoch_power_w", watts),
            ("carbon/energy_kwh", total),
            ("carbon/emissions_kg", total * INTENSITY / 1000),
            ("carbon/intensity_g_per_kwh", INTENSITY),
        ):
            metrics.append(Metric(key, value, ts, epoch))
    total += TAIL_KWH
    for key, value in (
        ("carbon/energy_kwh", total),
        ("carbon/emissions_kg", total * INTENSITY / 1000),
        ("carbon/duration_s", 40.0 * epochs),
    ):
        metrics.append(Metric(key, value, ts, epochs))
    tags = {
        "carbon.intensity_source": "user-given",
        "carbon.intensity_basis": "user",
        "carbon.cpu_method": cpu_method,
        "carbon.gpu_method": "none",
        "carbon.ram_method": "estimate-ram",
        "carbon.estimated": "true",
    }
    client.log_batch(run_id, metrics=metrics, tags=[RunTag(k, v) for k, v in tags.items()])
    client.set_terminated(run_id)
    return total * INTENSITY / 1000


def make_experiment(uri: str) -> tuple[str, dict[str, float]]:
    client = MlflowClient(tracking_uri=uri)
    name = f"report-{uuid.uuid4().hex[:8]}"
    experiment_id = client.create_experiment(name)
    totals = {run: log_contract_run(client, experiment_id, run) for run in RUNS}
    client.create_run(experiment_id, run_name="no-carbon-metrics")  # skipped by the report
    return name, totals


def run_report(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def check_report(uri: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    experiment, totals = make_experiment(uri)
    capsys.readouterr()  # MLflow prints "View run ... at: URL" when a run ends on a server
    png, page = tmp_path / "report.png", tmp_path / "out" / "report.html"
    code, out, err = run_report(
        capsys, "--tracking-uri", uri, "--experiment", experiment, "--out", str(png)
    )
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["run", "duration", "energy", "CO2eq"]
    rows = [line.split() for line in lines[1:4]]
    expected = sorted(totals, key=totals.__getitem__)
    assert [row[0] for row in rows] == expected == ["small-model", "medium-model", "big-model"]
    # small-model: 60 W x (30 + 33 + 36) s = 5,940 J = 1.65 Wh, + the 0.01 Wh tail = 1.66 Wh;
    # x 100 g/kWh = 166 mg; 40 s x 3 epochs = 2 min; 60 W x 33 s x 100 g/kWh / 3.6e6 = 55 mg.
    assert rows[0][:10] == ["small-model", "2", "min", "1.66", "Wh", "166", "mg", "55", "mg", "3"]
    assert lines[0].split()[6:9] == ["g/kWh", "basis", "source"]
    assert rows[0][10:13] == ["100", "user", "user-given"]  # g/kWh, basis, source
    for row in rows:
        # The total is the last value of carbon/emissions_kg (tail included), 3 digits.
        assert row[5:7] == humanize.mass(totals[row[0]]).split()
        assert row[9] == str(RUNS[row[0]][1])  # epochs (each quantity is 2 cells: "2 min")
    assert rows[0][-1] == "ram" and rows[1][-2:] == ["cpu,", "ram"]  # rapl CPU is measured
    assert lines[4] == "3 run(s), 2.07 g CO2eq in all; 1 run(s) without carbon metrics not shown"
    assert "no-carbon-metrics" not in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 5_000

    code, out, err = run_report(
        capsys, "--tracking-uri", uri, "--experiment", experiment, "--out", str(page)
    )
    assert code == 0, err
    text = page.read_text(encoding="utf-8")
    assert all(name in text for name in RUNS)
    assert "data:image/png;base64," in text and page.stat().st_size > 5_000


def test_report_on_a_sqlite_store(
    sqlite_uri: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    check_report(sqlite_uri, tmp_path, capsys)


def test_report_on_a_file_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    check_report(uri, tmp_path, capsys)


def test_report_on_a_server(
    mlflow_server_uri: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    check_report(mlflow_server_uri.rstrip("/"), tmp_path, capsys)


def test_through_the_main_command_with_duplicate_names(
    sqlite_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    client = MlflowClient(tracking_uri=sqlite_uri)
    experiment = f"report-dup-{uuid.uuid4().hex[:8]}"
    experiment_id = client.create_experiment(experiment)
    for _ in range(2):
        log_contract_run(client, experiment_id, "small-model")
    assert cli.main(["report", "--experiment", experiment]) == 0  # URI from the environment
    names = [line.split()[0:2] for line in capsys.readouterr().out.splitlines()[1:3]]
    assert all(n[0] == "small-model" and n[1].startswith("(") for n in names)
    assert names[0] != names[1]


def test_unknown_experiment_suggests_close_names(
    sqlite_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    experiment, _ = make_experiment(sqlite_uri)
    code, out, err = run_report(
        capsys, "--tracking-uri", sqlite_uri, "--experiment", experiment[:-1] + "x"
    )
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and f"close matches: {experiment!r}" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--experiment", "e", "--out", "chart.pdf"], "--out must end in .png or .html"),
        (["--experiment", "e", "--max-runs", "0"], "--max-runs must be >= 1"),
        (["--tracking-uri", "sqlite:///x.db"], "one of the arguments --experiment"),
    ],
)
def test_bad_arguments_exit_2(
    args: list[str], message: str, sqlite_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_report(capsys, *args)
    assert code == 2 and out == "" and message in err and err.count("\n") == 1


def test_no_tracking_uri_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    code, _, err = run_report(capsys, "--experiment", "e")
    assert code == 2 and "--tracking-uri is required" in err


def test_a_server_that_is_down_fails_in_seconds(capsys: pytest.CaptureFixture[str]) -> None:
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    code, _, err = run_report(capsys, "--tracking-uri", uri, "--experiment", "e")
    assert code == 1 and f"cannot reach the MLflow server at {uri}" in err
    assert time.monotonic() - started < 10


def test_missing_mlflow_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for module in ("mlflow", "mlflow.tracking", "mlflow.exceptions"):
        monkeypatch.setitem(__import__("sys").modules, module, None)
    code, _, err = run_report(capsys, "--tracking-uri", "sqlite:///x.db", "--experiment", "e")
    assert code == 1
    assert err.strip() == (
        "carbon-callbacks report: error: the report reads MLflow runs: "
        "pip install 'carbon-callbacks[mlflow]'"
    )


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("http://user:secret@host:5000/x", "http://user:***@host:5000/x"),
        ("http://host:5000", "http://host:5000"),
        ("sqlite:////tmp/a.db", "sqlite:////tmp/a.db"),
    ],
)
def test_redact(uri: str, shown: str) -> None:
    assert redact(uri) == shown

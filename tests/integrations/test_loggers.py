"""Lightning's other loggers: `CSVLogger` and `TensorBoardLogger` get the carbon metrics and
tags through ``log_metrics`` / ``log_hyperparams``; `WandbLogger` gets a `WandbSink`; an
`MLFlowLogger` next to a `CSVLogger` still gets each value once."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("lightning", reason="Lightning is not installed")
pytest.importorskip("mlflow", reason="MLflow is not installed")
pytest.importorskip("tensorboard", reason="tensorboard is not installed")
pytest.importorskip("wandb", reason="wandb is not installed")

from lightning.pytorch.loggers import (  # noqa: E402
    CSVLogger,
    MLFlowLogger,
    TensorBoardLogger,
    WandbLogger,
)
from mlflow.tracking import MlflowClient  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import (  # noqa: E402
    EventAccumulator,
)
from tensorboard.plugins.hparams import plugin_data_pb2  # noqa: E402

from carbon_callbacks.integrations.lightning import CarbonCallback  # noqa: E402
from carbon_callbacks.integrations.loggers import LoggerSink  # noqa: E402
from carbon_callbacks.integrations.mlflow import MlflowSink  # noqa: E402
from carbon_callbacks.integrations.wandb import WandbSink  # noqa: E402
from carbon_callbacks.journal import read_journal  # noqa: E402
from carbon_callbacks.outputs import CONTRACT_TAGS  # noqa: E402
from tests.integrations.test_lightning import TinyModel, make_trainer  # noqa: E402
from tests.integrations.wandb_file import offline_runs, read_run  # noqa: E402

pytestmark = [
    pytest.mark.filterwarnings(
        r"ignore:`isinstance\(treespec, LeafSpec\)` is deprecated:FutureWarning"
    ),
]


def fit(tmp_path: Path, loggers: list[Any], kwargs: dict[str, Any]) -> CarbonCallback:
    callback = CarbonCallback(**kwargs)
    make_trainer(tmp_path, loggers, [callback], 3).fit(TinyModel())
    return callback


def laps(callback: CarbonCallback) -> list[float]:
    """Each epoch's energy (kWh) as the journal recorded it."""
    assert callback.session.journal_path is not None
    records = read_journal(callback.session.journal_path)
    return [r["energy_kwh"] for r in records if r["type"] == "lap" and r["kind"] == "epoch"]


def test_csv_logger_has_the_carbon_metrics_and_tags(
    tmp_path: Path, tracker_kwargs: dict[str, Any]
) -> None:
    logger = CSVLogger(tmp_path / "csv")
    callback = fit(tmp_path, [logger], tracker_kwargs)
    assert [repr(s) for s in callback.session.sinks] == ["LoggerSink(CSVLogger)"]

    with open(Path(logger.log_dir) / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    per_epoch = [
        (int(r["step"]), float(r["carbon/epoch_energy_kwh"]))
        for r in rows
        if r.get("carbon/epoch_energy_kwh")
    ]
    assert per_epoch == [(0, laps(callback)[0]), (1, laps(callback)[1]), (2, laps(callback)[2])]
    totals = callback.session.totals
    assert totals is not None
    final = [float(r["carbon/energy_kwh"]) for r in rows if r.get("carbon/energy_kwh")]
    assert final[-1] == totals.energy_kwh  # the run total, at step 3
    hparams = (Path(logger.log_dir) / "hparams.yaml").read_text()
    for tag in CONTRACT_TAGS:
        assert f"{tag}:" in hparams, tag
    assert "carbon.cpu_method: constant" in hparams


def test_tensorboard_logger_event_file_holds_the_metrics_and_tags(
    tmp_path: Path, tracker_kwargs: dict[str, Any]
) -> None:
    logger = TensorBoardLogger(tmp_path / "tb")
    callback = fit(tmp_path, [logger], tracker_kwargs)
    # off the training thread: TensorBoard's writer takes values from any thread
    assert [repr(s) for s in callback.session.sinks] == [
        "LoggerSink(TensorBoardLogger, background)"
    ]

    events = EventAccumulator(logger.log_dir)
    events.Reload()
    scalars = events.Scalars("carbon/epoch_energy_kwh")
    assert [e.step for e in scalars] == [0, 1, 2]
    # float32 in the event file
    assert [e.value for e in scalars] == pytest.approx(laps(callback), rel=1e-6)
    totals = callback.session.totals
    assert totals is not None
    energy = events.Scalars("carbon/energy_kwh")
    assert (energy[-1].step, energy[-1].value) == (3, pytest.approx(totals.energy_kwh, rel=1e-6))
    # The tags: TensorBoard's HPARAMS session holds every carbon.* tag.
    content = events.SummaryMetadata("_hparams_/session_start_info").plugin_data.content
    session = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    assert session.hparams["carbon.cpu_method"].string_value == "constant"
    assert all(tag in session.hparams for tag in CONTRACT_TAGS)


def test_mlflow_and_csv_loggers_each_get_each_value_once(
    sqlite_uri: str, tmp_path: Path, tracker_kwargs: dict[str, Any], check_carbon_run: Any
) -> None:
    mlflow_logger = MLFlowLogger(experiment_name="loggers", tracking_uri=sqlite_uri)
    csv_logger = CSVLogger(tmp_path / "csv")
    callback = fit(tmp_path, [mlflow_logger, csv_logger], tracker_kwargs)
    sinks = callback.session.sinks
    assert [type(s) for s in sinks] == [MlflowSink, LoggerSink]
    assert mlflow_logger.run_id is not None
    # One value per step in MLflow (the generic sink did not write there too).
    check_carbon_run(MlflowClient(sqlite_uri), mlflow_logger.run_id, callback.session.totals)
    text = (Path(csv_logger.log_dir) / "metrics.csv").read_text()
    assert "carbon/epoch_energy_kwh" in text


def test_wandb_logger_gets_a_wandb_sink_on_its_own_step(
    tmp_path: Path, tracker_kwargs: dict[str, Any], wandb_offline: Path
) -> None:
    logger = WandbLogger(project="carbon-tests", offline=True, save_dir=str(tmp_path / "wb"))
    callback = fit(tmp_path, [logger], tracker_kwargs)
    assert [type(s) for s in callback.session.sinks] == [WandbSink]  # no LoggerSink too
    run_id = logger.experiment.id
    logger.experiment.finish()

    [path] = offline_runs(tmp_path / "wb")
    run = read_run(path)
    assert run.run_id == run_id
    assert run.series("carbon/epoch_energy_kwh") == list(enumerate(laps(callback)))
    # Plotted against carbon/epoch, never against the trainer's step (WandbLogger defines
    # "*" -> trainer/global_step): every carbon key is defined exactly.
    for row in run.history:
        if "carbon/epoch_energy_kwh" in row:
            assert "trainer/global_step" not in row
    definition = run.defined("carbon/epoch_energy_kwh")
    assert definition is not None and definition.step_metric == "carbon/epoch"
    assert any(row.get("train_loss") is not None for row in run.history)  # the user's own

"""Run discovery with ``sinks="auto"``, found trying it as a user: Lightning without an
`MLFlowLogger` logged nothing to an active MLflow run (``mlflow.start_run()``,
``mlflow.pytorch.autolog()``), and said that it found no run at INFO only."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("lightning", reason="Lightning is not installed")
pytest.importorskip("mlflow", reason="MLflow is not installed")

import mlflow  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from carbon_callbacks.integrations.lightning import CarbonCallback  # noqa: E402
from tests.integrations.test_lightning import TinyModel, make_trainer  # noqa: E402

pytestmark = [
    # torch 2.13 deprecates LeafSpec, which Lightning 2.6.6 still builds.
    pytest.mark.filterwarnings(
        r"ignore:`isinstance\(treespec, LeafSpec\)` is deprecated:FutureWarning"
    ),
]


def test_an_active_mlflow_run_is_used_when_the_trainer_has_no_mlflow_logger(
    sqlite_uri: str, tmp_path: Path, tracker_kwargs: dict[str, Any], check_carbon_run: Any
) -> None:
    # Found trying it as a user: this logged nothing to the run, and said so at INFO only.
    mlflow.set_tracking_uri(sqlite_uri)  # explicit: another test may have moved it
    mlflow.set_experiment("lightning")
    with mlflow.start_run() as run:
        callback = CarbonCallback(**tracker_kwargs)
        make_trainer(tmp_path, False, [callback], 3).fit(TinyModel())
    check_carbon_run(MlflowClient(sqlite_uri), run.info.run_id, callback.session.totals)


def test_the_run_of_mlflow_pytorch_autolog_is_used(
    sqlite_uri: str, tmp_path: Path, tracker_kwargs: dict[str, Any], check_carbon_run: Any
) -> None:
    mlflow.set_tracking_uri(sqlite_uri)
    mlflow.set_experiment("lightning")
    mlflow.pytorch.autolog(log_models=False, log_datasets=False, silent=True)
    try:
        callback = CarbonCallback(**tracker_kwargs)
        make_trainer(tmp_path, False, [callback], 3).fit(TinyModel())
    finally:
        mlflow.pytorch.autolog(disable=True)
    run = mlflow.last_active_run()
    assert run is not None and mlflow.active_run() is None  # autolog's own run, ended
    check_carbon_run(MlflowClient(sqlite_uri), run.info.run_id, callback.session.totals)


def test_no_run_found_is_a_warning_when_mlflow_is_set_up(
    sqlite_uri: str,
    tmp_path: Path,
    tracker_kwargs: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert mlflow.active_run() is None and mlflow.is_tracking_uri_set()  # MLFLOW_TRACKING_URI
    callback = CarbonCallback(**tracker_kwargs)
    with caplog.at_level(logging.INFO, logger="carbon_callbacks"):
        make_trainer(tmp_path, False, [callback], 1).fit(TinyModel())
    [record] = [r for r in caplog.records if "no MLflow run" in r.getMessage()]
    assert record.levelno == logging.WARNING  # visible without any logging set-up
    assert "mlflow has a tracking URI" in record.getMessage()
    assert callback.session.sinks == []
    # Nothing set up: nothing to warn about, one INFO line.
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.setattr(mlflow, "is_tracking_uri_set", lambda: False)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="carbon_callbacks"):
        make_trainer(tmp_path, False, [CarbonCallback(**tracker_kwargs)], 1).fit(TinyModel())
    [record] = [r for r in caplog.records if "no MLflow run" in r.getMessage()]
    assert record.levelno == logging.INFO

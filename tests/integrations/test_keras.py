"""Keras 3 (torch backend): a `Dense` model, 3 epochs inside ``mlflow.start_run()``."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")  # also set by conftest, before any import

pytest.importorskip("keras", reason="Keras is not installed")
pytest.importorskip("mlflow", reason="MLflow is not installed")

import keras  # noqa: E402
import mlflow  # noqa: E402
import numpy as np  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from carbon_callbacks.integrations.keras import LOG_KEYS, CarbonCallback  # noqa: E402


def tiny_model() -> tuple[Any, Any, Any]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    return model, x, x.sum(axis=1, keepdims=True)


def test_under_mlflow_keras_autolog_each_value_reaches_the_run_once(
    sqlite_uri: str, tmp_path: Path, tracker_kwargs: dict[str, Any], check_carbon_run: Any
) -> None:
    # Found trying it as a user: autolog logs the epoch's `logs` (where the callback puts
    # two carbon keys for History) and the sink logged them too: two values per step.
    model, x, y = tiny_model()
    callback = CarbonCallback(**tracker_kwargs)
    # Any callback after ours (a checkpoint...) puts time between our record and autolog's,
    # so the two values cannot share a timestamp (and merge in the store).
    slow = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: time.sleep(0.01))
    mlflow.set_tracking_uri(sqlite_uri)
    mlflow.set_experiment("keras")
    mlflow.keras.autolog(log_models=False, log_datasets=False, silent=True)
    try:
        history = model.fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=[callback, slow])
    finally:
        mlflow.keras.autolog(disable=True)
    mlflow.flush_async_logging()  # autolog logs asynchronously
    run = mlflow.last_active_run()
    assert run is not None and callback.session.sinks
    client = MlflowClient(sqlite_uri)
    assert "loss" in client.get_run(run.info.run_id).data.metrics  # autolog's own
    hist = check_carbon_run(client, run.info.run_id, callback.session.totals)  # one per step
    assert [v for _, v in hist["carbon/epoch_energy_kwh"]] == pytest.approx(
        history.history["carbon/epoch_energy_kwh"], rel=1e-12
    )


def test_fit_inside_start_run_logs_epochs_and_history(
    sqlite_uri: str, tmp_path: Path, tracker_kwargs: dict[str, Any], check_carbon_run: Any
) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    callback = CarbonCallback(**tracker_kwargs)
    csv_path = tmp_path / "log.csv"

    # Explicit URI and experiment: another test may have moved MLflow's global tracking URI.
    mlflow.set_tracking_uri(sqlite_uri)
    mlflow.set_experiment("keras")
    with mlflow.start_run() as run:
        history = model.fit(
            x,
            y,
            epochs=3,
            batch_size=16,
            verbose=0,
            callbacks=[callback, keras.callbacks.CSVLogger(str(csv_path))],
        )

    for key in LOG_KEYS:
        assert len(history.history[key]) == 3
        assert all(value > 0 for value in history.history[key])
    assert all(key in csv_path.read_text().splitlines()[0] for key in LOG_KEYS)
    hist = check_carbon_run(MlflowClient(sqlite_uri), run.info.run_id, callback.session.totals)
    assert [v for _, v in hist["carbon/epoch_energy_kwh"]] == pytest.approx(
        history.history["carbon/epoch_energy_kwh"], rel=1e-12
    )

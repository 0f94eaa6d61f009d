"""Keras 3 (torch backend): a `Dense` model, 3 epochs inside ``mlflow.start_run()``."""

from __future__ import annotations

import os
import subprocess
import sys
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


@pytest.mark.parametrize(
    ("backend", "error"),
    [
        ("jax", "No module named 'jax'"),  # a backend that is not installed here
        ("bogus", "Unable to import backend : bogus"),  # not a backend at all
    ],
)
def test_a_backend_that_cannot_load_names_the_one_to_install(
    tmp_path: Path, backend: str, error: str
) -> None:
    """`[keras]` brings Keras without a backend: the import error says what to do."""
    env = {**os.environ, "KERAS_BACKEND": backend, "KERAS_HOME": str(tmp_path)}
    code = "import carbon_callbacks.integrations.keras"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 1
    assert out.stderr.splitlines()[-1] == (
        "ImportError: carbon_callbacks.integrations.keras needs Keras 3 with a backend, and "
        f"Keras could not load one (KERAS_BACKEND={backend}): {error}. 'carbon-callbacks[keras]' "
        "installs Keras without a backend; torch is installed here: set KERAS_BACKEND=torch "
        "before Keras is imported"
    )


def test_missing_keras_names_the_extra_and_a_backend() -> None:
    code = "import sys; sys.modules['keras'] = None; import carbon_callbacks.integrations.keras"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stderr.splitlines()[-1] == (
        "ImportError: carbon_callbacks.integrations.keras needs Keras 3: pip install "
        "'carbon-callbacks[keras]'. Keras needs a backend as well (torch, jax or tensorflow): "
        "pip install torch, and set KERAS_BACKEND=torch"
    )


# -- exact figures: a clock that advances 10 s per optimizer step ---------------------------

STEP_S = 10.0
STEPS_PER_EPOCH = 4  # 64 samples, batches of 16
WATTS = 60.0  # tracker_kwargs: 50 W CPU + 10 W RAM
EPOCH_KWH = WATTS * STEP_S * STEPS_PER_EPOCH / 3.6e6


def compiled() -> tuple[Any, Any, Any]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    return model, x, x.sum(axis=1, keepdims=True)


def step_clock(model: Any) -> Any:
    """The tracker's clock: `STEP_S` per optimizer step of `model`, so each epoch is 2400 J."""
    return lambda: float(keras.ops.convert_to_numpy(model.optimizer.iterations)) * STEP_S


def test_initial_epoch_predicts_the_epochs_left(tracker_kwargs: dict[str, Any]) -> None:
    model, x, y = compiled()
    callback = CarbonCallback(**tracker_kwargs, clock=step_clock(model), sinks=None, summary=False)
    model.fit(x, y, epochs=5, initial_epoch=2, batch_size=16, verbose=0, callbacks=[callback])
    # Epochs 2, 3 and 4 run here; predicted after epoch 2: 1 measured + 2 left x its mean.
    prediction = callback.session.prediction
    assert prediction is not None
    assert (prediction.epochs_done, prediction.total_epochs) == (3, 5.0)
    assert prediction.energy_kwh == pytest.approx(3 * EPOCH_KWH, rel=1e-12)
    assert callback.session.totals.energy_kwh == pytest.approx(3 * EPOCH_KWH, rel=1e-12)


def test_a_second_fit_into_the_same_run_keeps_counting(
    sqlite_uri: str, tracker_kwargs: dict[str, Any]
) -> None:
    model, x, y = compiled()
    callback = CarbonCallback(**tracker_kwargs, clock=step_clock(model), summary=False)
    mlflow.set_tracking_uri(sqlite_uri)
    mlflow.set_experiment("keras")
    with mlflow.start_run() as run:
        model.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[callback])
        model.fit(x, y, epochs=4, initial_epoch=2, batch_size=16, verbose=0, callbacks=[callback])
    client = MlflowClient(sqlite_uri)
    run_id = run.info.run_id

    def history(key: str) -> list[tuple[int, float]]:
        return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))

    per_epoch = history("carbon/epoch_energy_kwh")
    assert per_epoch == [(e, pytest.approx(EPOCH_KWH, rel=1e-12)) for e in range(4)]
    energy = history("carbon/energy_kwh")
    # One value a step: step 2 keeps the first fit's total (written first), then 4 epochs.
    assert energy == [
        (0, pytest.approx(EPOCH_KWH, rel=1e-12)),
        (1, pytest.approx(2 * EPOCH_KWH, rel=1e-12)),
        (2, pytest.approx(2 * EPOCH_KWH, rel=1e-12)),
        (3, pytest.approx(4 * EPOCH_KWH, rel=1e-12)),
        (4, pytest.approx(4 * EPOCH_KWH, rel=1e-12)),
    ]
    assert callback.session.totals.energy_kwh == pytest.approx(4 * EPOCH_KWH, rel=1e-12)

"""`WandbSink` in W&B offline mode, read back from the run file: per-epoch metrics on
``carbon/epoch``, tags in the config, totals in the summary, the journal and sync."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")  # also set by conftest, before any import

pytest.importorskip("wandb", reason="wandb is not installed")
pytest.importorskip("keras", reason="Keras is not installed")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import wandb  # noqa: E402

from carbon_callbacks.integrations.keras import CarbonCallback  # noqa: E402
from carbon_callbacks.integrations.wandb import WandbSink  # noqa: E402
from carbon_callbacks.journal import read_journal  # noqa: E402
from carbon_callbacks.outputs import CONTRACT_TAGS  # noqa: E402
from carbon_callbacks.session import CarbonSession  # noqa: E402
from carbon_callbacks.sync import pending, sync_journal  # noqa: E402
from carbon_callbacks.tracker import Tracker  # noqa: E402
from tests.integrations.wandb_file import offline_runs, read_run  # noqa: E402

END_KEYS = (
    "carbon/energy_kwh",
    "carbon/emissions_kg",
    "carbon/energy_kwh_low",
    "carbon/energy_kwh_high",
    "carbon/equivalent_car_km",
)


def keras_fit(callback: CarbonCallback, epochs: int = 3) -> Any:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    return model.fit(x, x.sum(axis=1, keepdims=True), epochs=epochs, verbose=0,
                     callbacks=[callback])  # fmt: skip


def test_keras_fit_in_an_offline_run(tracker_kwargs: dict[str, Any], wandb_offline: Path) -> None:
    run = wandb.init(project="carbon-tests", config={"lr": 0.1})
    run.define_metric("user/loss", step_metric="user/step")  # the user's own x axis
    run.log({"user/loss": 1.0, "user/step": 10})
    callback = CarbonCallback(**tracker_kwargs)
    history = keras_fit(callback)
    run.log({"user/loss": 0.5, "user/step": 11})
    run.finish()
    totals = callback.session.totals
    assert totals is not None
    [sink] = callback.session.sinks
    assert repr(sink) == f"WandbSink(run_id={run.id!r}, project='carbon-tests', offline)"

    [path] = offline_runs(wandb_offline)
    found = read_run(path)
    energy = history.history["carbon/epoch_energy_kwh"]
    assert found.series("carbon/epoch_energy_kwh") == list(enumerate(energy))
    cumulative = found.series("carbon/energy_kwh")
    assert [step for step, _ in cumulative] == [0, 1, 2, 3]  # 3: the run total, at the end
    assert cumulative[-1][1] == totals.energy_kwh
    assert found.series("user/loss", step="user/step") == [(10, 1.0), (11, 0.5)]
    for row in found.history:  # our rows never carry the user's step, nor theirs ours
        assert not ("carbon/epoch" in row and "user/step" in row), row
    # The summary holds the totals (and the range: exact watts, so equal to the total).
    for key in END_KEYS:
        assert key in found.summary, key
    assert found.summary["carbon/energy_kwh"] == totals.energy_kwh
    assert found.summary["carbon/energy_kwh_high"] == totals.energy_kwh
    # The tags, under "carbon" in the config, next to the user's own.
    config = found.config["carbon"]
    assert all(tag.removeprefix("carbon.") in config for tag in CONTRACT_TAGS)
    assert (config["cpu_method"], config["estimated"]) == ("constant", "true")
    assert found.config["lr"] == 0.1
    for key in ("carbon/epoch_energy_kwh", "carbon/energy_kwh", "carbon/equivalent_car_km"):
        definition = found.defined(key)
        assert definition is not None and definition.step_metric == "carbon/epoch", key


def test_a_finished_run_leaves_records_pending_and_sync_sends_them_once(
    tracker_kwargs: dict[str, Any], wandb_offline: Path
) -> None:
    run = wandb.init(project="carbon-tests")
    sink = WandbSink(run, min_interval_s=0)
    assert sink.target() == {
        "kind": "wandb",
        "run": run.id,
        "project": "carbon-tests",
        "entity": None,
        "offline_directory": str(wandb_offline),
    }
    session = CarbonSession(Tracker(**tracker_kwargs), [sink], summary=False)
    session.begin()
    session.epoch_end(0)
    assert sink.flush(30.0)
    run.finish()  # e.g. the script ended its run before training did
    session.epoch_end(1)
    session.end()
    assert session.undelivered and "wandb: " in session.undelivered[0]
    journal = session.journal_path
    assert journal is not None
    [(_, target, todo)] = pending(journal)
    assert target["kind"] == "wandb"
    # epoch 1, the greener-region tag and the end-of-training totals (step 2)
    assert [(r["type"], r.get("step")) for r in todo] == [
        ("metrics", 1), ("tags", None), ("metrics", 2)
    ]  # fmt: skip

    [result] = sync_journal(journal)
    assert (result.error, result.sent) == (None, 3)
    assert result.where == f"W&B run {run.id} (offline, in {wandb_offline})"
    [again] = sync_journal(journal)
    assert (again.pending, again.sent) == (0, 0)

    first, second = (read_run(p) for p in offline_runs(wandb_offline))
    assert first.run_id == second.run_id == run.id  # `wandb sync` both: one run
    epochs = first.series("carbon/epoch_energy_kwh") + second.series("carbon/epoch_energy_kwh")
    laps = [r for r in read_journal(journal) if r["type"] == "lap" and r["kind"] == "epoch"]
    assert epochs == [(0, laps[0]["energy_kwh"]), (1, laps[1]["energy_kwh"])]  # each once
    assert session.totals is not None
    assert second.summary["carbon/energy_kwh"] == session.totals.energy_kwh
    assert first.config["carbon"]["cpu_method"] == "constant"  # went in before the finish
    assert "greener_region" in second.config["carbon"]  # resent


def test_no_active_run_and_not_a_run() -> None:
    assert wandb.run is None
    with pytest.raises(ValueError, match=r"no W&B run is active: call wandb.init"):
        WandbSink()
    with pytest.raises(TypeError, match="run must be a wandb Run"):
        WandbSink(object())

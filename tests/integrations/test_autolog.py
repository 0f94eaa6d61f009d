"""Zero code: `autolog()` in this process, and ``carbon-callbacks run --autolog`` on unmodified
scripts (``autolog_scripts/``), compared with the same scripts with the callback added by
hand; under torchrun, 2 processes, one writer."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")  # also set by conftest, before any import

pytest.importorskip("lightning", reason="Lightning is not installed")
pytest.importorskip("transformers", reason="Transformers is not installed")
pytest.importorskip("keras", reason="Keras is not installed")
pytest.importorskip("mlflow", reason="MLflow is not installed")

import keras  # noqa: E402
import lightning.pytorch as pl  # noqa: E402
import numpy as np  # noqa: E402
from lightning.pytorch.loggers import MLFlowLogger  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402
from transformers import Trainer, TrainingArguments  # noqa: E402

import carbon_callbacks  # noqa: E402
from carbon_callbacks import autologging  # noqa: E402
from carbon_callbacks.autologging import PATCHER  # noqa: E402
from carbon_callbacks.integrations import keras as keras_integration  # noqa: E402
from carbon_callbacks.integrations import lightning as lightning_integration  # noqa: E402
from carbon_callbacks.integrations import transformers as hf_integration  # noqa: E402
from tests.integrations.test_ddp import environment, run_together, torchrun  # noqa: E402
from tests.integrations.test_lightning import TinyModel  # noqa: E402
from tests.integrations.test_transformers import RandomTokens, tiny_bert  # noqa: E402

pytestmark = [
    pytest.mark.filterwarnings(
        r"ignore:`isinstance\(treespec, LeafSpec\)` is deprecated:FutureWarning"
    ),
]

SCRIPTS = Path(__file__).parent / "autolog_scripts"
# What the command line and the hand-added callback both get: per-node constant watts, FR.
CLI_ARGS = ["--country", "FR", "--cpu-power-w", "50", "--ram-power-w", "10"]
CALLBACK_KWARGS: dict[str, Any] = {"country": "FR", "cpu_power_w": 50, "ram_power_w": 10}
J_PER_KWH = 3.6e6


@pytest.fixture
def autologged(tracker_kwargs: dict[str, Any]) -> Iterator[dict[str, Any]]:
    carbon_callbacks.autolog(summary=False, **tracker_kwargs)
    try:
        yield tracker_kwargs
    finally:
        carbon_callbacks.autolog(disable=True)
    assert PATCHER.patched() == []


def carbon_callbacks_of(callbacks: list[Any], cls: type) -> list[Any]:
    return [c for c in callbacks if isinstance(c, cls)]


def test_autolog_adds_one_callback_to_each_lightning_trainer(
    autologged: dict[str, Any], sqlite_uri: str, tmp_path: Path, check_carbon_run: Any
) -> None:
    cls = lightning_integration.CarbonCallback
    logger = MLFlowLogger(experiment_name="autolog", tracking_uri=sqlite_uri)
    trainer = pl.Trainer(
        max_epochs=3, accelerator="cpu", devices=1, logger=logger, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, default_root_dir=tmp_path,
        log_every_n_steps=1,
    )  # fmt: skip
    [callback] = carbon_callbacks_of(trainer.callbacks, cls)
    trainer.fit(TinyModel())
    assert logger.run_id is not None
    check_carbon_run(MlflowClient(sqlite_uri), logger.run_id, callback.session.totals)

    mine = cls(**autologged)  # one added by hand stays the only one
    other = pl.Trainer(callbacks=mine, logger=False, default_root_dir=tmp_path)
    assert carbon_callbacks_of(other.callbacks, cls) == [mine]

    carbon_callbacks.autolog(disable=True)
    plain = pl.Trainer(logger=False, default_root_dir=tmp_path)
    assert carbon_callbacks_of(plain.callbacks, cls) == []


def test_autolog_also_patches_the_pytorch_lightning_package(
    autologged: dict[str, Any], tmp_path: Path
) -> None:
    # Imported now (through the hook) or earlier in the session (patched at autolog()).
    pytorch_lightning = pytest.importorskip("pytorch_lightning")
    assert "pytorch_lightning.trainer.trainer.Trainer.__init__" in PATCHER.patched()
    trainer = pytorch_lightning.Trainer(logger=False, default_root_dir=tmp_path)
    callbacks = carbon_callbacks_of(trainer.callbacks, lightning_integration.CarbonCallback)
    assert len(callbacks) == 1


def test_autolog_adds_one_callback_to_each_hf_trainer(
    autologged: dict[str, Any], tmp_path: Path
) -> None:
    cls = hf_integration.CarbonCallback
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    trainer = Trainer(model=tiny_bert(), args=args, train_dataset=RandomTokens())
    assert len(carbon_callbacks_of(trainer.callback_handler.callbacks, cls)) == 1
    mine = cls(**autologged)
    other = Trainer(model=tiny_bert(), args=args, train_dataset=RandomTokens(), callbacks=[mine])
    assert carbon_callbacks_of(other.callback_handler.callbacks, cls) == [mine]


def test_autolog_keeps_one_callback_per_keras_model_across_fits(
    autologged: dict[str, Any], sqlite_uri: str
) -> None:
    import mlflow

    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    mlflow.set_tracking_uri(sqlite_uri)
    mlflow.set_experiment("autolog-keras")
    with mlflow.start_run() as run:
        first = model.fit(x, x, epochs=2, verbose=0)
        callback = autologging._KERAS_CALLBACKS[model]
        second = model.fit(x, x, epochs=2, verbose=0, callbacks=[])
    assert autologging._KERAS_CALLBACKS[model] is callback
    assert isinstance(callback, keras_integration.CarbonCallback)
    for history in (first, second):
        assert len(history.history["carbon/epoch_energy_kwh"]) == 2
    # As with one callback passed by hand to both fits: the second continues the run.
    client = MlflowClient(sqlite_uri)
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "carbon/epoch_energy_kwh")]
    assert sorted(steps) == [0, 1, 2, 3]


# -- carbon-callbacks run --autolog on unmodified scripts --------------------------------------


def carbon_runs(client: MlflowClient, experiment: str) -> list[Any]:
    found = client.get_experiment_by_name(experiment)
    assert found is not None, experiment
    return client.search_runs([found.experiment_id])


def run_view(client: MlflowClient, run: Any) -> dict[str, Any]:
    """The carbon part of an MLflow run: each metric's steps, and the tags."""
    steps = {
        key: sorted(m.step for m in client.get_metric_history(run.info.run_id, key))
        for key in run.data.metrics
        if key.startswith("carbon/")
    }
    tags = {k: v for k, v in run.data.tags.items() if k.startswith("carbon.")}
    return {"steps": steps, "tags": tags}


def both_ways(
    framework: str, sqlite_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *args: str
) -> list[dict[str, Any]]:
    """The script run by ``carbon-callbacks run --autolog`` (a child process), then with the
    callback added by hand (here, calling its ``main``); the carbon view of each MLflow run."""
    import mlflow

    client = MlflowClient(sqlite_uri)
    views = []
    for how in ("autolog", "by_hand"):
        out = tmp_path / how
        out.mkdir()
        experiment = f"autolog-{framework}-{how}-{tmp_path.name}"
        journal = out / "journal"
        script = SCRIPTS / f"train_{framework}.py"
        if how == "autolog":
            env = environment(sqlite_uri, experiment)
            env["MLFLOW_EXPERIMENT_NAME"] = experiment
            command = [
                sys.executable, "-m", "carbon_callbacks.cli", "run", "--autolog", *CLI_ARGS,
                "--output-dir", str(journal), "--", sys.executable, str(script), *args,
            ]  # fmt: skip
            run_together([command], env, out)
        else:
            monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", experiment)
            mlflow.set_tracking_uri(sqlite_uri)  # another test may have moved it
            module = import_script(script)
            cls = {"lightning": lightning_integration, "hf": hf_integration}.get(
                framework, keras_integration
            ).CarbonCallback
            module.main(*args, callbacks=[cls(**CALLBACK_KWARGS, output_dir=journal)])
        [run] = carbon_runs(client, experiment)
        assert len(list(journal.glob("*.jsonl"))) == 1
        views.append(run_view(client, run))
    return views


def import_script(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(f"autolog_script_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EPOCH_STEPS = [0, 1, 2]


def check_same(auto: dict[str, Any], by_hand: dict[str, Any]) -> None:
    assert auto["steps"] == by_hand["steps"]
    assert auto["steps"]["carbon/epoch_energy_kwh"] == EPOCH_STEPS
    assert auto["steps"]["carbon/energy_kwh"] == [*EPOCH_STEPS, 3]
    # The *_version tags name the frameworks a process imported: this test process has them
    # all; the child only its script's.
    versions = {k for k in {**auto["tags"], **by_hand["tags"]} if k.endswith("_version")}
    assert "carbon.torch_version" in auto["tags"]
    assert drop(auto["tags"], versions) == drop(by_hand["tags"], versions)
    assert auto["tags"]["carbon.country"] == "FR"
    assert auto["tags"]["carbon.cpu_method"] == "constant"


def drop(tags: dict[str, str], keys: set[str]) -> dict[str, str]:
    return {k: v for k, v in tags.items() if k not in keys}


@pytest.mark.slow
def test_run_autolog_lightning_script(
    sqlite_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    check_same(*both_ways("lightning", sqlite_uri, tmp_path, monkeypatch))


@pytest.mark.slow
def test_run_autolog_hf_script(
    sqlite_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    check_same(*both_ways("hf", sqlite_uri, tmp_path, monkeypatch, str(tmp_path / "hf")))


@pytest.mark.slow
def test_run_autolog_keras_script(
    sqlite_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    check_same(*both_ways("keras", sqlite_uri, tmp_path, monkeypatch))


@pytest.mark.slow
def test_run_autolog_under_torchrun_logs_once(sqlite_uri: str, tmp_path: Path) -> None:
    experiment = f"autolog-torchrun-{tmp_path.name}"
    env = environment(sqlite_uri, experiment)
    command = [
        sys.executable, "-m", "carbon_callbacks.cli", "run", "--autolog", *CLI_ARGS,
        "--output-dir", str(tmp_path / "journal"), "--",
        *torchrun(
            "--nproc_per_node=2", "--master_addr=127.0.0.1",
            f"--master_port={env['MASTER_PORT']}", str(SCRIPTS / "train_hf.py"),
            str(tmp_path / "hf"),
        ),
    ]  # fmt: skip
    run_together([command], env, tmp_path, teardown_abort_ok=True)
    log = (tmp_path / "process0.log").read_text()
    assert log.count("carbon-callbacks run --autolog: journal ") == 1, log[-3000:]

    client = MlflowClient(sqlite_uri)
    [run] = carbon_runs(client, experiment)  # one run: rank 0 alone wrote
    view = run_view(client, run)
    assert view["steps"]["carbon/epoch_energy_kwh"] == EPOCH_STEPS  # each epoch once
    assert (view["tags"]["carbon.world_size"], view["tags"]["carbon.nodes"]) == ("2", "1")
    # Both ranks were patched and took their roles: the node's CPU counted once (50 W).
    run_id = run.info.run_id
    durations = client.get_metric_history(run_id, "carbon/epoch_duration_s")
    cpu = client.get_metric_history(run_id, "carbon/epoch_cpu_energy_kwh")
    for duration, energy in zip(
        sorted(durations, key=lambda m: m.step), sorted(cpu, key=lambda m: m.step), strict=True
    ):
        assert energy.value == pytest.approx(50 * duration.value / J_PER_KWH, rel=1e-9)
    assert len(list((tmp_path / "journal").glob("*.jsonl"))) == 1


def test_run_autolog_checks_arguments_first(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "carbon_callbacks.cli", "run", "--autolog", "--pue", "0.5",
         "--", sys.executable, "-c", "print('never')"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert out.returncode == 2
    assert "carbon-callbacks: error:" in out.stderr and "pue" in out.stderr
    assert "never" not in out.stdout

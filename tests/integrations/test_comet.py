"""Comet, offline: Lightning `CometLogger`, HF ``report_to=["comet_ml"]`` and Keras under a
running experiment, each 3 epochs into an offline archive that is then read back; plus a
resend by ``carbon-callbacks sync`` into an ``ExistingOfflineExperiment``.

Offline archives (``<key>.zip``) hold ``messages.json`` (JSON lines: ``metric_msg`` with
``metricName``, ``metricValue``, ``step``, ``epoch``; ``log_other`` with ``key``/``value``;
``file_upload`` with the asset's ``fileName`` and its ``file_path`` in the archive) and
``experiment.json`` (the tags). No network: a dummy API key, error tracking off.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("COMET_ERROR_TRACKING_ENABLE", "false")
os.environ.setdefault("COMET_DISABLE_AUTO_LOGGING", "1")
pytest.importorskip("comet_ml", reason="comet_ml is not installed")

import comet_ml  # noqa: E402

from carbon_callbacks.artifacts import CHART_FILE, SUMMARY_FILE  # noqa: E402
from carbon_callbacks.integrations.comet import COMET_TAG, CometSink  # noqa: E402
from carbon_callbacks.journal import read_journal  # noqa: E402
from carbon_callbacks.sync import main as sync_main  # noqa: E402
from tests.integrations.conftest import CONTRACT_TAGS, EPOCH_KEYS, PNG_MAGIC  # noqa: E402

DUMMY_KEY = "carbonTestKey0123456789abcdefXYZ"
# Small, fast archives: only what the test logs.
QUIET: dict[str, Any] = {
    "auto_metric_logging": False,
    "auto_param_logging": False,
    "log_env_details": False,
    "log_git_metadata": False,
    "log_git_patch": False,
    "log_env_gpu": False,
    "log_env_host": False,
    "log_env_cpu": False,
    "log_code": False,
    "auto_output_logging": False,
    "parse_args": False,
    "display_summary_level": 0,
}

pytestmark = [
    pytest.mark.filterwarnings(
        r"ignore:`isinstance\(treespec, LeafSpec\)` is deprecated:FutureWarning"
    ),
]


# For the experiments the frameworks create themselves: no host details (Comet finds the
# host's IP with a UDP socket towards its backend, a DNS lookup), no code, no git.
QUIET_ENV = {
    "COMET_AUTO_LOG_ENV_DETAILS": "false",
    "COMET_AUTO_LOG_ENV_HOST": "false",
    "COMET_AUTO_LOG_ENV_GPU": "false",
    "COMET_AUTO_LOG_ENV_CPU": "false",
    "COMET_AUTO_LOG_GIT_METADATA": "false",
    "COMET_AUTO_LOG_GIT_PATCH": "false",
    "COMET_AUTO_LOG_CODE": "false",
    "COMET_AUTO_LOG_OUTPUT_LOGGER": "false",
    "COMET_DISPLAY_SUMMARY_LEVEL": "0",
}


@pytest.fixture(autouse=True)
def _comet_quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in QUIET_ENV.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def offline_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Comet offline into tmp (also for experiments the frameworks create themselves)."""
    directory = tmp_path / "comet"
    monkeypatch.setenv("COMET_OFFLINE_DIRECTORY", str(directory))
    monkeypatch.setenv("COMET_START_ONLINE", "false")
    monkeypatch.setenv("COMET_API_KEY", DUMMY_KEY)
    monkeypatch.setenv("COMET_PROJECT_NAME", "carbon-tests")
    yield directory
    running = comet_ml.get_running_experiment()
    if running is not None and not getattr(running, "ended", True):
        running.end()


def read_archive(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    with zipfile.ZipFile(path) as zf:
        experiment = json.loads(zf.read("experiment.json"))
        messages = [json.loads(line) for line in zf.read("messages.json").splitlines() if line]
    return experiment, messages


def assets_of(path: Path) -> dict[str, bytes]:
    """The assets of an archive by name (the last one logged under each name)."""
    assets = {}
    with zipfile.ZipFile(path) as zf:
        for line in zf.read("messages.json").splitlines():
            message = json.loads(line) if line else {}
            if message.get("type") == "file_upload":
                payload = message["payload"]
                name = payload["additional_params"]["fileName"]
                assets[name] = zf.read(payload["file_path"])
    return assets


def the_archive(directory: Path) -> Path:
    archives = sorted(directory.glob("*.zip"))
    assert len(archives) == 1, archives
    return archives[0]


def metrics_of(messages: list[dict[str, Any]]) -> dict[str, list[tuple[int, int | None, float]]]:
    out: dict[str, list[tuple[int, int | None, float]]] = {}
    for m in messages:
        if m["type"] == "metric_msg":
            metric = m["payload"]["metric"]
            if str(metric["metricName"]).startswith("carbon/"):
                out.setdefault(metric["metricName"], []).append(
                    (metric["step"], metric.get("epoch"), float(metric["metricValue"]))
                )
    return out


def others_of(messages: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        m["payload"]["key"]: m["payload"]["value"] for m in messages if m["type"] == "log_other"
    }


def check_archive(path: Path, epochs: int = 3) -> dict[str, Any]:
    """Every epoch's carbon metrics (step = epoch = index), the totals, the tags."""
    experiment, messages = read_archive(path)
    metrics = metrics_of(messages)
    for key in EPOCH_KEYS:
        assert [(s, e) for s, e, _ in metrics[key]] == [(i, i) for i in range(epochs)], key
        assert all(v > 0 for _, _, v in metrics[key]), key
    energy = metrics["carbon/energy_kwh"]
    assert [s for s, _, _ in energy] == [*range(epochs), epochs]
    # The end-of-training totals carry the last epoch's index, not one after it.
    assert [e for _, e, _ in energy] == [*range(epochs), epochs - 1]
    for key in ("carbon/duration_s", "carbon/energy_kwh_low", "carbon/equivalent_car_km"):
        assert [(s, e) for s, e, _ in metrics[key]] == [(epochs, epochs - 1)], key
    epoch_sum = sum(v for _, _, v in metrics["carbon/epoch_energy_kwh"])
    assert energy[epochs - 1][2] == pytest.approx(epoch_sum, rel=1e-9)
    others = others_of(messages)
    missing = [tag for tag in CONTRACT_TAGS if tag not in others]
    assert not missing, f"contract tags missing from log_others: {missing}"
    assert others["carbon.cpu_method"] == "constant"
    assert {COMET_TAG, "cpu:constant", "estimated"} <= set(experiment["tags"])
    # The end-of-training assets: the summary holds the run total and every epoch.
    assets = assets_of(path)
    assert sorted(assets) == sorted([SUMMARY_FILE, CHART_FILE])
    summary = json.loads(assets[SUMMARY_FILE])
    assert summary["totals"]["energy_kwh"] == energy[-1][2]
    assert [(r["epoch"], r["energy_kwh"]) for r in summary["epochs"]] == [
        (s, v) for s, _, v in metrics["carbon/epoch_energy_kwh"]
    ]
    assert assets[CHART_FILE].startswith(PNG_MAGIC)
    return {"experiment": experiment, "messages": messages, "metrics": metrics}


def test_lightning_comet_logger(
    no_network: list[object], offline_dir: Path, tmp_path: Path, tracker_kwargs: dict[str, Any]
) -> None:
    from lightning.pytorch.loggers import CometLogger

    from carbon_callbacks.integrations.lightning import CarbonCallback
    from tests.integrations.test_lightning import TinyModel, make_trainer

    # Lightning 2.6.6: CometLogger(online=False) writes nothing; COMET_START_ONLINE does.
    logger = CometLogger(project="carbon-tests", **QUIET)
    callback = CarbonCallback(**tracker_kwargs)
    make_trainer(tmp_path, logger, [callback], 3).fit(TinyModel())
    assert isinstance(callback.session.sinks[0], CometSink)
    logger.experiment.end()
    checked = check_archive(the_archive(offline_dir))
    assert checked["metrics"]["carbon/energy_kwh"][-1][2] == pytest.approx(
        callback.session.totals.energy_kwh, rel=1e-9
    )


def test_transformers_report_to_comet(
    no_network: list[object], offline_dir: Path, tmp_path: Path, tracker_kwargs: dict[str, Any]
) -> None:
    pytest.importorskip("transformers", reason="Transformers is not installed")
    from transformers import Trainer, TrainingArguments

    from carbon_callbacks.integrations.transformers import CarbonCallback
    from tests.integrations.test_transformers import RandomTokens, tiny_bert

    args = TrainingArguments(
        output_dir=str(tmp_path / "out"),
        num_train_epochs=3,
        per_device_train_batch_size=8,
        report_to=["comet_ml"],
        save_strategy="no",
        logging_strategy="epoch",
        use_cpu=True,
        disable_tqdm=True,
    )
    callback = CarbonCallback(**tracker_kwargs)
    Trainer(
        model=tiny_bert(), args=args, train_dataset=RandomTokens(), callbacks=[callback]
    ).train()
    experiment = comet_ml.get_running_experiment()
    assert experiment is not None
    assert [type(s) for s in callback.session.sinks] == [CometSink]
    experiment.end()  # HF does not end it
    check_archive(the_archive(offline_dir))


def test_keras_under_a_running_experiment(
    no_network: list[object],
    tmp_path: Path,
    tracker_kwargs: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("keras", reason="Keras is not installed")
    import keras
    import numpy as np

    from carbon_callbacks.integrations.keras import CarbonCallback

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    directory = tmp_path / "comet"
    experiment = comet_ml.OfflineExperiment(
        api_key=DUMMY_KEY, project_name="carbon-tests", offline_directory=str(directory), **QUIET
    )
    try:
        rng = np.random.default_rng(0)
        x = rng.normal(size=(32, 4)).astype("float32")
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        model.compile(optimizer="sgd", loss="mse")
        callback = CarbonCallback(**tracker_kwargs)
        model.fit(x, x.sum(axis=1), epochs=3, batch_size=16, verbose=0, callbacks=[callback])
        assert [type(s) for s in callback.session.sinks] == [CometSink]
    finally:
        experiment.end()
    check_archive(the_archive(directory))


def test_records_an_ended_experiment_did_not_take_are_sent_by_sync(
    no_network: list[object],
    tmp_path: Path,
    tracker_kwargs: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    from carbon_callbacks import Tracker
    from carbon_callbacks.session import CarbonSession

    directory = tmp_path / "comet"
    experiment = comet_ml.OfflineExperiment(
        project_name="carbon-tests", offline_directory=str(directory), **QUIET
    )
    sink = CometSink(experiment, min_interval_s=0, max_retries=0)
    session = CarbonSession(Tracker(**tracker_kwargs), [sink], summary=False)
    session.begin()
    session.epoch_end(0)
    assert sink.flush(10)
    experiment.end()  # e.g. the user's script ended it too early
    session.epoch_end(1)
    session.end()
    assert session.undelivered
    journal = session.journal_path
    assert journal is not None
    first = metrics_of(read_archive(the_archive(directory))[1])
    assert [s for s, _, _ in first["carbon/epoch_energy_kwh"]] == [0]

    capsys.readouterr()
    assert sync_main([str(journal)]) == 0
    # epoch 1, the totals, the advice tag, the summary document (artifacts)
    assert "4 sent" in capsys.readouterr().out
    resent = [p for p in directory.glob("*.zip") if p.name != f"{experiment.get_key()}.zip"]
    assert len(resent) == 1 and resent[0].name.startswith(experiment.get_key())
    second = metrics_of(read_archive(resent[0])[1])
    assert [s for s, _, _ in second["carbon/epoch_energy_kwh"]] == [1]
    assert [(s, e) for s, e, _ in second["carbon/energy_kwh"]] == [(1, 1), (2, 1)]
    # The assets, made again from the journaled summary: both epochs, the run's total.
    assets = assets_of(resent[0])
    summary = json.loads(assets[SUMMARY_FILE])
    assert [r["epoch"] for r in summary["epochs"]] == [0, 1]
    assert summary["totals"]["energy_kwh"] == second["carbon/energy_kwh"][-1][2]
    assert assets[CHART_FILE].startswith(PNG_MAGIC)
    assert sync_main([str(journal)]) == 0
    assert "up to date" in capsys.readouterr().out
    assert len(list(directory.glob("*.zip"))) == 2  # the second sync wrote nothing
    sinks = [r for r in read_journal(journal) if r["type"] == "sink"]
    assert sinks[0]["kind"] == "comet" and sinks[0]["offline_directory"] == str(directory)


# HF with comet_ml installed and report_to=["mlflow"], Comet's own auto-logging on (as for any
# user who did not turn it off): Transformers imports comet_ml, which then makes an offline
# experiment of its own for the MLflow run, ended with it.
HF_MLFLOW_WITH_COMET_CHILD = """
import json, socket, sys

attempts = []
real_connect = socket.socket.connect


def connect(self, address):  # 127.0.0.1 only, as in the rest of the suite
    if self.family == socket.AF_UNIX:
        return real_connect(self, address)
    attempts.append(repr(address))
    raise OSError("network blocked in this test")


socket.socket.connect = connect
socket.socket.connect_ex = connect

from transformers import Trainer, TrainingArguments

from carbon_callbacks.integrations.transformers import CarbonCallback
from tests.integrations.test_transformers import RandomTokens, tiny_bert

out = sys.argv[1]
args = TrainingArguments(
    output_dir=out + "/out", num_train_epochs=3, per_device_train_batch_size=8,
    report_to=["mlflow"], save_strategy="no", logging_strategy="epoch", use_cpu=True,
    disable_tqdm=True,
)
callback = CarbonCallback(
    cpu_power_w=50, ram_power_w=10, count_gpu=False, intensity_g_per_kwh=100,
    output_dir=out + "/journal",
)
Trainer(model=tiny_bert(), args=args, train_dataset=RandomTokens(), callbacks=[callback]).train()
totals = callback.session.totals
print(json.dumps({
    "comet_imported": "comet_ml" in sys.modules,
    "sinks": [type(s).__name__ for s in callback.session.sinks],
    "undelivered": callback.session.undelivered,
    "summary": callback.session.summary_text,
    "attempts": attempts,
    "totals": {k: getattr(totals, k) for k in ("energy_kwh", "emissions_kg", "duration_s")},
}))
"""


def test_hf_reporting_to_mlflow_ignores_the_experiment_comets_auto_logger_makes(
    sqlite_uri: str, tmp_path: Path, check_carbon_run: Any
) -> None:
    pytest.importorskip("transformers", reason="Transformers is not installed")
    from types import SimpleNamespace

    from mlflow.tracking import MlflowClient

    script = tmp_path / "train.py"
    script.write_text(HF_MLFLOW_WITH_COMET_CHILD)
    experiment = f"hf-comet-{tmp_path.name}"
    env = {**os.environ, **QUIET_ENV, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    env.pop("COMET_DISABLE_AUTO_LOGGING", None)  # Comet's default: auto-logging on
    env.pop("COMET_API_KEY", None)  # no key: Comet's auto-logger goes offline
    env.update(
        MLFLOW_TRACKING_URI=sqlite_uri,
        MLFLOW_EXPERIMENT_NAME=experiment,
        COMET_OFFLINE_DIRECTORY=str(tmp_path / "comet"),
    )
    child = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert child.returncode == 0, child.stderr[-3000:]
    result = json.loads(child.stdout.strip().splitlines()[-1])
    assert result["comet_imported"] and list((tmp_path / "comet").glob("*.zip")), (
        "Comet's auto-logger made no experiment: the set-up this test needs did not happen"
    )
    assert result["attempts"] == []
    assert result["sinks"] == ["MlflowSink"]  # not the auto-logger's experiment
    assert result["undelivered"] == [] and "Not delivered" not in result["summary"]
    client = MlflowClient(sqlite_uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None
    [run] = client.search_runs([found.experiment_id])
    check_carbon_run(client, run.info.run_id, SimpleNamespace(**result["totals"]))


def test_comet_sink_refuses_what_is_not_an_experiment() -> None:
    with pytest.raises(TypeError, match="comet_ml Experiment"):
        CometSink(object())

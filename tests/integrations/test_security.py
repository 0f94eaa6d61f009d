"""Security: no socket with default settings, no API key or credential written anywhere,
private journal files, and no writing through symbolic links."""

from __future__ import annotations

import json
import logging
import os
import zipfile
from pathlib import Path
from typing import Any

import pytest

from carbon_callbacks import Tracker
from carbon_callbacks.errors import CarbonWarning
from carbon_callbacks.journal import read_journal

pytestmark = [
    pytest.mark.filterwarnings(
        r"ignore:`isinstance\(treespec, LeafSpec\)` is deprecated:FutureWarning"
    ),
]


def all_text_under(folder: Path) -> str:
    """Every file under `folder`, zip members included, as one string."""
    chunks = []
    for path in folder.rglob("*"):
        if not path.is_file():
            continue
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as zf:
                chunks.extend(zf.read(n).decode("utf-8", "replace") for n in zf.namelist())
        else:
            chunks.append(path.read_text(errors="replace"))
    return "\n".join(chunks)


def test_default_lightning_run_into_a_file_store_opens_no_socket(
    no_network: list[object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`CarbonCallback()` with no argument at all, MLflow's file store, every socket blocked."""
    pytest.importorskip("lightning", reason="Lightning is not installed")
    pytest.importorskip("mlflow", reason="MLflow is not installed")
    import mlflow
    from lightning.pytorch.loggers import MLFlowLogger
    from mlflow.tracking import MlflowClient

    from carbon_callbacks.integrations.lightning import CarbonCallback
    from tests.integrations.test_lightning import TinyModel, make_trainer

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.chdir(tmp_path)  # default journal folder: ./carbon_runs
    monkeypatch.delenv("CARBON_CALLBACKS_OUTPUT_DIR")
    store = (tmp_path / "mlruns").as_uri()
    # The process-wide URI as it was (None: unset, or only from $MLFLOW_TRACKING_URI).
    previous_uri = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    if previous_uri == os.environ.get("MLFLOW_TRACKING_URI"):
        previous_uri = None
    try:
        logger = MLFlowLogger(experiment_name="no-network", tracking_uri=store)
        with pytest.warns(CarbonWarning, match="no location configured"):
            callback = CarbonCallback()
        make_trainer(tmp_path, logger, [callback], 2).fit(TinyModel())
    finally:
        mlflow.set_tracking_uri(previous_uri)  # MLFlowLogger set it process-wide (None: unset)
    assert logger.run_id is not None
    client = MlflowClient(store)
    steps = [m.step for m in client.get_metric_history(logger.run_id, "carbon/epoch_energy_kwh")]
    assert steps == [0, 1]
    journal = callback.session.journal_path
    assert journal is not None and journal.resolve().parent == tmp_path / "carbon_runs"
    assert not [r for r in read_journal(journal) if r["type"] == "error"]
    # no_network's teardown asserts that nothing tried to connect or resolve a name


@pytest.mark.parametrize("given_by", ["argument", "environment"])
def test_a_comet_api_key_is_never_written_or_logged(
    given_by: str,
    no_network: list[object],
    tmp_path: Path,
    tracker_kwargs: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    comet_ml = pytest.importorskip("comet_ml", reason="comet_ml is not installed")
    keras = pytest.importorskip("keras", reason="Keras is not installed")
    import numpy as np

    from carbon_callbacks.integrations.comet import CometSink
    from carbon_callbacks.integrations.keras import CarbonCallback
    from tests.integrations.test_comet import QUIET, QUIET_ENV

    secret = f"SeCrEtKey{given_by}0123456789abcdef"
    for name, value in QUIET_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("COMET_ERROR_TRACKING_ENABLE", "false")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    args: dict[str, Any] = {"project_name": "secret-test", **QUIET}
    if given_by == "argument":
        args["api_key"] = secret
    else:
        monkeypatch.setenv("COMET_API_KEY", secret)
    caplog.set_level(logging.DEBUG, logger="carbon_callbacks")
    comet_dir = tmp_path / "comet"
    experiment = comet_ml.OfflineExperiment(offline_directory=str(comet_dir), **args)
    try:
        x = np.random.default_rng(0).normal(size=(16, 4)).astype("float32")
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        model.compile(optimizer="sgd", loss="mse")
        callback = CarbonCallback(**tracker_kwargs)
        model.fit(x, x.sum(axis=1), epochs=2, batch_size=8, verbose=0, callbacks=[callback])
        [sink] = callback.session.sinks
        assert isinstance(sink, CometSink)
        assert secret not in repr(sink) and secret not in json.dumps(sink.target())
    finally:
        experiment.end()
    out = capsys.readouterr()
    written = all_text_under(tmp_path)  # journal, ledger, and Comet's own archive
    assert "carbon/epoch_energy_kwh" in written and "carbon.cpu_method" in written
    for where, text in [
        ("files", written),
        ("log records", caplog.text),
        ("stdout", out.out),
        ("stderr", out.err),
    ]:
        assert secret not in text, f"the API key appears in {where}"


def test_credentials_in_a_tracking_uri_are_never_journaled(tmp_path: Path) -> None:
    pytest.importorskip("mlflow", reason="MLflow is not installed")
    from carbon_callbacks.integrations.mlflow import MlflowSink

    sink = MlflowSink("0123abcd", "https://alice:s3cret@mlflow.example.com:8443/?token=t0k3n")
    assert sink.target() == {
        "kind": "mlflow",
        "tracking_uri": "https://mlflow.example.com:8443/",
        "run": "0123abcd",
    }
    for text in (repr(sink), json.dumps(sink.target())):
        assert "s3cret" not in text and "t0k3n" not in text and "alice" not in text


def test_journal_files_are_not_world_writable(tmp_path: Path) -> None:
    from tests.core.test_sync import MemorySink, run_session

    old = os.umask(0)  # the most permissive umask: the files must still be private
    try:
        session = run_session(tmp_path, [MemorySink()], epochs=1)
    finally:
        os.umask(old)
    files = sorted(tmp_path.iterdir())
    assert len(files) == 2 and session.journal_path in files  # journal + ledger
    for path in files:
        mode = path.stat().st_mode
        assert not mode & 0o002, f"{path} is world-writable ({oct(mode)})"
        assert mode & 0o777 == 0o640, path


def test_a_journal_path_that_is_a_symlink_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    victim = tmp_path / "elsewhere" / "important.txt"
    victim.parent.mkdir()
    victim.write_text("do not touch\n")
    journal_dir = tmp_path / "journal"
    journal_dir.mkdir()
    (journal_dir / "run-1.jsonl").symlink_to(victim)

    tracker = Tracker(cpu_power_w=10, count_ram=False, count_gpu=False, intensity_g_per_kwh=1,
                      output_dir=journal_dir)  # fmt: skip
    tracker.start(run_id="run-1")
    tracker.lap()
    totals = tracker.stop()
    assert totals.energy_kwh >= 0  # measuring went on
    assert tracker.journal_path is None
    assert victim.read_text() == "do not touch\n"
    assert any("symbolic link" in m for m in tracker.errors.messages())
    assert "symbolic link" in caplog.text  # warned, in plain words

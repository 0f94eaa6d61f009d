"""Fault injection: each fault ends with training complete and no epoch lost (after sync).

- the MLflow server killed (SIGKILL) during epoch 2 of 5, restarted after training, then
  ``carbon-callbacks sync``: the run has every epoch once; a second sync adds nothing;
- a sensor raising on every read; NVML failing mid-run (fake pynvml);
- RAPL permission denied and an unwritable journal folder, for real (a child process that
  drops root, since root reads and writes through any mode bits);
- a journal folder that cannot be created (in-process, MLflow still gets everything);
- SIGTERM to ``carbon-callbacks run`` and to a Lightning training process, mid-epoch;
- KeyboardInterrupt in Lightning;
- bad arguments to the three framework callbacks (property-based).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("lightning", reason="Lightning is not installed")
pytest.importorskip("mlflow", reason="MLflow is not installed")

from lightning.pytorch.callbacks import Callback  # noqa: E402
from lightning.pytorch.loggers import MLFlowLogger  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from carbon_callbacks import Tracker  # noqa: E402
from carbon_callbacks.integrations.lightning import CarbonCallback  # noqa: E402
from carbon_callbacks.journal import read_journal  # noqa: E402
from carbon_callbacks.sensors.estimate import ConstantPowerSensor  # noqa: E402
from carbon_callbacks.sensors.nvml import open_gpu_sensor  # noqa: E402
from carbon_callbacks.sync import main as sync_main  # noqa: E402
from carbon_callbacks.sync import pending  # noqa: E402
from scripts.mlflow_server import MlflowServer  # noqa: E402
from tests.fakes.fake_pynvml import FakeGpu, FakeNvml, NVMLError_GpuIsLost  # noqa: E402
from tests.fakes.powercap import FakePowercap  # noqa: E402
from tests.integrations.conftest import EPOCH_KEYS  # noqa: E402
from tests.integrations.test_lightning import TinyModel, make_trainer  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
NOBODY = 65534

pytestmark = [
    pytest.mark.filterwarnings(
        r"ignore:`isinstance\(treespec, LeafSpec\)` is deprecated:FutureWarning"
    ),
    pytest.mark.filterwarnings("ignore:.*[Cc]heckpoint directory .* exists and is not empty"),
]


def laps(journal: Path) -> list[dict[str, Any]]:
    return [r for r in read_journal(journal) if r["type"] == "lap"]


def child_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", **extra}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


# -- the MLflow server killed mid-training ---------------------------------------------------


KILLED_SERVER_CHILD = """
import json, os, sys, time
from pathlib import Path

import keras
import numpy as np
from mlflow.tracking import MlflowClient

from carbon_callbacks.integrations.keras import CarbonCallback
from carbon_callbacks.integrations.mlflow import MlflowSink

uri, journal_dir, ready, go = sys.argv[1:5]
client = MlflowClient(uri)
run_id = client.create_run(client.create_experiment("faults")).info.run_id
sink = MlflowSink(run_id, uri)


class Gate(keras.callbacks.Callback):
    # At the start of epoch 2 of 5: epoch 1 delivered, then wait while the server is killed.
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            assert sink.flush(60), "epoch 1 was not delivered before the kill"
            Path(ready).write_text(run_id)
            deadline = time.monotonic() + 120
            while not os.path.exists(go):
                assert time.monotonic() < deadline, "never told to go on"
                time.sleep(0.05)
            self.resumed = time.monotonic()


gate = Gate()
callback = CarbonCallback(
    sinks=[sink], cpu_power_w=50, ram_power_w=10, count_gpu=False,
    intensity_g_per_kwh=100, output_dir=journal_dir,
)
x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
model.compile(optimizer="sgd", loss="mse")
model.fit(x, x.sum(axis=1), epochs=5, batch_size=8, verbose=0, callbacks=[gate, callback])
print(json.dumps({
    "run_id": run_id,
    "after_kill_s": time.monotonic() - gate.resumed,
    "undelivered": callback.session.undelivered,
    "journal": str(callback.session.journal_path),
}))
"""


@pytest.mark.slow
def test_mlflow_server_killed_mid_training_then_sync_completes_the_run(
    tmp_path: Path, check_carbon_run: Any
) -> None:
    pytest.importorskip("keras", reason="Keras is not installed")
    server = MlflowServer(tmp_path)
    script = tmp_path / "train.py"
    script.write_text(KILLED_SERVER_CHILD)
    journal_dir, ready, go = tmp_path / "journal", tmp_path / "ready", tmp_path / "go"
    server.start()
    try:
        # MLflow's own retries stay at their defaults (minutes per request): they hold the
        # sink's thread only; the flush at the end is bounded to 3 s.
        child = subprocess.Popen(
            [sys.executable, str(script), server.uri, str(journal_dir), str(ready), str(go)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=child_env(CARBON_CALLBACKS_FLUSH_TIMEOUT_S="3"), cwd=tmp_path,
        )  # fmt: skip
        deadline = time.monotonic() + 180
        while not ready.exists():
            if child.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"training did not reach epoch 2: {child.communicate()[1][-3000:]}")
            time.sleep(0.1)
        server.kill()
        go.touch()
        out, err = child.communicate(timeout=180)
        assert child.returncode == 0, err[-3000:]
        result = json.loads(out.strip().splitlines()[-1])
        assert result["after_kill_s"] < 30, "the dead server held the training thread"
        assert result["undelivered"] and "carbon-callbacks sync" in result["undelivered"][0]
        assert "Not delivered" in out

        journal = Path(result["journal"])
        assert len(laps(journal)) == 6  # 5 epochs and the tail: nothing lost locally
        [(_, target, todo)] = pending(journal)
        assert target == {"kind": "mlflow", "tracking_uri": server.uri, "run": result["run_id"]}
        assert [r["step"] for r in todo if r["type"] == "metrics"] == [1, 2, 3, 4, 5]
        errors = [r["message"] for r in read_journal(journal) if r["type"] == "error"]
        assert any("were not delivered" in m for m in errors), errors  # journaled too

        server.start()  # same port, same database
        sync = [sys.executable, "-m", "carbon_callbacks.cli", "sync", str(journal_dir)]
        first = subprocess.run(sync, capture_output=True, text=True, env=child_env(), timeout=120)
        assert first.returncode == 0, first.stderr
        assert f"{len(todo)} sent" in first.stdout

        client = MlflowClient(server.uri)
        stop = [r for r in read_journal(journal) if r["type"] == "stop"][-1]
        totals = SimpleNamespace(
            **{k: stop[k] for k in ("energy_kwh", "emissions_kg", "duration_s")}
        )  # check_carbon_run also reads carbon/summary.json, written by the sync
        history = check_carbon_run(client, result["run_id"], totals, epochs=range(5))
        assert all(len(points) == 5 for key, points in history.items() if key in EPOCH_KEYS)

        second = subprocess.run(sync, capture_output=True, text=True, env=child_env(), timeout=120)
        assert second.returncode == 0 and "up to date" in second.stdout, second.stderr
        # Even with the ledger lost, MLflow's history keeps a sync from duplicating.
        for ledger in journal_dir.glob("*.delivered"):
            ledger.unlink()
        assert sync_main([str(journal)]) == 0
        assert check_carbon_run(client, result["run_id"], totals, epochs=range(5)) == history
    finally:
        server.stop()


# -- sensors ---------------------------------------------------------------------------------


class ExplodingSensor:
    """A third-party sensor whose every read raises (not even a SensorError)."""

    component = "gpu"
    method = "nvml-energy"

    def start(self, now: float) -> None:
        pass

    def energy_j(self, now: float) -> float:
        raise ZeroDivisionError("the vendor library divided by zero")

    def close(self) -> None:
        pass


def fit_with_tracker(
    sqlite_uri: str, tmp_path: Path, tracker: Tracker, epochs: int = 3, extra: Any = ()
) -> tuple[str, CarbonCallback]:
    logger = MLFlowLogger(experiment_name="faults", tracking_uri=sqlite_uri)
    callback = CarbonCallback(tracker=tracker)
    make_trainer(tmp_path, logger, [*extra, callback], epochs).fit(TinyModel())
    assert logger.run_id is not None
    return logger.run_id, callback


def steps(client: MlflowClient, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def test_a_sensor_raising_on_every_read(
    sqlite_uri: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tracker = Tracker(
        sensors=[ConstantPowerSensor("cpu", 50), ExplodingSensor()],
        intensity_g_per_kwh=100,
        output_dir=tmp_path / "journal",
    )
    run_id, callback = fit_with_tracker(sqlite_uri, tmp_path, tracker)
    client = MlflowClient(sqlite_uri)
    assert steps(client, run_id, "carbon/epoch_energy_kwh") == [0, 1, 2]
    assert steps(client, run_id, "carbon/epoch_cpu_energy_kwh") == [0, 1, 2]
    assert steps(client, run_id, "carbon/epoch_gpu_energy_kwh") == []  # not made up
    warned = [r for r in caplog.records if "divided by zero" in r.getMessage()]
    assert len(warned) == 1 and "not repeated" in warned[0].getMessage()
    journal = callback.session.journal_path
    assert journal is not None
    assert all("divided by zero" in " ".join(lap["errors"]) for lap in laps(journal))
    assert [r["cause"] for r in read_journal(journal) if r["type"] == "error"] == [
        "read:gpu:ZeroDivisionError"
    ]


class GpuWork(Callback):
    """Moves the fake GPU's energy counter by 1 Wh per epoch; NVML fails in epoch 2 only."""

    def __init__(self, gpu: FakeGpu) -> None:
        self.gpu = gpu

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        assert self.gpu.energy_mj is not None
        self.gpu.energy_mj += 3_600_000  # mJ: 1 Wh
        self.gpu.fail = NVMLError_GpuIsLost() if trainer.current_epoch == 1 else None


def test_nvml_error_mid_run(
    sqlite_uri: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gpu = FakeGpu("NVIDIA A100-SXM4-40GB", "GPU-11111111-aaaa-4000-8000-000000000000")
    sensor = open_gpu_sensor(nvml=FakeNvml([gpu]), environ={}, sample_interval_s=None)
    tracker = Tracker(
        sensors=[ConstantPowerSensor("cpu", 50), sensor],
        intensity_g_per_kwh=100,
        output_dir=tmp_path / "journal",
    )
    run_id, callback = fit_with_tracker(sqlite_uri, tmp_path, tracker, extra=[GpuWork(gpu)])
    client = MlflowClient(sqlite_uri)
    assert steps(client, run_id, "carbon/epoch_energy_kwh") == [0, 1, 2]
    gpu_kwh = {
        m.step: m.value for m in client.get_metric_history(run_id, "carbon/epoch_gpu_energy_kwh")
    }
    # Epoch 2's energy is not lost: the counter is cumulative, so epoch 3 carries it.
    assert gpu_kwh == {0: pytest.approx(0.001), 2: pytest.approx(0.002)}
    assert callback.session.totals.gpu_energy_kwh == pytest.approx(0.003)
    assert len([r for r in caplog.records if "GPU is lost" in r.getMessage()]) == 1


DROP_ROOT_CHILD = """
import json, os, sys, warnings
import encodings.ascii, encodings.utf_8, encodings.latin_1  # noqa: F401 - before losing /root
import carbon_callbacks.journal, carbon_callbacks.sensors.detect  # noqa: F401
import carbon_callbacks.sensors.estimate, carbon_callbacks.sensors.cpuinfo  # noqa: F401
from carbon_callbacks import Tracker

powercap, journal_ok, journal_denied, uid = sys.argv[1:5]
Tracker(intensity_g_per_kwh=1, count_gpu=False, output_dir=None).close()  # warm lazy imports
os.setgid(int(uid))
os.setuid(int(uid))
result = {}
for name, folder in (("rapl", journal_ok), ("journal", journal_denied)):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        env = {"CARBON_CALLBACKS_POWERCAP_ROOT": powercap}
        os.environ.update(env)
        tracker = Tracker(intensity_g_per_kwh=100, count_gpu=False, output_dir=folder)
    tracker.start()
    lap = tracker.lap()
    totals = tracker.stop()
    result[name] = {
        "methods": tracker.methods,
        "warnings": [str(w.message) for w in caught],
        "errors": tracker.errors.messages(),
        "journal": str(tracker.journal_path) if tracker.journal_path else None,
        "lap_kwh": lap.energy_kwh,
        "total_kwh": totals.energy_kwh,
    }
    tracker.close()
print(json.dumps(result))
"""


@pytest.mark.skipif(os.name != "posix" or os.geteuid() != 0, reason="needs root to drop it")
def test_rapl_permission_denied_and_unwritable_journal_as_a_normal_user(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Root reads and writes through any mode bits, so the child drops to `nobody` first."""
    # pytest's tmp_path sits in a root-only folder: nobody needs a path it can traverse.
    holder = tempfile.TemporaryDirectory(prefix="carbon-faults-")
    base = Path(holder.name)
    base.chmod(0o755)
    request.addfinalizer(holder.cleanup)
    tree = FakePowercap(base / "powercap")
    tree.add_standard(packages=1, dram=True)
    for counter in (base / "powercap").glob("*/energy_uj"):
        counter.chmod(0o400)  # root-only, as since the 2020 PLATYPUS fix
    journal_ok = base / "journal"
    journal_ok.mkdir(mode=0o777)
    journal_ok.chmod(0o777)
    journal_denied = base / "root-only"
    journal_denied.mkdir(mode=0o755)
    script = tmp_path / "child.py"
    script.write_text(DROP_ROOT_CHILD)
    script.chmod(0o644)
    out = subprocess.run(
        [sys.executable, str(script), str(base / "powercap"), str(journal_ok / "j"),
         str(journal_denied / "j"), str(NOBODY)],
        capture_output=True, text=True, env=child_env(), cwd=base, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])

    rapl = result["rapl"]
    assert rapl["methods"]["cpu"] == "estimate-tdp"  # fell back, and said why and how to fix
    assert any("not readable" in w and "chmod" in w for w in rapl["warnings"])
    assert rapl["journal"] is not None and rapl["total_kwh"] > 0

    journal = result["journal"]
    assert journal["journal"] is None  # EACCES: no journal...
    assert any(
        "cannot write the journal" in e and "Permission denied" in e for e in journal["errors"]
    )
    assert journal["total_kwh"] > 0  # ...but measuring went on


def test_unwritable_journal_folder_warns_and_still_logs_to_mlflow(
    sqlite_uri: str,
    tmp_path: Path,
    tracker_kwargs: dict[str, Any],
    check_carbon_run: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The folder cannot be created (its parent is a file): a real OSError from the kernel,
    the same code path as EACCES (which the test above gets as a normal user)."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the journal folder would go\n")
    kwargs = {**tracker_kwargs, "output_dir": blocker / "journal"}
    logger = MLFlowLogger(experiment_name="faults", tracking_uri=sqlite_uri)
    callback = CarbonCallback(**kwargs)
    make_trainer(tmp_path, logger, [callback], 3).fit(TinyModel())
    assert callback.session.journal_path is None
    journal_warnings = [r for r in caplog.records if "cannot write the journal" in r.getMessage()]
    assert len(journal_warnings) == 1
    assert journal_warnings[0].levelno == logging.WARNING
    assert logger.run_id is not None
    check_carbon_run(MlflowClient(sqlite_uri), logger.run_id, callback.session.totals)


# -- signals ---------------------------------------------------------------------------------


def wait_for(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_sigterm_to_carbon_callbacks_run_records_the_partial_lap(tmp_path: Path) -> None:
    journal_dir = tmp_path / "journal"
    command = [
        sys.executable, "-m", "carbon_callbacks.cli", "run", "--intensity", "100",
        "--cpu-power-w", "50", "--interval", "0.2", "--output-dir", str(journal_dir), "--",
        sys.executable, "-c", "import time; time.sleep(60)",
    ]  # fmt: skip
    began = time.monotonic()
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=child_env())

    def two_laps() -> bool:
        journals = list(journal_dir.glob("*.jsonl"))
        return bool(journals) and len(laps(journals[0])) >= 2

    wait_for(two_laps, 60, "two laps in the journal")
    time.sleep(0.1)  # mid-lap
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    elapsed = time.monotonic() - began
    assert process.returncode == 128 + signal.SIGTERM, err  # the child's fate, forwarded
    [journal] = journal_dir.glob("*.jsonl")
    records = read_journal(journal)
    assert records[-1]["type"] == "stop"
    assert records[-2]["type"] == "lap" and records[-2]["duration_s"] > 0  # the partial lap
    total = records[-1]["duration_s"]
    assert 0.4 < total <= elapsed
    assert "carbon-callbacks run: " in err and " CO2eq, estimated) in " in err


SIGTERM_LIGHTNING_CHILD = """
import sys, time
from pathlib import Path
import lightning.pytorch as pl
from tests.integrations.test_lightning import TinyModel
from carbon_callbacks.integrations.lightning import CarbonCallback

journal_dir, marker = sys.argv[1:3]


class Slow(TinyModel):
    def training_step(self, batch, batch_idx):
        if self.current_epoch == 1 and batch_idx == 1:
            Path(marker).touch()
        time.sleep(0.1)
        return super().training_step(batch, batch_idx)


callback = CarbonCallback(cpu_power_w=50, count_ram=False, count_gpu=False,
                          intensity_g_per_kwh=100, output_dir=journal_dir, sinks=None)
trainer = pl.Trainer(max_epochs=3, accelerator="cpu", logger=False, callbacks=[callback],
                     enable_progress_bar=False, enable_model_summary=False,
                     enable_checkpointing=False)
trainer.fit(Slow())
print("fit returned", flush=True)
"""


@pytest.mark.slow
def test_sigterm_to_a_lightning_run_records_the_partial_epoch(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(SIGTERM_LIGHTNING_CHILD)
    journal_dir, marker = tmp_path / "journal", tmp_path / "in-epoch-2"
    process = subprocess.Popen(
        [sys.executable, str(script), str(journal_dir), str(marker)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(),
    )  # fmt: skip
    wait_for(lambda: marker.exists() or process.poll() is not None, 180, "epoch 2")
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert "fit returned" not in out  # Lightning stopped training (SIGTERMException)
    [journal] = journal_dir.glob("*.jsonl")
    records = laps(journal)
    # Epoch 1 whole, epoch 2 interrupted (a few batches, keeping the number a resume would
    # give it), then the stop's empty tail.
    assert [(r["lap"], r["kind"]) for r in records] == [
        (0, "epoch"),
        (1, "interrupted"),
        (1, "final"),
    ], err[-3000:]
    assert 0 < records[1]["duration_s"] < records[0]["duration_s"]
    assert records[1]["energy_kwh"] > 0
    assert read_journal(journal)[-1]["type"] == "stop"


class Interrupting(TinyModel):
    def training_step(self, batch: Any, batch_idx: int) -> Any:
        if self.current_epoch == 1 and batch_idx == 2:
            raise KeyboardInterrupt
        return super().training_step(batch, batch_idx)


def test_keyboard_interrupt_in_lightning_logs_the_partial_epoch(
    sqlite_uri: str, tmp_path: Path, tracker_kwargs: dict[str, Any]
) -> None:
    logger = MLFlowLogger(experiment_name="faults", tracking_uri=sqlite_uri)
    callback = CarbonCallback(**tracker_kwargs)
    sigint = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(SystemExit):  # Lightning's graceful shutdown ends with exit(1)
            make_trainer(tmp_path, logger, [callback], 3).fit(Interrupting())
    finally:
        signal.signal(signal.SIGINT, sigint)  # Lightning ignores Ctrl+C from then on
    journal = callback.session.journal_path
    assert journal is not None
    kinds = [(r["lap"], r["kind"]) for r in laps(journal)]
    assert kinds == [(0, "epoch"), (1, "interrupted"), (1, "final")]
    assert laps(journal)[1]["energy_kwh"] > 0
    assert logger.run_id is not None
    client = MlflowClient(sqlite_uri)
    # Epoch 1 is under its own key: a resume would log it again, in full, at step 1.
    assert steps(client, logger.run_id, "carbon/epoch_energy_kwh") == [0]
    assert steps(client, logger.run_id, "carbon/interrupted_epoch_energy_kwh") == [1]
    assert steps(client, logger.run_id, "carbon/energy_kwh") == [0]
    assert not pending(journal)[0][2]  # everything confirmed


# -- bad arguments to the framework callbacks ------------------------------------------------


def test_bad_callback_arguments_raise_only_value_or_type_errors_naming_them(
    tmp_path: Path,
) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from carbon_callbacks.integrations.keras import CarbonCallback as KerasCallback
    from carbon_callbacks.integrations.transformers import CarbonCallback as HfCallback
    from tests.core.test_properties import VALUES, named

    classes = [CarbonCallback, KerasCallback, HfCallback]
    names = st.sampled_from(["tracker", "sinks", "summary", "country", "pue", "gpu_ids",
                             "output_dir", "count_cpu", "clock", "bogus"])  # fmt: skip

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(cls=st.sampled_from(classes), name=names, value=VALUES)
    def check(cls: Any, name: str, value: Any) -> None:
        if name == "output_dir" and isinstance(value, str):
            value = str(tmp_path / "j" / value.replace("/", "_"))
        kwargs = {"intensity_g_per_kwh": 100, "output_dir": str(tmp_path / "j"), name: value}
        if name == "tracker":
            kwargs = {"tracker": value}
        try:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cls(**kwargs)
        except (ValueError, TypeError) as exc:
            assert named(value, str(exc)) or (name == "bogus" and "bogus" in str(exc)), exc

    check()

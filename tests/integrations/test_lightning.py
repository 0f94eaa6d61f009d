"""Lightning: a tiny model, 3 epochs, `MLFlowLogger` on sqlite and on a real server."""

from __future__ import annotations

import calendar
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("lightning", reason="Lightning is not installed")
pytest.importorskip("mlflow", reason="MLflow is not installed")

import lightning.pytorch as pl  # noqa: E402
import torch  # noqa: E402
from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402
from lightning.pytorch.loggers import MLFlowLogger  # noqa: E402
from lightning.pytorch.profilers import SimpleProfiler  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from carbon_callbacks.integrations.lightning import CarbonCallback  # noqa: E402
from carbon_callbacks.journal import read_journal  # noqa: E402
from tests.fakes.clock import FakeClock  # noqa: E402
from tests.fakes.replay import ReplayServer  # noqa: E402
from tests.integrations.conftest import TRACKER_KWARGS, undocumented  # noqa: E402

pytestmark = [
    # torch 2.13 deprecates LeafSpec, which Lightning 2.6.6 still builds.
    pytest.mark.filterwarnings(
        r"ignore:`isinstance\(treespec, LeafSpec\)` is deprecated:FutureWarning"
    ),
    pytest.mark.filterwarnings("ignore:.*[Cc]heckpoint directory .* exists and is not empty"),
]


class TinyModel(pl.LightningModule):
    """y = Wx + b on random data; raises in `fail_at_epoch` after its first batch."""

    def __init__(self, fail_at_epoch: int | None = None) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
        self.fail_at_epoch = fail_at_epoch

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        if self.current_epoch == self.fail_at_epoch and batch_idx == 1:
            raise RuntimeError("boom in epoch 2")
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.layer(x), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def train_dataloader(self) -> DataLoader[Any]:
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(64, 4, generator=gen)
        return DataLoader(TensorDataset(x, x.sum(dim=1, keepdim=True)), batch_size=16)


def make_trainer(
    tmp_path: Path, logger: MLFlowLogger | bool, callbacks: list[Any], epochs: int, **extra: Any
) -> Any:
    return pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=logger,
        callbacks=callbacks,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks),
        default_root_dir=tmp_path,
        log_every_n_steps=1,
        **extra,
    )


def fit_three_epochs(uri: str, tmp_path: Path, kwargs: dict[str, Any]) -> tuple[str, Any]:
    logger = MLFlowLogger(experiment_name="lightning", tracking_uri=uri)
    callback = CarbonCallback(**kwargs)
    make_trainer(tmp_path, logger, [callback], 3).fit(TinyModel())
    assert logger.run_id is not None
    return logger.run_id, callback.session.totals


def test_three_epochs_into_sqlite_run(
    sqlite_uri: str, tmp_path: Path, tracker_kwargs: dict[str, Any], check_carbon_run: Any
) -> None:
    run_id, totals = fit_three_epochs(sqlite_uri, tmp_path, tracker_kwargs)
    client = MlflowClient(sqlite_uri)
    check_carbon_run(client, run_id, totals)
    # the whole run predicted once, after epoch 1 of max_epochs=3
    [predicted] = client.get_metric_history(run_id, "carbon/predicted_energy_kwh")
    assert predicted.step == 0 and predicted.value > 0
    assert client.get_run(run_id).data.tags["carbon.greener_region"]
    # Every key the run has is in the README and the MLflow page (carbon/duration_s was not).
    assert undocumented(list(client.get_run(run_id).data.metrics)) == []


@pytest.mark.slow
def test_three_epochs_into_mlflow_server(
    mlflow_server_uri: str, tmp_path: Path, tracker_kwargs: dict[str, Any], check_carbon_run: Any
) -> None:
    run_id, totals = fit_three_epochs(mlflow_server_uri, tmp_path, tracker_kwargs)
    check_carbon_run(MlflowClient(mlflow_server_uri), run_id, totals)


def test_resume_from_checkpoint_continues_totals(
    sqlite_uri: str, tmp_path: Path, tracker_kwargs: dict[str, Any], check_carbon_run: Any
) -> None:
    client = MlflowClient(sqlite_uri)
    ckpt_dir = tmp_path / "ckpt"

    first_logger = MLFlowLogger(experiment_name="lightning", tracking_uri=sqlite_uri)
    first = CarbonCallback(**tracker_kwargs)
    checkpoint = ModelCheckpoint(dirpath=ckpt_dir, save_last=True)
    make_trainer(tmp_path, first_logger, [first, checkpoint], 2).fit(TinyModel())
    assert first_logger.run_id is not None
    first_epochs = client.get_metric_history(first_logger.run_id, "carbon/epoch_energy_kwh")
    saved_kwh = sum(m.value for m in first_epochs)
    state = torch.load(ckpt_dir / "last.ckpt", weights_only=False)["callbacks"]
    saved = state[first.state_key]["tracker"]["totals"]
    # Saved at the end of epoch 1, as of that moment: both epochs (the checkpoint callback
    # runs after ours) and the instant since, not the tail after training.
    assert saved_kwh <= saved["energy_kwh"] <= first.session.totals.energy_kwh

    second_logger = MLFlowLogger(experiment_name="lightning", tracking_uri=sqlite_uri)
    second = CarbonCallback(**tracker_kwargs)
    resumed_checkpoint = ModelCheckpoint(dirpath=ckpt_dir, save_last=True)
    trainer = make_trainer(tmp_path, second_logger, [second, resumed_checkpoint], 4)
    trainer.fit(TinyModel(), ckpt_path=ckpt_dir / "last.ckpt")
    assert second_logger.run_id is not None
    totals = second.session.totals
    check_carbon_run(
        client, second_logger.run_id, totals, epochs=(2, 3), offset_kwh=saved["energy_kwh"]
    )
    assert totals.energy_kwh > saved["energy_kwh"]
    assert second.tracker.run_id == first.tracker.run_id  # the same journal continues


def test_exception_logs_the_partial_epoch(
    sqlite_uri: str, tmp_path: Path, tracker_kwargs: dict[str, Any]
) -> None:
    logger = MLFlowLogger(experiment_name="lightning", tracking_uri=sqlite_uri)
    callback = CarbonCallback(**tracker_kwargs)
    with pytest.raises(RuntimeError, match="boom in epoch 2"):
        make_trainer(tmp_path, logger, [callback], 3).fit(TinyModel(fail_at_epoch=2))

    assert callback.session.journal_path is not None
    laps = [r for r in read_journal(callback.session.journal_path) if r["type"] == "lap"]
    # Epochs 0 and 1, the interrupted epoch 2, then the (empty) tail taken by stop().
    kinds = [(r["lap"], r["kind"]) for r in laps]
    assert kinds == [(0, "epoch"), (1, "epoch"), (2, "interrupted"), (2, "final")]
    assert laps[2]["energy_kwh"] > 0 and laps[2]["duration_s"] > 0

    client = MlflowClient(sqlite_uri)
    assert logger.run_id is not None
    assert steps(client, logger.run_id, "carbon/epoch_energy_kwh") == [0, 1]
    [interrupted] = client.get_metric_history(logger.run_id, "carbon/interrupted_epoch_energy_kwh")
    assert interrupted.step == 2
    assert interrupted.value == pytest.approx(laps[2]["energy_kwh"], rel=1e-9)
    # The cumulative keys stay at the last whole epoch: a resume writes step 2 in full.
    assert steps(client, logger.run_id, "carbon/energy_kwh") == [0, 1]
    assert client.get_run(logger.run_id).info.status == "FAILED"
    assert undocumented(list(client.get_run(logger.run_id).data.metrics)) == []


def test_no_per_batch_dispatch_to_the_callback(
    tmp_path: Path, tracker_kwargs: dict[str, Any]
) -> None:
    # Lightning's profiler records every hook it dispatches to a callback: ours gets the
    # run- and epoch-level ones only, never one per batch (with validation batches too).
    class WithValidation(TinyModel):
        def validation_step(self, batch: Any, batch_idx: int) -> None:
            self.log("val_loss", torch.nn.functional.mse_loss(self.layer(batch[0]), batch[1]))

        def val_dataloader(self) -> DataLoader[Any]:
            return self.train_dataloader()

    profiler = SimpleProfiler()
    callback = CarbonCallback(**tracker_kwargs, sinks=None, summary=False)
    make_trainer(tmp_path, False, [callback], 2, profiler=profiler).fit(WithValidation())
    ours = {
        action.rpartition(".")[2]: len(durations)
        for action, durations in profiler.recorded_durations.items()
        if action.startswith(f"[Callback]{callback.state_key}.")
    }
    assert ours["on_train_epoch_end"] == 2 and ours["on_train_start"] == 1
    assert not [hook for hook in ours if "batch" in hook or "backward" in hook], ours
    assert not {"on_before_optimizer_step", "on_before_zero_grad"} & set(ours)
    assert callback.session.totals is not None and callback.tracker.lap_count == 2


# -- exact figures: a clock that advances 10 s per optimizer step ---------------------------

STEP_S = 10.0
STEPS_PER_EPOCH = 4  # 64 samples, batches of 16
WATTS = 60.0  # tracker_kwargs: 50 W CPU + 10 W RAM
EPOCH_KWH = WATTS * STEP_S * STEPS_PER_EPOCH / 3.6e6


class StepClock:
    """The tracker's clock: `STEP_S` per optimizer step of the trainer it is bound to, so a
    lap's energy is exactly 600 J per step, whatever the machine's speed."""

    def __init__(self) -> None:
        self.trainer: Any = None

    def __call__(self) -> float:
        return 0.0 if self.trainer is None else self.trainer.global_step * STEP_S


def clocked(
    tmp_path: Path,
    logger: MLFlowLogger | bool,
    callback: CarbonCallback,
    clock: StepClock,
    epochs: int,
    *more: Any,
    **extra: Any,
) -> Any:
    trainer = make_trainer(tmp_path, logger, [callback, *more], epochs, **extra)
    clock.trainer = trainer
    return trainer


def steps(client: MlflowClient, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def test_prediction_after_a_resume_is_the_final_total(
    sqlite_uri: str, tmp_path: Path, tracker_kwargs: dict[str, Any]
) -> None:
    ckpt_dir = tmp_path / "ckpt"
    clock = StepClock()
    first = CarbonCallback(**tracker_kwargs, clock=clock, summary=False)
    checkpoint = ModelCheckpoint(dirpath=ckpt_dir, save_last=True)
    clocked(tmp_path, False, first, clock, 2, checkpoint).fit(TinyModel())
    assert first.session.totals is not None
    assert first.session.totals.energy_kwh == pytest.approx(2 * EPOCH_KWH, rel=1e-12)

    logger = MLFlowLogger(experiment_name="lightning", tracking_uri=sqlite_uri)
    clock = StepClock()
    second = CarbonCallback(**tracker_kwargs, clock=clock, summary=False)
    trainer = clocked(tmp_path, logger, second, clock, 5, ModelCheckpoint(dirpath=ckpt_dir))
    trainer.fit(TinyModel(), ckpt_path=ckpt_dir / "last.ckpt")
    # Predicted after epoch 2 (the first of this process): 2 restored + 1 measured + 2 x 1.
    prediction = second.session.prediction
    assert prediction is not None and prediction.measured_epochs == 1
    assert prediction.energy_kwh == pytest.approx(5 * EPOCH_KWH, rel=1e-12)
    assert second.session.totals.energy_kwh == pytest.approx(5 * EPOCH_KWH, rel=1e-12)
    assert logger.run_id is not None
    client = MlflowClient(sqlite_uri)
    predicted = history(client, logger.run_id, "carbon/predicted_energy_kwh")
    assert predicted == [(2, pytest.approx(5 * EPOCH_KWH, rel=1e-12))]


def test_max_steps_ending_training_first_is_what_is_predicted(
    tmp_path: Path, tracker_kwargs: dict[str, Any]
) -> None:
    clock = StepClock()
    callback = CarbonCallback(**tracker_kwargs, clock=clock, summary=False, sinks=None)
    clocked(tmp_path, False, callback, clock, 5, max_steps=6).fit(TinyModel())
    prediction = callback.session.prediction
    assert prediction is not None
    assert (prediction.total_epochs, prediction.limit) == (1.5, "max_steps")
    assert "predicted for 1.5 epochs" in prediction.line() and "max_steps" in prediction.line()
    # 6 steps: 1.5 epochs, predicted after the first.
    assert prediction.energy_kwh == pytest.approx(1.5 * EPOCH_KWH, rel=1e-12)
    assert callback.session.totals.energy_kwh == pytest.approx(1.5 * EPOCH_KWH, rel=1e-12)


def assert_one_run_one_total(
    client: MlflowClient, run_id: str, epochs: int, fit_ends: tuple[int, ...] = ()
) -> None:
    """Every carbon key has one value per step, and the run's cumulative metrics add up:
    the running total after each epoch, except at the step where an earlier fit ended,
    which keeps that fit's total (written first: a step is never written twice)."""
    for key in ("carbon/epoch_energy_kwh", "carbon/energy_kwh", "carbon/emissions_kg"):
        logged = steps(client, run_id, key)
        assert len(logged) == len(set(logged)), (key, logged)
    per_epoch = history(client, run_id, "carbon/epoch_energy_kwh")
    assert [s for s, _ in per_epoch] == list(range(epochs))
    assert [v for _, v in per_epoch] == pytest.approx([EPOCH_KWH] * epochs, rel=1e-12)
    energy = history(client, run_id, "carbon/energy_kwh")
    assert energy[-1] == (epochs, pytest.approx(epochs * EPOCH_KWH, rel=1e-12))
    for step, value in energy[:-1]:  # the running total at each epoch step
        done = step if step in fit_ends else step + 1
        assert value == pytest.approx(done * EPOCH_KWH, rel=1e-12), step


def test_a_second_fit_into_the_same_run_keeps_counting(
    sqlite_uri: str, tmp_path: Path, tracker_kwargs: dict[str, Any]
) -> None:
    logger = MLFlowLogger(experiment_name="lightning", tracking_uri=sqlite_uri)
    clock = StepClock()
    callback = CarbonCallback(**tracker_kwargs, clock=clock, summary=False)
    trainer = clocked(tmp_path, logger, callback, clock, 2)
    model = TinyModel()
    trainer.fit(model)
    trainer.fit_loop.max_epochs = 4
    trainer.fit(model)  # epochs 2 and 3, into the same run
    assert logger.run_id is not None
    assert callback.session.totals.energy_kwh == pytest.approx(4 * EPOCH_KWH, rel=1e-12)
    assert_one_run_one_total(MlflowClient(sqlite_uri), logger.run_id, 4, fit_ends=(2,))


def test_a_new_trainer_on_the_same_logger_continues_the_steps(
    sqlite_uri: str, tmp_path: Path, tracker_kwargs: dict[str, Any]
) -> None:
    logger = MLFlowLogger(experiment_name="lightning", tracking_uri=sqlite_uri)
    clock = StepClock()
    callback = CarbonCallback(**tracker_kwargs, clock=clock, summary=False)
    clocked(tmp_path, logger, callback, clock, 2).fit(TinyModel())
    clocked(tmp_path, logger, callback, clock, 2).fit(TinyModel())  # its epochs 0, 1 again
    assert logger.run_id is not None
    assert_one_run_one_total(MlflowClient(sqlite_uri), logger.run_id, 4, fit_ends=(2,))


def test_a_new_callback_on_the_same_logger_continues_the_run(
    sqlite_uri: str, tmp_path: Path, tracker_kwargs: dict[str, Any]
) -> None:
    # A new Trainer and a new callback (as `autolog` adds to every Trainer), the same run.
    logger = MLFlowLogger(experiment_name="lightning", tracking_uri=sqlite_uri)
    for _ in range(2):
        clock = StepClock()
        callback = CarbonCallback(**tracker_kwargs, clock=clock, summary=False)
        clocked(tmp_path, logger, callback, clock, 2).fit(TinyModel())
    assert logger.run_id is not None
    assert callback.session.totals.energy_kwh == pytest.approx(4 * EPOCH_KWH, rel=1e-12)
    assert_one_run_one_total(MlflowClient(sqlite_uri), logger.run_id, 4, fit_ends=(2,))


def test_a_crash_then_a_resume_into_the_same_run_counts_each_epoch_once(
    sqlite_uri: str, tmp_path: Path, tracker_kwargs: dict[str, Any]
) -> None:
    ckpt_dir = tmp_path / "ckpt"
    logger = MLFlowLogger(experiment_name="lightning", tracking_uri=sqlite_uri)
    clock = StepClock()
    first = CarbonCallback(**tracker_kwargs, clock=clock, summary=False)
    checkpoint = ModelCheckpoint(dirpath=ckpt_dir, save_last=True)
    with pytest.raises(RuntimeError, match="boom in epoch 2"):
        clocked(tmp_path, logger, first, clock, 4, checkpoint).fit(TinyModel(fail_at_epoch=2))
    assert logger.run_id is not None
    run_id = logger.run_id

    resumed_logger = MLFlowLogger(
        experiment_name="lightning", tracking_uri=sqlite_uri, run_id=run_id
    )
    clock = StepClock()
    second = CarbonCallback(**tracker_kwargs, clock=clock, summary=False)
    trainer = clocked(tmp_path, resumed_logger, second, clock, 4, ModelCheckpoint(dirpath=ckpt_dir))
    trainer.fit(TinyModel(), ckpt_path=ckpt_dir / "last.ckpt")

    client = MlflowClient(sqlite_uri)
    assert_one_run_one_total(client, run_id, 4)
    # The crash's interrupted epoch (one step of epoch 2) under its own key, once.
    interrupted = history(client, run_id, "carbon/interrupted_epoch_energy_kwh")
    assert interrupted == [(2, pytest.approx(WATTS * STEP_S / 3.6e6, rel=1e-12))]
    # One journal for the run (the id carried by the checkpoint): each epoch's lap once.
    assert second.tracker.run_id == first.tracker.run_id
    assert second.session.journal_path is not None
    laps = [r for r in read_journal(second.session.journal_path) if r["type"] == "lap"]
    assert [r["lap"] for r in laps if r["kind"] == "epoch"] == [0, 1, 2, 3]
    assert [r["lap"] for r in laps if r["kind"] == "interrupted"] == [2]


@pytest.mark.filterwarnings("ignore:You're resuming from a checkpoint that ended before the epoch")
def test_a_checkpoint_inside_an_epoch_saves_the_totals_as_of_then(
    tmp_path: Path, tracker_kwargs: dict[str, Any]
) -> None:
    ckpt_dir = tmp_path / "ckpt"
    clock = StepClock()
    first = CarbonCallback(**tracker_kwargs, clock=clock, summary=False, sinks=None)
    every_3 = ModelCheckpoint(dirpath=ckpt_dir, every_n_train_steps=3, save_last=True)
    with pytest.raises(RuntimeError, match="boom in epoch 2"):
        clocked(tmp_path, False, first, clock, 4, every_3).fit(TinyModel(fail_at_epoch=2))
    state = torch.load(ckpt_dir / "last.ckpt", weights_only=False)
    assert state["global_step"] == 9  # saved after the first step of epoch 2
    saved = state["callbacks"][first.state_key]["tracker"]["totals"]
    assert saved["energy_kwh"] == pytest.approx(9 * WATTS * STEP_S / 3.6e6, rel=1e-12)

    clock = StepClock()
    second = CarbonCallback(**tracker_kwargs, clock=clock, summary=False, sinks=None)
    every_3 = ModelCheckpoint(dirpath=ckpt_dir, every_n_train_steps=3, save_last=True)
    trainer = clocked(tmp_path, False, second, clock, 4, every_3)
    trainer.fit(TinyModel(), ckpt_path=ckpt_dir / "last.ckpt")
    # Every optimizer step of the run counted once: 600 J each, before and after the resume.
    expected = trainer.global_step * WATTS * STEP_S / 3.6e6
    assert second.session.totals.energy_kwh == pytest.approx(expected, rel=1e-12)


class AdvanceWall(pl.Callback):
    """Each epoch takes one hour of the tracker's (fake) wall clock."""

    def __init__(self, wall: FakeClock) -> None:
        self.wall = wall

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self.wall.advance(3600.0)


def test_live_intensity_moves_per_epoch_with_the_served_hours(
    sqlite_uri: str, tmp_path: Path, replay: ReplayServer
) -> None:
    wall = FakeClock(calendar.timegm((2026, 3, 2, 10, 30, 0)))
    kwargs = {
        **{k: v for k, v in TRACKER_KWARGS.items() if k != "intensity_g_per_kwh"},
        "country": "FR",
        "intensity_provider": "electricitymaps",
        "wall_clock": wall,
        "output_dir": tmp_path / "journal",
    }
    logger = MLFlowLogger(experiment_name="live-intensity", tracking_uri=sqlite_uri)
    make_trainer(tmp_path, logger, [AdvanceWall(wall), CarbonCallback(**kwargs)], 3).fit(
        TinyModel()
    )
    assert logger.run_id is not None
    client = MlflowClient(sqlite_uri)
    history = client.get_metric_history(logger.run_id, "carbon/intensity_g_per_kwh")
    # Epochs 10:30-11:30, 11:30-12:30, 12:30-13:30 over the replayed hours 60, 80, 30, 25:
    assert sorted((m.step, m.value) for m in history) == [(0, 70.0), (1, 55.0), (2, 27.5)]
    tags = client.get_run(logger.run_id).data.tags
    assert tags["carbon.intensity_provider"] == "electricitymaps:FR"
    assert tags["carbon.intensity_basis"] == "life-cycle"
    assert tags["carbon.intensity_source"].startswith("Electricity Maps FR hourly (live;")

"""Lightning: a tiny model, 3 epochs, `MLFlowLogger` on sqlite and on a real server."""

from __future__ import annotations

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
    # Saved at the end of epoch 1: both epochs, not the tail after training.
    assert saved["energy_kwh"] == pytest.approx(saved_kwh, rel=1e-9)

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
    # Epochs 0 and 1, the partial epoch 2, then the (empty) tail taken by stop().
    assert [r["lap"] for r in laps] == [0, 1, 2, 3]
    assert laps[2]["energy_kwh"] > 0 and laps[2]["duration_s"] > 0

    client = MlflowClient(sqlite_uri)
    assert logger.run_id is not None
    epochs = client.get_metric_history(logger.run_id, "carbon/epoch_energy_kwh")
    assert sorted(m.step for m in epochs) == [0, 1, 2]
    by_step = {m.step: m.value for m in epochs}
    assert by_step[2] == pytest.approx(laps[2]["energy_kwh"], rel=1e-9)
    totals = client.get_metric_history(logger.run_id, "carbon/energy_kwh")
    assert max(m.step for m in totals) == 3
    assert client.get_run(logger.run_id).info.status == "FAILED"


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
    assert callback.session.totals is not None and callback.tracker.lap_count == 3

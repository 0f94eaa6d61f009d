"""Hugging Face: a tiny `Trainer` (a model from a small config, random data), 3 epochs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers", reason="Transformers is not installed")
pytest.importorskip("accelerate", reason="accelerate (needed by the Trainer) is not installed")
pytest.importorskip("mlflow", reason="MLflow is not installed")

import torch  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402
from transformers import (  # noqa: E402
    BertConfig,
    BertForSequenceClassification,
    Trainer,
    TrainingArguments,
)

from carbon_callbacks.integrations.transformers import CarbonCallback, epoch_index  # noqa: E402


class RandomTokens(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
    def __init__(self, n: int = 32, length: int = 8, vocab: int = 50) -> None:
        gen = torch.Generator().manual_seed(0)
        self.ids = torch.randint(0, vocab, (n, length), generator=gen)
        self.labels = torch.randint(0, 2, (n,), generator=gen)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


def tiny_bert() -> BertForSequenceClassification:
    config = BertConfig(
        vocab_size=50,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=1,
        intermediate_size=16,
        max_position_embeddings=16,
        num_labels=2,
    )
    return BertForSequenceClassification(config)


def test_report_to_mlflow_three_epochs(
    sqlite_uri: str,
    tmp_path: Path,
    tracker_kwargs: dict[str, Any],
    check_carbon_run: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", sqlite_uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "transformers")
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"),
        num_train_epochs=3,
        per_device_train_batch_size=8,
        report_to=["mlflow"],
        save_strategy="no",
        logging_strategy="epoch",
        use_cpu=True,
        disable_tqdm=True,
    )
    callback = CarbonCallback(**tracker_kwargs)
    trainer = Trainer(
        model=tiny_bert(), args=args, train_dataset=RandomTokens(), callbacks=[callback]
    )
    trainer.train()

    # MLflowCallback ended its run before our on_train_end: the id was captured at the start.
    client = MlflowClient(sqlite_uri)
    experiment = client.get_experiment_by_name("transformers")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"])
    run_id = runs[0].info.run_id
    assert runs[0].info.status == "FINISHED"
    check_carbon_run(client, run_id, callback.session.totals)


@pytest.mark.parametrize(
    ("epoch", "index"), [(None, 0), (1.0, 0), (0.9999999, 0), (1.0000001, 0), (3.0, 2), (2.5, 2)]
)
def test_epoch_index_from_fractional_state_epoch(epoch: float | None, index: int) -> None:
    assert epoch_index(epoch) == index


def test_report_to_tensorboard_and_wandb_get_the_carbon_metrics(
    tmp_path: Path, tracker_kwargs: dict[str, Any], wandb_offline: Path
) -> None:
    pytest.importorskip("tensorboard", reason="tensorboard is not installed")
    pytest.importorskip("wandb", reason="wandb is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from carbon_callbacks.integrations.tensorboard import TensorBoardSink
    from carbon_callbacks.integrations.wandb import WandbSink
    from tests.integrations.wandb_file import offline_runs, read_run

    args = TrainingArguments(
        output_dir=str(tmp_path / "out"),
        num_train_epochs=3,
        per_device_train_batch_size=8,
        report_to=["tensorboard", "wandb"],
        save_strategy="no",
        logging_strategy="epoch",
        use_cpu=True,
        disable_tqdm=True,
    )
    callback = CarbonCallback(**tracker_kwargs)
    trainer = Trainer(
        model=tiny_bert(), args=args, train_dataset=RandomTokens(), callbacks=[callback]
    )
    trainer.train()
    import wandb

    wandb.finish()  # HF's WandbCallback leaves the run open after train()
    sinks = callback.session.sinks
    assert [type(s) for s in sinks] == [WandbSink, TensorBoardSink]
    assert callback.tracker.errors.messages() == []
    totals = callback.session.totals
    assert totals is not None

    # TensorBoard: a run "<HF's run>/carbon" next to the one HF's TensorBoardCallback wrote.
    [hf_run] = [p.parent for p in (tmp_path / "out" / "runs").glob("*/events.out.tfevents.*")]
    events = EventAccumulator(str(hf_run / "carbon"))
    events.Reload()
    scalars = events.Scalars("carbon/epoch_energy_kwh")
    assert [e.step for e in scalars] == [0, 1, 2]
    energy = events.Scalars("carbon/energy_kwh")
    assert (energy[-1].step, energy[-1].value) == (3, pytest.approx(totals.energy_kwh, rel=1e-6))
    [text] = events.Tensors("carbon.cpu_method/text_summary")  # the tags, as text
    assert text.tensor_proto.string_val == [b"constant"]

    # W&B: the run report_to=["wandb"] opened, on carbon/epoch; the same values.
    [path] = offline_runs(wandb_offline)
    run = read_run(path)
    series = run.series("carbon/epoch_energy_kwh")
    assert [step for step, _ in series] == [0, 1, 2]
    assert [v for _, v in series] == pytest.approx([e.value for e in scalars], rel=1e-6)
    assert run.summary["carbon/energy_kwh"] == totals.energy_kwh
    assert run.config["carbon"]["cpu_method"] == "constant"
    assert any("train/loss" in row for row in run.history)  # HF's own metrics, same run


# -- exact figures: a clock driven by the Trainer's own counters --------------------------------

STEP_S, EVAL_BATCH_S = 10.0, 3.0
WATTS = 60.0  # tracker_kwargs: 50 W CPU + 10 W RAM
STEPS_PER_EPOCH = 4  # 32 samples, batches of 8


class CountingBert(BertForSequenceClassification):
    """Counts its forward passes in evaluation mode (one per evaluation batch)."""

    eval_batches = 0

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if not self.training:
            self.eval_batches += 1
        return super().forward(*args, **kwargs)


def counting_bert() -> CountingBert:
    model = tiny_bert()
    model.__class__ = CountingBert
    return model  # type: ignore[return-value]


class TrainerClock:
    """10 s per optimizer step and 3 s per evaluation batch of the bound trainer."""

    def __init__(self) -> None:
        self.trainer: Any = None

    def __call__(self) -> float:
        if self.trainer is None:
            return 0.0
        return self.trainer.state.global_step * STEP_S + self.trainer.model.eval_batches * (
            EVAL_BATCH_S
        )


def clocked_trainer(
    tmp_path: Path, tracker_kwargs: dict[str, Any], epochs: int, **extra: Any
) -> tuple[Any, CarbonCallback]:
    clock = TrainerClock()
    callback = CarbonCallback(**tracker_kwargs, clock=clock, sinks=None, summary=False)
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"),
        num_train_epochs=epochs,
        per_device_train_batch_size=8,
        per_device_eval_batch_size=8,
        report_to=[],
        logging_strategy="no",
        remove_unused_columns=False,  # CountingBert's forward takes **kwargs
        use_cpu=True,
        disable_tqdm=True,
        **extra,
    )
    trainer = Trainer(
        model=counting_bert(),
        args=args,
        train_dataset=RandomTokens(),
        eval_dataset=RandomTokens(n=16),
        callbacks=[callback],
    )
    clock.trainer = trainer
    return trainer, callback


def test_each_epoch_holds_its_own_evaluation(
    tmp_path: Path, tracker_kwargs: dict[str, Any]
) -> None:
    trainer, callback = clocked_trainer(
        tmp_path, tracker_kwargs, 3, eval_strategy="epoch", save_strategy="no"
    )
    laps: list[Any] = []
    session_epoch_end = callback.session.epoch_end
    callback.session.epoch_end = lambda epoch: laps.append(  # type: ignore[method-assign]
        (epoch, session_epoch_end(epoch))
    )
    trainer.train()
    assert trainer.model.eval_batches == 6  # 2 batches after each epoch
    # Each epoch: 4 steps and its 2 evaluation batches (46 s at 60 W), the last one too.
    epoch_kwh = WATTS * (STEPS_PER_EPOCH * STEP_S + 2 * EVAL_BATCH_S) / 3.6e6
    assert [e for e, _ in laps] == [0, 1, 2]
    assert [m.energy_kwh for _, m in laps] == pytest.approx([epoch_kwh] * 3, rel=1e-12)
    assert callback.session.totals.energy_kwh == pytest.approx(3 * epoch_kwh, rel=1e-12)


def test_resume_from_checkpoint_continues_the_totals_and_predicts_the_rest(
    tmp_path: Path, tracker_kwargs: dict[str, Any]
) -> None:
    epoch_kwh = WATTS * STEPS_PER_EPOCH * STEP_S / 3.6e6
    trainer, first = clocked_trainer(tmp_path, tracker_kwargs, 2, save_strategy="epoch")
    trainer.train()
    assert first.session.totals.energy_kwh == pytest.approx(2 * epoch_kwh, rel=1e-12)
    checkpoint = tmp_path / "out" / "checkpoint-8"
    assert checkpoint.is_dir()

    trainer, second = clocked_trainer(tmp_path, tracker_kwargs, 5, save_strategy="no")
    trainer.train(resume_from_checkpoint=str(checkpoint))
    # 2 epochs from the checkpoint, then 2, 3, 4 here; predicted after epoch 2.
    prediction = second.session.prediction
    assert prediction is not None and prediction.measured_epochs == 1
    assert prediction.energy_kwh == pytest.approx(5 * epoch_kwh, rel=1e-12)
    assert second.session.totals.energy_kwh == pytest.approx(5 * epoch_kwh, rel=1e-12)
    assert second.tracker.run_id == first.tracker.run_id  # the same journal continues

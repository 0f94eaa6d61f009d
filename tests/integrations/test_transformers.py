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

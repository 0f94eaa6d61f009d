"""Hugging Face `Trainer` under torchrun (gloo, CPU), 3 epochs, ``report_to=["mlflow"]``.

    python -m torch.distributed.run --nproc_per_node=2 ... hf_torchrun.py OUT_DIR

Run by ``tests/integrations/test_ddp.py`` with ``MLFLOW_TRACKING_URI``,
``MLFLOW_EXPERIMENT_NAME`` and ``HF_HUB_OFFLINE=1``: a tiny BERT built from a config, no
download. Every rank writes ``OUT_DIR/rank<k>.json``; the journal goes to ``OUT_DIR/journal``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from common import CALLBACK_KWARGS, STEP_S, leave, write_report
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from carbon_callbacks.integrations.transformers import CarbonCallback


class Slow(TrainerCallback):  # type: ignore[misc]
    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        time.sleep(STEP_S)


def dataset() -> list[dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 32, (64, 8), generator=gen)
    return [{"input_ids": row, "labels": row[0] % 2} for row in ids]


def main(out: Path) -> None:
    config = BertConfig(
        vocab_size=32,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=16,
    )
    args = TrainingArguments(
        output_dir=str(out / "hf"),
        num_train_epochs=3,
        per_device_train_batch_size=8,
        use_cpu=True,
        ddp_backend="gloo",
        report_to=["mlflow"],
        logging_strategy="epoch",
        save_strategy="no",
        disable_tqdm=True,
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False,
    )
    callback = CarbonCallback(output_dir=out / "journal", **CALLBACK_KWARGS)
    trainer = Trainer(
        model=BertForSequenceClassification(config),
        args=args,
        train_dataset=dataset(),
        callbacks=[callback, Slow()],
    )
    trainer.train()
    write_report(out, args.process_index, callback)
    if dist.is_initialized():  # neither rank tears gloo down while the other still uses it
        dist.barrier()
        dist.destroy_process_group()
    leave()


if __name__ == "__main__":
    main(Path(sys.argv[1]))

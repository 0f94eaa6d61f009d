"""An ordinary Hugging Face script: a tiny BERT, 3 epochs, ``report_to=["mlflow"]``. Nothing
about carbon. Runs alone or under torchrun (gloo, CPU).

    python train_hf.py OUT_DIR

Reads ``MLFLOW_TRACKING_URI`` and ``MLFLOW_EXPERIMENT_NAME`` (HF's `MLflowCallback`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments


def dataset() -> list[dict[str, torch.Tensor]]:
    ids = torch.randint(0, 32, (64, 8), generator=torch.Generator().manual_seed(0))
    return [{"input_ids": row, "labels": row[0] % 2} for row in ids]


def main(out: str, callbacks: Sequence[Any] = ()) -> None:
    config = BertConfig(
        vocab_size=32,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=16,
    )
    args = TrainingArguments(
        output_dir=out,
        num_train_epochs=3,
        per_device_train_batch_size=8,
        use_cpu=True,
        ddp_backend="gloo" if "WORLD_SIZE" in os.environ else None,  # under torchrun
        report_to=["mlflow"],
        logging_strategy="epoch",
        save_strategy="no",
        disable_tqdm=True,
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False,
    )
    trainer = Trainer(
        model=BertForSequenceClassification(config),
        args=args,
        train_dataset=dataset(),
        callbacks=list(callbacks),
    )
    trainer.train()


if __name__ == "__main__":
    main(sys.argv[1])

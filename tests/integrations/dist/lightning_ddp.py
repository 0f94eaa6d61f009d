"""Lightning ``strategy="ddp"`` on 2 CPU processes (gloo), 3 epochs, `MLFlowLogger`.

    python tests/integrations/dist/lightning_ddp.py OUT_DIR

Run by ``tests/integrations/test_ddp.py`` with ``MASTER_ADDR``, ``MASTER_PORT``,
``MLFLOW_TRACKING_URI`` and ``CARBON_TEST_EXPERIMENT`` set. Lightning's launcher re-executes
this file for rank 1. Every rank writes ``OUT_DIR/rank<k>.json``; the journal goes to
``OUT_DIR/journal``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from common import CALLBACK_KWARGS, STEP_S, write_report
from lightning.pytorch.loggers import MLFlowLogger
from torch.utils.data import DataLoader, TensorDataset

from carbon_callbacks.integrations.lightning import CarbonCallback


class TinyModel(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        time.sleep(STEP_S)
        x, y = batch
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def train_dataloader(self) -> DataLoader[Any]:
        x = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
        return DataLoader(TensorDataset(x, x.sum(dim=1, keepdim=True)), batch_size=8)


def main(out: Path) -> None:
    callback = CarbonCallback(output_dir=out / "journal", **CALLBACK_KWARGS)
    logger = MLFlowLogger(
        experiment_name=os.environ["CARBON_TEST_EXPERIMENT"],
        tracking_uri=os.environ["MLFLOW_TRACKING_URI"],
    )
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        max_epochs=3,
        logger=logger,
        callbacks=[callback],
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=out / "root",
        log_every_n_steps=1,
    )
    trainer.fit(TinyModel())
    run_id = logger.run_id if trainer.is_global_zero else None
    write_report(out, trainer.global_rank, callback, run_id=run_id)


if __name__ == "__main__":
    main(Path(sys.argv[1]))

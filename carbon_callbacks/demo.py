"""``carbon-callbacks demo``: a tiny training with the callback, into a local MLflow store.

Trains a small model on synthetic data for a few epochs with `CarbonCallback`, logging to
MLflow (default ``sqlite:///carbon-demo.db`` in the current folder, the run's artifacts in
MLflow's default ``./mlruns``), prints the summary and the ``mlflow ui`` command that shows
the run. Frameworks are imported inside the functions, so
``carbon-callbacks --help`` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

DEFAULT_TRACKING_URI = "sqlite:///carbon-demo.db"
EXPERIMENT = "carbon-demo"
FRAMEWORKS = ("lightning", "transformers", "keras")
_SAMPLES = 4096
_FEATURES = 32


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="carbon-callbacks demo",
        description="Train a tiny model with CarbonCallback and log energy and CO2 to MLflow.",
    )
    parser.add_argument("--framework", choices=FRAMEWORKS, default="lightning")
    parser.add_argument("--epochs", type=int, default=3, help="training epochs (default 3)")
    parser.add_argument(
        "--tracking-uri",
        default=DEFAULT_TRACKING_URI,
        help=f"MLflow tracking URI (default {DEFAULT_TRACKING_URI}, in the current folder)",
    )
    parser.add_argument(
        "--country", default=None, help="where the machine is, e.g. FR (sets the intensity)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the demo; return the process exit status."""
    args = _parser().parse_args(argv)
    if args.epochs < 1:
        print("carbon-callbacks demo: --epochs must be >= 1", file=sys.stderr)
        return 2
    # The demo is offline: the tracking client and the hub must not phone home either.
    for name, value in (("MLFLOW_DISABLE_TELEMETRY", "true"), ("HF_HUB_DISABLE_TELEMETRY", "1")):
        os.environ.setdefault(name, value)
    tracker_kwargs: dict[str, Any] = {}
    if args.country:
        tracker_kwargs["country"] = args.country
    try:
        train = {"lightning": _lightning, "transformers": _transformers, "keras": _keras}
        run_id = train[args.framework](args.tracking_uri, args.epochs, tracker_kwargs)
    except ImportError as exc:
        print(f"carbon-callbacks demo: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # a bad --country and the like
        print(f"carbon-callbacks demo: {exc}", file=sys.stderr)
        return 2
    print()
    print(f"MLflow run {run_id} (experiment {EXPERIMENT!r}) in {args.tracking_uri}")
    if args.tracking_uri.startswith(("sqlite:", "file:")) or "://" not in args.tracking_uri:
        print("See the carbon/* metrics per epoch and the carbon.* tags with:")
        print(f"  mlflow ui --backend-store-uri {args.tracking_uri}")
        print(
            "then open http://127.0.0.1:5000 and the run above (Model metrics tab; the "
            "Artifacts tab has carbon/summary.json and the chart)."
        )
    else:
        print(f"See it at {args.tracking_uri.rstrip('/')}")
    return 0


def _data() -> tuple[Any, Any]:
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(_SAMPLES, _FEATURES)).astype("float32")
    y = (x @ rng.normal(size=(_FEATURES, 1)) + 0.1 * rng.normal(size=(_SAMPLES, 1))).astype(
        "float32"
    )
    return x, y


@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _callback(framework: str) -> Any:
    # Imported by name: mypy checks the core alone, where `integrations/` is not mapped.
    return importlib.import_module(f"carbon_callbacks.integrations.{framework}").CarbonCallback


def _run_id(callback: Any) -> str:
    for sink in callback.session.sinks:
        run_id = getattr(sink, "run_id", None)
        if run_id:
            return str(run_id)
    return "(none: see the log above)"


def _lightning(uri: str, epochs: int, tracker_kwargs: dict[str, Any]) -> str:
    import warnings

    # torch 2.13 deprecates a class Lightning 2.6 still uses; not the user's concern here.
    warnings.filterwarnings("ignore", r"`isinstance\(treespec, LeafSpec\)`", FutureWarning)
    import lightning.pytorch as pl
    import torch
    from lightning.pytorch.loggers import MLFlowLogger
    from torch.utils.data import DataLoader, TensorDataset

    CarbonCallback = _callback("lightning")

    class Regressor(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(
                torch.nn.Linear(_FEATURES, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1)
            )

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.net(x), y)
            self.log("train_loss", loss, on_step=False, on_epoch=True)
            return loss

        def configure_optimizers(self) -> Any:
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    x, y = _data()
    loader = DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=64)
    logger = MLFlowLogger(experiment_name=EXPERIMENT, tracking_uri=uri, run_name="lightning")
    callback = CarbonCallback(**tracker_kwargs)
    with tempfile.TemporaryDirectory() as root:
        trainer = pl.Trainer(
            max_epochs=epochs,
            accelerator="cpu",
            devices=1,
            logger=logger,
            callbacks=[callback],
            enable_progress_bar=False,
            enable_model_summary=False,
            enable_checkpointing=False,
            default_root_dir=root,
        )
        trainer.fit(Regressor(), loader)
    return _run_id(callback)


def _transformers(uri: str, epochs: int, tracker_kwargs: dict[str, Any]) -> str:
    # mlflow before transformers: Transformers imports comet_ml when it is installed, and
    # comet_ml then hooks a later `import mlflow` to mirror every MLflow run into Comet.
    import mlflow  # noqa: F401
    import torch
    from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

    CarbonCallback = _callback("transformers")

    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 100, (256, 16), generator=gen)
    labels = (ids[:, 0] % 2).long()
    dataset = [{"input_ids": i, "labels": label} for i, label in zip(ids, labels, strict=True)]
    sizes: dict[str, Any] = {"hidden_size": 32, "intermediate_size": 64, "num_labels": 2}
    config = BertConfig(
        vocab_size=100,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=32,
        **sizes,
    )
    callback = CarbonCallback(**tracker_kwargs)
    with (
        tempfile.TemporaryDirectory() as root,
        _env(MLFLOW_TRACKING_URI=uri, MLFLOW_EXPERIMENT_NAME=EXPERIMENT),
    ):
        args = TrainingArguments(
            output_dir=root,
            run_name="transformers",
            num_train_epochs=epochs,
            per_device_train_batch_size=32,
            report_to=["mlflow"],
            save_strategy="no",
            logging_strategy="epoch",
            use_cpu=True,
            disable_tqdm=True,
        )
        trainer = Trainer(
            model=BertForSequenceClassification(config),
            args=args,
            train_dataset=dataset,
            callbacks=[callback],
        )
        trainer.train()
    return _run_id(callback)


def _keras(uri: str, epochs: int, tracker_kwargs: dict[str, Any]) -> str:
    os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is imported
    import mlflow

    keras = importlib.import_module("keras")
    CarbonCallback = _callback("keras")

    x, y = _data()
    model = keras.Sequential(
        [
            keras.Input((_FEATURES,)),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(1),
        ]
    )
    model.compile(optimizer="adam", loss="mse")
    callback = CarbonCallback(**tracker_kwargs)
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(EXPERIMENT)
    with mlflow.start_run(run_name="keras") as run:
        model.fit(x, y, epochs=epochs, batch_size=64, verbose=2, callbacks=[callback])
    return str(run.info.run_id)

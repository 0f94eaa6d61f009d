"""An ordinary Keras 3 script: a `Dense` model, 3 epochs inside ``mlflow.start_run()``.
Nothing about carbon.

    KERAS_BACKEND=torch python train_keras.py

Reads ``MLFLOW_TRACKING_URI`` and ``MLFLOW_EXPERIMENT_NAME``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import keras
import mlflow
import numpy as np


def main(callbacks: Sequence[Any] = ()) -> None:
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    mlflow.set_experiment(os.environ["MLFLOW_EXPERIMENT_NAME"])
    with mlflow.start_run():
        model.fit(
            x, x.sum(axis=1, keepdims=True), epochs=3, batch_size=16, verbose=0,
            callbacks=list(callbacks),
        )  # fmt: skip


if __name__ == "__main__":
    main()

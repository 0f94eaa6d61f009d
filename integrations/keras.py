"""Keras 3 (any backend): `CarbonCallback` for ``model.fit``.

Keras 3 installs without a backend (its wheel requires none of tensorflow, jax, torch) and
imports the one named by ``KERAS_BACKEND`` or ``~/.keras/keras.json``, ``tensorflow`` by
default; so ``pip install 'carbon-callbacks[keras]'`` alone cannot train. When Keras or its
backend cannot be imported, this module's ImportError says what to install and to set
``KERAS_BACKEND=torch``.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from carbon_callbacks.integrations import (
    SessionCallback,
    active_sinks,
    find_sinks_safely,
    install_hint,
    report_found,
)

BACKENDS = ("torch", "jax", "tensorflow")  # Keras 3's training backends (openvino: inference)


def backend_hint(exc: BaseException) -> str:
    """The ImportError message when ``import keras`` failed with `exc`."""
    chosen = os.environ.get("KERAS_BACKEND")
    failed = {chosen, getattr(exc, "name", None)}
    installed = [b for b in BACKENDS if b not in failed and importlib.util.find_spec(b)]
    where = (
        f"KERAS_BACKEND={chosen}"
        if chosen
        else "KERAS_BACKEND is not set, so Keras takes the backend of keras.json in $KERAS_HOME "
        "or ~/.keras, tensorflow by default"
    )
    if installed:
        fix = f"{installed[0]} is installed here: set KERAS_BACKEND={installed[0]}"
    else:
        fix = "no backend is installed: pip install torch, and set KERAS_BACKEND=torch"
    if getattr(exc, "name", None) == "keras":
        return (
            f"{install_hint('keras', 'Keras 3')}. Keras needs a backend as well "
            "(torch, jax or tensorflow): pip install torch, and set KERAS_BACKEND=torch"
        )
    return (
        f"carbon_callbacks.integrations.keras needs Keras 3 with a backend, and Keras could not "
        f"load one ({where}): {exc}. 'carbon-callbacks[keras]' installs Keras without a "
        f"backend; {fix} before Keras is imported"
    )


try:
    import keras
except (ImportError, ValueError) as exc:  # ValueError: Keras' "Unable to import backend"
    raise ImportError(backend_hint(exc)) from exc

if TYPE_CHECKING:
    from carbon_callbacks.delivery import Sink

__all__ = ["CarbonCallback", "LOG_KEYS"]

# Added to `logs` at each epoch end, so `History` and `CSVLogger` record them.
LOG_KEYS = ("carbon/epoch_energy_kwh", "carbon/epoch_emissions_kg")


class CarbonCallback(SessionCallback, keras.callbacks.Callback):  # type: ignore[misc]
    """Measure each epoch's energy and CO2; log it to the active MLflow run and to `History`.

    The tracker starts at ``on_train_begin``, takes a lap at each ``on_epoch_end`` (after
    validation; step = the 0-based epoch) and stops at ``on_train_end``. It adds
    ``carbon/epoch_energy_kwh`` and ``carbon/epoch_emissions_kg`` to the epoch's ``logs``:
    list this callback before a `CSVLogger` for the CSV to have them. Only epoch-level hooks
    are used, so Keras keeps dispatching batch callbacks asynchronously. Under
    ``mlflow.keras.autolog()``, which logs each epoch's ``logs`` to the active run, the MLflow
    sink of that run leaves those two keys to it, so each value reaches the run once.

    Args:
        tracker: a ready `carbon_callbacks.Tracker`; or pass its keyword arguments instead.
        sinks: ``"auto"`` (default): the run of ``mlflow.start_run()`` and/or the Comet
            experiment (``comet_ml.get_running_experiment()``) active when training begins;
            a list of sinks; or None for the journal and summary only.
        summary: print the end-of-training summary (it is logged at INFO anyway).
        artifacts: when training ends, store ``carbon/summary.json`` and the per-epoch chart
            ``carbon/energy_per_epoch.png`` in the run (MLflow artifacts, Comet assets).
        **tracker_kwargs: `Tracker` arguments: ``country="FR"``, ``pue=1.2``, ...

    Raises:
        ValueError: a bad Tracker argument, `sinks` value, or both `tracker` and kwargs.

    Example:
        >>> with mlflow.start_run():
        ...     history = model.fit(x, y, epochs=3, callbacks=[CarbonCallback(country="FR")])
        >>> history.history["carbon/epoch_energy_kwh"]
    """

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        sinks = None
        if self._auto:
            sinks = find_sinks_safely(self.tracker, _find_sinks)
            report_found("keras", sinks)
        _leave_log_keys_to_autolog(self.session.sinks if sinks is None else sinks)
        epochs = (self.params or {}).get("epochs")
        self.session.begin(sinks=sinks, total_epochs=epochs if isinstance(epochs, int) else None)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        lap = self.session.epoch_end(int(epoch))
        if lap is not None and logs is not None:
            logs[LOG_KEYS[0]] = lap.energy_kwh
            logs[LOG_KEYS[1]] = lap.emissions_kg

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self.session.end()


def _find_sinks() -> list[Sink]:
    return active_sinks()  # the active MLflow run and/or the running Comet experiment


def _leave_log_keys_to_autolog(sinks: Sequence[Sink]) -> None:
    """Under ``mlflow.keras.autolog()`` (or ``mlflow.autolog()``), whose callback logs each
    epoch's ``logs`` to the active run after ours has added `LOG_KEYS` to them, the MLflow
    sinks of that run skip those keys: each value reaches the run once (they stay in the
    journal)."""
    mlflow = sys.modules.get("mlflow")
    run = mlflow.active_run() if mlflow is not None else None
    if run is None or not _autolog_logs_epochs():
        return
    for sink in sinks:
        skip = getattr(sink, "skip_metrics", None)
        if getattr(sink, "run_id", None) == run.info.run_id and isinstance(skip, frozenset):
            sink.skip_metrics = skip | frozenset(LOG_KEYS)  # type: ignore[attr-defined]


def _autolog_logs_epochs() -> bool:
    """True when MLflow's Keras autologging is on and logs the ``logs`` of every epoch."""
    try:
        from mlflow.utils.autologging_utils import (
            autologging_is_disabled,
            get_autologging_config,
        )
    except ImportError:  # another MLflow layout: assume it is off
        return False
    if autologging_is_disabled("keras"):
        return False
    return bool(get_autologging_config("keras", "log_every_epoch", True))

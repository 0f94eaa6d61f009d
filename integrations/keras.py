"""Keras 3 (any backend): `CarbonCallback` for ``model.fit``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from carbon_callbacks.integrations import (
    SessionCallback,
    active_sinks,
    find_sinks_safely,
    install_hint,
    report_found,
)

try:
    import keras
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(install_hint("keras", "Keras 3")) from exc

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
    are used, so Keras keeps dispatching batch callbacks asynchronously.

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

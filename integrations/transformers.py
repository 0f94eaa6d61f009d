"""Hugging Face Transformers: `CarbonCallback` for the `Trainer`."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from carbon_callbacks.distributed import apply_roles, roles_from_transformers
from carbon_callbacks.integrations import (
    SessionCallback,
    active_sinks,
    find_sinks_safely,
    install_hint,
    report_found,
)

try:
    from transformers import TrainerCallback
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(install_hint("transformers", "Hugging Face Transformers")) from exc

if TYPE_CHECKING:
    from carbon_callbacks.delivery import Sink

__all__ = ["CarbonCallback"]


class CarbonCallback(SessionCallback, TrainerCallback):
    """Measure each training epoch's energy and CO2 and log it to the Trainer's MLflow run.

    The tracker starts at ``on_train_begin``, takes a lap at each ``on_epoch_end`` (step =
    the 0-based epoch, from ``state.epoch``) and stops at ``on_train_end``. Only the world
    process zero logs. With ``report_to=["mlflow"]``, the run that `MLflowCallback` opened is
    captured when training begins (reporting callbacks run first), and logged to through
    `MlflowClient` by id: `MLflowCallback` ends that run before this callback's
    ``on_train_end``, so the final totals could not go through ``mlflow.active_run()``.

    Args:
        tracker: a ready `carbon_callbacks.Tracker`; or pass its keyword arguments instead.
        sinks: ``"auto"`` (default): the MLflow run active when training begins (the one
            ``report_to=["mlflow"]`` opened, or the user's own) and/or the running Comet
            experiment (``report_to=["comet_ml"]``); a list of sinks; or None.
        summary: print the end-of-training summary (it is logged at INFO anyway).
        **tracker_kwargs: `Tracker` arguments: ``country="FR"``, ``pue=1.2``, ...

    Raises:
        ValueError: a bad Tracker argument, `sinks` value, or both `tracker` and kwargs.

    Example:
        >>> args = TrainingArguments("out", num_train_epochs=3, report_to=["mlflow"])
        >>> trainer = Trainer(model, args, train_dataset=ds,
        ...                   callbacks=[CarbonCallback(country="FR")])
    """

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # One process driving several GPUs (DataParallel) uses all it sees: keep them.
        device = None if int(getattr(args, "n_gpu", 1) or 1) > 1 else args.device
        apply_roles(self.tracker, roles_from_transformers(args), device=device)
        zero = bool(state.is_world_process_zero)
        self.session.is_logging_rank = zero
        sinks = None
        if self._auto and zero:
            sinks = find_sinks_safely(self.tracker, _find_sinks)
            report_found("transformers", sinks)
        epochs = getattr(state, "num_train_epochs", None)
        # carbon.nodes, carbon.world_size: the tracker's
        self.session.begin(sinks=sinks, total_epochs=int(epochs) if epochs else None)

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.session.epoch_end(epoch_index(state.epoch))

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.session.end()


def epoch_index(epoch: float | None) -> int:
    """0-based index of the epoch that just ended, from HF's fractional ``state.epoch``.

    ``state.epoch`` is 1.0 at the end of the first epoch (maybe 0.9999999 or 1.0000001 after
    float sums, or 2.5 when ``max_steps`` ends an epoch early: index 2).
    """
    if epoch is None:
        return 0
    return max(0, math.ceil(float(epoch) - 1e-6) - 1)


def _find_sinks() -> list[Sink]:
    return active_sinks()  # the active MLflow run and/or the running Comet experiment

"""Hugging Face Transformers: `CarbonCallback` for the `Trainer`."""

from __future__ import annotations

import math
import os
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
    from transformers.trainer_callback import ExportableState
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(install_hint("transformers", "Hugging Face Transformers")) from exc

if TYPE_CHECKING:
    from carbon_callbacks.delivery import Sink

__all__ = ["CarbonCallback"]


class CarbonCallback(SessionCallback, TrainerCallback, ExportableState):
    """Measure each training epoch's energy and CO2 and log it to the Trainer's MLflow run.

    The tracker starts at ``on_train_begin`` and stops at ``on_train_end``. An epoch's lap
    (step = the 0-based epoch, from ``state.epoch``) ends after the epoch's evaluation: HF
    calls ``on_epoch_end`` *before* evaluating (``eval_strategy="epoch"``), so when an
    evaluation follows, the lap is taken at ``on_evaluate``. With
    ``eval_strategy="steps"``, a lap holds the evaluations that ran during the epoch's
    steps, including one at its last step. Only the world process zero logs. With
    ``report_to=["mlflow"]``, the run that `MLflowCallback` opened is captured when training
    begins (reporting callbacks run first), and logged to through `MlflowClient` by id:
    `MLflowCallback` ends that run before this callback's ``on_train_end``, so the final
    totals could not go through ``mlflow.active_run()``.

    The totals are kept in HF checkpoints (``trainer_state.json``, as a stateful callback),
    so ``trainer.train(resume_from_checkpoint=...)`` continues them.

    Args:
        tracker: a ready `carbon_callbacks.Tracker`; or pass its keyword arguments instead.
        sinks: ``"auto"`` (default): the MLflow run active when training begins (the one
            ``report_to=["mlflow"]`` opened, or the user's own), the running Comet
            experiment (``report_to=["comet_ml"]``, or one you started; not one that Comet's
            MLflow auto-logger made unless ``report_to`` names ``comet_ml``) and the active
            W&B run (``report_to=["wandb"]``, or the user's ``wandb.init()``), any of them;
            with ``report_to`` naming ``tensorboard``, a TensorBoard run ``<HF's run>/carbon``
            next to HF's (see `carbon_callbacks.integrations.tensorboard`); a list of
            sinks; or None.
        summary: print the end-of-training summary (it is logged at INFO anyway).
        artifacts: when training ends, store ``carbon/summary.json`` and the per-epoch chart
            ``carbon/energy_per_epoch.png`` in the run (MLflow artifacts, Comet assets).
        **tracker_kwargs: `Tracker` arguments: ``country="FR"``, ``pue=1.2``, ...

    Raises:
        ValueError: a bad Tracker argument, `sinks` value, or both `tracker` and kwargs.

    Example:
        >>> args = TrainingArguments("out", num_train_epochs=3, report_to=["mlflow"])
        >>> trainer = Trainer(model, args, train_dataset=ds,
        ...                   callbacks=[CarbonCallback(country="FR")])
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # HF rebuilds a stateful callback from these when restore_callback_states_from_
        # checkpoint is set: only the JSON-safe ones can be kept.
        self._args = {k: v for k, v in kwargs.items() if _json_safe(v)}
        self._pending: int | None = None  # an epoch that ended, its evaluation to come

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # One process driving several GPUs (DataParallel) uses all it sees: keep them.
        device = None if int(getattr(args, "n_gpu", 1) or 1) > 1 else args.device
        apply_roles(self.tracker, roles_from_transformers(args), device=device)
        zero = bool(state.is_world_process_zero)
        self.session.is_logging_rank = zero
        self._pending = None
        if state.global_step > 0:  # resumed from a checkpoint: continue its totals
            saved = _saved_state(state)
            if saved is not None:
                self.session.load_state_dict(saved)
        sinks = None
        if self._auto and zero:
            sinks = find_sinks_safely(self.tracker, lambda: _find_sinks(args))
            if "tensorboard" in _report_to(args):
                sinks += find_sinks_safely(self.tracker, lambda: [_tensorboard_sink(args)])
            report_found("transformers", sinks)
        epochs = getattr(state, "num_train_epochs", None)
        limit = "max_steps" if int(getattr(args, "max_steps", -1) or -1) > 0 else None
        # carbon.nodes, carbon.world_size: the tracker's
        self.session.begin(
            sinks=sinks,
            total_epochs=int(epochs) if epochs else None,
            plan=lambda epoch, mean_s: _plan(state, limit),
        )

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        epoch = epoch_index(state.epoch)
        if getattr(control, "should_evaluate", False):
            self._pending = epoch  # the evaluation that follows belongs to this epoch
        else:
            self.session.epoch_end(epoch)

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._end_pending()

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._end_pending()  # an evaluation was announced but did not run

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._end_pending()
        self.session.end()

    def _end_pending(self) -> None:
        if self._pending is not None:
            epoch, self._pending = self._pending, None
            self.session.epoch_end(epoch)

    # -- HF's ExportableState: the totals in trainer_state.json ----------------------------------

    def state(self) -> dict[str, Any]:
        """The totals as of this checkpoint (HF calls this on the process that saves)."""
        saved = self.session.state_dict()
        if self._pending is not None:  # the checkpoint's totals include that epoch now
            saved["next_step"] = max(saved["next_step"], self._pending + 1)
        return {"args": dict(self._args), "attributes": {"carbon_state": saved}}

    @property
    def carbon_state(self) -> dict[str, Any]:
        return self.session.state_dict()

    @carbon_state.setter
    def carbon_state(self, value: dict[str, Any]) -> None:
        # HF's restore_callback_states_from_checkpoint sets the saved attributes.
        self.session.load_state_dict(value)


def _saved_state(state: Any) -> dict[str, Any] | None:
    """This callback's state in a restored ``TrainerState`` (the first, if several)."""
    saved = (getattr(state, "stateful_callbacks", None) or {}).get(CarbonCallback.__name__)
    if isinstance(saved, list):
        saved = saved[0] if saved else None
    if not isinstance(saved, dict):
        return None
    carbon = saved.get("attributes", {}).get("carbon_state")
    return carbon if isinstance(carbon, dict) else None


def _plan(state: Any, limit: str | None) -> tuple[float, str] | None:
    """The epochs the run will have: HF's planned optimizer steps over the steps per epoch
    (``state.global_step / state.epoch``), fractional when ``max_steps`` (or a fractional
    ``num_train_epochs``) ends training inside an epoch."""
    max_steps, steps, epoch = state.max_steps, state.global_step, state.epoch
    if not (max_steps and steps and epoch):
        return None
    return max_steps * float(epoch) / steps, limit or "num_train_epochs"


def _json_safe(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def epoch_index(epoch: float | None) -> int:
    """0-based index of the epoch that just ended, from HF's fractional ``state.epoch``.

    ``state.epoch`` is 1.0 at the end of the first epoch (maybe 0.9999999 or 1.0000001 after
    float sums, or 2.5 when ``max_steps`` ends an epoch early: index 2).
    """
    if epoch is None:
        return 0
    return max(0, math.ceil(float(epoch) - 1e-6) - 1)


def _report_to(args: Any) -> list[str]:
    report_to = getattr(args, "report_to", None) or []
    return [report_to] if isinstance(report_to, str) else list(report_to)


def _find_sinks(args: Any) -> list[Sink]:
    """The active MLflow run, Comet experiment and W&B run (one Comet's MLflow auto-logger
    made only when ``report_to`` names ``comet_ml``)."""
    found: list[Sink] = active_sinks(comet_requested="comet_ml" in _report_to(args))
    return found


def _tensorboard_sink(args: Any) -> Sink:
    from carbon_callbacks.integrations.tensorboard import TensorBoardSink, hf_tensorboard_dir

    return TensorBoardSink(hf_tensorboard_dir(args.output_dir, os.environ))

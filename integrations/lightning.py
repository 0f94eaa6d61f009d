"""Lightning: `CarbonCallback` logs per-epoch energy and CO2 next to the loss.

Works with ``lightning.pytorch`` and with the older ``pytorch_lightning`` package (a Lightning
callback is accepted by both trainers).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from carbon_callbacks.distributed import apply_roles, roles_from_lightning
from carbon_callbacks.integrations import (
    SessionCallback,
    active_sinks,
    active_wandb_sink,
    comet_sink,
    find_sinks_safely,
    install_hint,
    mlflow_sink,
    report_found,
    wandb_sink,
)
from carbon_callbacks.integrations.loggers import LoggerSink

try:
    from lightning.pytorch.callbacks import Callback
except ImportError:  # pragma: no cover - depends on the environment
    try:
        from pytorch_lightning.callbacks import Callback  # type: ignore[assignment]
    except ImportError as exc:
        raise ImportError(install_hint("lightning", "Lightning")) from exc

if TYPE_CHECKING:
    from carbon_callbacks.delivery import Sink

__all__ = ["CarbonCallback"]


class CarbonCallback(SessionCallback, Callback):
    """Measure each training epoch's energy and CO2 and log it to the trainer's MLflow run.

    The tracker starts when training starts (after the sanity check), takes a lap at each
    training epoch end (validation included), and stops when training ends, on global rank 0
    logging ``carbon/*`` metrics with ``step`` = the 0-based epoch and ``carbon.*`` tags. The
    totals are saved in checkpoints: resuming continues them. If training raises, the partial
    epoch is logged before the error propagates.

    Args:
        tracker: a ready `carbon_callbacks.Tracker`; or pass its keyword arguments instead.
        sinks: ``"auto"`` (default): log to the run of an `MLFlowLogger`, the experiment of
            a `CometLogger` and the run of a `WandbLogger` in ``trainer.loggers``, and
            through ``log_metrics`` / ``log_hyperparams`` to every other logger
            (`CSVLogger`, `TensorBoardLogger`...); without an MLflow or Comet logger, to the
            MLflow run active when training starts (``mlflow.start_run()``,
            ``mlflow.pytorch.autolog()``) and the Comet experiment you started, and to an
            active ``wandb.run``; a list of sinks; or None for the journal and summary only.
        summary: print the end-of-training summary (it is logged at INFO anyway).
        artifacts: when training ends, store ``carbon/summary.json`` and the per-epoch chart
            ``carbon/energy_per_epoch.png`` in the run (MLflow artifacts, Comet assets).
        **tracker_kwargs: `Tracker` arguments: ``country="FR"``, ``pue=1.2``,
            ``cpu_power_w=50`` (W), ``output_dir=...``, ...

    Raises:
        ValueError: a bad Tracker argument, `sinks` value, or both `tracker` and kwargs.

    Example:
        >>> from lightning.pytorch.loggers import MLFlowLogger
        >>> trainer = Trainer(
        ...     max_epochs=3,
        ...     logger=MLFlowLogger(tracking_uri="sqlite:///mlflow.db"),
        ...     callbacks=[CarbonCallback(country="FR")],
        ... )
    """

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        # The roles and the process group exist only now (the callback may have been built
        # in the launching process, before the ranks).
        device = getattr(trainer.strategy, "root_device", None)
        apply_roles(self.tracker, roles_from_lightning(trainer), device=device)
        self.session.is_logging_rank = bool(trainer.is_global_zero)
        sinks = None
        if self._auto and trainer.is_global_zero:
            sinks = find_sinks_safely(self.tracker, lambda: _find_sinks(trainer))
            report_found("lightning", sinks)
        max_epochs = trainer.max_epochs if isinstance(trainer.max_epochs, int) else None
        # carbon.nodes, carbon.world_size: the tracker's
        self.session.begin(
            sinks=sinks,
            total_epochs=max_epochs,
            plan=lambda epoch, mean_s: _plan(trainer, epoch, mean_s),
        )

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self.session.epoch_end(int(trainer.current_epoch))

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self.session.end()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self.session.fail(exception, epoch=int(trainer.current_epoch))

    def state_dict(self) -> dict[str, Any]:
        # Lightning asks every rank for its callbacks' state when it saves a checkpoint, so
        # the energy since the last epoch end can be summed over ranks here.
        return self.session.state_dict(collective=True)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.session.load_state_dict(state_dict)


# The per-batch hooks, unused here. Lightning calls a callback's hook only when it is callable
# (`lightning.pytorch.trainer.call._call_callback_hooks`, as for module hooks), so with these
# None no training step goes through Lightning's dispatch for this callback (a profiler context
# and a no-op call per hook: about 2.5 us each, six per step: 0.7 % of the 2 ms steps of the
# callback benchmark's model).
for _hook in (
    "on_train_batch_start", "on_train_batch_end", "on_before_backward", "on_after_backward",
    "on_before_optimizer_step", "on_before_zero_grad",
    "on_validation_batch_start", "on_validation_batch_end",
    "on_test_batch_start", "on_test_batch_end", "on_predict_batch_start", "on_predict_batch_end",
):  # fmt: skip
    setattr(CarbonCallback, _hook, None)
del _hook


_LOGGERS = ("lightning.pytorch.loggers", "pytorch_lightning.loggers")


def _plan(trainer: Any, epoch: int, mean_epoch_s: float) -> tuple[float, str] | None:
    """The epochs the run will have when it ends, and the limit that ends it first:
    ``max_epochs``, ``max_steps`` (optimizer steps, in epochs: may be fractional) or
    ``max_time`` (the time Lightning's `Timer` has left, at the mean epoch measured)."""
    plans: list[tuple[float, str]] = []
    max_epochs = trainer.max_epochs
    if isinstance(max_epochs, int) and max_epochs > 0:
        plans.append((float(max_epochs), "max_epochs"))
    max_steps = trainer.max_steps
    batches = trainer.num_training_batches
    if isinstance(max_steps, int) and max_steps > 0 and 0 < batches < math.inf:
        steps_per_epoch = math.ceil(batches / max(1, int(trainer.accumulate_grad_batches)))
        plans.append((max_steps / steps_per_epoch, "max_steps"))
    timers = _types("lightning.pytorch.callbacks", "pytorch_lightning.callbacks", "Timer")
    for callback in trainer.callbacks:
        if timers and isinstance(callback, timers):
            left_s = callback.time_remaining("train")
            if left_s is not None and mean_epoch_s > 0:
                plans.append((epoch + 1 + left_s / mean_epoch_s, "max_time"))
    return min(plans) if plans else None


def _types(module_a: str, module_b: str, name: str) -> tuple[type, ...]:
    """Lightning's class `name` from whichever of the two Lightning packages is imported."""
    import sys

    types = []
    for module_name in (module_a, module_b):
        module = sys.modules.get(module_name)
        found = getattr(module, name, None)
        if isinstance(found, type):
            types.append(found)
    return tuple(types)


def _find_sinks(trainer: Any) -> list[Sink]:
    """One sink per logger: an `MlflowSink` for an `MLFlowLogger` (the run it logs to), a
    `CometSink` for a `CometLogger` (its experiment), a `WandbSink` for a `WandbLogger` (its
    run), a `LoggerSink` for any other; then, for a kind with no logger, the active MLflow run
    or the Comet experiment you started, and an active ``wandb.run`` that no `WandbLogger`
    logs to. Each run gets each value once."""
    mlflow_types = _types(*_LOGGERS, "MLFlowLogger")
    comet_types = _types(*_LOGGERS, "CometLogger")
    wandb_types = _types(*_LOGGERS, "WandbLogger")
    tensorboard_types = _types(*_LOGGERS, "TensorBoardLogger")
    sinks: list[Sink] = []
    kinds: set[str] = set()
    wandb_runs: set[str] = set()
    for logger in getattr(trainer, "loggers", []):
        sink: Sink | None = None
        if mlflow_types and isinstance(logger, mlflow_types):
            sink, kind = _logger_sink(logger), "mlflow"
        elif comet_types and isinstance(logger, comet_types):
            sink, kind = comet_sink(logger.experiment), "comet"  # creates it if not yet
        elif wandb_types and isinstance(logger, wandb_types):
            found = wandb_sink(logger.experiment)  # starts the run if not yet
            wandb_runs.add(found.run_id)
            sink, kind = found, "wandb"
        else:  # TensorBoard's writer takes values from any thread; the others, not always
            threaded = bool(tensorboard_types) and isinstance(logger, tensorboard_types)
            sink, kind = LoggerSink(logger, background=threaded), "logger"
        if sink is not None:
            sinks.append(sink)
            kinds.add(kind)
    active: list[Sink] = active_sinks(
        mlflow="mlflow" not in kinds, comet="comet" not in kinds, wandb=False
    )
    wandb_active = active_wandb_sink()
    if wandb_active is not None and wandb_active.run_id not in wandb_runs:
        active.append(wandb_active)
    return sinks + active


def _logger_sink(logger: Any) -> Sink | None:
    run_id = logger.run_id  # creates the run if the logger has not yet
    if not run_id:
        return None
    return mlflow_sink(run_id, logger.experiment.tracking_uri)

"""Lightning: `CarbonCallback` logs per-epoch energy and CO2 next to the loss.

Works with ``lightning.pytorch`` and with the older ``pytorch_lightning`` package (a Lightning
callback is accepted by both trainers).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from carbon_callbacks.distributed import apply_roles, roles_from_lightning
from carbon_callbacks.integrations import (
    SessionCallback,
    comet_sink,
    find_sinks_safely,
    install_hint,
    mlflow_sink,
    report_found,
)

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
        sinks: ``"auto"`` (default): log to the run of an `MLFlowLogger` and the experiment
            of a `CometLogger` in ``trainer.loggers``; a list of sinks; or None for the
            journal and summary only.
        summary: print the end-of-training summary (it is logged at INFO anyway).
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
        self.session.begin(sinks=sinks, total_epochs=max_epochs)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self.session.epoch_end(int(trainer.current_epoch))

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self.session.end()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self.session.fail(exception, epoch=int(trainer.current_epoch))

    def state_dict(self) -> dict[str, Any]:
        return self.session.state_dict()

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


def _logger_types(name: str) -> tuple[type, ...]:
    """Lightning's logger class `name` from whichever Lightning package is imported."""
    import sys

    types = []
    for module_name in ("lightning.pytorch.loggers", "pytorch_lightning.loggers"):
        module = sys.modules.get(module_name)
        logger_type = getattr(module, name, None)
        if isinstance(logger_type, type):
            types.append(logger_type)
    return tuple(types)


def _find_sinks(trainer: Any) -> list[Sink]:
    """One sink per `MLFlowLogger` (the run it logs to) and `CometLogger` (its experiment)."""
    mlflow_types = _logger_types("MLFlowLogger")
    comet_types = _logger_types("CometLogger")
    sinks: list[Sink] = []
    for logger in getattr(trainer, "loggers", []):
        sink: Sink | None = None
        if mlflow_types and isinstance(logger, mlflow_types):
            sink = _logger_sink(logger)
        elif comet_types and isinstance(logger, comet_types):
            sink = comet_sink(logger.experiment)  # creates the experiment if not yet
        if sink is not None:
            sinks.append(sink)
    return sinks


def _logger_sink(logger: Any) -> Sink | None:
    run_id = logger.run_id  # creates the run if the logger has not yet
    if not run_id:
        return None
    return mlflow_sink(run_id, logger.experiment.tracking_uri)

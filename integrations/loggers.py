"""`LoggerSink`: the ``carbon/*`` metrics and ``carbon.*`` tags into any Lightning logger.

For the loggers without a dedicated sink (`CSVLogger`, `TensorBoardLogger`, Neptune, a custom
one...): the per-epoch metrics go through ``logger.log_metrics(metrics, step=epoch)`` and the
tags through ``logger.log_hyperparams``, so ``metrics.csv``, ``hparams.yaml`` and TensorBoard
show them. `MLFlowLogger`, `CometLogger` and `WandbLogger` have dedicated sinks (background
delivery, journal, ``carbon-callbacks sync``) and are never given a `LoggerSink` too: each
value reaches each run once.

Where the calls run (global rank 0 only). Lightning's loggers are not thread-safe in general
(Lightning itself calls them on the training thread only), so by default a `LoggerSink`
calls the logger on the training thread, which suits a cheap one: `CSVLogger.log_metrics`
appends a dict to a list (written when Lightning saves the logger). `TensorBoardLogger` builds
a summary protocol buffer per value: four times the cost, so with ``background=True``, which
`lightning.CarbonCallback` uses for it, its metrics go through a queue and a thread of their
own (`BackgroundSink`); TensorBoard's event writer is safe to call from any thread (a queue
behind a lock). ``bench/bench_logger_sinks.py`` (an epoch's nine values, 20 ms apart; median
time on the training thread, two runs on a shared 2-core machine): `CSVLogger` 41-50 us,
`TensorBoardLogger` 180-189 us called there, 35-38 us through the worker. The tags stay on
the training thread (twice a run): ``log_hyperparams`` also updates the logger's ``hparams``
dict, which Lightning reads when it saves the logger.

Not journal-backed: a logger writes local files and cannot be reopened to resend, so nothing
is left for ``carbon-callbacks sync``; a logger that raises, or values still queued when the
end-of-training flush times out, are recorded once in the tracker's errors (and the
journal), and the values stay in the journal's laps.

This module imports no framework: a logger is anything with ``log_metrics`` and
``log_hyperparams``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from carbon_callbacks.delivery import BackgroundSink, Record
from carbon_callbacks.errors import ErrorLog

__all__ = ["LoggerSink"]


class LoggerSink:
    """Write to a Lightning logger: tags on the calling thread, metrics there too or, with
    `background`, from a thread of their own.

    Args:
        logger: a Lightning logger (``lightning.pytorch.loggers.Logger`` or any object with
            ``log_metrics(metrics, step)`` and ``log_hyperparams(params)``).
        background: call ``log_metrics`` from a worker thread (only for a logger whose
            ``log_metrics`` is safe to call from another thread, as `TensorBoardLogger`'s).

    Raises:
        TypeError: `logger` lacks those two methods.

    Example:
        >>> from lightning.pytorch.loggers import CSVLogger
        >>> callback = CarbonCallback(country="FR", sinks=[LoggerSink(CSVLogger("logs"))])
    """

    def __init__(self, logger: Any, *, background: bool = False) -> None:
        if not all(callable(getattr(logger, m, None)) for m in ("log_metrics", "log_hyperparams")):
            raise TypeError(
                f"{type(logger).__name__} is not a Lightning logger: "
                "it needs log_metrics and log_hyperparams"
            )
        self.logger = logger
        self._worker = _MetricsWorker(logger) if background else None

    def __repr__(self) -> str:
        thread = ", background" if self._worker is not None else ""
        return f"LoggerSink({type(self.logger).__name__}{thread})"

    def bind_errors(self, errors: ErrorLog) -> None:
        """Record the worker's failures in `errors` (the tracker's log)."""
        if self._worker is not None:
            self._worker.bind_errors(errors)

    def log_tags(self, tags: Mapping[str, str]) -> None:
        # TensorBoard writes one hparams session per call: merged with what the logger holds
        # already (the model's own hyperparameters), so that ours do not replace them.
        held = getattr(self.logger, "hparams", None)
        params = {**held, **tags} if isinstance(held, Mapping) else dict(tags)
        self.logger.log_hyperparams(params)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        if self._worker is not None:
            self._worker.log_metrics(metrics, step)
        else:
            self.logger.log_metrics(dict(metrics), step=step)

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait for the worker (if any). Lightning saves and closes its loggers itself when
        training ends (``finalize``), after this callback's last call."""
        return True if self._worker is None else self._worker.flush(timeout_s)

    def close(self) -> None:
        """Stop the worker (if any); the logger is Lightning's to close."""
        if self._worker is not None:
            self._worker.close()

    def describe_undelivered(self) -> str | None:
        return None if self._worker is None else self._worker.describe_undelivered()


class _MetricsWorker(BackgroundSink):
    """``logger.log_metrics`` from a worker thread, in order."""

    def __init__(self, logger: Any) -> None:
        super().__init__(type(logger).__name__, name=f"logger-{type(logger).__name__}")
        self.logger = logger

    def _send(self, records: Sequence[Record]) -> None:
        for record in records:
            self.logger.log_metrics(dict(record.data), step=record.step)

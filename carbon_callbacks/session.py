"""`CarbonSession`: what every framework callback does, free of any framework.

The callbacks are thin adapters: they call `begin()` when training starts, `epoch_end(epoch)`
when an epoch ends, `end()` when training ends (or `fail(exc)` when it raises), and keep
`state_dict()` in checkpoints. The session turns tracker laps into metrics with
`carbon_callbacks.outputs` (no arithmetic here), hands them to the sinks, and prints the
summary. Every sink call and every tracker call goes through one error boundary: a failure is
recorded once in ``tracker.errors`` and training carries on.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from carbon_callbacks.delivery import FLUSH_TIMEOUT_ENV, Sink, flush_timeout_s
from carbon_callbacks.equivalents import Equivalent, equivalents
from carbon_callbacks.measurement import Measurement
from carbon_callbacks.outputs import epoch_metrics, final_metrics, run_tags, summary
from carbon_callbacks.tracker import Tracker

logger = logging.getLogger(__name__)

T = TypeVar("T")


class CarbonSession:
    """One training run seen by a callback: tracker laps in, metrics and tags out to sinks.

    Args:
        tracker: the `Tracker` measuring the run (not started yet).
        sinks: where metrics and tags go (e.g. `MlflowSink`); may be replaced in `begin`.
        is_logging_rank: False on every process but global rank 0: it still measures, but
            writes no journal, logs nothing and prints no summary.
        summary: print the end-of-training summary (it is always logged at INFO).
        flush_timeout_s: how long `end()` waits for the sinks in total, in seconds; default
            ``$CARBON_CALLBACKS_FLUSH_TIMEOUT_S`` or 30 s.

    Example:
        >>> session = CarbonSession(Tracker(country="FR"), [MlflowSink(run_id)])
        >>> session.begin()
        >>> for epoch in range(3):
        ...     train_one_epoch()
        ...     session.epoch_end(epoch)
        >>> totals = session.end()
    """

    def __init__(
        self,
        tracker: Tracker,
        sinks: Iterable[Sink] = (),
        *,
        is_logging_rank: bool = True,
        summary: bool = True,
        flush_timeout_s: float | None = None,
    ) -> None:
        self.tracker = tracker
        self.sinks: list[Sink] = list(sinks)
        self.is_logging_rank = is_logging_rank
        self.print_summary = summary
        self.flush_timeout_s = flush_timeout_s
        self.summary_text: str | None = None
        self.totals: Measurement | None = None
        self.journal_path: Path | None = None
        self.undelivered: list[str] = []  # one sentence per sink that did not deliver everything
        self._next_step = 0  # the step of the end-of-training metrics: number of epochs
        self._active = False
        self._restored = False
        self._last_epoch: int | None = None

    @property
    def active(self) -> bool:
        """True between `begin()` and `end()`."""
        return self._active

    # -- the four moments of a run -------------------------------------------------------------

    def begin(
        self,
        extra_tags: Mapping[str, str] | None = None,
        sinks: Iterable[Sink] | None = None,
        *,
        nodes: int = 1,
        world_size: int = 1,
    ) -> None:
        """Start measuring and tag the run.

        Args:
            extra_tags: more string tags for the run (added to the ``carbon.*`` ones).
            sinks: when given, replace the session's sinks (found when training starts).
            nodes: machines in the run (the ``carbon.nodes`` tag).
            world_size: processes in the run.
        """
        if self._active:  # the previous run never ended (the framework raised): close it
            self.end()
        if not self._restored:
            self._next_step = 0
        self._last_epoch = self._next_step - 1 if self._next_step else None
        self._restored = False
        self.summary_text, self.totals, self.undelivered = None, None, []
        if sinks is not None:
            self.sinks = list(sinks)
        if not self.is_logging_rank:
            self.sinks = []
            self.tracker.output_dir = None  # global rank 0 alone writes the journal
        for sink in self.sinks:
            bind = getattr(sink, "bind_errors", None)
            if callable(bind):
                bind(self.tracker.errors)
        if not self._guard("tracker:start", self._start_tracker):
            return
        self._active = True
        self.journal_path = self.tracker.journal_path
        if self.sinks:
            tags = (
                self._guard(
                    "tags", lambda: run_tags(self.tracker, nodes=nodes, world_size=world_size)
                )
                or {}
            )
            tags.update(extra_tags or {})
            for sink in self.sinks:
                self._to_sink(sink, "log_tags", tags)

    def epoch_end(self, epoch: int) -> Measurement | None:
        """Take a lap and log it with ``step = epoch`` (0-based); None if nothing was measured."""
        if not self._active:
            return None
        lap = self._guard("tracker:lap", self.tracker.lap)
        self._next_step = max(self._next_step, epoch + 1)
        self._last_epoch = epoch
        totals = self.tracker.totals
        if lap is None or totals is None or not self.sinks:
            return lap
        metrics = self._guard("metrics", lambda: epoch_metrics(lap, totals))
        if metrics is not None:
            for sink in self.sinks:
                self._to_sink(sink, "log_metrics", metrics, epoch)
        return lap

    def end(self) -> Measurement | None:
        """Stop measuring, log the totals (step = number of epochs), summarize, flush sinks."""
        if not self._active:
            return self.totals
        self._active = False
        totals = self._guard("tracker:stop", self.tracker.stop)
        self.totals = totals
        eqs: dict[str, Equivalent] = {}
        if totals is not None:
            eqs = self._guard("equivalents", lambda: equivalents(totals)) or {}
        if totals is not None and self.sinks:
            final = self._guard("metrics", lambda: final_metrics(totals, eqs))
            if final is not None:
                for sink in self.sinks:
                    self._to_sink(sink, "log_metrics", final, self._next_step)
        self._close_sinks()
        if totals is not None and self.is_logging_rank:
            self._summarize(totals, eqs)
        return totals

    def fail(self, exc: BaseException, epoch: int | None = None) -> Measurement | None:
        """Training raised `exc`: log the partial epoch (if `epoch` is given), then `end()`.

        Never raises, so the framework's own error propagates unchanged. An `epoch` already
        logged (the error came after its end) is not logged twice: the time since goes into
        the totals only.
        """
        if not self._active:
            return self.totals
        logger.info(
            "carbon-callbacks: training stopped by %s; logging what was measured",
            type(exc).__name__,
        )
        if epoch is not None and (self._last_epoch is None or epoch > self._last_epoch):
            self.epoch_end(epoch)
        return self.end()

    # -- checkpoints -----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Totals and epoch count, to save in a checkpoint."""
        return {"tracker": self.tracker.state_dict(), "next_step": self._next_step}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from `state_dict()`: the totals carry on (applied at `begin` if not begun)."""
        tracker_state = state.get("tracker")
        if tracker_state is not None:
            self.tracker.load_state_dict(tracker_state)
        self._next_step = int(state.get("next_step", 0))
        self._restored = True

    # -- internals -------------------------------------------------------------------------------

    def _summarize(self, totals: Measurement, eqs: Mapping[str, Equivalent]) -> None:
        text = self._guard("summary", lambda: summary(totals, eqs))
        if text is None:
            return
        lines = [text]
        if self.journal_path is not None:
            lines.append(f"  Journal: {self.journal_path}")
        lines.extend(f"  Not delivered: {m}" for m in self.undelivered)
        self.summary_text = "\n".join(lines)
        logger.info("%s", self.summary_text)
        if self.print_summary:
            print(self.summary_text, flush=True)

    def _close_sinks(self) -> None:
        budget = flush_timeout_s() if self.flush_timeout_s is None else self.flush_timeout_s
        deadline = time.monotonic() + budget
        for sink in self.sinks:
            left = max(0.0, deadline - time.monotonic())
            done = self._to_sink(sink, "flush", left)
            if done is False:
                describe = getattr(sink, "describe_undelivered", None)
                detail = describe() if callable(describe) else None
                detail = detail or f"{type(sink).__name__} did not deliver everything"
                self.undelivered.append(detail)
                self.tracker.errors.record(
                    f"sink:{type(sink).__name__}:undelivered",
                    f"{detail} (end-of-training flush bounded to {budget:g} s by "
                    f"{FLUSH_TIMEOUT_ENV})",
                )
            self._to_sink(sink, "close")

    def _start_tracker(self) -> bool:
        self.tracker.start()
        return True

    def _to_sink(self, sink: Sink, method: str, *args: Any) -> Any:
        call = functools.partial(getattr(sink, method), *args)
        return self._guard(f"sink:{type(sink).__name__}:{method}", call)

    def _guard(self, cause: str, call: Callable[[], T]) -> T | None:
        try:
            return call()
        except Exception as exc:  # the run-time boundary: never raise into training
            logger.debug("carbon-callbacks: %s failed", cause, exc_info=True)
            self.tracker.errors.record(
                f"{cause}:{type(exc).__name__}", f"{cause.replace(':', ' ')} failed: {exc}"
            )
            return None

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
import os
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from carbon_callbacks.delivery import FLUSH_TIMEOUT_ENV, Ledger, Sink, flush_timeout_s, sink_id
from carbon_callbacks.equivalents import Equivalent, equivalents
from carbon_callbacks.measurement import Measurement
from carbon_callbacks.outputs import epoch_metrics, final_metrics, run_tags, summary
from carbon_callbacks.prediction import Prediction, predict_run
from carbon_callbacks.regions import advice_line, greener_region_tag
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
        self.total_epochs: int | None = None
        self.predict_after = 1  # epochs measured before the run is predicted
        self.prediction: Prediction | None = None
        self.advice: str | None = None
        self.totals: Measurement | None = None
        self.journal_path: Path | None = None
        self.undelivered: list[str] = []  # one sentence per sink that did not deliver everything
        self._next_step = 0  # the step of the end-of-training metrics: number of epochs
        self._active = False
        self._restored = False
        self._last_epoch: int | None = None
        self._backed: dict[int, str] = {}  # id(sink) -> sink id, for journal-backed sinks

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
        nodes: int | None = None,
        world_size: int | None = None,
        is_logging_rank: bool | None = None,
        total_epochs: int | None = None,
    ) -> None:
        """Start measuring and tag the run.

        Args:
            extra_tags: more string tags for the run (added to the ``carbon.*`` ones).
            sinks: when given, replace the session's sinks (found when training starts).
            nodes: machines in the run (the ``carbon.nodes`` tag); default: the tracker's
                count (summed over ranks at start when it has a reducer).
            world_size: processes in the run; default: the tracker's.
            is_logging_rank: when given, replaces the constructor's (the rank is known
                only once training starts).
            total_epochs: the epochs the run is configured for, when known: after
                `predict_after` epochs the whole run's energy and emissions are predicted.
        """
        self.total_epochs = total_epochs if total_epochs and total_epochs > 0 else None
        self.prediction = None
        if self._active:  # the previous run never ended (the framework raised): close it
            self.end()
        if not self._restored:
            self._next_step = 0
        self._last_epoch = self._next_step - 1 if self._next_step else None
        self._restored = False
        self.summary_text, self.totals, self.undelivered = None, None, []
        if sinks is not None:
            self.sinks = list(sinks)
        if is_logging_rank is not None:
            self.is_logging_rank = is_logging_rank
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
        self._bind_ledgers()
        if self.sinks:
            tags = (
                self._guard(
                    "tags", lambda: run_tags(self.tracker, nodes=nodes, world_size=world_size)
                )
                or {}
            )
            tags.update(extra_tags or {})
            self._send_all("log_tags", tags)

    def epoch_end(self, epoch: int) -> Measurement | None:
        """Take a lap and log it with ``step = epoch`` (0-based); None if nothing was measured."""
        if not self._active:
            return None
        lap = self._guard("tracker:lap", self.tracker.lap)
        self._next_step = max(self._next_step, epoch + 1)
        self._last_epoch = epoch
        totals = self.tracker.totals
        if lap is None or totals is None:
            return lap
        if self.sinks:
            metrics = self._guard("metrics", lambda: epoch_metrics(lap, totals))
            if metrics is not None:
                self._send_all("log_metrics", metrics, epoch)
        self._predict(epoch, totals)
        return lap

    def _predict(self, epoch: int, totals: Measurement) -> None:
        """Once `predict_after` epochs are done: log and print the whole run's prediction."""
        total, done = self.total_epochs, epoch + 1  # totals include epochs restored on resume
        if self.prediction is not None or total is None or not self.predict_after <= done < total:
            return
        self.prediction = self._guard("prediction", lambda: predict_run(totals, done, total))
        if self.prediction is None or not self.is_logging_rank:
            return
        line = self.prediction.line()
        logger.info("%s", line)
        if self.print_summary:
            print(line, flush=True)
        self._send_all("log_metrics", self.prediction.metrics(), epoch)

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
            self._advise(totals)
        if totals is not None and self.sinks:
            final = self._guard("metrics", lambda: final_metrics(totals, eqs))
            if final is not None:
                self._send_all("log_metrics", final, self._next_step)
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
        # Other ranks may never reach another lap: summing with them would wait for them.
        self.tracker.local_only(f"training raised {type(exc).__name__} on this process")
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

    def _advise(self, totals: Measurement) -> None:
        """Where the same run would have emitted less: a summary line and a tag."""
        intensity = self.tracker.intensity
        self.advice = self._guard("advice", lambda: advice_line(totals, intensity))
        tag = self._guard("advice", lambda: greener_region_tag(totals, intensity))
        if tag is not None:
            self._send_all("log_tags", {"carbon.greener_region": tag})

    def _summarize(self, totals: Measurement, eqs: Mapping[str, Equivalent]) -> None:
        text = self._guard("summary", lambda: summary(totals, eqs))
        if text is None:
            return
        lines = [text]
        if self.advice:
            lines.append(f"  Greener: {self.advice}")
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

    def _to_sink(self, sink: Sink, method: str, *args: Any, **kwargs: Any) -> Any:
        call = functools.partial(getattr(sink, method), *args, **kwargs)
        return self._guard(f"sink:{type(sink).__name__}:{method}", call)

    def _bind_ledgers(self) -> None:
        """Journal where each resendable sink writes, and bind it to its delivery ledger."""
        self._backed = {}
        journal = self.tracker.journal_path
        if journal is None:
            return
        for sink in self.sinks:
            target = self._guard("sink:target", getattr(sink, "target", lambda: None))
            if not target or not callable(getattr(sink, "bind_ledger", None)):
                continue
            ident = sink_id(target)
            if self.tracker.journal_append({"type": "sink", "sink": ident, **target}):
                self._to_sink(sink, "bind_ledger", Ledger(journal, ident))
                self._backed[id(sink)] = ident

    def _send_all(self, method: str, data: Mapping[str, Any], step: int | None = None) -> None:
        """Journal `data` (when a sink is journal-backed), then hand it to every sink."""
        args = (data,) if step is None else (data, step)
        key: str | None = None
        backed = [self._backed[id(s)] for s in self.sinks if id(s) in self._backed]
        if backed:
            kind = "tags" if method == "log_tags" else "metrics"
            key = os.urandom(8).hex()
            record = {"type": kind, "key": key, "sinks": backed, "step": step, kind: dict(data)}
            record["time_ms"] = int(time.time() * 1000)
            if not self.tracker.journal_append(record):
                key = None  # not journaled: the sinks get it once, untracked
        for sink in self.sinks:
            if key is not None and id(sink) in self._backed:
                self._to_sink(sink, method, *args, key=key)
            else:
                self._to_sink(sink, method, *args)

    def _guard(self, cause: str, call: Callable[[], T]) -> T | None:
        try:
            return call()
        except Exception as exc:  # the run-time boundary: never raise into training
            logger.debug("carbon-callbacks: %s failed", cause, exc_info=True)
            self.tracker.errors.record(
                f"{cause}:{type(exc).__name__}", f"{cause.replace(':', ' ')} failed: {exc}"
            )
            return None

"""`CarbonSession`: what every framework callback does, free of any framework.

The callbacks are thin adapters: they call `begin()` when training starts, `epoch_end(epoch)`
when an epoch ends, `end()` when training ends (or `fail(exc)` when it raises), and keep
`state_dict()` in checkpoints. The session turns tracker laps into metrics with
`carbon_callbacks.outputs` (no arithmetic here), hands them to the sinks, and prints the
summary; at the end it hands the sinks that store files the run's summary document
(`carbon_callbacks.artifacts`: ``carbon/summary.json`` and the per-epoch chart). Every sink
call and every tracker call goes through one error boundary: a failure is recorded once in
``tracker.errors`` and training carries on.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from carbon_callbacks.artifacts import EPOCH_FIELDS, epoch_row, run_summary
from carbon_callbacks.delivery import FLUSH_TIMEOUT_ENV, Ledger, Sink, flush_timeout_s, sink_id
from carbon_callbacks.equivalents import Equivalent, equivalents
from carbon_callbacks.measurement import Measurement
from carbon_callbacks.outputs import (
    CUMULATIVE_KEYS,
    corrected_metrics,
    epoch_metrics,
    final_metrics,
    interrupted_metrics,
    run_tags,
    summary,
)
from carbon_callbacks.prediction import Prediction, predict_run
from carbon_callbacks.regions import (
    Alternative,
    advice_line,
    greener_alternatives,
    greener_region_tag,
)
from carbon_callbacks.tracker import Tracker

logger = logging.getLogger(__name__)

T = TypeVar("T")

# The journal record type of each sink method.
_KINDS = {"log_tags": "tags", "log_metrics": "metrics", "log_artifacts": "artifacts"}

# The state each run ended in, by the id of a sink target (`sink_id`) that wrote to it: a later
# fit of this process into the same run continues from there (`_continue_or_reset`).
_ENDED: dict[str, dict[str, Any]] = {}


def forget_runs() -> None:
    """Forget the runs earlier trainings of this process ended in: the next training into one
    of them starts its own count (tests, whose fake sinks share a target)."""
    _ENDED.clear()


Plan = Callable[[int, float], "tuple[float, str] | None"]
"""``plan(epoch, mean_epoch_s)``: the epochs the run will have when it ends, and the limit
that ends it (``"max_steps"``...), or None when only the configured epochs are known."""


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
        artifacts: when training ends, hand the summary document to the sinks that store
            files (``log_artifacts``: ``carbon/summary.json`` and the per-epoch chart).

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
        artifacts: bool = True,
    ) -> None:
        self.tracker = tracker
        self.sinks: list[Sink] = list(sinks)
        self.is_logging_rank = is_logging_rank
        self.print_summary = summary
        self.flush_timeout_s = flush_timeout_s
        self.store_artifacts = artifacts
        self.summary_text: str | None = None
        self.total_epochs: int | None = None
        self.predict_after = 1  # epochs measured before the run is predicted
        self.prediction: Prediction | None = None
        self.advice: str | None = None
        self.greener: Alternative | None = None
        self.summary_document: dict[str, Any] | None = None  # carbon/summary.json, at the end
        self.totals: Measurement | None = None
        self.journal_path: Path | None = None
        self.undelivered: list[str] = []  # one sentence per sink that did not deliver everything
        self._next_step = 0  # the step of the end-of-training metrics: number of epochs
        self._active = False
        self._restored = False
        self._last_epoch: int | None = None
        self._backed: dict[int, str] = {}  # id(sink) -> sink id, for journal-backed sinks
        # One run, one total: a later fit into the same run continues its totals and steps.
        self._cumulative_upto = -1  # the last step at which the cumulative keys were written
        self._step_offset = 0  # added to the framework's epoch (a new Trainer, same run)
        self._first_epoch = True  # no epoch ended yet in this fit
        self._targets: frozenset[str] = frozenset()  # the runs the sinks write to
        # The prediction's inputs: the epochs measured in this process, and the plan.
        self._measured: Measurement | None = None
        self._measured_epochs = 0
        self._plan: Plan | None = None
        self._lap_steps: dict[int, int] = {}  # tracker lap number -> step (corrections)
        self._epochs: list[dict[str, Any]] = []  # `epoch_row` of each step logged to the run
        self._tags: dict[str, str] = {}  # the run's tags, for the summary document

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
        plan: Plan | None = None,
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
            plan: given the epoch that just ended and the mean duration of the epochs
                measured (s), ``(epochs the run will have, the limit that ends it)`` (see
                `carbon_callbacks.prediction`: a step or time limit may end training before
                `total_epochs`); None, or a plan returning None: `total_epochs`.
        """
        self.total_epochs = total_epochs if total_epochs and total_epochs > 0 else None
        self._plan = plan
        self.prediction = None
        if self._active:  # the previous run never ended (the framework raised): close it
            self.end()
        if sinks is not None:
            self.sinks = list(sinks)
        if is_logging_rank is not None:
            self.is_logging_rank = is_logging_rank
        if not self.is_logging_rank:
            self.sinks = []
            self.tracker.output_dir = None  # global rank 0 alone writes the journal
        self._continue_or_reset()
        self._last_epoch = self._next_step - 1 if self._next_step else None
        self._restored = False
        self._first_epoch = True
        self._measured, self._measured_epochs = None, 0
        self._lap_steps = {}  # corrections name the laps of this fit's tracker run only
        self.summary_text, self.totals, self.undelivered = None, None, []
        self.summary_document, self._tags = None, {}
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
            self._tags = tags
            self._send_all("log_tags", tags)

    def _continue_or_reset(self) -> None:
        """A fit into a run an earlier fit of this process wrote to (this callback again, or a
        new one: a new Trainer, `autolog`) continues it: its totals, journal and steps carry on
        (the run's cumulative keys keep counting, and no step gets a second value). A
        checkpoint restored by `load_state_dict` continues too. Anything else starts afresh."""
        self._targets = self._sink_targets()
        if self._restored:
            self._cumulative_upto = self._next_step - 1
            return
        ended = {id(_ENDED[t]): _ENDED[t] for t in self._targets if t in _ENDED}
        if len(ended) == 1 and all(t in _ENDED for t in self._targets):
            (last,) = ended.values()
            self.tracker.load_state_dict(last["tracker"])
            self._next_step = last["next_step"]
            self._cumulative_upto = last["cumulative_upto"]
            self._epochs = list(last["epochs"])
            return
        self._next_step, self._cumulative_upto, self._step_offset = 0, -1, 0
        self._epochs = []

    def epoch_end(self, epoch: int) -> Measurement | None:
        """Take a lap and log it with ``step = epoch`` (0-based); None if nothing was measured.

        In a later fit into the same run whose epochs start again below the run's last step
        (a new Trainer), the steps continue from there instead.
        """
        if not self._active:
            return None
        if self._first_epoch:
            self._first_epoch = False
            if epoch + self._step_offset < self._next_step - 1:
                self._step_offset = self._next_step - epoch
        step = epoch + self._step_offset
        lap = self._guard("tracker:lap", self.tracker.lap)
        if lap is not None:
            self._lap_steps[self.tracker.lap_count - 1] = step
        self._next_step = max(self._next_step, step + 1)
        self._last_epoch = step
        totals = self.tracker.totals
        if lap is None or totals is None:
            return lap
        self._measured = lap if self._measured is None else self._measured + lap
        self._measured_epochs += 1
        while self._epochs and self._epochs[-1]["epoch"] >= step:  # one row a step
            self._epochs.pop()
        self._epochs.append(epoch_row(step, lap))
        if self.sinks:
            metrics = self._guard("metrics", lambda: epoch_metrics(lap, totals))
            if metrics is not None:
                if step <= self._cumulative_upto:  # already written there: one value a step
                    for key in CUMULATIVE_KEYS:
                        metrics.pop(key, None)
                self._send_all("log_metrics", metrics, step)
        self._predict(epoch, step, totals)
        return lap

    def _predict(self, epoch: int, step: int, totals: Measurement) -> None:
        """Once `predict_after` epochs are measured: log and print the whole run's prediction."""
        if self.prediction is not None or self._measured_epochs < self.predict_after:
            return
        done = epoch + 1  # totals include epochs restored on resume
        planned = self._guard("prediction", lambda: self._planned(epoch))
        if planned is None or not done < planned[0]:
            return
        measured, count = self._measured, self._measured_epochs
        self.prediction = self._guard(
            "prediction",
            lambda: predict_run(
                totals, done, planned[0], measured=measured, measured_epochs=count,
                limit=planned[1],
            ),
        )  # fmt: skip
        if self.prediction is None or not self.is_logging_rank:
            return
        live, p = self.tracker.live, self.prediction
        if live is not None and live.running:
            note = self._guard("prediction", lambda: live.saving_note(p.duration_s, p.energy_kwh))
            self.prediction = dataclasses.replace(p, window=note)
        line = self.prediction.line()
        logger.info("%s", line)
        if self.print_summary:
            print(line, flush=True)
        self._send_all("log_metrics", self.prediction.metrics(), step)

    def _planned(self, epoch: int) -> tuple[float, str] | None:
        if self._plan is not None and self._measured is not None:
            planned = self._plan(epoch, self._measured.duration_s / self._measured_epochs)
            if planned is not None:
                return planned
        return None if self.total_epochs is None else (float(self.total_epochs), "epochs")

    def end(self, *, interrupted: bool = False) -> Measurement | None:
        """Stop measuring, log the totals (step = number of epochs), summarize, flush sinks.

        With `interrupted` (training raised) the run's metrics are left as its last epoch
        wrote them: a resume into the same run continues from its checkpoint and writes the
        totals then (see `fail`). The summary and the journal have the whole total.
        """
        if not self._active:
            return self.totals
        self._active = False
        totals = self._guard("tracker:stop", self.tracker.stop)
        self.totals = totals
        eqs: dict[str, Equivalent] = {}
        if totals is not None:
            eqs = self._guard("equivalents", lambda: equivalents(totals)) or {}
            self._advise(totals)
        if totals is not None and self.sinks and not interrupted:
            final = self._guard("metrics", lambda: final_metrics(totals, eqs))
            if final is not None:
                self._send_all("log_metrics", final, self._next_step)
                self._cumulative_upto = self._next_step
            self._send_corrections()
            if self.store_artifacts:
                self.summary_document = self._guard(
                    "artifacts", lambda: self._summary_document(totals, eqs)
                )
                if self.summary_document is not None:
                    self._send_all("log_artifacts", self.summary_document)
        ended = {
            "tracker": self.tracker.state_dict(),
            "next_step": self._next_step,
            "cumulative_upto": self._cumulative_upto,
            "epochs": list(self._epochs),
        }
        for target in self._targets:
            _ENDED[target] = ended
        self._close_sinks()
        if totals is not None and self.is_logging_rank:
            self._summarize(totals, eqs)
        # Every rank leaves together: a rank that exits while rank 0 still flushes its sinks
        # tears its side of the process group down under a live peer (gloo aborted so, now and
        # then, under load). After `fail`, the other ranks may be gone: no collective then.
        if not interrupted:
            self._guard("tracker:wait", self.tracker.wait_for_ranks)
        return totals

    def fail(self, exc: BaseException, epoch: int | None = None) -> Measurement | None:
        """Training raised `exc`: log the interrupted epoch (if `epoch` is given), then end.

        The rule for a crash, so that a resume into the same run never writes a step twice
        and the run's totals stay the sum of its epochs: the interrupted epoch is logged under
        its own keys, ``carbon/interrupted_epoch_energy_kwh``, ``…_emissions_kg`` and
        ``…_duration_s`` (step = that epoch), and the journal marks its lap
        ``"interrupted"``; the cumulative and end-of-training keys are not written (a resume
        from the last checkpoint logs that epoch again, in full, and the totals then). Never
        raises, so the framework's own error propagates unchanged. An `epoch` already logged
        (the error came after its end) is not logged again.
        """
        if not self._active:
            return self.totals
        logger.info(
            "carbon-callbacks: training stopped by %s; logging what was measured",
            type(exc).__name__,
        )
        # Other ranks may never reach another lap: summing with them would wait for them.
        self.tracker.local_only(f"training raised {type(exc).__name__} on this process")
        step = None if epoch is None else epoch + self._step_offset
        if step is not None and (self._last_epoch is None or step > self._last_epoch):
            lap = self._guard("tracker:lap", lambda: self.tracker.lap(interrupted=True))
            if lap is not None and self.sinks:
                metrics = self._guard("metrics", lambda: interrupted_metrics(lap))
                if metrics is not None:
                    self._send_all("log_metrics", metrics, step)
        return self.end(interrupted=True)

    # -- checkpoints -----------------------------------------------------------------------------

    def state_dict(self, *, collective: bool = False) -> dict[str, Any]:
        """Totals as of now (a checkpoint saved inside an epoch includes its part of it),
        the epoch count and the step offset, to save in a checkpoint.

        Args:
            collective: every rank calls this at the same time (Lightning), so the energy
                since the last epoch end can be summed over ranks; otherwise under
                distributed training the totals of the last epoch end are saved.
        """
        return {
            "tracker": self.tracker.state_dict(current=True, collective=collective),
            "next_step": self._next_step,
            "step_offset": self._step_offset,
            "epochs": [[row[name] for name in EPOCH_FIELDS] for row in self._epochs],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from `state_dict()`: the totals carry on (applied at `begin` if not begun)."""
        tracker_state = state.get("tracker")
        if tracker_state is not None:
            self.tracker.load_state_dict(tracker_state)
        self._next_step = int(state.get("next_step", 0))
        self._step_offset = int(state.get("step_offset", 0))
        self._epochs = [
            dict(zip(EPOCH_FIELDS, row, strict=True)) for row in state.get("epochs", ())
        ]
        self._restored = True

    # -- internals -------------------------------------------------------------------------------

    def _send_corrections(self) -> None:
        """Epochs the tracker priced again at stop, each at its own step (the final totals
        above already carry the corrected sum)."""
        for index, _used, new in self.tracker.corrections:
            step = self._lap_steps.get(index)
            if step is not None:
                self._send_all("log_metrics", corrected_metrics(new), step)

    def _advise(self, totals: Measurement) -> None:
        """Where the same run would have emitted less: a summary line and a tag."""
        intensity, live = self.tracker.intensity, self.tracker.live
        if live is not None:  # the run's own figure is its live, effective one
            intensity = dataclasses.replace(
                intensity,
                g_per_kwh=totals.intensity_g_per_kwh,
                source=live.provider.source,
                year=totals.intensity_year,
                basis=totals.intensity_basis,
                kind="live",
            )
        self.advice = self._guard("advice", lambda: advice_line(totals, intensity))
        found = self._guard("advice", lambda: greener_alternatives(totals, intensity, n=1))
        self.greener = found[0] if found else None
        tag = self._guard("advice", lambda: greener_region_tag(totals, intensity))
        if tag is not None:
            self._send_all("log_tags", {"carbon.greener_region": tag})

    def _summary_document(
        self, totals: Measurement, eqs: Mapping[str, Equivalent]
    ) -> dict[str, Any]:
        return run_summary(
            totals,
            epochs=self._epochs,
            tags=self._tags,
            equivalents=eqs,
            prediction=self.prediction,
            greener=self.greener,
            advice=self.advice,
        )

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

    def _sink_targets(self) -> frozenset[str]:
        """The ids of the runs the journal-backed sinks write to (see `sink_id`)."""
        ids = set()
        for sink in self.sinks:
            target = self._guard("sink:target", getattr(sink, "target", lambda: None))
            if target:
                ids.add(sink_id(target))
        return frozenset(ids)

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
        """Journal `data` (when a sink is journal-backed), then hand it to every sink that
        has `method` (``log_artifacts`` is optional)."""
        args = (data,) if step is None else (data, step)
        key: str | None = None
        sinks = [s for s in self.sinks if callable(getattr(s, method, None))]
        backed = [self._backed[id(s)] for s in sinks if id(s) in self._backed]
        if backed:
            kind = _KINDS[method]
            key = os.urandom(8).hex()
            record = {"type": kind, "key": key, "sinks": backed, "step": step, kind: dict(data)}
            record["time_ms"] = int(time.time() * 1000)
            if not self.tracker.journal_append(record):
                key = None  # not journaled: the sinks get it once, untracked
        for sink in sinks:
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

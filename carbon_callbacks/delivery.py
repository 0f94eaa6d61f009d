"""Sinks: where metrics and tags go (an MLflow run, a Comet experiment), off the training loop.

A `Sink` has four methods. `BackgroundSink` implements them with a bounded queue and one named
daemon thread, so a slow or dead tracking server never holds training: enqueueing never
blocks, a full queue counts and records what it could not take (the journal keeps every lap
anyway), and the end-of-training `flush` is bounded by a timeout. Every record knows its run
and step, so what did not go out can be listed (`undelivered`) and sent again later.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from carbon_callbacks.errors import ErrorLog

logger = logging.getLogger(__name__)

FLUSH_TIMEOUT_ENV = "CARBON_CALLBACKS_FLUSH_TIMEOUT_S"
DEFAULT_FLUSH_TIMEOUT_S = 30.0
DEFAULT_QUEUE_SIZE = 1000
DEFAULT_MIN_INTERVAL_S = 1.0
_MAX_BATCH = 100  # records handed to `_send` at once
_MAX_UNDELIVERED = 10_000


@runtime_checkable
class Sink(Protocol):
    """A destination for the ``carbon/*`` metrics and ``carbon.*`` tags of one run."""

    def log_tags(self, tags: Mapping[str, str]) -> None:
        """Set string tags on the run (never blocks on the network)."""

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Log numeric metrics at `step` (never blocks on the network)."""

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait up to `timeout_s` seconds for delivery; True when nothing is left to send."""

    def close(self) -> None:
        """Release the connection and worker thread. Idempotent."""


@dataclass(frozen=True)
class Record:
    """One queued call: tags or metrics for `run` (at `step`), stamped when it was made."""

    kind: Literal["tags", "metrics"]
    run: str
    data: Mapping[str, str] | Mapping[str, float]
    step: int | None = None
    timestamp_ms: int = field(default_factory=lambda: int(time.time() * 1000))


def flush_timeout_s(env: Mapping[str, str] | None = None) -> float:
    """The end-of-training flush bound: ``$CARBON_CALLBACKS_FLUSH_TIMEOUT_S`` or 30 s."""
    env = os.environ if env is None else env
    raw = env.get(FLUSH_TIMEOUT_ENV)
    if not raw:
        return DEFAULT_FLUSH_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also rejects NaN
        logger.warning(
            "ignoring %s=%r (expected seconds >= 0); using %g s",
            FLUSH_TIMEOUT_ENV,
            raw,
            DEFAULT_FLUSH_TIMEOUT_S,
        )
        return DEFAULT_FLUSH_TIMEOUT_S
    return value


class BackgroundSink:
    """Base of the network sinks: queue calls, deliver them from one daemon thread.

    Subclasses implement `_send(records)` (called on the worker thread with one or more
    records, in order) and may override `_open()` / `_close()`. An exception from `_send`
    marks those records undelivered and is recorded once per cause in `errors`; the worker
    carries on with the next records.

    Args:
        run: the run identifier every record is addressed to (e.g. an MLflow run id).
        name: short name for the thread and messages (``"mlflow"``).
        queue_size: records held at most while the worker is busy; more are counted and
            recorded as dropped, never waited for.
        errors: where run-time failures go (the session passes the tracker's `ErrorLog`).
        min_interval_s: seconds between two requests at least: records made meanwhile go
            together in the next one (a tracking client's work holds the GIL, so fewer,
            larger requests cost the training loop less). `flush` sends at once.

    Example:
        >>> class PrintSink(BackgroundSink):
        ...     def _send(self, records):
        ...         print(records)
        >>> sink = PrintSink("run-1", name="print")
        >>> sink.log_metrics({"carbon/energy_kwh": 0.1}, step=0)
        >>> sink.flush(1.0)
        True
    """

    def __init__(
        self,
        run: str,
        *,
        name: str,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        errors: ErrorLog | None = None,
        min_interval_s: float = DEFAULT_MIN_INTERVAL_S,
    ) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size!r}")
        self.run = run
        self.name = name
        self.min_interval_s = min_interval_s
        self.errors = errors if errors is not None else ErrorLog()
        self.delivered = 0  # records, not requests
        self.failed = 0
        self.dropped = 0
        self._queue_size = queue_size
        self._queue: deque[Record] = deque()
        self._failed: deque[Record] = deque(maxlen=_MAX_UNDELIVERED)  # failed or dropped
        self._sending: list[Record] = []
        self._cond = threading.Condition()
        self._closed = False
        self._flushing = 0
        self._last_send = -math.inf
        self._thread: threading.Thread | None = None

    # -- Sink protocol (called on the training thread) -------------------------------------

    def bind_errors(self, errors: ErrorLog) -> None:
        """Record failures in `errors` (the tracker's log) from now on."""
        self.errors = errors

    def log_tags(self, tags: Mapping[str, str]) -> None:
        self._put(Record("tags", self.run, dict(tags)))

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self._put(Record("metrics", self.run, dict(metrics), step))

    def flush(self, timeout_s: float | None = None) -> bool:
        timeout_s = flush_timeout_s() if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout_s
        with self._cond:
            self._flushing += 1
            self._cond.notify_all()
            try:
                while self._queue or self._sending:
                    left = deadline - time.monotonic()
                    if left <= 0 or self._thread is None or not self._thread.is_alive():
                        break
                    self._cond.wait(left)
            finally:
                self._flushing -= 1
            return not (self._queue or self._sending or self.failed or self.dropped)

    def close(self) -> None:
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            # A worker stuck in a network call is a daemon: it is left behind, not waited for.
            thread.join(timeout=0.2)
        if thread is None or not thread.is_alive():
            self._safe(self._close, "close")

    # -- reporting ----------------------------------------------------------------------------

    @property
    def undelivered(self) -> list[Record]:
        """Records not delivered (yet): failed, dropped, being sent or still queued."""
        with self._cond:
            return [*self._failed, *self._sending, *self._queue]

    def describe_undelivered(self) -> str | None:
        """One plain sentence on what did not go out, or None when everything did."""
        with self._cond:
            failed, dropped = self.failed, self.dropped
            queued = len(self._queue) + len(self._sending)
        if not (failed or queued or dropped):
            return None
        parts = [
            f"{n} {what}"
            for n, what in ((failed, "failed"), (queued, "still queued"), (dropped, "dropped"))
            if n
        ]
        return (
            f"{self.name}: {', '.join(parts)} record(s) for run {self.run} were not delivered; "
            "every lap is in the local journal"
        )

    # -- worker ---------------------------------------------------------------------------------

    def _put(self, record: Record) -> None:
        with self._cond:
            if self._closed:
                self._drop(record, "the sink is closed")
                return
            if len(self._queue) >= self._queue_size:
                self._drop(record, f"the queue is full ({self._queue_size} records)")
                return
            self._queue.append(record)
            self._ensure_thread()
            self._cond.notify_all()

    def _drop(self, record: Record, why: str) -> None:
        # Called with self._cond held.
        self.dropped += 1
        self._failed.append(record)
        self.errors.record(f"sink:{self.name}:drop", f"{self.name}: a record was dropped: {why}")

    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"carbon-callbacks-{self.name}-sink", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        if not self._safe(self._open, "open"):
            with self._cond:
                self.failed += len(self._queue)
                self._failed.extend(self._queue)
                self._queue.clear()
                self._closed = True
                self._cond.notify_all()
            return
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                # Coalesce: at most one request per `min_interval_s` unless someone waits.
                while not (self._closed or self._flushing):
                    left = self._last_send + self.min_interval_s - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                self._last_send = time.monotonic()
                batch = [self._queue.popleft() for _ in range(min(_MAX_BATCH, len(self._queue)))]
                self._sending = batch
            ok = self._safe(functools.partial(self._send, batch), "send")
            with self._cond:
                self._sending = []
                if ok:
                    self.delivered += len(batch)
                else:
                    self.failed += len(batch)
                    self._failed.extend(batch)
                self._cond.notify_all()

    def _safe(self, call: Callable[[], None], what: str) -> bool:
        try:
            call()
        except Exception as exc:  # the boundary: a sink never raises into training
            self.errors.record(
                f"sink:{self.name}:{what}:{type(exc).__name__}",
                f"{self.name} sink could not {what} for run {self.run}: {exc}",
            )
            return False
        return True

    # -- for subclasses ------------------------------------------------------------------------

    def _open(self) -> None:
        """Connect (on the worker thread, so a slow connection never holds training)."""

    def _send(self, records: Sequence[Record]) -> None:
        """Deliver `records` (in order) or raise."""
        raise NotImplementedError

    def _close(self) -> None:
        """Release the connection."""

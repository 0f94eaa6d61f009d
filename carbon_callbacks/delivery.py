"""Sinks: where metrics and tags go (an MLflow run, a Comet experiment), off the training loop.

A `Sink` has four methods (an `ArtifactSink` a fifth: the end-of-training files).
`BackgroundSink` implements them with a bounded queue and one named daemon thread, so a slow
or dead tracking server never holds training: enqueueing never blocks, a full queue counts and
records what it could not take, a failed send is retried with exponential backoff (bounded),
and the end-of-training `flush` is bounded by a timeout.

Delivery is backed by the journal. The session writes every call to the run's journal first
(a ``"tags"``, ``"metrics"`` or ``"artifacts"`` record with a unique ``key`` and the ids of the
sinks it is for), then hands it to the sinks. A sink that knows where it writes (`target`)
is bound to a `Ledger`: a small append-only side file next to the journal,
``<run_id>.<sink_id>.delivered``, with one line per record key the sink has confirmed. What
is in the journal but not in the ledger is pending; ``carbon-callbacks sync`` sends it later.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from carbon_callbacks.errors import ErrorLog

logger = logging.getLogger(__name__)

FLUSH_TIMEOUT_ENV = "CARBON_CALLBACKS_FLUSH_TIMEOUT_S"
DEFAULT_FLUSH_TIMEOUT_S = 30.0
DEFAULT_QUEUE_SIZE = 1000
DEFAULT_MIN_INTERVAL_S = 1.0
# The worker's CPU time spent sending, as a share of the time between the starts of two
# requests, at most (a client's work holds the GIL the training loop needs): a request that
# took 10 ms of CPU is followed by the next one 5 s later at the earliest.
MAX_CPU_SHARE = 0.002
MAX_SEND_INTERVAL_S = 30.0  # ... but never more than this apart (unless retrying)
DEFAULT_MAX_RETRIES = 5
DEFAULT_BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0
LEDGER_SUFFIX = ".delivered"
_MAX_BATCH = 100  # records handed to `_send` at once
_MAX_UNDELIVERED = 10_000


class DeliveryRefused(Exception):
    """Raised by `BackgroundSink._send` when retrying cannot help (the run was deleted, the
    experiment has ended): the records count as failed at once and stay pending in the
    journal for ``carbon-callbacks sync``."""


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


@runtime_checkable
class ArtifactSink(Sink, Protocol):
    """A sink that also stores files: the run's summary document when training ends."""

    def log_artifacts(self, summary: Mapping[str, Any]) -> None:
        """Store ``carbon/summary.json`` and the per-epoch chart made from `summary` (a
        `carbon_callbacks.artifacts.run_summary` document; never blocks on the network)."""


@dataclass(frozen=True)
class Record:
    """One queued call: tags or metrics for `run` (at `step`), or the summary document from
    which the artifacts are made, stamped when it was made.

    `key` is the journal record it comes from (None: not journaled).
    """

    kind: Literal["tags", "metrics", "artifacts"]
    run: str
    data: Mapping[str, Any]
    step: int | None = None
    timestamp_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    key: str | None = None


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


# -- the delivery ledger -------------------------------------------------------------------------


def sink_id(target: Mapping[str, Any]) -> str:
    """A short stable id of a sink's target, e.g. ``mlflow-3f2a9c01b7de`` (file-name safe)."""
    digest = hashlib.sha256(json.dumps(dict(target), sort_keys=True).encode()).hexdigest()
    kind = "".join(c for c in str(target.get("kind", "sink")) if c.isalnum()) or "sink"
    return f"{kind}-{digest[:12]}"


def ledger_path(journal_path: str | os.PathLike[str], sink: str) -> Path:
    """``<dir>/<run_id>.<sink>.delivered`` next to ``<dir>/<run_id>.jsonl``."""
    journal = Path(journal_path)
    return journal.with_name(f"{journal.stem}.{sink}{LEDGER_SUFFIX}")


def open_private_append(path: Path) -> int:
    """Open `path` for appending: created 0640, never through a symbolic link, never
    world-writable. Returns the file descriptor.

    Raises:
        OSError: the file cannot be opened (a symbolic link raises ELOOP).
    """
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, 0o640)
    mode = os.fstat(fd).st_mode
    if mode & stat.S_IWOTH:
        os.fchmod(fd, mode & ~stat.S_IWOTH & 0o7777)
    return fd


class Ledger:
    """The record keys one sink has confirmed for one journal (append-only, one key a line).

    Args:
        journal_path: the run's journal file.
        sink: the sink's id (`sink_id` of its target).

    Example:
        >>> ledger = Ledger(journal, "mlflow-3f2a9c01b7de")
        >>> ledger.mark(["a1b2c3"])
        >>> ledger.delivered()
        {'a1b2c3'}
    """

    def __init__(self, journal_path: str | os.PathLike[str], sink: str) -> None:
        self.journal_path = Path(journal_path)
        self.sink = sink
        self.path = ledger_path(journal_path, sink)
        self._lock = threading.Lock()

    def mark(self, keys: Iterable[str]) -> None:
        """Append `keys` as delivered. Raises OSError when the file cannot be written."""
        lines = "".join(f"{k}\n" for k in keys)
        if not lines:
            return
        with self._lock:
            if self.path.is_symlink():
                raise OSError(f"refusing to write through a symbolic link: {self.path}")
            fd = open_private_append(self.path)
            try:
                os.write(fd, lines.encode("ascii"))
            finally:
                os.close(fd)

    def delivered(self) -> set[str]:
        """Every key marked so far (a torn last line, from a crash mid-write, is ignored)."""
        try:
            text = self.path.read_text(encoding="ascii", errors="replace")
        except FileNotFoundError:
            return set()
        lines = text.split("\n")
        return {line for line in lines[:-1] if line}  # the part after the last newline is torn


# -- the background sink -------------------------------------------------------------------------


class BackgroundSink:
    """Base of the network sinks: queue calls, deliver them from one daemon thread.

    Subclasses implement `_send(records)` (called on the worker thread with one or more
    records, in order; all delivered, or raise) and may override `_open()` / `_close()` and
    `target()`. A failed send is retried after 1, 2, 4... s (at most `max_retries` times, at
    most 30 s apart), while later records wait behind it so the order holds; after that, or at
    once when `_send` raises `DeliveryRefused`, the records count as failed (they stay
    pending in the journal) and the worker goes on. Every failure is recorded once per cause
    in `errors`, never raised.

    Args:
        run: the run identifier every record is addressed to (e.g. an MLflow run id).
        name: short name for the thread and messages (``"mlflow"``).
        queue_size: records held at most while the worker is busy; more are counted and
            recorded as dropped, never waited for.
        errors: where run-time failures go (the session passes the tracker's `ErrorLog`).
        min_interval_s: seconds between two requests at least, and from the first record to
            the first request (so a run's tags go with its first metrics): records made
            meanwhile go together in the next request. The gap also grows with what a request
            costs: a tracking client's work holds the GIL the training loop needs, so after a
            request that took ``c`` seconds of CPU the next one starts ``c / MAX_CPU_SHARE``
            (500 c) seconds later at the earliest, at most `MAX_SEND_INTERVAL_S` (30 s).
            Short epochs then cost a few large requests instead of one small request each.
            `flush` and `close` send at once.
        max_retries: retries of a failed send before its records count as failed.
        backoff_s: the first retry's delay in seconds (doubled at each retry).

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
        max_retries: int = DEFAULT_MAX_RETRIES,
        backoff_s: float = DEFAULT_BACKOFF_S,
    ) -> None:
        _check_int("queue_size", queue_size, 1)
        _check_int("max_retries", max_retries, 0)
        _check_seconds("min_interval_s", min_interval_s)
        _check_seconds("backoff_s", backoff_s)
        self.run = run
        self.name = name
        self.min_interval_s = float(min_interval_s)
        self.max_retries = max_retries
        self.backoff_s = float(backoff_s)
        self.errors = errors if errors is not None else ErrorLog()
        self.ledger: Ledger | None = None
        self.delivered = 0  # records, not requests
        self.failed = 0
        self.dropped = 0
        self.retries = 0
        self._queue_size = queue_size
        self._queue: deque[Record] = deque()
        self._failed: deque[Record] = deque(maxlen=_MAX_UNDELIVERED)  # failed or dropped
        self._sending: list[Record] = []
        self._cond = threading.Condition()
        self._closed = False
        self._flushing = 0
        self._next_send = -math.inf  # the earliest start of the next request (pacing)
        self._attempt = 0  # failed tries of the batch at the head of the queue
        self._retry_at = -math.inf
        self._thread: threading.Thread | None = None

    # -- Sink protocol (called on the training thread) -------------------------------------

    def bind_errors(self, errors: ErrorLog) -> None:
        """Record failures in `errors` (the tracker's log) from now on."""
        self.errors = errors

    def bind_ledger(self, ledger: Ledger) -> None:
        """Mark the keys of confirmed records in `ledger` from now on."""
        self.ledger = ledger

    def target(self) -> dict[str, Any] | None:
        """Where this sink writes, enough for ``carbon-callbacks sync`` to resend there
        (JSON-able, no credentials); None: not resendable, so not journal-backed."""
        return None

    def log_tags(self, tags: Mapping[str, str], *, key: str | None = None) -> None:
        self._put(Record("tags", self.run, dict(tags), key=key))

    def log_metrics(
        self, metrics: Mapping[str, float], step: int, *, key: str | None = None
    ) -> None:
        self._put(Record("metrics", self.run, dict(metrics), step, key=key))

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
                    self._cond.wait(min(left, threading.TIMEOUT_MAX))
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
        where = "every lap is in the local journal"
        if self.ledger is not None:
            where = (
                f"they are kept in {self.ledger.journal_path}: run "
                f"'carbon-callbacks sync {self.ledger.journal_path}' to send them"
            )
        return (
            f"{self.name}: {', '.join(parts)} record(s) for run {self.run} were not delivered; "
            f"{where}"
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
            if len(self._queue) == 1:
                # Only a worker waiting on an empty queue needs waking: a paced or busy one
                # takes the record with the others, and waking it per epoch costs the
                # training thread a GIL hand-over each time.
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
        with self._cond:
            self._next_send = time.monotonic() + self.min_interval_s
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                # Coalesce (pacing, unless someone waits or the sink closes) and back off
                # after a failure (always).
                while True:
                    ready_at = self._retry_at
                    if not (self._closed or self._flushing):
                        ready_at = max(ready_at, self._next_send)
                    left = ready_at - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(min(left, threading.TIMEOUT_MAX))
                batch = self._take_batch()
                self._sending = batch
            began, cpu = time.monotonic(), time.thread_time()
            refused: list[bool] = []
            ok = self._safe(functools.partial(self._send, batch), "send", refused)
            paced = min((time.thread_time() - cpu) / MAX_CPU_SHARE, MAX_SEND_INTERVAL_S)
            gap = max(self.min_interval_s, paced)
            if ok:
                self._mark(batch)
            with self._cond:
                self._sending = []
                self._next_send = began + gap
                if ok:
                    self.delivered += len(batch)
                    self._attempt, self._retry_at = 0, -math.inf
                elif self._attempt < self.max_retries and not refused:
                    self._attempt += 1
                    self.retries += 1
                    delay = min(self.backoff_s * 2 ** (self._attempt - 1), MAX_BACKOFF_S)
                    self._retry_at = time.monotonic() + delay
                    self._queue.extendleft(reversed(batch))  # first in line again
                else:
                    self.failed += len(batch)
                    self._failed.extend(batch)
                    self._attempt, self._retry_at = 0, -math.inf
                self._cond.notify_all()

    def _take_batch(self) -> list[Record]:
        """The next records to send (called with self._cond held): up to `_MAX_BATCH`, and
        an ``"artifacts"`` record alone, so a failed upload never holds metrics back (nor a
        retried metrics request send the files twice)."""
        batch = [self._queue.popleft()]
        if batch[0].kind == "artifacts":
            return batch
        while self._queue and len(batch) < _MAX_BATCH and self._queue[0].kind != "artifacts":
            batch.append(self._queue.popleft())
        return batch

    def _mark(self, batch: Sequence[Record]) -> None:
        ledger = self.ledger
        keys = [r.key for r in batch if r.key is not None]
        if ledger is None or not keys:
            return
        try:
            ledger.mark(keys)
        except OSError as exc:
            self.errors.record(
                f"sink:{self.name}:ledger",
                f"{self.name}: cannot note delivered records in {ledger.path} ({exc}); "
                "a later 'carbon-callbacks sync' may send them again",
            )

    def _safe(self, call: Callable[[], None], what: str, refused: list[bool] | None = None) -> bool:
        try:
            call()
        except Exception as exc:  # the boundary: a sink never raises into training
            logger.debug("carbon-callbacks: %s sink could not %s", self.name, what, exc_info=True)
            permanent = isinstance(exc, DeliveryRefused)
            if refused is not None and permanent:
                refused.append(True)
            retrying = what == "send" and self.max_retries and not permanent
            retry = " (retrying with backoff)" if retrying else ""
            self.errors.record(
                f"sink:{self.name}:{what}:{type(exc).__name__}",
                f"{self.name} sink could not {what} for run {self.run}{retry}: {_brief(exc)}",
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


def _brief(exc: BaseException, limit: int = 300) -> str:
    """An exception's first line, cut to `limit` characters (client errors can be long)."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")


def _check_seconds(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds >= 0, got {value!r}")
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")

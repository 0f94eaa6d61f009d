"""`WandbSink`: ``carbon/*`` metrics and ``carbon.*`` tags into a W&B run, off the loop.

Works with online and offline runs (``WANDB_MODE=offline``), through public `wandb.Run` methods
only. The per-epoch metrics are plotted against their own step metric, ``carbon/epoch`` (the
0-based epoch; the number of epochs for the end-of-training values), so they never fight the
user's ``step``: each ``carbon/*`` key is defined with ``define_metric(key,
step_metric="carbon/epoch")`` before its first value, besides the ``"carbon/*"`` glob, because
W&B matches globs in no fixed order (wandb-core's ``runmetric.matchGlobMetric`` walks a Go
map) and a framework's ``define_metric("*", step_metric=...)`` (Lightning's `WandbLogger`, the
HF `WandbCallback`) could otherwise win; an exact definition always does. The ``carbon.*``
tags go into the run's config under ``carbon`` (``config.carbon.country``...), the totals,
ranges, prediction and equivalents also into its summary.

Delivery: a record counts as delivered once the run has accepted it (``run.log`` hands it to
W&B's own service, which writes it to the run's local ``run-<id>.wandb`` file and uploads it
from there, retrying by itself; if W&B is unreachable, ``wandb sync`` uploads that file later).
A record the run did not take (it had finished) stays pending in the journal;
``carbon-callbacks sync`` sends it into the same run later (`resend`): online by resuming the
run (``resume="must"``), offline as a new offline run of the same id in the same folder, to
``wandb sync`` after the first.

The API key is never read, stored or logged here: W&B reads it from its own configuration.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from carbon_callbacks.integrations import install_hint

try:
    import wandb
    from wandb.errors import UsageError
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(install_hint("wandb", "Weights & Biases (wandb)")) from exc

from carbon_callbacks.delivery import (
    DEFAULT_BACKOFF_S,
    DEFAULT_MAX_RETRIES,
    DEFAULT_MIN_INTERVAL_S,
    DEFAULT_QUEUE_SIZE,
    BackgroundSink,
    DeliveryRefused,
    Record,
)
from carbon_callbacks.errors import ErrorLog

__all__ = ["CONFIG_KEY", "STEP_METRIC", "WandbSink", "active_run_sink", "resend"]

STEP_METRIC = "carbon/epoch"
CONFIG_KEY = "carbon"
_GLOB = "carbon/*"
_TAG_PREFIX = "carbon."
_PER_EPOCH_PREFIX = "carbon/epoch_"  # the rest (totals, ranges...) also goes to the summary
_RUN_METHODS = ("log", "define_metric")

# A resend adds data, nothing else: no console, code, git or system metrics capture.
_QUIET: dict[str, Any] = {
    "silent": True,
    "console": "off",
    "save_code": False,
    "disable_git": True,
    "x_disable_stats": True,
    "x_disable_meta": True,
}


class WandbSink(BackgroundSink):
    """Log to a W&B run from a background thread.

    Args:
        run: a running `wandb.Run` (``wandb.init(...)``, Lightning's
            ``WandbLogger.experiment``); default: ``wandb.run``.
        queue_size: records held at most while the worker is busy.
        errors: where run-time failures go (the session passes the tracker's).
        min_interval_s: seconds between two deliveries at least (more after a costly one:
            see `BackgroundSink`).
        max_retries, backoff_s: retries of a failed delivery and the first delay (s).

    Raises:
        ValueError: no `run` given and no ``wandb.run`` active.
        TypeError: `run` lacks the `wandb.Run` methods.

    Example:
        >>> run = wandb.init(project="my-project")
        >>> callback = CarbonCallback(country="FR", sinks=[WandbSink(run)])
    """

    def __init__(
        self,
        run: Any = None,
        *,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        errors: ErrorLog | None = None,
        min_interval_s: float = DEFAULT_MIN_INTERVAL_S,
        max_retries: int = DEFAULT_MAX_RETRIES,
        backoff_s: float = DEFAULT_BACKOFF_S,
    ) -> None:
        if run is None:
            run = wandb.run
            if run is None:
                raise ValueError("no W&B run is active: call wandb.init(...) first, or pass run=")
        if not all(callable(getattr(run, m, None)) for m in _RUN_METHODS) or not _text(
            getattr(run, "id", None)
        ):
            raise TypeError(f"run must be a wandb Run (wandb.init(...)), got {type(run).__name__}")
        run_id = str(run.id)
        super().__init__(
            run_id,
            name="wandb",
            queue_size=queue_size,
            errors=errors,
            min_interval_s=min_interval_s,
            max_retries=max_retries,
            backoff_s=backoff_s,
        )
        self.wandb_run = run
        self.run_id = run_id
        self.project = _text(getattr(run, "project", None))
        self.entity = _text(getattr(run, "entity", None))
        self.offline_directory: str | None = None
        if getattr(run, "offline", False):
            root = _text(getattr(getattr(run, "settings", None), "root_dir", None))
            self.offline_directory = os.path.abspath(root) if root else None
        self._state = _RunState()

    def __repr__(self) -> str:
        mode = "offline" if self.offline_directory else "online"
        return f"WandbSink(run_id={self.run_id!r}, project={self.project!r}, {mode})"

    def target(self) -> dict[str, Any]:
        """The run, for ``carbon-callbacks sync`` (no API key)."""
        return {
            "kind": "wandb",
            "run": self.run_id,
            "project": self.project,
            "entity": self.entity,
            "offline_directory": self.offline_directory,
        }

    def _open(self) -> None:
        self._state.begin(self.wandb_run)

    def _send(self, records: Sequence[Record]) -> None:
        for i, record in enumerate(records):
            try:
                self._state.deliver(self.wandb_run, record.kind, record.data, record.step)
            except UsageError as exc:  # the run has finished: no retry can help, sync can
                self._mark(records[:i])  # those went in: sync must not send them twice
                raise DeliveryRefused(f"the W&B run {self.run_id} has finished") from exc


class _RunState:
    """What a sink (or a resend) knows of its run: the keys defined, the ``carbon`` config."""

    def __init__(self) -> None:
        self.defined: set[str] = set()
        self.config: dict[str, str] = {}

    def begin(self, run: Any) -> None:
        """Define the step metric and the glob; start from the run's ``carbon`` config (a
        later fit into the same run, or a resumed run, adds to it)."""
        run.define_metric(STEP_METRIC)
        run.define_metric(_GLOB, step_metric=STEP_METRIC)
        config = getattr(run, "config", None)
        current = config.get(CONFIG_KEY) if config is not None else None
        if isinstance(current, Mapping):
            self.config.update({str(k): str(v) for k, v in current.items()})

    def deliver(self, run: Any, kind: str, data: Mapping[str, Any], step: int | None) -> None:
        if kind == "tags":
            self.config.update({_config_key(k): str(v) for k, v in data.items()})
            run.config.update({CONFIG_KEY: dict(self.config)}, allow_val_change=True)
            return
        for key in data:
            if key not in self.defined:
                run.define_metric(key, step_metric=STEP_METRIC)
                self.defined.add(key)
        run.log({**data, STEP_METRIC: step or 0})
        totals = {k: v for k, v in data.items() if not k.startswith(_PER_EPOCH_PREFIX)}
        if totals:
            run.summary.update(totals)


def active_run_sink() -> WandbSink | None:
    """A sink for ``wandb.run``, or None when no run is active."""
    return None if wandb.run is None else WandbSink(wandb.run)


Mark = Callable[[Iterable[str], bool], None]


def resend(
    target: Mapping[str, Any],
    records: Sequence[Mapping[str, Any]],
    mark: Mark,
    **_: Any,
) -> None:
    """Send journal records (``"tags"``/``"metrics"``) into the W&B run of `target`.

    Called by ``carbon-callbacks sync``. Online, the run is resumed
    (``wandb.init(id=..., resume="must")``; the API key comes from W&B's configuration);
    offline, a new offline run of the same id is written in the same folder, to ``wandb
    sync`` after the first. Every record is marked once the run has taken it and finished.

    Raises:
        wandb.errors.Error: the run could not be opened (nothing is marked).
    """
    names = {k: str(target[k]) for k in ("project", "entity") if _text(target.get(k))}
    directory = _text(target.get("offline_directory"))
    settings = wandb.Settings(**_QUIET)
    if directory:
        run = wandb.init(
            id=str(target["run"]), mode="offline", dir=directory, resume="allow",
            reinit="create_new", settings=settings, **names,
        )  # fmt: skip
    else:  # pragma: no cover - needs W&B's server; the offline path is tested
        run = wandb.init(
            id=str(target["run"]), resume="must", reinit="create_new", settings=settings, **names
        )
    state = _RunState()
    try:
        state.begin(run)
        for record in records:
            kind = str(record["type"])
            state.deliver(run, kind, record[kind], record.get("step"))
    finally:
        run.finish()
    mark([str(r["key"]) for r in records], False)


def _config_key(tag: str) -> str:
    return tag[len(_TAG_PREFIX) :] if tag.startswith(_TAG_PREFIX) else tag


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None

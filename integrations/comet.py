"""`CometSink`: ``carbon/*`` metrics and ``carbon.*`` tags into a Comet experiment, off the loop.

Works with `comet_ml.Experiment` (online) and `comet_ml.OfflineExperiment` (an archive to
upload later with ``comet upload``), through public methods only: ``log_metrics(...,
step=, epoch=)`` per epoch (the end-of-training totals, at step = number of epochs, with the
last epoch's index: Comet gives every metric an epoch, and there is none after the last), the
``carbon.*`` tags as ``log_others`` plus a few Comet tags (``carbon-callbacks``,
``cpu:<method>``, ``gpu:<method>``, ``estimated``), and, when training ends,
``carbon/summary.json`` and the per-epoch chart ``carbon/energy_per_epoch.png``
(`carbon_callbacks.artifacts`) as assets (``log_asset_data``, overwriting: a resend writes
them again, not twice).

Delivery: a record counts as delivered once the experiment has accepted it; from there
Comet's own client uploads it (online, it retries and falls back to an offline archive by
itself). A record the experiment did not take (it had ended, or raised) stays pending in the
journal; ``carbon-callbacks sync`` sends it into the same experiment later (`resend`), as an
``ExistingExperiment`` or, for an offline one, an ``ExistingOfflineExperiment`` archive next
to the first.

The API key is never read, stored or logged here: Comet reads it from its own configuration
(``COMET_API_KEY`` or ``~/.comet.config``), at training time and again at sync time.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from carbon_callbacks.integrations import install_hint

try:
    import comet_ml
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(install_hint("comet", "Comet (comet_ml)")) from exc

from carbon_callbacks.artifacts import artifact_files
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
from carbon_callbacks.outputs import RUN_END_KEY

__all__ = [
    "COMET_TAG",
    "CometSink",
    "comet_tags",
    "epoch_of",
    "made_by_mlflow_auto_logger",
    "resend",
    "running_experiment_sink",
]

logger = logging.getLogger(__name__)

COMET_TAG = "carbon-callbacks"
_EXPERIMENT_METHODS = ("log_metrics", "log_others", "add_tags", "get_key")

# A resend adds data, nothing else: no code, environment, git or console capture.
_QUIET: dict[str, Any] = {
    "auto_metric_logging": False,
    "auto_param_logging": False,
    "auto_output_logging": False,
    "log_env_details": False,
    "log_env_gpu": False,
    "log_env_host": False,
    "log_env_cpu": False,
    "log_git_metadata": False,
    "log_git_patch": False,
    "log_code": False,
    "parse_args": False,
    "display_summary_level": 0,
}


class CometSink(BackgroundSink):
    """Log to a Comet experiment from a background thread.

    Args:
        experiment: a running ``comet_ml.Experiment`` or ``OfflineExperiment`` (e.g.
            ``comet_ml.start(...)``, Lightning's ``CometLogger.experiment``, or
            ``comet_ml.get_running_experiment()``).
        queue_size: records held at most while the worker is busy.
        errors: where run-time failures go (the session passes the tracker's).
        min_interval_s: seconds between two deliveries at least (more after a costly one:
            see `BackgroundSink`).
        max_retries, backoff_s: retries of a failed delivery and the first delay (s).

    Raises:
        TypeError: `experiment` lacks the Comet experiment methods.

    Example:
        >>> experiment = comet_ml.start(project_name="my-project")
        >>> callback = CarbonCallback(country="FR", sinks=[CometSink(experiment)])
    """

    def __init__(
        self,
        experiment: Any,
        *,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        errors: ErrorLog | None = None,
        min_interval_s: float = DEFAULT_MIN_INTERVAL_S,
        max_retries: int = DEFAULT_MAX_RETRIES,
        backoff_s: float = DEFAULT_BACKOFF_S,
    ) -> None:
        if not all(callable(getattr(experiment, m, None)) for m in _EXPERIMENT_METHODS):
            raise TypeError(
                "experiment must be a comet_ml Experiment or OfflineExperiment, "
                f"got {type(experiment).__name__}"
            )
        key = str(experiment.get_key())
        super().__init__(
            key,
            name="comet",
            queue_size=queue_size,
            errors=errors,
            min_interval_s=min_interval_s,
            max_retries=max_retries,
            backoff_s=backoff_s,
        )
        self.experiment = experiment
        self.experiment_key = key
        self.project_name = _str_or_none(getattr(experiment, "project_name", None))
        self.workspace = _str_or_none(getattr(experiment, "workspace", None))
        self.offline_directory: str | None = None
        if isinstance(experiment, comet_ml.OfflineExperiment):
            directory = _str_or_none(getattr(experiment, "offline_directory", None))
            self.offline_directory = os.path.abspath(directory) if directory else None

    def __repr__(self) -> str:
        # Never the experiment object's repr: it may carry the API key.
        mode = "offline" if self.offline_directory else "online"
        return (
            f"CometSink(experiment_key={self.experiment_key!r}, "
            f"project_name={self.project_name!r}, {mode})"
        )

    def target(self) -> dict[str, Any]:
        """The experiment, for ``carbon-callbacks sync`` (no API key)."""
        return {
            "kind": "comet",
            "experiment_key": self.experiment_key,
            "project_name": self.project_name,
            "workspace": self.workspace,
            "offline_directory": self.offline_directory,
        }

    def log_artifacts(self, summary: Mapping[str, Any], *, key: str | None = None) -> None:
        """Log ``carbon/summary.json`` and the chart made from `summary` as assets (from the
        worker thread; never blocks)."""
        self._put(Record("artifacts", self.run, dict(summary), key=key))

    def _send(self, records: Sequence[Record]) -> None:
        experiment = self.experiment
        if getattr(experiment, "ended", False):
            raise DeliveryRefused(f"the Comet experiment {self.experiment_key} has ended")
        for record in records:
            _log(experiment, record.kind, record.data, record.step)


def comet_tags(tags: Mapping[str, str]) -> list[str]:
    """The Comet tags for some ``carbon.*`` tags: ``carbon-callbacks``, ``cpu:<method>``,
    ``gpu:<method>`` (when a GPU is counted) and ``estimated`` (when anything is)."""
    out = [COMET_TAG]
    cpu = tags.get("carbon.cpu_method")
    if cpu:
        out.append(f"cpu:{cpu}")
    gpu = tags.get("carbon.gpu_method")
    if gpu and gpu != "none":
        out.append(f"gpu:{gpu}")
    if tags.get("carbon.estimated") == "true":
        out.append("estimated")
    return out


def running_experiment_sink(*, requested: bool = False) -> CometSink | None:
    """A sink for ``comet_ml.get_running_experiment()``, or None when none is running, or
    when Comet's MLflow auto-logger made it and the user's set-up did not ask for Comet
    (`requested` False): with comet_ml installed and imported first (Transformers imports it),
    every MLflow run gets such an experiment, ended with the MLflow run, which the user never
    asked for."""
    experiment = comet_ml.get_running_experiment()
    if experiment is None or getattr(experiment, "ended", False):
        return None
    if not requested and made_by_mlflow_auto_logger(experiment):
        logger.info(
            "carbon-callbacks: not logging to Comet experiment %s: Comet's MLflow auto-logger "
            "made it (log to Comet by starting the experiment yourself, a CometLogger, or "
            "report_to=['comet_ml'])",
            experiment.get_key(),
        )
        return None
    return CometSink(experiment)


# The "other" Comet's MLflow auto-logger sets on the experiments it makes
# (comet_ml.loggers.mlflow_logger: OTHER_KEY_CREATED_FROM, FRAMEWORK).
_AUTO_LOGGER_OTHER = ("Created from", "MLFlow auto-logger")


def made_by_mlflow_auto_logger(experiment: Any) -> bool:
    """True when Comet's MLflow auto-logger made `experiment` (read with the public
    ``get_other``)."""
    try:
        return bool(experiment.get_other(_AUTO_LOGGER_OTHER[0]) == _AUTO_LOGGER_OTHER[1])
    except (KeyError, AttributeError):
        return False


Mark = Callable[[Iterable[str], bool], None]


def resend(
    target: Mapping[str, Any],
    records: Sequence[Mapping[str, Any]],
    mark: Mark,
    **_: Any,
) -> None:
    """Send journal records (tags, metrics, artifacts) into the Comet experiment of `target`.

    Called by ``carbon-callbacks sync``. Online, the experiment is reopened with
    ``comet_ml.ExistingExperiment`` (the API key comes from Comet's configuration); offline,
    an ``ExistingOfflineExperiment`` archive is written in the same folder, to upload after
    the first one. Every record is marked once the experiment has been ended and flushed.

    Raises:
        RuntimeError: the experiment could not be opened or flushed (nothing is marked).
    """
    key = str(target["experiment_key"])
    names = {k: target[k] for k in ("project_name", "workspace") if isinstance(target.get(k), str)}
    directory = target.get("offline_directory")
    experiment: Any
    if directory:
        experiment = comet_ml.ExistingOfflineExperiment(
            experiment_key=key, offline_directory=str(directory), **names, **_QUIET
        )
    else:  # pragma: no cover - needs comet.com; the offline path is tested
        experiment = comet_ml.ExistingExperiment(  # type: ignore[no-untyped-call]
            previous_experiment=key, **names, **_QUIET
        )
    if not getattr(experiment, "alive", True):
        experiment.end()
        raise RuntimeError(f"could not open the Comet experiment {key}")
    try:
        for record in records:
            kind = record["type"]
            _log(experiment, kind, record[kind], record.get("step"))
        flushed = experiment.flush()
    finally:
        experiment.end()
    if not flushed:
        raise RuntimeError(f"Comet did not confirm the data sent to experiment {key}")
    mark([str(r["key"]) for r in records], False)


def _log(experiment: Any, kind: str, data: Mapping[str, Any], step: int | None) -> None:
    if kind == "tags":
        experiment.log_others(dict(data))
        experiment.add_tags(comet_tags(data))
    elif kind == "artifacts":
        for name, content in artifact_files(data).items():
            experiment.log_asset_data(content, name=name, overwrite=True)
    else:
        experiment.log_metrics(dict(data), step=step, epoch=epoch_of(data, step))


def epoch_of(metrics: Mapping[str, Any], step: int | None) -> int | None:
    """Comet's ``epoch`` for metrics logged at `step`: the step (the 0-based epoch), except
    for the end-of-training totals, logged at step = number of epochs, which get the last
    epoch's index (an epoch that ran, not one after it)."""
    if step is not None and RUN_END_KEY in metrics:
        return max(step - 1, 0)
    return step


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None

"""`MlflowSink`: ``carbon/*`` metrics and ``carbon.*`` tags into an MLflow run, off the loop.

Writes through the public client API (`mlflow.tracking.MlflowClient.log_batch`) from the
sink's worker thread, so a slow or unreachable tracking server never holds training. Works
with sqlite, file and HTTP tracking URIs.

About a dead server: MLflow retries each failed HTTP call with exponential backoff (by default
7 retries and a 120 s timeout per request, several minutes per call). Those limits are read
from the process-wide ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` / ``MLFLOW_HTTP_REQUEST_TIMEOUT``
environment variables on every request, so this sink does not change them (that would also
change the user's own MLflow logging); the end-of-training flush is bounded instead
(``CARBON_CALLBACKS_FLUSH_TIMEOUT_S``, 30 s) and what did not go out is reported and stays in
the local journal, from which ``carbon-callbacks sync`` sends it later (`resend`): records
whose metric key and step the run already has are skipped, so a sync never duplicates.

When training ends the sink stores the run's summary as artifacts: ``carbon/summary.json`` and,
when matplotlib is installed, ``carbon/energy_per_epoch.png`` (`carbon_callbacks.artifacts`),
written from the worker thread with ``MlflowClient.log_artifacts``; a resend writes them again
(same paths: nothing is duplicated).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

try:
    import mlflow
    from mlflow.entities import Metric, RunTag
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "carbon_callbacks.integrations.mlflow needs MLflow: pip install 'carbon-callbacks[mlflow]'"
    ) from exc

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

__all__ = ["MlflowSink", "active_run_sink", "public_uri", "resend"]

# MLflow's limits for one log_batch request.
_MAX_METRICS_PER_BATCH = 1000
_MAX_TAGS_PER_BATCH = 100
# Answers that another try cannot change (a deleted run, a value MLflow refuses).
_REFUSALS = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "PERMISSION_DENIED"})


class MlflowSink(BackgroundSink):
    """Log to an existing MLflow run through `MlflowClient`, from a background thread.

    Args:
        run_id: the MLflow run to log to (it may be finished: MLflow accepts that).
        tracking_uri: the tracking URI of that run; default: the current
            ``mlflow.get_tracking_uri()``, resolved now, so a later ``set_tracking_uri``
            elsewhere does not redirect this sink.
        queue_size: records held at most while a request is in flight.
        errors: where run-time failures go (the session passes the tracker's).
        min_interval_s: seconds between two requests at least (more after a costly one:
            see `BackgroundSink`); the records made meanwhile go together in one
            ``log_batch``.
        max_retries, backoff_s: a failed ``log_batch`` is retried after `backoff_s`,
            then twice that, ... (`max_retries` times); then it waits in the journal.
        skip_metrics: metric keys not to send, because another logger already sends them
            to the same run (``mlflow.keras.autolog()`` logs the Keras ``logs``, where the
            Keras callback also puts two carbon keys). They stay in the journal.

    Example:
        >>> with mlflow.start_run() as run:
        ...     sink = MlflowSink(run.info.run_id)
        ...     sink.log_metrics({"carbon/energy_kwh": 0.01}, step=0)
        ...     sink.flush(10.0)
    """

    def __init__(
        self,
        run_id: str,
        tracking_uri: str | None = None,
        *,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        errors: ErrorLog | None = None,
        min_interval_s: float = DEFAULT_MIN_INTERVAL_S,
        max_retries: int = DEFAULT_MAX_RETRIES,
        backoff_s: float = DEFAULT_BACKOFF_S,
        skip_metrics: Iterable[str] = (),
    ) -> None:
        if not isinstance(run_id, str) or not run_id:
            raise ValueError(f"run_id must be a non-empty MLflow run id, got {run_id!r}")
        if tracking_uri is not None and not isinstance(tracking_uri, str):
            raise TypeError(f"tracking_uri must be a string, got {tracking_uri!r}")
        super().__init__(
            run_id,
            name="mlflow",
            queue_size=queue_size,
            errors=errors,
            min_interval_s=min_interval_s,
            max_retries=max_retries,
            backoff_s=backoff_s,
        )
        self.run_id = run_id
        self.tracking_uri = str(tracking_uri or mlflow.get_tracking_uri())
        self.skip_metrics = frozenset(skip_metrics)
        self._client: MlflowClient | None = None

    def __repr__(self) -> str:
        uri = public_uri(self.tracking_uri)
        return f"MlflowSink(run_id={self.run_id!r}, tracking_uri={uri!r})"

    def target(self) -> dict[str, Any]:
        """The run, for ``carbon-callbacks sync``: its id and the tracking URI without
        credentials (a relative sqlite or file path made absolute)."""
        return {"kind": "mlflow", "tracking_uri": public_uri(self.tracking_uri), "run": self.run_id}

    def log_artifacts(self, summary: Mapping[str, Any], *, key: str | None = None) -> None:
        """Store ``carbon/summary.json`` and the chart made from `summary` in the run (from
        the worker thread; never blocks)."""
        self._put(Record("artifacts", self.run, dict(summary), key=key))

    def _open(self) -> None:
        # On the worker thread: opening a new sqlite store can take seconds (migrations).
        self._client = MlflowClient(self.tracking_uri)

    def _send(self, records: Sequence[Record]) -> None:
        assert self._client is not None
        metrics: list[Metric] = []
        tags: list[RunTag] = []
        for record in records:
            if record.kind == "artifacts":  # alone in its batch (see BackgroundSink)
                _store_artifacts(self._client, self.run_id, record.data)
            elif record.kind == "tags":
                tags.extend(RunTag(str(k), str(v)) for k, v in record.data.items())
            else:
                step = record.step or 0
                metrics.extend(
                    Metric(str(k), float(v), record.timestamp_ms, step)
                    for k, v in record.data.items()
                    if k not in self.skip_metrics
                )
        while metrics or tags:
            try:
                self._client.log_batch(
                    self.run_id,
                    metrics=metrics[:_MAX_METRICS_PER_BATCH],
                    tags=tags[:_MAX_TAGS_PER_BATCH],
                )
            except MlflowException as exc:
                if exc.error_code in _REFUSALS:  # retrying cannot help; sync can, later
                    raise DeliveryRefused(exc.message) from exc
                raise
            metrics = metrics[_MAX_METRICS_PER_BATCH:]
            tags = tags[_MAX_TAGS_PER_BATCH:]


def _store_artifacts(client: MlflowClient, run_id: str, summary: Mapping[str, Any]) -> None:
    """Write the artifact files of `summary` into the run (the same paths each time)."""
    with tempfile.TemporaryDirectory(prefix="carbon-artifacts-") as tmp:
        for name, data in artifact_files(summary).items():
            path = Path(tmp, name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        try:
            client.log_artifacts(run_id, str(Path(tmp, "carbon")), artifact_path="carbon")
        except MlflowException as exc:
            if exc.error_code in _REFUSALS:
                raise DeliveryRefused(exc.message) from exc
            raise


def active_run_sink() -> MlflowSink | None:
    """A sink for ``mlflow.active_run()`` in this thread, or None when no run is active."""
    run = mlflow.active_run()
    if run is None:
        return None
    return MlflowSink(run.info.run_id, mlflow.get_tracking_uri())


def public_uri(uri: str) -> str:
    """`uri` safe to write down and usable from another folder: no ``user:password@``, no
    query or fragment (tokens), and a relative sqlite database or file store made absolute.
    """
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if uri in ("databricks", "databricks-uc", "uc"):
        return uri
    if not scheme or (len(scheme) == 1 and os.name == "nt"):  # a plain path (or C:\\...)
        return os.path.abspath(uri)
    if scheme.startswith("sqlite") and parts.path.startswith("/") and not parts.netloc:
        path = parts.path[1:]  # sqlite:///rel.db is relative, sqlite:////abs.db absolute
        if path and path != ":memory:" and not os.path.isabs(path):
            return f"{parts.scheme}:///{os.path.abspath(path)}"
        return f"{parts.scheme}://{parts.path}"
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


Mark = Callable[[Iterable[str], bool], None]


def resend(
    target: Mapping[str, Any],
    records: Sequence[Mapping[str, Any]],
    mark: Mark,
    *,
    tracking_uri: str | None = None,
) -> None:
    """Send journal records (tags, metrics, artifacts) to the MLflow run of `target`.

    Called by ``carbon-callbacks sync``. A metric whose key and step the run has already is
    not sent again (it went out before the journal noted it), so a resend is idempotent; the
    artifacts of an ``"artifacts"`` record are written again at the same paths.
    ``mark(keys, already)`` is called after each confirmed request.

    Args:
        target: a journal ``"sink"`` record of kind ``"mlflow"``.
        records: the pending records, in journal order.
        mark: notes record keys as delivered (``already``: they were in the run already).
        tracking_uri: replaces the target's URI (a moved server, or credentials in the URI).

    Raises:
        MlflowException: the server cannot be reached or refuses (nothing more is marked).
    """
    run_id = str(target["run"])
    client = MlflowClient(tracking_uri or str(target["tracking_uri"]))
    try:
        client.get_run(run_id)
    except MlflowException as exc:
        raise MlflowException(f"MLflow run {run_id} cannot be read: {exc.message}") from exc
    names = {name for r in records if r.get("type") == "metrics" for name in r["metrics"]}
    present = {
        name: {m.step for m in client.get_metric_history(run_id, name)} for name in sorted(names)
    }
    metrics: list[Metric] = []
    tags: list[RunTag] = []
    keys: list[str] = []

    def send() -> None:
        if metrics or tags:
            client.log_batch(run_id, metrics=list(metrics), tags=list(tags))
        if keys:
            mark(list(keys), False)
        metrics.clear()
        tags.clear()
        keys.clear()

    for record in records:
        if record.get("type") == "artifacts":
            send()  # what came before it first, as during training
            _store_artifacts(client, run_id, record["artifacts"])
            mark([str(record["key"])], False)
            continue
        if record.get("type") == "tags":
            new_tags = [RunTag(str(k), str(v)) for k, v in record["tags"].items()]
            new_metrics: list[Metric] = []
        else:
            step = int(record.get("step") or 0)
            timestamp = int(record.get("time_ms") or 0)
            new_tags = []
            new_metrics = [
                Metric(str(k), float(v), timestamp, step)
                for k, v in record["metrics"].items()
                if step not in present.get(str(k), ())
            ]
            if not new_metrics:
                mark([str(record["key"])], True)
                continue
        if (
            len(metrics) + len(new_metrics) > _MAX_METRICS_PER_BATCH
            or len(tags) + len(new_tags) > _MAX_TAGS_PER_BATCH
        ):
            send()
        metrics.extend(new_metrics)
        tags.extend(new_tags)
        keys.append(str(record["key"]))
    send()

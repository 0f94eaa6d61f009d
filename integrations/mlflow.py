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
the local journal.
"""

from __future__ import annotations

from collections.abc import Sequence

try:
    import mlflow
    from mlflow.entities import Metric, RunTag
    from mlflow.tracking import MlflowClient
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "carbon_callbacks.integrations.mlflow needs MLflow: pip install 'carbon-callbacks[mlflow]'"
    ) from exc

from carbon_callbacks.delivery import (
    DEFAULT_MIN_INTERVAL_S,
    DEFAULT_QUEUE_SIZE,
    BackgroundSink,
    Record,
)
from carbon_callbacks.errors import ErrorLog

__all__ = ["MlflowSink", "active_run_sink"]

# MLflow's limits for one log_batch request.
_MAX_METRICS_PER_BATCH = 1000
_MAX_TAGS_PER_BATCH = 100


class MlflowSink(BackgroundSink):
    """Log to an existing MLflow run through `MlflowClient`, from a background thread.

    Args:
        run_id: the MLflow run to log to (it may be finished: MLflow accepts that).
        tracking_uri: the tracking URI of that run; default: the current
            ``mlflow.get_tracking_uri()``, resolved now, so a later ``set_tracking_uri``
            elsewhere does not redirect this sink.
        queue_size: records held at most while a request is in flight.
        errors: where run-time failures go (the session passes the tracker's).
        min_interval_s: seconds between two requests at least; the records made meanwhile
            go together in one ``log_batch``.

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
    ) -> None:
        if not isinstance(run_id, str) or not run_id:
            raise ValueError(f"run_id must be a non-empty MLflow run id, got {run_id!r}")
        super().__init__(
            run_id,
            name="mlflow",
            queue_size=queue_size,
            errors=errors,
            min_interval_s=min_interval_s,
        )
        self.run_id = run_id
        self.tracking_uri = str(tracking_uri or mlflow.get_tracking_uri())
        self._client: MlflowClient | None = None

    def __repr__(self) -> str:
        return f"MlflowSink(run_id={self.run_id!r}, tracking_uri={self.tracking_uri!r})"

    def _open(self) -> None:
        # On the worker thread: opening a new sqlite store can take seconds (migrations).
        self._client = MlflowClient(self.tracking_uri)

    def _send(self, records: Sequence[Record]) -> None:
        assert self._client is not None
        metrics: list[Metric] = []
        tags: list[RunTag] = []
        for record in records:
            if record.kind == "tags":
                tags.extend(RunTag(str(k), str(v)) for k, v in record.data.items())
            else:
                step = record.step or 0
                metrics.extend(
                    Metric(str(k), float(v), record.timestamp_ms, step)
                    for k, v in record.data.items()
                )
        while metrics or tags:
            self._client.log_batch(
                self.run_id,
                metrics=metrics[:_MAX_METRICS_PER_BATCH],
                tags=tags[:_MAX_TAGS_PER_BATCH],
            )
            metrics = metrics[_MAX_METRICS_PER_BATCH:]
            tags = tags[_MAX_TAGS_PER_BATCH:]


def active_run_sink() -> MlflowSink | None:
    """A sink for ``mlflow.active_run()`` in this thread, or None when no run is active."""
    run = mlflow.active_run()
    if run is None:
        return None
    return MlflowSink(run.info.run_id, mlflow.get_tracking_uri())

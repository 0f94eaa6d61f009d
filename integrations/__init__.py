"""Framework callbacks and tracker sinks.

Each module imports its framework and nothing more: `lightning`, `transformers` and `keras`
hold one `CarbonCallback` each; `mlflow` holds `MlflowSink`, `comet` holds `CometSink`,
`wandb` holds `WandbSink`; `loggers` (`LoggerSink`: any other Lightning logger) and
`tensorboard` (`TensorBoardSink`: HF ``report_to=["tensorboard"]``) hold the sinks of local
files, which are not journal-backed. This package itself imports no framework; it holds what
the callbacks share (argument checks, run discovery: a tracking client is imported only when
the user's run is one of its runs).
"""

from __future__ import annotations

import difflib
import inspect
import logging
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, cast

from carbon_callbacks.delivery import Sink
from carbon_callbacks.session import CarbonSession
from carbon_callbacks.tracker import Tracker

if TYPE_CHECKING:
    from carbon_callbacks.integrations.comet import CometSink
    from carbon_callbacks.integrations.mlflow import MlflowSink
    from carbon_callbacks.integrations.wandb import WandbSink

logger = logging.getLogger(__name__)

SinksArg = Literal["auto"] | Sequence[Sink] | None


def install_hint(extra: str, what: str) -> str:
    """The ImportError message of an integration whose framework is missing."""
    return (
        f"carbon_callbacks.integrations.{extra} needs {what}: "
        f"pip install 'carbon-callbacks[{extra}]'"
    )


def make_session(
    tracker: Tracker | None,
    tracker_kwargs: Mapping[str, Any],
    sinks: SinksArg,
    *,
    summary: bool = True,
    artifacts: bool = True,
    owner: str = "CarbonCallback",
) -> CarbonSession:
    """Build the session of a callback from its arguments (configuration errors raise here,
    all of them before the `Tracker` is built, so none follows a warning of its own).

    Args:
        owner: the name the errors give the caller (``CarbonCallback``).

    Raises:
        ValueError: both `tracker` and Tracker keyword arguments, or a bad `sinks` value.
        TypeError: an unknown keyword argument (the close match is suggested), `tracker` is
            not a `Tracker`, a sink lacks the `Sink` methods, or `summary` / `artifacts` is
            not a bool.
    """
    checked = check_sinks(sinks)
    for name, value in (("summary", summary), ("artifacts", artifacts)):
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be True or False, got {value!r}")
    check_keywords(tracker_kwargs, owner)
    if tracker is not None:
        if tracker_kwargs:
            raise ValueError(
                "pass either tracker= or Tracker keyword arguments, not both "
                f"(got tracker= and {sorted(tracker_kwargs)})"
            )
        if not isinstance(tracker, Tracker):
            raise TypeError(f"tracker must be a carbon_callbacks.Tracker, got {tracker!r}")
    else:
        # Re-issued so that a warning (no location configured...) names the user's line.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            tracker = Tracker(**tracker_kwargs)
        for w in caught:
            warnings.warn(w.message, w.category, stacklevel=3)
    return CarbonSession(tracker, checked, summary=summary, artifacts=artifacts)


# The callbacks' own arguments; every other keyword goes to `Tracker`.
CALLBACK_ARGUMENTS = ("tracker", "sinks", "summary", "artifacts")


def check_keywords(tracker_kwargs: Mapping[str, Any], owner: str = "CarbonCallback") -> None:
    """Refuse a keyword that neither the callback nor `Tracker` takes, naming `owner` and the
    closest accepted name (``contry`` -> ``country``), or listing them all.

    Raises:
        TypeError: ``CarbonCallback got an unexpected keyword argument 'contry'; did you
            mean 'country'?``
    """
    accepted = [*CALLBACK_ARGUMENTS, *inspect.signature(Tracker).parameters]
    for name in tracker_kwargs:
        if name in accepted:
            continue
        close = difflib.get_close_matches(name, accepted, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"accepted: {', '.join(accepted)}"
        raise TypeError(f"{owner} got an unexpected keyword argument {name!r}; {hint}")


class SessionCallback:
    """What the three `CarbonCallback` classes share: their arguments and their session.

    Listed before the framework's callback class, so ``super().__init__()`` reaches it.
    """

    def __init__(
        self,
        *,
        tracker: Tracker | None = None,
        sinks: SinksArg = "auto",
        summary: bool = True,
        artifacts: bool = True,
        **tracker_kwargs: Any,
    ) -> None:
        super().__init__()
        self._auto = sinks == "auto"
        self.session: CarbonSession = make_session(
            tracker, tracker_kwargs, sinks, summary=summary, artifacts=artifacts
        )

    @property
    def tracker(self) -> Tracker:
        return self.session.tracker


def check_sinks(sinks: SinksArg) -> list[Sink]:
    """Validate `sinks`: ``"auto"`` (found at train start), None (none) or a list of sinks."""
    if sinks is None:
        return []
    if isinstance(sinks, (str, bytes)):
        if sinks == "auto":
            return []
        raise ValueError(f'sinks must be "auto", None or a list of sinks, got {sinks!r}')
    if not isinstance(sinks, Sequence):
        raise ValueError(f'sinks must be "auto", None or a list of sinks, got {sinks!r}')
    for sink in sinks:
        if not isinstance(sink, Sink):
            raise TypeError(
                f"{sink!r} is not a sink: it needs log_tags, log_metrics, flush and close"
            )
    return list(cast("Sequence[Sink]", sinks))


def mlflow_sink(run_id: str, tracking_uri: str | None) -> MlflowSink:
    """An `MlflowSink` (imports mlflow: call only when the user's run is an MLflow one)."""
    from carbon_callbacks.integrations.mlflow import MlflowSink

    return MlflowSink(run_id, tracking_uri)


def active_mlflow_sink() -> MlflowSink | None:
    """A sink for the active MLflow run, if the user imported mlflow and started one."""
    if "mlflow" not in sys.modules:  # nobody started a run without importing mlflow
        return None
    from carbon_callbacks.integrations.mlflow import active_run_sink

    return active_run_sink()


def comet_sink(experiment: Any) -> CometSink:
    """A `CometSink` (imports comet_ml: call only when the user's run is a Comet one)."""
    from carbon_callbacks.integrations.comet import CometSink

    return CometSink(experiment)


def active_comet_sink(*, requested: bool = False) -> CometSink | None:
    """A sink for the running Comet experiment, if the user imported comet_ml and started one
    (``comet_ml.start()``, an ``Experiment``) or asked for one (`requested`: HF
    ``report_to=["comet_ml"]``). An experiment that Comet's MLflow auto-logger made by itself
    (comet_ml, imported before mlflow, mirrors each MLflow run) is taken only if `requested`.
    """
    if "comet_ml" not in sys.modules:  # nobody started an experiment without importing it
        return None
    from carbon_callbacks.integrations.comet import running_experiment_sink

    return running_experiment_sink(requested=requested)


def wandb_sink(run: Any) -> WandbSink:
    """A `WandbSink` (imports wandb: call only when the user's run is a W&B one)."""
    from carbon_callbacks.integrations.wandb import WandbSink

    return WandbSink(run)


def active_wandb_sink() -> WandbSink | None:
    """A sink for ``wandb.run``, if the user imported wandb and started a run
    (``wandb.init()``, Lightning's `WandbLogger`, or HF ``report_to=["wandb"]``)."""
    if "wandb" not in sys.modules:  # nobody started a run without importing wandb
        return None
    from carbon_callbacks.integrations.wandb import active_run_sink

    return active_run_sink()


def active_sinks(
    *, mlflow: bool = True, comet: bool = True, comet_requested: bool = False, wandb: bool = True
) -> list[Sink]:
    """Sinks for the active MLflow run, the running Comet experiment and the active W&B run
    (any of them, or none); `mlflow` / `comet` / `wandb` False: not looked for (the trainer
    has a logger of that kind); `comet_requested`: the user's set-up asked for Comet (see
    `active_comet_sink`)."""
    found = [
        active_mlflow_sink() if mlflow else None,
        active_comet_sink(requested=comet_requested) if comet else None,
        active_wandb_sink() if wandb else None,
    ]
    return [sink for sink in found if sink is not None]


def find_sinks_safely(tracker: Tracker, find: Callable[[], list[Sink]]) -> list[Sink]:
    """Run `find`; on failure, record why in ``tracker.errors`` and use no sink."""
    try:
        return find()
    except Exception as exc:  # the run-time boundary: never raise into training
        tracker.errors.record(
            f"sinks:find:{type(exc).__name__}", f"could not find the run to log to: {exc}"
        )
        return []


def report_found(framework: str, sinks: Sequence[Sink]) -> None:
    """One line on where the metrics go: INFO; or that they go to the journal only: a WARNING
    when a tracking library is imported and set up (the user meant to log somewhere), INFO
    otherwise."""
    if sinks:
        logger.info("carbon-callbacks (%s): logging to %s", framework, ", ".join(map(repr, sinks)))
        return
    set_up = tracking_set_up()
    logger.log(
        logging.WARNING if set_up else logging.INFO,
        "carbon-callbacks (%s): no MLflow run, Comet experiment, W&B run or logger found%s; "
        "the carbon metrics "
        "go to the journal and the summary only (start a run or experiment before training, "
        "or pass sinks=[...])",
        framework,
        f" although {' and '.join(set_up)}" if set_up else "",
    )


def tracking_set_up() -> list[str]:
    """What says the user meant to track this run: ``"mlflow has a tracking URI"`` when mlflow
    is imported and its tracking URI is set (``MLFLOW_TRACKING_URI`` or ``set_tracking_uri``),
    ``"comet_ml has an API key"`` when comet_ml is imported and has one. Imports neither."""
    found = []
    try:
        mlflow = sys.modules.get("mlflow")
        is_set = getattr(mlflow, "is_tracking_uri_set", None)
        if callable(is_set) and is_set():
            found.append("mlflow has a tracking URI")
        comet_ml = sys.modules.get("comet_ml")
        get_key, get_config = (getattr(comet_ml, n, None) for n in ("get_api_key", "get_config"))
        if callable(get_key) and callable(get_config) and get_key(None, get_config()):
            found.append("comet_ml has an API key")
    except Exception:  # a client's own failure: only the level of one log line depends on it
        logger.debug("carbon-callbacks: could not tell whether tracking is set up", exc_info=True)
    return found

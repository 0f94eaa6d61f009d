"""Bad input, property-based: any value of any argument or setting is either accepted (and
the run then never raises) or refused at construction with ValueError/TypeError naming it.

Covers every `Tracker` argument, the arguments every framework callback shares (through
`make_session`, which their constructors call), the sink arguments, and every
``CARBON_CALLBACKS_*`` variable the package reads (found by scanning its source, so a new
variable is covered without editing this file).
"""

from __future__ import annotations

import inspect
import math
import os
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import carbon_callbacks
from carbon_callbacks import Tracker
from carbon_callbacks.delivery import BackgroundSink
from carbon_callbacks.integrations import make_session
from carbon_callbacks.session import CarbonSession
from tests.fakes.clock import FakeClock

SETTINGS = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
PACKAGE_DIRS = [
    Path(carbon_callbacks.__file__).parent,
    Path(carbon_callbacks.__file__).parents[1] / "integrations",
]


class Opaque:
    """An object of no expected type, with a recognisable repr."""

    def __repr__(self) -> str:
        return "<Opaque thing>"


# Text without NUL or lone surrogates (which no environment or file name can hold).
TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    TEXT,
    st.binary(max_size=4),
    st.just(Opaque()),
)
VALUES = st.one_of(
    SCALARS,
    st.lists(SCALARS, max_size=3),
    st.tuples(SCALARS),
    st.dictionaries(TEXT, SCALARS, max_size=2),
)
# Numbers and location-like strings, so the interesting edges come up often.
NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-10, max_value=10**6),
    st.sampled_from(["1.2", "-1", "nan", "inf", "", " ", "1e400"]),
)
LOCATIONS = st.one_of(
    TEXT,
    st.sampled_from(["FR", "fra", "France", "US-CA", "us-ca", "gcp:europe-west1", "aws:", ":",
                     "XX", "US-XX", "azure:nowhere", " fr "]),
)  # fmt: skip


def named(value: object, message: str) -> bool:
    """Whether `message` names `value` (or, for a container, one of its items)."""
    candidates = [repr(value)]
    if not isinstance(value, (str, bytes)):
        candidates.append(str(value))
    if isinstance(value, (list, tuple, set, dict)):
        for item in value:
            candidates.append(repr(item))
            if not isinstance(item, (str, bytes)):
                candidates.append(str(item))
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        candidates.append(str(int(value)))
    return any(c and c in message for c in candidates)


def unsafe_path(value: object) -> bool:
    """A path the run must not create here (absolute, or leaving the test's folder)."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return False
    return os.path.isabs(value) or ".." in value or value.startswith("~")


@contextmanager
def quiet_in(folder: Path) -> Iterator[None]:
    """Warnings recorded, not raised; the current folder is `folder` (journals land there)."""
    old = os.getcwd()
    os.chdir(folder)
    try:
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            yield
    finally:
        os.chdir(old)


def run_once(tracker: Tracker, clock: FakeClock | None = None) -> None:
    """A whole short run through the session: nothing here may raise."""
    session = CarbonSession(tracker, [], summary=False, flush_timeout_s=0.1)
    session.begin()
    if clock is not None:
        clock.advance(10)
    session.epoch_end(0)
    session.end()
    tracker.close()


def construct_or_refuse(build: Any, value: object) -> Any:
    try:
        return build()
    except (ValueError, TypeError) as exc:
        assert named(value, str(exc)), f"{type(exc).__name__} does not name {value!r}: {exc}"
        return None


TRACKER_PARAMS = [p for p in inspect.signature(Tracker.__init__).parameters if p != "self"]
SPECIFIC = {
    "country": LOCATIONS,
    "region": LOCATIONS,
    "cloud": LOCATIONS,
    "pue": NUMBERS,
    "cpu_power_w": NUMBERS,
    "ram_power_w": NUMBERS,
    "intensity_g_per_kwh": NUMBERS,
}


@pytest.mark.parametrize("name", TRACKER_PARAMS)
def test_every_tracker_argument(name: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp(f"arg-{name}")

    @SETTINGS
    @given(value=st.one_of(VALUES, SPECIFIC.get(name, VALUES)))
    def check(value: object) -> None:
        if name == "output_dir" and unsafe_path(value):
            return
        clock = FakeClock()
        kwargs: dict[str, Any] = {"clock": clock, "output_dir": "journal", name: value}
        if name not in ("country", "region", "cloud", "intensity_g_per_kwh"):
            kwargs["intensity_g_per_kwh"] = 100
        with quiet_in(folder):
            tracker = construct_or_refuse(lambda: Tracker(**kwargs), value)
            if tracker is not None:
                run_once(tracker, clock if name != "clock" else None)

    check()


def package_env_vars() -> list[str]:
    found: set[str] = set()
    for folder in PACKAGE_DIRS:
        for path in folder.rglob("*.py"):
            found.update(re.findall(r"CARBON_CALLBACKS_[A-Z0-9_]*[A-Z0-9]", path.read_text()))
    return sorted(found)


ENV_VARS = package_env_vars()


def test_the_environment_scan_finds_the_documented_variables() -> None:
    assert {
        "CARBON_CALLBACKS_COUNTRY",
        "CARBON_CALLBACKS_REGION",
        "CARBON_CALLBACKS_CLOUD",
        "CARBON_CALLBACKS_INTENSITY_G_PER_KWH",
        "CARBON_CALLBACKS_OUTPUT_DIR",
        "CARBON_CALLBACKS_POWERCAP_ROOT",
        "CARBON_CALLBACKS_FLUSH_TIMEOUT_S",
    } <= set(ENV_VARS)


ENV_TEXT = st.one_of(
    TEXT,
    st.sampled_from(["", " ", "0", "-1", "nan", "inf", "1e400", "FR", "US-CA", "gcp:x", "true"]),
)


@pytest.mark.parametrize("variable", ENV_VARS)
def test_every_environment_variable(
    variable: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = tmp_path_factory.mktemp(variable.lower())

    @SETTINGS
    @given(value=ENV_TEXT)
    def check(value: str) -> None:
        if variable.endswith(("_DIR", "_ROOT")) and unsafe_path(value):
            return
        clock = FakeClock()
        with pytest.MonkeyPatch.context() as mp, quiet_in(folder):
            mp.setenv(variable, value)
            if variable == "CARBON_CALLBACKS_OUTPUT_DIR":
                mp.delenv(variable) if not value else None
            tracker = construct_or_refuse(lambda: Tracker(clock=clock), value)
            if tracker is not None:
                run_once(tracker, clock)

    check()


@pytest.mark.parametrize("name", ["tracker", "sinks", "summary", "tracker_kwargs"])
def test_every_callback_argument(name: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    """`make_session(tracker, tracker_kwargs, sinks, summary=)` is what the Lightning, HF and
    Keras callbacks' constructors do with their arguments (the Tracker keywords are above)."""
    folder = tmp_path_factory.mktemp(f"callback-{name}")
    extra = st.dictionaries(
        st.sampled_from(["country", "pue", "bogus", "sinks"]), VALUES, max_size=2
    )

    @SETTINGS
    @given(value=extra if name == "tracker_kwargs" else VALUES)
    def check(value: Any) -> None:
        args: dict[str, Any] = {
            "tracker": None,
            "tracker_kwargs": {"intensity_g_per_kwh": 100, "output_dir": "journal"},
            "sinks": "auto",
            "summary": False,
            name: value,
        }
        if name == "tracker":  # a tracker, or its keywords: not both
            args["tracker_kwargs"] = {}
        with quiet_in(folder):
            session = construct_or_refuse(
                lambda: make_session(
                    args["tracker"], args["tracker_kwargs"], args["sinks"], summary=args["summary"]
                ),
                value if name != "tracker_kwargs" else list(value.values()) + list(value),
            )
            if session is not None:
                session.begin()
                session.epoch_end(0)
                session.end()

    check()


class NullSink(BackgroundSink):
    def _send(self, records: Any) -> None:
        pass


@pytest.mark.parametrize("name", ["queue_size", "min_interval_s", "max_retries", "backoff_s"])
def test_every_sink_argument(name: str) -> None:
    @SETTINGS
    @given(value=st.one_of(VALUES, NUMBERS))
    def check(value: Any) -> None:
        sink = construct_or_refuse(lambda: NullSink("run", name="null", **{name: value}), value)
        if sink is not None:
            sink.log_metrics({"carbon/energy_kwh": 1.0}, step=0)
            sink.close()

    check()

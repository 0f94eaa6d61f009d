"""The sensor contract shared by every energy source.

A sensor reports the *cumulative* energy of one hardware component, in joules, since its
``start()``. The tracker turns two readings into the energy of a lap, so a sensor backed by a
hardware counter needs no thread at all (a measurement window, as in Zeus). Sensors that have
to integrate power over time take ``now`` (seconds on the tracker's monotonic clock) as an
argument, which keeps them exact under a fake clock in tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from carbon_callbacks.errors import CarbonWarning

Component = Literal["cpu", "gpu", "ram"]

# Method labels (the `carbon.*_method` tag values). Estimates are labelled as such everywhere.
RAPL = "rapl"
NVML_ENERGY = "nvml-energy"
NVML_POWER = "nvml-power"
ESTIMATE_TDP = "estimate-tdp"
ESTIMATE_RAM = "estimate-ram"
CONSTANT = "constant"
NONE = "none"

MEASURED_METHODS = frozenset({RAPL, NVML_ENERGY, NVML_POWER})
ESTIMATED_METHODS = frozenset({ESTIMATE_TDP, ESTIMATE_RAM, CONSTANT})

METHOD_DESCRIPTIONS = {
    RAPL: "measured (RAPL energy counters)",
    NVML_ENERGY: "measured (NVML energy counter)",
    NVML_POWER: "measured (NVML power samples, integrated)",
    ESTIMATE_TDP: "estimated (CPU TDP x load model)",
    ESTIMATE_RAM: "estimated (0.3725 W per GB of RAM)",
    CONSTANT: "estimated (constant power given by the user)",
    NONE: "not counted",
}


class SensorError(RuntimeError):
    """A sensor could not be read at run time (the tracker records it and carries on)."""


class SensorUnavailable(Exception):
    """A probe found that a source cannot be used here; ``str(exc)`` says why, in plain words.

    Detection catches it, records the reason in a `SensorReport` and tries the next source.
    """


class SensorWarning(CarbonWarning):
    """A better source exists but the user must act to enable it (e.g. RAPL permissions)."""


@dataclass(frozen=True)
class SensorReport:
    """What detection found for one source (shown by ``carbon-callbacks detect``).

    Args:
        component: ``"cpu"``, ``"gpu"`` or ``"ram"``.
        name: the source, e.g. ``"RAPL"``, ``"NVML"``, ``"TDP estimate"``.
        available: whether this source is the one used for `component`.
        method: the method label when available, else None.
        reason: plain words: why it is used, or why not.
    """

    component: Component
    name: str
    available: bool
    method: str | None
    reason: str


@runtime_checkable
class Sensor(Protocol):
    """One energy source for one component."""

    component: Component
    method: str

    def start(self, now: float) -> None:
        """Reset the cumulative energy to zero at `now` (seconds, monotonic)."""

    def energy_j(self, now: float) -> float:
        """Cumulative energy in joules since `start()`; raises `SensorError` on failure."""

    def close(self) -> None:
        """Release handles and stop any sampling thread. Idempotent."""


@runtime_checkable
class PollingSensor(Sensor, Protocol):
    """A sensor whose counter can wrap: ``poll()`` must run at least every `poll_interval_s`.

    The tracker owns the (one, low-frequency) thread that calls ``poll()``.
    """

    poll_interval_s: float

    def poll(self) -> None:
        """Read the counters now so that no wrap-around is missed."""


def is_estimate(method: str) -> bool:
    """True when `method`, or any part of a merged label (``"rapl+estimate-tdp"``: another
    rank estimated what this one measured), is an estimate."""
    if method in ESTIMATED_METHODS:
        return True
    return "+" in method and any(part in ESTIMATED_METHODS for part in method.split("+"))


# The range each method's energy is known to: the true energy lies within
# [value x low, value x high]. The figures and their sources are in docs/methodology.md.
METHOD_ERROR_BOUNDS: dict[str, tuple[float, float]] = {
    RAPL: (0.95, 1.05),
    NVML_ENERGY: (0.95, 1.05),
    NVML_POWER: (0.9, 1.1),
    ESTIMATE_TDP: (0.8, 1.25),
    ESTIMATE_RAM: (0.5, 2.0),
    CONSTANT: (1.0, 1.0),  # the user's own watts: exact by definition
    NONE: (1.0, 1.0),
}
_UNKNOWN_BOUNDS = (0.5, 2.0)  # a method without a documented figure (a custom sensor)


def error_bounds(method: str) -> tuple[float, float]:
    """``(low, high)`` factors of `method`; a merged label (``"rapl+estimate-tdp"``) takes
    the widest of its parts."""
    bounds = METHOD_ERROR_BOUNDS.get(method)
    if bounds is not None:
        return bounds
    parts = [METHOD_ERROR_BOUNDS.get(p, _UNKNOWN_BOUNDS) for p in method.split("+")]
    return min(p[0] for p in parts), max(p[1] for p in parts)


def energy_bounds(method: str, energy_kwh: float) -> tuple[float, float]:
    """The range ``(low, high)`` the true energy lies in, for `energy_kwh` measured by
    `method`."""
    low, high = error_bounds(method)
    return energy_kwh * low, energy_kwh * high

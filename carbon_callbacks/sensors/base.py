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
ESTIMATE_GPU_TDP = "estimate-gpu-tdp"
CONSTANT = "constant"
NONE = "none"

MEASURED_METHODS = frozenset({RAPL, NVML_ENERGY, NVML_POWER})
ESTIMATED_METHODS = frozenset({ESTIMATE_TDP, ESTIMATE_RAM, ESTIMATE_GPU_TDP, CONSTANT})

METHOD_DESCRIPTIONS = {
    RAPL: "measured (RAPL energy counters)",
    NVML_ENERGY: "measured (NVML energy counter)",
    NVML_POWER: "measured (NVML power samples, integrated)",
    ESTIMATE_TDP: "estimated (CPU TDP x load model)",
    ESTIMATE_RAM: "estimated (0.3725 W per GB of RAM)",
    ESTIMATE_GPU_TDP: "estimated (GPU TDP x utilisation model)",
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
    """Whether `method` is an estimate; a merged label (``"rapl+estimate-tdp"``, from summing
    laps measured differently) is one when any of its parts is."""
    return any(part in ESTIMATED_METHODS for part in method.split("+"))

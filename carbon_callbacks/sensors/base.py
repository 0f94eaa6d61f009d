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
# Reports also cover the node meter, which is not a component.
ReportComponent = Literal["cpu", "gpu", "ram", "node"]

# Method labels (the `carbon.*_method` tag values). Estimates are labelled as such everywhere.
RAPL = "rapl"
NVML_ENERGY = "nvml-energy"
NVML_POWER = "nvml-power"
ESTIMATE_TDP = "estimate-tdp"
ESTIMATE_RAM = "estimate-ram"
ESTIMATE_GPU_TDP = "estimate-gpu-tdp"
CONSTANT = "constant"
NONE = "none"
AMDSMI_ENERGY = "amdsmi-energy"
AMDSMI_POWER = "amdsmi-power"
HLSMI_POWER = "hlsmi-power"
HWMON = "hwmon"
IOREPORT = "ioreport"
POWERMETRICS = "powermetrics"
ESTIMATE_TPU = "estimate-tpu"
# The node's method (`Measurement.node_method`, tag `carbon.node_method`): the whole
# machine's input power from its own meter replaces the sum of the components.
NODE_METER = "node-meter"

MEASURED_METHODS = frozenset(
    {RAPL, NVML_ENERGY, NVML_POWER, AMDSMI_ENERGY, AMDSMI_POWER, HLSMI_POWER, HWMON, NODE_METER}
)
# macOS's energy figures are its own model's: `man powermetrics` says "Average power values
# reported by powermetrics are estimated and may be inaccurate", and IOReport's channels are
# the "Energy Model" group that powermetrics reads. So both count as estimates.
ESTIMATED_METHODS = frozenset(
    {ESTIMATE_TDP, ESTIMATE_RAM, ESTIMATE_GPU_TDP, CONSTANT, IOREPORT, POWERMETRICS, ESTIMATE_TPU}
)

METHOD_DESCRIPTIONS = {
    RAPL: "measured (RAPL energy counters)",
    NVML_ENERGY: "measured (NVML energy counter)",
    NVML_POWER: "measured (NVML power samples, integrated)",
    ESTIMATE_TDP: "estimated (CPU TDP x load model)",
    ESTIMATE_RAM: "estimated (0.3725 W per GB of RAM)",
    ESTIMATE_GPU_TDP: "estimated (GPU TDP x utilisation model)",
    CONSTANT: "estimated (constant power given by the user)",
    AMDSMI_ENERGY: "measured (AMD SMI energy counter)",
    AMDSMI_POWER: "measured (AMD SMI power samples, integrated)",
    HLSMI_POWER: "measured (hl-smi power samples, integrated)",
    HWMON: "measured (hwmon power sensors, integrated)",
    IOREPORT: "estimated (macOS IOReport energy model counters)",
    POWERMETRICS: "estimated (macOS powermetrics energy model)",
    ESTIMATE_TPU: "estimated (published TPU chip power x chips)",
    NODE_METER: "measured (the node's own power meter)",
    NONE: "not counted",
}

_RAM_W_PER_GB = 0.3725  # the RAM estimate's figure (estimate.RAM_W_PER_GB)

# The lowest and highest ratio of estimated to measured energy over the held-out servers of
# the CPU model's validation (bench/validate_cpu_model.py; docs/methodology.md): re-exported
# by `carbon_callbacks.sensors.estimate`, and a test checks it is what the bench computes.
CPU_ESTIMATE_ENERGY_RATIO: tuple[float, float] = (0.698, 1.071)

# For each method, factors (low, high) such that the true energy lies within
# [value x low, value x high]. docs/methodology.md has the table with the sources.
METHOD_ERROR_BOUNDS: dict[str, tuple[float, float]] = {
    # Khan, Ou, Hirki, Nurminen & Niemi 2016, "How much power does your server consume?
    # Estimating wall socket power using RAPL measurements", Computer Science - Research and
    # Development 31(4):207-214: wall power predicted from RAPL package power against a plug
    # meter, at most 5.6 % error (Stress-ng, STREAM, ParFullCMS, Parsec). The closest published
    # RAPL-versus-meter figure found; it bounds a fitted model, not each domain's reading.
    # For DRAM domains Desrochers, Paradis & Weaver 2016 (MEMSYS, doi:10.1145/2989081.2989088)
    # report a constant offset, worst at idle, without one figure; none is taken from them.
    RAPL: (1.0 - 0.056, 1.0 + 0.056),
    # NVIDIA's NVML reference, nvmlDeviceGetPowerUsage: "accurate to within +/- 5% of current
    # power draw" (stated for Fermi and Kepler; NVIDIA states no figure for later GPUs or for
    # nvmlDeviceGetTotalEnergyConsumption). Yang et al. 2024 (SC24, "Accurate and Convenient
    # Energy Measurements for GPUs", arXiv:2312.02741) found that A100 and H100 sample their
    # power during only 25 % of the time, which can bias short bursts; no bound for epoch-long
    # windows is published there, so none is added here.
    NVML_ENERGY: (0.95, 1.05),
    NVML_POWER: (0.95, 1.05),
    # The CPU model's held-out validation: estimated / measured energy in [0.698, 1.071], so
    # the true energy lies within [estimate / 1.071, estimate / 0.698].
    ESTIMATE_TDP: (1.0 / CPU_ESTIMATE_ENERGY_RATIO[1], 1.0 / CPU_ESTIMATE_ENERGY_RATIO[0]),
    # Published per-GB DRAM figures around 0.3725 W/GB (Green Algorithms): CodeCarbon v2
    # 3 W / 8 GB = 0.375, Cloud Carbon Footprint 0.392 W/GB; CodeCarbon v3's per-module model
    # gives from ~40 W for a 1 TB server (taken as 1024 GB, 0.039 W/GB) to ~10 W for an 8 GB
    # laptop (1.25 W/GB) (CodeCarbon 3 methodology documentation, "RAM"). The bounds span
    # those two.
    ESTIMATE_RAM: (40.0 / 1024.0 / _RAM_W_PER_GB, 10.0 / 8.0 / _RAM_W_PER_GB),
    # Latif et al. 2025, "Empirically-Calibrated H100 Node Power Models for Reducing
    # Uncertainty in AI Training Energy Estimation" (arXiv:2506.14551): TDP-based estimates of
    # 8 x H100 training were 27-37 % off the measured energy (intensive workloads drew 76 % of
    # the rated power). Applied both ways: TDP x utilisation can also miss idle power.
    ESTIMATE_GPU_TDP: (1.0 - 0.37, 1.0 + 0.37),
    # The user's own watts: the energy is exactly what they asked for.
    CONSTANT: (1.0, 1.0),
    # Nothing counted: nothing to bound.
    NONE: (1.0, 1.0),
}


# A label with no documented accuracy (a custom sensor's own): a factor of two either way.
UNKNOWN_ERROR_BOUNDS = (0.5, 2.0)

# Google's Cloud TPU v4 page: "Measured min/mean/max power 90/170/192 W" per chip. The TPU
# estimate charges the mean; the true draw lies between the measured min and max.
TPU_V4_MIN_MEAN_MAX_W = (90.0, 170.0, 192.0)

# Methods for which no published accuracy figure could be found and read (searched: AMD's
# amdsmi and ROCm SMI documentation, Habana's hl-smi documentation, the Linux hwmon ABI, the
# DMTF DCMI and Redfish specifications, Apple's powermetrics manual). They take the factor of
# two of an undocumented label, stated as such in docs/methodology.md, rather than a figure
# nobody published. Notes on each:
# - amdsmi: McDaniel et al. 2026 (arXiv:2604.06056) validate MI250X/MI300A energy-counter
#   power against Cray's off-chip meters and report systematic differences from the
#   meters' wider scope, without one accuracy figure for the counter itself.
# - Apple: `man powermetrics`: "estimated and may be inaccurate"; no figure.
# - node meters and hwmon: an ACPI power meter states its own accuracy (`power1_accuracy`,
#   shown by `carbon-callbacks detect`); NVIDIA's Grace firmware states 100 %, which is a
#   declaration, not a measured bound. IPMI DCMI and Redfish define no accuracy.
METHOD_ERROR_BOUNDS.update(
    {
        AMDSMI_ENERGY: UNKNOWN_ERROR_BOUNDS,
        AMDSMI_POWER: UNKNOWN_ERROR_BOUNDS,
        HLSMI_POWER: UNKNOWN_ERROR_BOUNDS,
        HWMON: UNKNOWN_ERROR_BOUNDS,
        IOREPORT: UNKNOWN_ERROR_BOUNDS,
        POWERMETRICS: UNKNOWN_ERROR_BOUNDS,
        NODE_METER: UNKNOWN_ERROR_BOUNDS,
        ESTIMATE_TPU: (
            TPU_V4_MIN_MEAN_MAX_W[0] / TPU_V4_MIN_MEAN_MAX_W[1],
            TPU_V4_MIN_MEAN_MAX_W[2] / TPU_V4_MIN_MEAN_MAX_W[1],
        ),
    }
)


def energy_bounds(method: str, energy_kwh: float) -> tuple[float, float]:
    """``(low_kwh, high_kwh)``: the range `METHOD_ERROR_BOUNDS` gives `energy_kwh` measured by
    `method`. A merged label (``"rapl+estimate-tdp"``, laps measured differently) takes the
    widest bounds of its parts; a label without a documented accuracy (a custom sensor's)
    takes `UNKNOWN_ERROR_BOUNDS`.

    Args:
        method: a method label, or labels joined by ``+``.
        energy_kwh: the energy in kWh.

    Example:
        >>> energy_bounds("nvml-energy", 2.0)
        (1.9, 2.1)
    """
    bounds = METHOD_ERROR_BOUNDS.get(method)
    if bounds is None:
        parts = [METHOD_ERROR_BOUNDS.get(p, UNKNOWN_ERROR_BOUNDS) for p in method.split("+")]
        bounds = (min(p[0] for p in parts), max(p[1] for p in parts))
    a, b = energy_kwh * bounds[0], energy_kwh * bounds[1]
    return (a, b) if a <= b else (b, a)


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
        component: ``"cpu"``, ``"gpu"``, ``"ram"``, or ``"node"`` for node meters.
        name: the source, e.g. ``"RAPL"``, ``"NVML"``, ``"TDP estimate"``.
        available: whether this source is the one used for `component`.
        method: the method label when available, else None.
        reason: plain words: why it is used, or why not.
    """

    component: ReportComponent
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
    laps measured differently, or ranks that measure differently) is one when any part is."""
    return any(part in ESTIMATED_METHODS for part in method.split("+"))

"""The node meter's share rule: which energy a lap counts when a node meter is read.

A node's meter replaces the sum of that node's components; the components are still
measured and logged. Under distributed training (docs/distributed.md):

- the meter of a node is read by the process that counts that node's CPU and RAM (its local
  rank 0) and by no other;
- every other process on a metered node contributes nothing to the node total (its GPU is
  inside the meter), only its components, for insight;
- a node without a meter contributes the sum of its components, as without node meters.

So the run's energy is, over nodes, the meter where there is one and the components where
there is not; each process computes its share (`node_share`) and the shares are summed over
ranks with the laps. A job that shares its node with other jobs is charged the whole
machine: see `carbon_callbacks.sensors.node` for when ``auto`` declines the meter.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from carbon_callbacks.sensors.base import (
    NODE_METER,
    NONE,
    SensorReport,
    SensorWarning,
    energy_bounds,
)
from carbon_callbacks.units import J_PER_KWH


@dataclass(frozen=True)
class NodeShare:
    """This process's (or, once summed, the run's) part of the node-basis energy, in kWh
    before PUE.

    Args:
        kwh, low_kwh, high_kwh: the energy counted and its range.
        meter_kwh: of which read from node meters (None: no meter read).
        meters: how many node meters were read (summed over ranks).
    """

    kwh: float
    low_kwh: float
    high_kwh: float
    meter_kwh: float | None
    meters: int

    def as_vector(self) -> list[float]:
        """The values summed over ranks."""
        meter = self.meter_kwh
        return [self.kwh, self.low_kwh, self.high_kwh, meter or 0.0, float(self.meters)]

    @classmethod
    def from_vector(cls, values: list[float]) -> NodeShare:
        meters = round(values[4])
        return cls(values[0], values[1], values[2], values[3] if meters else None, meters)


def node_share(
    components_kwh: float,
    bounds: tuple[float, float],
    meter_kwh: float | None,
    *,
    on_metered_node: bool,
) -> NodeShare:
    """This process's share (module docstring).

    Args:
        components_kwh: the energy of the components this process counts.
        bounds: their range, ``(low, high)`` kWh.
        meter_kwh: the node meter's energy when this process reads one, else None.
        on_metered_node: another process of this node reads its meter.

    Example:
        >>> node_share(0.5, (0.45, 0.55), None, on_metered_node=True).kwh
        0.0
    """
    if meter_kwh is not None:
        low, high = energy_bounds(NODE_METER, meter_kwh)
        return NodeShare(meter_kwh, low, high, meter_kwh, 1)
    if on_metered_node:
        return NodeShare(0.0, 0.0, 0.0, None, 0)
    return NodeShare(components_kwh, bounds[0], bounds[1], None, 0)


def node_method(meters: int, nodes: int) -> str:
    """``node-meter`` when every node's meter was read, ``node-meter+none`` when only some
    nodes have one, ``none`` when none was read."""
    if meters <= 0:
        return NONE
    return NODE_METER if meters >= nodes else f"{NODE_METER}+{NONE}"


class NodeMeterSlot:
    """The tracker's node meter (or none) and its reading state.

    Args:
        meter: the opened meter (`carbon_callbacks.sensors.node.open_node_meter`), or None.
        reports: what opening it found, one line per source tried.
    """

    def __init__(self, meter: Any = None, reports: list[SensorReport] | None = None) -> None:
        self.meter = meter
        self.reports = list(reports or [])
        self.on_metered_node = meter is not None
        self._last_j = 0.0

    @property
    def source(self) -> str | None:
        """``hwmon``, ``nvml-module``, ``ipmi`` or ``redfish``; None without a meter."""
        return None if self.meter is None else str(getattr(self.meter, "source", "node"))

    def drop(self, reason: str) -> None:
        """Stop reading the meter in this process (another one reads it)."""
        if self.meter is not None:
            self.meter.close()
            self.meter = None
            self.reports = [SensorReport("node", "node meter", False, None, reason)]

    def start(self, now: float) -> None:
        self._last_j = 0.0
        if self.meter is not None:
            self.meter.start(now)

    def read_kwh(self, now: float, *, commit: bool) -> float | None:
        """kWh since the last committed read; None without a meter. Raises on failure."""
        if self.meter is None:
            return None
        total_j = float(self.meter.energy_j(now))
        kwh = (total_j - self._last_j) / J_PER_KWH
        if commit:
            self._last_j = total_j
        return kwh

    def close(self) -> None:
        if self.meter is not None:
            self.meter.close()


def open_node_slot(
    mode: str | None,
    *,
    env: Mapping[str, str],
    clock: Callable[[], float],
    nvml: Any = None,
) -> NodeMeterSlot:
    """Open the node meter `mode` asks for (opt-in), applying the shared-node rule: ``auto``
    declines a meter when this process is confined to part of the machine (its CPU
    affinity or CPU quota is smaller than the machine), an explicit source is used and a
    `SensorWarning` says the whole machine is charged to this run."""
    from carbon_callbacks.sensors.node import open_node_meter

    ours = nvml is None and mode == "auto"
    if ours:
        nvml = _nvml_if_present()
    meter, reports = open_node_meter(mode, env=env, clock=clock, nvml=nvml)
    if ours and nvml is not None:
        if meter is not None and getattr(meter, "source", None) == "nvml-module":
            meter._close_source = nvml.nvmlShutdown  # the meter's close releases NVML
        else:
            with contextlib.suppress(Exception):
                nvml.nvmlShutdown()
    confined = confinement()
    if meter is not None and confined:
        if mode == "auto":
            meter.close()
            reason = f"node_power='auto' declines the node meter: {confined}"
            return NodeMeterSlot(
                None, [*reports[:-1], SensorReport("node", reports[-1].name, False, None, reason)]
            )
        warnings.warn(
            f"node_power={mode!r}: the node meter measures the whole machine, but {confined}: "
            "everything the machine draws is charged to this run",
            SensorWarning,
            stacklevel=3,
        )
    return NodeMeterSlot(meter, reports)


def _nvml_if_present() -> Any:
    """pynvml, initialised, when an NVIDIA driver is installed (Grace Hopper module power)."""
    from carbon_callbacks.sensors.nvml import driver_found, load_nvml

    if driver_found() is None:
        return None
    try:
        nvml = load_nvml()
        nvml.nvmlInit()
    except Exception:  # no usable NVML: the module meter is simply not tried
        return None
    return nvml


def confinement() -> str | None:
    """Why this process looks confined to part of the machine, or None."""
    from carbon_callbacks.sensors import cgroups, cpuinfo

    total = cpuinfo.logical_cpus()
    usable = cpuinfo.usable_cpus()
    if total and usable is not None and len(usable) < total:
        return f"this process may run on {len(usable)} of the machine's {total} CPUs"
    quota = cgroups.cpu_quota()
    if total and quota is not None and quota.cpus < total:
        return f"a CPU quota of {quota.cpus:g} CPUs ({quota.group}) is below the machine's {total}"
    return None

"""Power meters under ``/sys/class/hwmon``: ACPI power meters and NVIDIA Grace telemetry.

The Linux hwmon ABI (Documentation/hwmon/sysfs-interface.rst): ``power[1-*]_average`` and
``power[1-*]_input`` in microwatts, ``energy[1-*]_input`` cumulative in microjoules,
``power[1-*]_accuracy`` in percent. The ACPI 4.0 power meter driver (``name`` =
``power_meter``, Documentation/hwmon/acpi_power_meter.rst) adds ``power1_oem_info`` and
``power1_average_interval`` (ms); older kernels put its attributes in ``hwmonN/device/``,
newer ones in ``hwmonN/``, so both are read.

Two kinds of ``power_meter`` are told apart by their ``power1_oem_info``:

- NVIDIA Grace and Grace Hopper firmware declares one meter per socket and rail, "Module
  Power Socket N", "Grace Power Socket N", "CPU Power Socket N", "SysIO Power Socket N"
  (NVIDIA's edk2-nvidia ``BpmpSsdtSocket0_TH500.asl``, 50 ms or 1 s averages). Alumet's
  Grace Hopper plugin reads them as: module = the whole Grace Hopper module (regulator loss,
  DRAM, GPU and HBM included), grace = the socket, cpu = the CPU rail, sysio = the SoC rail.
  Here the CPU is the CPU and SysIO rails (`open_grace_cpu`), and the modules are a node
  meter for the superchips (`HwmonMeter`), never summed with anything else.
- any other ``power_meter`` is the machine's own input meter (a node meter).

``$CARBON_CALLBACKS_HWMON_ROOT`` replaces ``/sys/class/hwmon`` (tests build fake trees).
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from carbon_callbacks.sensors.base import HWMON, NODE_METER, SensorUnavailable
from carbon_callbacks.sensors.sampled import SampledPowerSensor
from carbon_callbacks.units import UJ_PER_J

logger = logging.getLogger(__name__)

ROOT_ENV = "CARBON_CALLBACKS_HWMON_ROOT"
DEFAULT_ROOT = "/sys/class/hwmon"
_UW_PER_W = 1_000_000.0
_GRACE_RE = re.compile(r"^(module|grace|cpu|sysio) power socket (\d+)$", re.IGNORECASE)


def hwmon_root(root: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """`root`, else ``$CARBON_CALLBACKS_HWMON_ROOT``, else ``/sys/class/hwmon``."""
    env = os.environ if env is None else env
    return root or env.get(ROOT_ENV) or DEFAULT_ROOT


def _read(path: str) -> str:
    with open(path, encoding="ascii", errors="replace") as f:
        return f.read().strip()


@dataclass(frozen=True)
class Meter:
    """One power meter channel: ``path`` of its value file, in µW (``power``) or µJ
    (``energy``); ``kind`` is a Grace rail (``module``/``grace``/``cpu``/``sysio``) or
    ``node``; ``accuracy`` is the meter's own ``power1_accuracy`` text, if any."""

    hwmon: str
    path: str
    unit: str  # "power" (µW) or "energy" (µJ, cumulative)
    kind: str
    socket: int
    label: str
    accuracy: str = ""


def _attr(directory: str, name: str) -> str | None:
    for where in (directory, os.path.join(directory, "device")):
        path = os.path.join(where, name)
        if os.path.isfile(path):
            return path
    return None


def find_meters(root: str | None = None) -> list[Meter]:
    """Every ``power_meter`` under `root`, Grace rails and node meters, in hwmon order."""
    root = hwmon_root(root)
    try:
        entries = sorted(os.listdir(root), key=lambda e: (len(e), e))
    except OSError:
        return []
    meters: list[Meter] = []
    for entry in entries:
        directory = os.path.join(root, entry)
        name_path = _attr(directory, "name")
        try:
            name = _read(name_path) if name_path else ""
        except OSError:
            continue
        if name != "power_meter":
            continue
        oem_path = _attr(directory, "power1_oem_info")
        oem = _read(oem_path) if oem_path else ""
        match = _GRACE_RE.match(oem)
        kind, socket = (match.group(1).lower(), int(match.group(2))) if match else ("node", 0)
        energy = _attr(directory, "energy1_input")
        power = _attr(directory, "power1_average") or _attr(directory, "power1_input")
        accuracy_path = _attr(directory, "power1_accuracy")
        accuracy = _read(accuracy_path) if accuracy_path else ""
        label = f"{entry} ({oem or name})"
        if energy is not None:
            meters.append(Meter(entry, energy, "energy", kind, socket, label, accuracy))
        elif power is not None:
            meters.append(Meter(entry, power, "power", kind, socket, label, accuracy))
    return meters


class HwmonMeter(SampledPowerSensor):
    """The sum of some hwmon meters: ``energy1_input`` counters where a meter has one (a
    lap is their difference, re-based if one goes back), else ``power*`` samples integrated.

    Args:
        meters: from `find_meters`.
        component: ``"cpu"`` for Grace's rails; a node meter uses ``"cpu"`` too (unused).
        method: ``hwmon`` or ``node-meter``.
        sample_interval_s, clock: see `SampledPowerSensor`.
    """

    def __init__(
        self,
        meters: list[Meter],
        *,
        component: str = "cpu",
        method: str = HWMON,
        sample_interval_s: float | None = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not meters:
            raise SensorUnavailable("hwmon: no meter")
        self.meters = list(meters)
        self._counters = [m for m in meters if m.unit == "energy"]
        powers = [m for m in meters if m.unit == "power"]
        self._last_uj: dict[str, int] = {}
        self._counted_uj = 0.0
        super().__init__(
            "cpu" if component not in ("cpu", "gpu", "ram") else component,  # type: ignore[arg-type]
            method,
            lambda: sum(int(_read(m.path)) for m in powers) / _UW_PER_W,
            name="hwmon " + ", ".join(m.label for m in meters),
            sample_interval_s=sample_interval_s if powers else None,
            clock=clock,
        )
        self.source = "hwmon"
        self.models = [m.label for m in meters]

    def _count(self) -> None:
        for m in self._counters:
            value = int(_read(m.path))
            last = self._last_uj.get(m.path, value)
            self._counted_uj += value - last if value >= last else value
            self._last_uj[m.path] = value

    def start(self, now: float) -> None:
        self._counted_uj = 0.0
        self._last_uj = {m.path: int(_read(m.path)) for m in self._counters}
        super().start(now)

    def energy_j(self, now: float) -> float:
        self._count()
        return super().energy_j(now) + self._counted_uj / UJ_PER_J

    def describe(self) -> str:
        stated = {m.accuracy for m in self.meters if m.accuracy}
        accuracy = f"; stated accuracy {', '.join(sorted(stated))}" if stated else ""
        return f"{self.name}{accuracy}"


def open_grace_cpu(
    root: str | None = None,
    *,
    sample_interval_s: float | None = 1.0,
    clock: Callable[[], float] = time.monotonic,
) -> HwmonMeter:
    """The CPU of a Grace or Grace Hopper machine: its CPU and SysIO rails, all sockets.

    Raises:
        SensorUnavailable: no Grace telemetry under the hwmon root.
    """
    rails = [m for m in find_meters(root) if m.kind in ("cpu", "sysio")]
    if not rails:
        raise SensorUnavailable(
            f"hwmon: no Grace CPU telemetry under {hwmon_root(root)} "
            "(power_meter 'CPU Power Socket N' / 'SysIO Power Socket N')"
        )
    return HwmonMeter(rails, sample_interval_s=sample_interval_s, clock=clock)


def open_node_hwmon(
    root: str | None = None,
    *,
    sample_interval_s: float | None = 1.0,
    clock: Callable[[], float] = time.monotonic,
) -> HwmonMeter:
    """The node meter from hwmon: the machine's ACPI power meter(s), else the Grace Hopper
    module meters (the superchips, not the rest of the machine).

    Raises:
        SensorUnavailable: neither is present (the message says what was looked for).
    """
    meters = find_meters(root)
    node = [m for m in meters if m.kind == "node"] or [m for m in meters if m.kind == "module"]
    if not node:
        raise SensorUnavailable(
            f"hwmon: no power meter under {hwmon_root(root)} (an ACPI power meter, "
            "hwmon name 'power_meter', or Grace Hopper 'Module Power Socket N')"
        )
    return HwmonMeter(node, method=NODE_METER, sample_interval_s=sample_interval_s, clock=clock)

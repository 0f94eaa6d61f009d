"""Pick the best energy source for each component, and say why.

Precedence: CPU: user's constant > RAPL packages > NVIDIA Grace hwmon rails > Apple silicon
(IOReport, powermetrics) > TDP x load estimate. RAM: user's constant > RAPL dram > Apple's
DRAM channels > 0.3725 W/GB estimate. GPU: NVML energy counter > NVML power samples > TDP x
utilisation estimate, for a GPU NVML lists but cannot meter > Apple's GPU+ANE > AMD SMI >
Intel Gaudi > Google TPU estimate > none (no GPU is not an estimate: ``gpu`` is None). Every
family gets a report line (`families`). On a machine with none of them this costs a few
milliseconds and imports no vendor library.
"""

from __future__ import annotations

import logging
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from carbon_callbacks.sensors.base import (
    CONSTANT,
    ESTIMATE_GPU_TDP,
    ESTIMATE_RAM,
    ESTIMATE_TDP,
    RAPL,
    Component,
    PollingSensor,
    Sensor,
    SensorReport,
    SensorUnavailable,
    SensorWarning,
)
from carbon_callbacks.sensors.estimate import (
    ConstantPowerSensor,
    CpuEstimateSensor,
    RamEstimateSensor,
)
from carbon_callbacks.sensors.rapl import RaplPermissionError, RaplSensors, open_rapl

logger = logging.getLogger(__name__)

__all__ = ["SensorReport", "SensorSet", "detect_sensors"]


@dataclass
class SensorSet:
    """The chosen sensor per component (None: not counted) and every source's report.

    Args:
        cpu, gpu, ram: the sensors.
        reports: one `SensorReport` per source tried, in order.
    """

    cpu: Sensor | None = None
    gpu: Sensor | None = None
    ram: Sensor | None = None
    reports: list[SensorReport] = field(default_factory=list)

    @property
    def sensors(self) -> list[Sensor]:
        return [s for s in (self.cpu, self.gpu, self.ram) if s is not None]

    def _polling(self) -> list[PollingSensor]:
        return [s for s in self.sensors if isinstance(s, PollingSensor)]

    @property
    def needs_guard_thread(self) -> bool:
        """Whether some counter (RAPL) can wrap and needs ``poll()`` every `poll_interval_s`."""
        return bool(self._polling())

    @property
    def poll_interval_s(self) -> float | None:
        """Seconds between ``poll()`` calls that miss no wrap-around (None: not needed)."""
        return min((s.poll_interval_s for s in self._polling()), default=None)

    def poll(self) -> None:
        """Poll every wrapping counter (for the tracker's guard thread)."""
        for s in self._polling():
            s.poll()

    def close(self) -> None:
        for s in self.sensors:
            s.close()


def _check_w(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not (math.isfinite(value) and value >= 0)
    ):
        raise ValueError(f"{name} must be a finite number of watts >= 0, got {value!r}")
    return float(value)


def _not_counted(component: Component) -> SensorReport:
    return SensorReport(
        component, "-", False, None, f"not counted in this process (count_{component}=False)"
    )


def _forced(component: Component, watts: float) -> tuple[Sensor, SensorReport]:
    reason = f"{component}_power_w={watts:g} W given by the user"
    return ConstantPowerSensor(component, watts), SensorReport(
        component, "constant", True, CONSTANT, reason
    )


def _probe_rapl(root: str | None, cpu: bool, ram: bool) -> tuple[RaplSensors | None, str]:
    try:
        return open_rapl(root, cpu=cpu, ram=ram), ""
    except RaplPermissionError as exc:
        warnings.warn(str(exc), SensorWarning, stacklevel=3)
        return None, str(exc)
    except SensorUnavailable as exc:
        return None, str(exc)


def _cpu(
    rapl: RaplSensors | None,
    rapl_reason: str,
    apple: dict[Component, Sensor],
    apple_reports: list[SensorReport],
) -> tuple[Sensor, list[SensorReport]]:
    from carbon_callbacks.sensors.families import grace_cpu

    if rapl is not None and rapl.cpu is not None:
        reason = "RAPL: " + ", ".join(rapl.cpu.names)
        return rapl.cpu, [SensorReport("cpu", "RAPL", True, RAPL, reason)]
    reports = [SensorReport("cpu", "RAPL", False, None, rapl_reason)]
    grace, grace_report = grace_cpu()
    reports.append(grace_report)
    reports.extend(r for r in apple_reports if r.component == "cpu")
    if grace is not None:
        return grace, reports
    if "cpu" in apple:
        return apple["cpu"], reports
    sensor = CpuEstimateSensor()
    reports.append(cpu_estimate_report(sensor))
    return sensor, reports


def cpu_estimate_report(sensor: CpuEstimateSensor) -> SensorReport:
    """The report line of a CPU estimate: its inputs, in words."""
    return SensorReport(
        "cpu", "TDP estimate", True, ESTIMATE_TDP, f"estimated: {sensor.describe()}"
    )


def _ram(
    rapl: RaplSensors | None,
    rapl_reason: str,
    apple: dict[Component, Sensor],
    apple_reports: list[SensorReport],
) -> tuple[Sensor | None, list[SensorReport]]:
    if rapl is not None and rapl.ram is not None:
        return rapl.ram, [SensorReport("ram", "RAPL", True, RAPL, rapl.ram_reason)]
    reason = rapl.ram_reason if rapl is not None else rapl_reason
    reports = [SensorReport("ram", "RAPL", False, None, reason)]
    if "ram" in apple:
        reports.extend(r for r in apple_reports if r.component == "ram")
        return apple["ram"], reports
    try:
        sensor = RamEstimateSensor()
    except ValueError as exc:
        reports.append(SensorReport("ram", "RAM estimate", False, None, str(exc)))
        return None, reports
    reports.append(
        SensorReport("ram", "RAM estimate", True, ESTIMATE_RAM, f"estimated: {sensor.describe()}")
    )
    return sensor, reports


def _gpu(
    gpu_ids: Sequence[int | str] | None,
    nvml: Any,
    clock: Callable[[], float],
    interval_s: float | None,
    apple: dict[Component, Sensor],
    apple_reports: list[SensorReport],
) -> tuple[Sensor | None, list[SensorReport]]:
    from carbon_callbacks.sensors.families import other_accelerators
    from carbon_callbacks.sensors.nvml import describe, open_gpu_sensor

    try:
        sensor = open_gpu_sensor(
            gpu_ids=gpu_ids, nvml=nvml, sample_interval_s=interval_s, clock=clock
        )
    except SensorUnavailable as exc:
        reports = [SensorReport("gpu", "NVML", False, None, str(exc))]
        reports.extend(r for r in apple_reports if r.component == "gpu")
        found = "Apple silicon" if "gpu" in apple else None
        other, more = other_accelerators(gpu_ids, os.environ, clock, interval_s, found=found)
        reports.extend(more)
        chosen = apple.get("gpu") or other
        if chosen is None and gpu_ids is not None:
            warnings.warn(
                f"gpu_ids={list(gpu_ids)!r} given, but GPU energy cannot be measured: {exc}",
                SensorWarning,
                stacklevel=3,
            )
        return chosen, reports
    if sensor.method != ESTIMATE_GPU_TDP:
        return sensor, [SensorReport("gpu", "NVML", True, sensor.method, describe(sensor))]
    unmetered = [d for d in sensor.devices if d.mode == "tdp"]
    why_not = "; ".join(f"{d.uuid} ({d.name}): {d.why}" for d in unmetered)
    return sensor, [
        SensorReport("gpu", "NVML", False, None, f"NVML cannot meter {why_not}"),
        SensorReport(
            "gpu", "GPU TDP estimate", True, ESTIMATE_GPU_TDP, f"estimated: {describe(sensor)}"
        ),
    ]


def detect_sensors(
    *,
    cpu_power_w: float | None = None,
    ram_power_w: float | None = None,
    gpu_ids: Sequence[int | str] | None = None,
    powercap_root: str | None = None,
    nvml: Any = None,
    count_cpu: bool = True,
    count_ram: bool = True,
    count_gpu: bool = True,
    clock: Callable[[], float] | None = None,
    gpu_sample_interval_s: float | None = 0.1,
) -> SensorSet:
    """The best sensor for each component on this machine.

    Args:
        cpu_power_w, ram_power_w: constant watts given by the user (method ``constant``).
        gpu_ids: GPUs to measure (NVML indices or UUIDs); default ``CUDA_VISIBLE_DEVICES``,
            else all.
        powercap_root: replaces ``$CARBON_CALLBACKS_POWERCAP_ROOT`` / ``/sys/class/powercap``.
        nvml: a pynvml-like module (tests); default: pynvml, imported only if a driver exists.
        count_cpu, count_ram, count_gpu: False leaves the component out (e.g. ranks other
            than local rank 0 for CPU and RAM).
        clock: the tracker's clock, for the GPU power sampler (default ``time.monotonic``).
        gpu_sample_interval_s: seconds between GPU power samples (GPUs without counter).

    Raises:
        ValueError: a forced power is negative, not finite or not a number; an explicit
            `gpu_ids` entry names no GPU here.

    Example:
        >>> found = detect_sensors()
        >>> [(r.component, r.name, r.available) for r in found.reports]  # doctest: +SKIP
        [('cpu', 'RAPL', False), ('cpu', 'TDP estimate', True), ...]
    """
    cpu_w = _check_w("cpu_power_w", cpu_power_w)
    ram_w = _check_w("ram_power_w", ram_power_w)
    found = SensorSet()
    need_cpu = count_cpu and cpu_w is None
    need_ram = count_ram and ram_w is None
    rapl, rapl_reason = (
        _probe_rapl(powercap_root, need_cpu, need_ram) if need_cpu or need_ram else (None, "")
    )
    apple: dict[Component, Sensor] = {}
    apple_reports: list[SensorReport] = []
    if need_cpu or need_ram or count_gpu:
        from carbon_callbacks.sensors.families import apple_family

        apple, apple_reports = apple_family()
    try:
        if not count_cpu:
            found.reports.append(_not_counted("cpu"))
        elif cpu_w is not None:
            found.cpu, report = _forced("cpu", cpu_w)
            found.reports.append(report)
        else:
            found.cpu, reports = _cpu(rapl, rapl_reason, apple, apple_reports)
            found.reports.extend(reports)
        if not count_ram:
            found.reports.append(_not_counted("ram"))
        elif ram_w is not None:
            found.ram, report = _forced("ram", ram_w)
            found.reports.append(report)
        else:
            found.ram, reports = _ram(rapl, rapl_reason, apple, apple_reports)
            found.reports.extend(reports)
        if not count_gpu:
            found.reports.append(_not_counted("gpu"))
        else:
            found.gpu, reports = _gpu(
                gpu_ids,
                nvml,
                clock or time.monotonic,
                gpu_sample_interval_s,
                apple,
                apple_reports,
            )
            found.reports.extend(reports)
        used = {id(s) for s in found.sensors}
        for sensor in apple.values():  # Apple sensors not chosen release the shared reader
            if id(sensor) not in used:
                sensor.close()
    except BaseException:
        found.close()
        for s in (rapl.cpu, rapl.ram) if rapl else ():
            if s is not None:
                s.close()
        raise
    for r in found.reports:
        logger.debug("sensor %s/%s: %s", r.component, r.name, r.reason)
    return found

"""The sources beyond NVIDIA and Intel, each probed lazily with a reason when not used.

Accelerators (the ``gpu`` component), in order: NVML (`detect`), AMD SMI, Intel Gaudi
(``hl-smi``), Google TPU (an estimate); the first family that finds this process's devices
is used, and every family gets a report line saying why it is or is not. Apple silicon gives
CPU, GPU+ANE and DRAM together (`apple`); NVIDIA Grace gives the CPU from its hwmon rails.
Nothing here imports a vendor library unless its driver is present.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from carbon_callbacks.sensors.base import (
    HWMON,
    Component,
    Sensor,
    SensorReport,
    SensorUnavailable,
)


def amd_family(
    gpu_ids: Sequence[int | str] | None,
    env: Mapping[str, str],
    clock: Callable[[], float],
    interval_s: float | None,
    smi: Any = None,
) -> tuple[Sensor | None, SensorReport]:
    from carbon_callbacks.sensors.amd import describe, open_amd_sensor

    try:
        sensor = open_amd_sensor(
            gpu_ids=gpu_ids, smi=smi, environ=env, sample_interval_s=interval_s, clock=clock
        )
    except SensorUnavailable as exc:
        return None, SensorReport("gpu", "AMD SMI", False, None, str(exc))
    return sensor, SensorReport("gpu", "AMD SMI", True, sensor.method, describe(sensor))


def gaudi_family(
    env: Mapping[str, str], clock: Callable[[], float], interval_s: float | None
) -> tuple[Sensor | None, SensorReport]:
    from carbon_callbacks.sensors.accel import open_gaudi_sensor

    try:
        sensor = open_gaudi_sensor(env, sample_interval_s=interval_s, clock=clock)
    except (SensorUnavailable, OSError, ValueError) as exc:
        return None, SensorReport("gpu", "Gaudi", False, None, str(exc))
    models = ", ".join(getattr(sensor, "models", []))
    why = f"hl-smi: {sensor.device_count} device(s) [{models}] ({sensor.selection})"  # type: ignore[attr-defined]
    return sensor, SensorReport("gpu", "Gaudi", True, sensor.method, why)


def tpu_family(env: Mapping[str, str]) -> tuple[Sensor | None, SensorReport]:
    from carbon_callbacks.sensors.accel import open_tpu_sensor

    try:
        sensor = open_tpu_sensor(env)
    except SensorUnavailable as exc:
        return None, SensorReport("gpu", "TPU", False, None, str(exc))
    why = f"estimated: {sensor.describe()}"  # type: ignore[attr-defined]
    return sensor, SensorReport("gpu", "TPU", True, sensor.method, why)


def other_accelerators(
    gpu_ids: Sequence[int | str] | None,
    env: Mapping[str, str],
    clock: Callable[[], float],
    interval_s: float | None,
    *,
    found: str | None,
) -> tuple[Sensor | None, list[SensorReport]]:
    """AMD, Gaudi, TPU after NVML; `found` names the family already used, if any."""
    reports: list[SensorReport] = []
    sensor: Sensor | None = None
    probes: list[tuple[str, Callable[[], tuple[Sensor | None, SensorReport]]]] = [
        ("AMD SMI", lambda: amd_family(gpu_ids, env, clock, interval_s)),
        ("Gaudi", lambda: gaudi_family(env, clock, interval_s)),
        ("TPU", lambda: tpu_family(env)),
    ]
    for name, probe in probes:
        if found is not None:
            reports.append(
                SensorReport("gpu", name, False, None, f"not tried: {found} measures them")
            )
            continue
        sensor, report = probe()
        reports.append(report)
        if sensor is not None:
            found = name
    return sensor, reports


def grace_cpu(root: str | None = None) -> tuple[Sensor | None, SensorReport]:
    """The CPU of an NVIDIA Grace machine from its hwmon CPU and SysIO rails."""
    from carbon_callbacks.sensors.hwmon import open_grace_cpu

    try:
        sensor = open_grace_cpu(root)
    except (SensorUnavailable, OSError, ValueError) as exc:
        return None, SensorReport("cpu", "Grace hwmon", False, None, str(exc))
    return sensor, SensorReport("cpu", "Grace hwmon", True, HWMON, f"measured: {sensor.describe()}")


def apple_family(sampler: Any = None) -> tuple[dict[Component, Sensor], list[SensorReport]]:
    """CPU, GPU+ANE and DRAM sensors of an Apple silicon Mac, and one line per component."""
    from carbon_callbacks.sensors.apple import open_apple

    if sys.platform != "darwin" and sampler is None:  # no ctypes work elsewhere
        why = f"Apple silicon: not an Apple silicon Mac ({sys.platform})"
        return {}, [SensorReport(c, "Apple silicon", False, None, why) for c in ("cpu", "gpu")]
    try:
        sensors, how = open_apple(sampler=sampler)
    except SensorUnavailable as exc:
        return {}, [SensorReport(c, "Apple silicon", False, None, str(exc)) for c in ("cpu", "gpu")]
    reports = [SensorReport(c, "Apple silicon", True, s.method, how) for c, s in sensors.items()]
    return dict(sensors), reports

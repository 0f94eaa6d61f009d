"""Energy sensors: RAPL and NVML counters, and labelled estimates.

Only the contract (`base`) is imported eagerly; ``detect_sensors`` and ``SensorSet`` load on
first use so that ``import carbon_callbacks.sensors`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from carbon_callbacks.sensors.base import (
    Component,
    PollingSensor,
    Sensor,
    SensorError,
    SensorReport,
    SensorUnavailable,
    SensorWarning,
)

if TYPE_CHECKING:
    from carbon_callbacks.sensors.detect import SensorSet, detect_sensors

__all__ = [
    "Component",
    "PollingSensor",
    "Sensor",
    "SensorError",
    "SensorReport",
    "SensorSet",
    "SensorUnavailable",
    "SensorWarning",
    "detect_sensors",
]


def __getattr__(name: str) -> Any:
    if name in ("SensorSet", "detect_sensors"):
        from carbon_callbacks.sensors import detect

        return getattr(detect, name)
    raise AttributeError(f"module 'carbon_callbacks.sensors' has no attribute {name!r}")

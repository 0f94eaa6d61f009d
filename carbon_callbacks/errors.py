"""Warnings and the run-time error boundary.

Exceptions raised to the user are only ever configuration errors, at construction:
``ValueError`` (a bad value, named in the message with what is accepted) and ``TypeError``.
Everything that fails while a run is going (a sensor read, the journal, a sink) goes through
`ErrorLog.record`: logged once per cause in plain words, kept for the journal and the
summary, and the run carries on.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

logger = logging.getLogger("carbon_callbacks")


class CarbonWarning(UserWarning):
    """Something the user should act on (a missing location, an unreadable counter)."""


class ErrorLog:
    """Run-time failures, de-duplicated by cause. Thread-safe (sinks record from threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._causes: dict[str, str] = {}
        self._listeners: list[Callable[[str, str], object]] = []

    def record(self, cause: str, message: str) -> bool:
        """Log `message` once per `cause`; return True the first time a cause is seen."""
        with self._lock:
            if cause in self._causes:
                return False
            self._causes[cause] = message
            listeners = list(self._listeners)
        logger.warning("carbon-callbacks: %s (measuring goes on; this is not repeated)", message)
        for listener in listeners:
            try:
                listener(cause, message)
            except Exception:  # a listener (the journal) must not turn a warning into an error
                logger.debug("carbon-callbacks: error listener failed", exc_info=True)
        return True

    def add_listener(self, listener: Callable[[str, str], object]) -> None:
        """Call ``listener(cause, message)`` for each new cause (the tracker journals them)."""
        with self._lock:
            self._listeners.append(listener)

    def items(self) -> list[tuple[str, str]]:
        """``(cause, message)`` pairs, in the order first seen."""
        with self._lock:
            return list(self._causes.items())

    def messages(self) -> list[str]:
        with self._lock:
            return list(self._causes.values())

    def __bool__(self) -> bool:
        return bool(self._causes)


def check_watts(name: str, value: float | None) -> float | None:
    """Validate a user-given power in watts (None passes)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of watts, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number of watts >= 0, got {value!r}")
    return float(value)


def check_pue(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"pue must be a number >= 1.0, got {value!r}")
    if not math.isfinite(value) or value < 1.0:
        raise ValueError(
            f"pue must be a finite number >= 1.0 (1.0 = no data-centre overhead; "
            f"typical clouds 1.1-1.2), got {value!r}"
        )
    return float(value)


_COMPONENTS = ("cpu", "gpu", "ram")
_SENSOR_METHODS = ("start", "energy_j", "close")


def check_tracker_arguments(args: Mapping[str, Any]) -> None:
    """Type checks of the `Tracker` arguments that its own code does not already validate.

    Raises:
        TypeError: the message names the argument, the value and what is accepted.
    """

    def refuse(name: str, value: object, accepted: str) -> TypeError:
        return TypeError(f"{name} must be {accepted}, got {value!r}")

    for name in ("country", "region", "cloud"):
        value = args.get(name)
        if value is not None and not isinstance(value, str):
            raise refuse(name, value, "a string or None")
    output_dir = args.get("output_dir")
    if output_dir is not ... and output_dir is not None and not _is_str_path(output_dir):
        raise refuse("output_dir", output_dir, "a folder path (str or pathlib.Path) or None")
    gpu_ids = args.get("gpu_ids")
    if gpu_ids is not None:
        if isinstance(gpu_ids, (str, bytes)) or not isinstance(gpu_ids, Sequence):
            raise refuse(
                "gpu_ids", gpu_ids, 'a list of GPU indices or UUIDs, e.g. [0] or ["GPU-..."]'
            )
        for gpu in gpu_ids:
            if isinstance(gpu, bool) or not isinstance(gpu, (int, str)):
                raise refuse("gpu_ids", gpu_ids, "a list of GPU indices (int) or UUIDs (str)")
    for name in ("count_cpu", "count_ram", "count_gpu"):
        value = args.get(name, True)
        if not isinstance(value, bool) and not (isinstance(value, int) and value in (0, 1)):
            raise refuse(name, value, "True or False")
    sensors = args.get("sensors")
    if sensors is not None:
        if isinstance(sensors, (str, bytes)) or not isinstance(sensors, Sequence):
            raise refuse("sensors", sensors, "a list of sensors or None")
        for sensor in sensors:
            component = getattr(sensor, "component", None)
            if component not in _COMPONENTS or not all(
                callable(getattr(sensor, m, None)) for m in _SENSOR_METHODS
            ):
                raise TypeError(
                    f"{sensor!r} is not a sensor: it needs component ('cpu', 'gpu' or 'ram'), "
                    "method, start(now), energy_j(now) and close()"
                )
    for name in ("reducer", "sync"):
        value = args.get(name)
        if value is not None and not callable(value):
            raise refuse(name, value, "a function or None")
    for name in ("clock", "wall_clock"):
        if name in args and not callable(args[name]):
            raise refuse(name, args[name], "a function returning seconds")
    env = args.get("env")
    if env is not None and not isinstance(env, Mapping):
        raise refuse("env", env, "a mapping of environment variables (like os.environ) or None")


def _is_str_path(value: object) -> bool:
    return isinstance(value, (str, os.PathLike)) and isinstance(os.fspath(value), str)

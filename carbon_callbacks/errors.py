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
import threading

logger = logging.getLogger("carbon_callbacks")


class CarbonWarning(UserWarning):
    """Something the user should act on (a missing location, an unreadable counter)."""


class ErrorLog:
    """Run-time failures, de-duplicated by cause. Thread-safe (sinks record from threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._causes: dict[str, str] = {}

    def record(self, cause: str, message: str) -> bool:
        """Log `message` once per `cause`; return True the first time a cause is seen."""
        with self._lock:
            if cause in self._causes:
                return False
            self._causes[cause] = message
        logger.warning("carbon-callbacks: %s (measuring goes on; this is not repeated)", message)
        return True

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

"""A sensor that integrates sampled power: for sources that give watts, not a counter.

AMD GPUs without the energy counter (``amdsmi_get_power_info``), Intel Gaudi (``hl-smi``),
hwmon ``power*_average`` files, IPMI DCMI and Redfish all report a power. One daemon thread
(started by ``start()``, only when an interval is set) reads it every `sample_interval_s`
and the samples are integrated with the trapezoid rule, as `NvmlSensor` does for its power
samples. ``energy_j(now)`` takes one more sample at `now`, so under a fake clock (tests call
``sample(now)`` by hand) the integral is exact.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from carbon_callbacks.sensors.base import Component, SensorError

logger = logging.getLogger(__name__)


class SamplerThread:
    """One daemon thread that calls ``sample(clock())`` every `interval_s` until `stop()`.

    A sample that raises does not end it: ``on_error(exc)`` keeps the failure for the owning
    sensor's next read. Shared by `SampledPowerSensor` and the NVML sensor's power samples.
    """

    def __init__(
        self,
        sample: Callable[[float], None],
        on_error: Callable[[Exception], None],
        *,
        interval_s: float,
        clock: Callable[[], float],
        name: str,
    ) -> None:
        self._sample, self._on_error = sample, on_error
        self._interval_s, self._clock, self._name = interval_s, clock, name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the thread (once; not after `stop`)."""
        if self._thread is None and not self._stop.is_set():
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self._sample(self._clock())
            except Exception as exc:  # never let the thread die; the owner reports it
                self._on_error(exc)


class SampledPowerSensor:
    """Energy of one component as the integral of ``read_w()`` (watts) over time.

    Args:
        component: ``"cpu"``, ``"gpu"`` or ``"ram"`` (a node meter uses ``"cpu"``, unused).
        method: the method label.
        read_w: returns the present power in watts; raises on failure.
        name: the source, in words, for error messages.
        sample_interval_s: seconds between samples in the thread; None: no thread (the
            caller calls ``sample(now)``).
        clock: the clock of the thread; must be the tracker's (default ``time.monotonic``).
        close_source: called once by ``close()`` (release a library, stop a process).

    Example:
        >>> s = SampledPowerSensor("gpu", "hlsmi-power", lambda: 300.0, name="hl-smi",
        ...                        sample_interval_s=None)
        >>> s.start(0.0); s.energy_j(10.0)
        3000.0
    """

    def __init__(
        self,
        component: Component,
        method: str,
        read_w: Callable[[], float],
        *,
        name: str,
        sample_interval_s: float | None = 1.0,
        clock: Callable[[], float] = time.monotonic,
        close_source: Callable[[], None] | None = None,
    ) -> None:
        self.component: Component = component
        self.method = method
        self.name = name
        self._read_w = read_w
        self._close_source = close_source
        self._lock = threading.Lock()
        self._sampler = (
            None
            if not sample_interval_s
            else SamplerThread(
                self.sample,
                self._keep_error,
                interval_s=sample_interval_s,
                clock=clock,
                name="carbon-callbacks-power-sampler",
            )  # fmt: skip
        )
        self._error: str | None = None
        self._closed = False
        self._last_t: float | None = None
        self._last_w = 0.0
        self._energy_j = 0.0

    @property
    def sampling(self) -> bool:
        """Whether the sampler thread is running."""
        return self._sampler is not None and self._sampler.running

    def _sample(self, now: float) -> None:
        if self._last_t is not None and now <= self._last_t:
            return
        try:
            power_w = float(self._read_w())
        except Exception as exc:  # any source's failure becomes one SensorError
            raise SensorError(f"{self.name}: reading the power failed: {exc}") from exc
        if self._last_t is not None:
            self._energy_j += (self._last_w + power_w) / 2.0 * (now - self._last_t)
        self._last_t, self._last_w = now, power_w

    def start(self, now: float) -> None:
        with self._lock:
            self._error = None
            self._last_t, self._energy_j = None, 0.0
            self._sample(now)
        if self._sampler is not None and not self._closed:
            self._sampler.start()

    def sample(self, now: float) -> None:
        """Take one power sample at `now` (the thread does this every interval)."""
        with self._lock:
            self._sample(now)

    def _keep_error(self, exc: Exception) -> None:
        with self._lock:
            self._error = str(exc)

    def energy_j(self, now: float) -> float:
        """Joules since ``start()``: the samples integrated up to `now`."""
        with self._lock:
            if self._closed:
                raise SensorError(f"{self.name}: sensor is closed")
            if self._error:
                error, self._error = self._error, None
                raise SensorError(error)
            self._sample(now)
            return self._energy_j

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._sampler is not None:
            self._sampler.stop()
        if self._close_source is not None:
            try:
                self._close_source()
            except Exception as exc:  # releasing a source must not raise
                logger.debug("%s: closing failed: %s", self.name, exc)

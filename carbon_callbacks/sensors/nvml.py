"""GPU energy from NVML: the total-energy counter, integrated power samples, or an estimate.

``nvmlDeviceGetTotalEnergyConsumption`` (millijoules since the driver loaded; Volta and
newer) needs no thread: a lap is the difference of two reads. GPUs without it (the call
raises ``NVMLError_NotSupported``) are sampled with ``nvmlDeviceGetPowerUsage`` (milliwatts)
by one daemon thread, and the samples are integrated with the trapezoid rule. A GPU that NVML
lists but that gives neither is estimated from its TDP and utilisation (`gpu_estimate`), a
labelled estimate sampled by the same thread.

The counter restarts from zero when the driver is reloaded or the GPU reset (NVML: energy
"since the driver was last reloaded"). A reading below the previous one is such a restart:
the new reading is the energy since the restart and is counted; what the GPU used between
the previous reading and the restart is lost. Counter GPUs have no power samples to fill it
with, and the power at the two readings says nothing about a GPU that was being reset in
between, so the interval is not guessed: it is recorded in the tracker's `ErrorLog` (warned
once per GPU, kept in `lost_intervals`). A counter that restarts and passes its previous
reading between two reads cannot be told from normal counting.

pynvml is imported only when a driver is present (``/proc/driver/nvidia/version`` or
``/dev/nvidiactl``), so machines without an NVIDIA GPU pay nothing; tests pass a fake
module as ``nvml=``.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from carbon_callbacks.errors import ErrorLog
from carbon_callbacks.sensors.base import (
    ESTIMATE_GPU_TDP,
    NVML_ENERGY,
    NVML_POWER,
    Component,
    SensorError,
)
from carbon_callbacks.sensors.base import SensorUnavailable as Unavailable
from carbon_callbacks.sensors.gpu_estimate import gpu_power_w, gpu_tdp
from carbon_callbacks.sensors.gpu_select import Device, probe_mode, select_devices
from carbon_callbacks.sensors.sampled import SamplerThread
from carbon_callbacks.units import MJ_PER_J, MW_PER_W

logger = logging.getLogger(__name__)

DRIVER_PATHS = ("/proc/driver/nvidia/version", "/dev/nvidiactl")
DEFAULT_SAMPLE_INTERVAL_S = 0.1


def driver_found() -> str | None:
    """A path showing that an NVIDIA driver is installed, or None (a few ``stat`` calls)."""
    paths = list(DRIVER_PATHS)
    if sys.platform == "win32":
        system_root = os.environ.get("SYSTEMROOT", r"C:\Windows")
        paths.append(os.path.join(system_root, "System32", "nvml.dll"))
    paths.append("/usr/lib/wsl/lib/libnvidia-ml.so.1")  # WSL2 has no /proc/driver/nvidia
    return next((p for p in paths if os.path.exists(p)), None)


def load_nvml() -> Any:
    """The real ``pynvml`` module (from nvidia-ml-py); ~40 ms, so only called when needed."""
    import pynvml

    return pynvml


class NvmlSensor:
    """Energy of one or more GPUs (summed), from NVML.

    The method is ``nvml-energy`` when every device has the energy counter, ``nvml-power``
    when some are sampled, ``estimate-gpu-tdp`` when some can only be estimated (the least
    exact part labels the whole). Sampled and estimated devices share one sampler thread,
    started by ``start()``, only then. Create it with `open_gpu_sensor`.

    Args:
        nvml: the pynvml module (or a fake), already initialised.
        devices: the selected devices.
        selection: how they were selected, in words (for reports).
        sample_interval_s: seconds between power samples; None: no thread (the caller
            calls ``sample(now)``).
        clock: the clock of the sampler thread; must be the clock whose ``now`` the
            tracker passes (default ``time.monotonic``).

    Example:
        >>> gpu = open_gpu_sensor()  # doctest: +SKIP
        >>> gpu.start(time.monotonic()); ...; gpu.energy_j(time.monotonic())  # doctest: +SKIP
        5120.25
        >>> gpu.close()  # doctest: +SKIP
    """

    component: Component = "gpu"

    def __init__(
        self,
        nvml: Any,
        devices: Sequence[Device],
        *,
        selection: str = "",
        sample_interval_s: float | None = DEFAULT_SAMPLE_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._nv = nvml
        self._devices = list(devices)
        self._energy = [d for d in self._devices if d.mode == "energy"]
        self._sampled = [d for d in self._devices if d.mode in ("power", "tdp")]
        modes = {d.mode for d in self._devices}
        self.method = (
            ESTIMATE_GPU_TDP if "tdp" in modes else NVML_POWER if "power" in modes else NVML_ENERGY
        )
        self.device_count = len(self._devices)
        self.models = [d.name for d in self._devices]
        self.uuids = [d.uuid for d in self._devices]
        self.notes = [d.note for d in self._devices if d.note]
        self.selection = selection
        self.errors = ErrorLog()
        # (uuid, from, to): tracker-clock seconds in which a counter restart lost energy.
        self.lost_intervals: list[tuple[str, float, float]] = []
        self._lock = threading.Lock()
        self._sampler = (
            None
            if not sample_interval_s
            else SamplerThread(
                self.sample,
                self._keep_error,
                interval_s=sample_interval_s,
                clock=clock,
                name="carbon-callbacks-gpu-sampler",
            )  # fmt: skip
        )
        self._error: str | None = None
        self._closed = False
        self._t0 = 0.0

    @property
    def devices(self) -> list[Device]:
        """The measured devices, each with its mode and the reason for it (`Device.why`)."""
        return list(self._devices)

    @property
    def sampling(self) -> bool:
        """Whether the sampler thread is running."""
        return self._sampler is not None and self._sampler.running

    def bind_errors(self, errors: ErrorLog) -> None:
        """Record counter restarts in `errors` (the tracker's log) from now on."""
        self.errors = errors

    def _read_mj(self, d: Device) -> int:
        return int(self._nv.nvmlDeviceGetTotalEnergyConsumption(d.handle))

    def _power_w(self, d: Device) -> float:
        if d.mode == "power":
            return float(self._nv.nvmlDeviceGetPowerUsage(d.handle) / MW_PER_W)
        util = self._nv.nvmlDeviceGetUtilizationRates(d.handle).gpu if d.has_util else None
        return gpu_power_w(d.tdp_w, None if util is None else util / 100.0)

    def _sample(self, now: float) -> None:
        for d in self._sampled:
            if d.last_t is not None and now <= d.last_t:
                continue
            try:
                power_w = self._power_w(d)
            except self._nv.NVMLError as exc:
                raise self._fail(d, exc) from exc
            if d.last_t is not None:
                d.energy_j += (d.last_w + power_w) / 2.0 * (now - d.last_t)
            d.last_t, d.last_w = now, power_w

    def _count(self, d: Device, now: float, restarts: list[tuple[str, str]]) -> None:
        """Add the counter's progress since its last reading (module docstring: restarts)."""
        mj = self._read_mj(d)
        if mj >= d.last_mj:
            d.counted_mj += mj - d.last_mj
        else:
            d.counted_mj += mj
            self.lost_intervals.append((d.uuid, d.last_read_t, now))
            restarts.append(
                (
                    f"nvml:counter-restart:{d.uuid}",
                    f"the energy counter of GPU {d.uuid} ({d.name}) went back to zero "
                    f"between {d.last_read_t - self._t0:.0f} s and {now - self._t0:.0f} s "
                    "after the start (driver reloaded or GPU reset?): the energy since the "
                    "restart is counted, what the GPU used before it in that interval is not",
                )
            )
        d.last_mj, d.last_read_t = mj, now

    def _fail(self, d: Device | None, exc: BaseException) -> SensorError:
        what = f"GPU {d.uuid} ({d.name})" if d else "a GPU"
        return SensorError(f"NVML: reading {what} failed: {exc}")

    def start(self, now: float) -> None:
        with self._lock:
            self._error = None
            self._t0 = now
            self.lost_intervals = []
            d: Device | None = None
            try:
                for d in self._energy:
                    d.last_mj, d.counted_mj, d.last_read_t = self._read_mj(d), 0, now
                for d in self._sampled:
                    d.last_t, d.energy_j = None, 0.0
            except self._nv.NVMLError as exc:
                raise self._fail(d, exc) from exc
            self._sample(now)
        # Constant estimates (no utilisation) integrate exactly without samples in between.
        varying = [d for d in self._sampled if d.mode == "power" or d.has_util]
        if varying and self._sampler is not None and not self._closed:
            self._sampler.start()

    def sample(self, now: float) -> None:
        """Take one power sample at `now` (the thread does this every interval)."""
        with self._lock:
            self._sample(now)

    def _keep_error(self, exc: Exception) -> None:
        with self._lock:
            self._error = f"NVML: power sampling failed: {exc}"

    def energy_j(self, now: float) -> float:
        """Joules since ``start()``: counter progress plus power integrated up to `now`."""
        restarts: list[tuple[str, str]] = []
        with self._lock:
            if self._closed:
                raise SensorError("NVML sensor is closed")
            if self._error:
                error, self._error = self._error, None
                raise SensorError(error)
            d: Device | None = None
            try:
                for d in self._energy:
                    self._count(d, now, restarts)
            except self._nv.NVMLError as exc:
                raise self._fail(d, exc) from exc
            self._sample(now)
            total_mj = sum(d.counted_mj for d in self._energy)
            total_j = total_mj / MJ_PER_J + sum(d.energy_j for d in self._sampled)
        for cause, message in restarts:  # outside the lock: the log calls listeners
            self.errors.record(cause, message)
        return total_j

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._sampler is not None:
            self._sampler.stop()
        try:
            self._nv.nvmlShutdown()
        except Exception as exc:  # shutting down must not raise
            logger.debug("nvmlShutdown failed: %s", exc)


def _estimate(nvml: Any, d: Device) -> None:
    """Set `d` up for the TDP estimate (`gpu_estimate`), its inputs in `d.estimate`."""
    tdp = gpu_tdp(d.name)
    d.mode, d.tdp_w = "tdp", tdp.tdp_w
    try:
        nvml.nvmlDeviceGetUtilizationRates(d.handle)
        d.has_util = True
        usage = "its utilisation (NVML)"
    except nvml.NVMLError as exc:
        usage = f"1, full usage (utilisation unreadable: {exc})"
    d.estimate = f"{tdp.describe()} x {usage}"


def open_gpu_sensor(
    *,
    gpu_ids: Sequence[int | str] | None = None,
    nvml: Any = None,
    environ: Mapping[str, str] | None = None,
    sample_interval_s: float | None = DEFAULT_SAMPLE_INTERVAL_S,
    clock: Callable[[], float] = time.monotonic,
) -> NvmlSensor:
    """The GPU sensor for the devices this process uses.

    Selection: explicit `gpu_ids` (NVML indices or UUIDs, ``GPU-…``/``MIG-…``, prefixes
    allowed) > ``CUDA_VISIBLE_DEVICES`` (parsed as CUDA does: stops at the first invalid
    entry; empty = no GPU) > every device.

    Args:
        gpu_ids: explicit devices.
        nvml: a pynvml-like module (tests); default: import pynvml if a driver exists.
        environ: the environment to read ``CUDA_VISIBLE_DEVICES`` from (default os.environ).
        sample_interval_s, clock: see `NvmlSensor`.

    Raises:
        SensorUnavailable: no driver, NVML fails, or no usable GPU is selected.
        ValueError: an explicit `gpu_ids` entry names no GPU here.
    """
    env = os.environ if environ is None else environ
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if gpu_ids is None and visible is not None and not visible.strip():
        raise Unavailable("NVML: CUDA_VISIBLE_DEVICES is empty (no GPU visible to this process)")
    if nvml is None:
        if driver_found() is None:
            raise Unavailable("NVML: no NVIDIA driver (/proc/driver/nvidia missing)")
        try:
            nvml = load_nvml()
        except ImportError as exc:
            raise Unavailable(
                f"NVML: pynvml cannot be imported ({exc}): pip install nvidia-ml-py"
            ) from exc
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        raise Unavailable(f"NVML: nvmlInit failed ({exc})") from exc
    try:
        devices, selection = select_devices(nvml, gpu_ids, visible, env)
        usable: list[Device] = []
        for d in devices:
            mode, d.why = probe_mode(nvml, d.handle)
            if mode is None:
                _estimate(nvml, d)
            else:
                d.mode = mode
            logger.info("NVML: GPU %s (%s): %s %s", d.uuid, d.name, d.why, d.estimate)
            if mode == "energy":
                d.last_mj = int(nvml.nvmlDeviceGetTotalEnergyConsumption(d.handle))
            usable.append(d)
        if not usable:
            raise Unavailable(f"NVML: no usable GPU ({selection})")
        return NvmlSensor(
            nvml, usable, selection=selection, sample_interval_s=sample_interval_s, clock=clock
        )
    except BaseException:
        try:
            nvml.nvmlShutdown()
        except Exception as exc:
            logger.debug("nvmlShutdown failed: %s", exc)
        raise


def describe(sensor: NvmlSensor) -> str:
    """One line for reports: devices, models, how they were selected, how each is measured
    (or why it is estimated), and notes."""
    models = ", ".join(sensor.models)
    modes = {d.mode for d in sensor.devices}
    if modes == {"energy"}:
        how = "energy counter"
    elif modes == {"power"}:
        how = "power samples, integrated"
    else:
        how = "; ".join(
            f"{d.uuid} ({d.name}): {d.why}" + (f", estimated: {d.estimate}" if d.estimate else "")
            for d in sensor.devices
        )
    notes = "".join(f"; {n}" for n in sensor.notes)
    return f"NVML: {sensor.device_count} GPU(s) [{models}] ({sensor.selection}); {how}{notes}"

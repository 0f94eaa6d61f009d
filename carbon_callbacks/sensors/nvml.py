"""GPU energy from NVML: the total-energy counter, or integrated power samples.

``nvmlDeviceGetTotalEnergyConsumption`` (millijoules since the driver loaded; Volta and
newer) needs no thread: a lap is the difference of two reads. GPUs without it (the call
raises ``NVMLError_NotSupported``) are sampled with ``nvmlDeviceGetPowerUsage`` (milliwatts)
by one daemon thread, and the samples are integrated with the trapezoid rule.

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

from carbon_callbacks.sensors.base import NVML_ENERGY, NVML_POWER, Component, SensorError
from carbon_callbacks.sensors.base import SensorUnavailable as Unavailable
from carbon_callbacks.sensors.gpu_select import Device, probe_mode, select_devices
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

    The method is ``nvml-energy`` when every device has the energy counter, else
    ``nvml-power`` (one sampler thread, started by ``start()``, only then). Create it with
    `open_gpu_sensor`.

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
        self._power = [d for d in self._devices if d.mode == "power"]
        self.method = NVML_POWER if self._power else NVML_ENERGY
        self.device_count = len(self._devices)
        self.models = [d.name for d in self._devices]
        self.uuids = [d.uuid for d in self._devices]
        self.notes = [d.note for d in self._devices if d.note]
        self.selection = selection
        self._interval = sample_interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: str | None = None
        self._closed = False

    @property
    def sampling(self) -> bool:
        """Whether the power-sampler thread is running."""
        return self._thread is not None and self._thread.is_alive()

    def _read_mj(self, d: Device) -> int:
        return int(self._nv.nvmlDeviceGetTotalEnergyConsumption(d.handle))

    def _sample(self, now: float) -> None:
        for d in self._power:
            if d.last_t is not None and now <= d.last_t:
                continue
            power_w = self._nv.nvmlDeviceGetPowerUsage(d.handle) / MW_PER_W
            if d.last_t is not None:
                d.energy_j += (d.last_w + power_w) / 2.0 * (now - d.last_t)
            d.last_t, d.last_w = now, power_w

    def _fail(self, d: Device | None, exc: BaseException) -> SensorError:
        what = f"GPU {d.uuid} ({d.name})" if d else "a GPU"
        return SensorError(f"NVML: reading {what} failed: {exc}")

    def start(self, now: float) -> None:
        with self._lock:
            self._error = None
            d: Device | None = None
            try:
                for d in self._energy:
                    d.base_mj = self._read_mj(d)
                for d in self._power:
                    d.last_t, d.energy_j = None, 0.0
                self._sample(now)
            except self._nv.NVMLError as exc:
                raise self._fail(d, exc) from exc
        if self._power and self._interval and self._thread is None and not self._closed:
            self._thread = threading.Thread(
                target=self._run, name="carbon-callbacks-gpu-sampler", daemon=True
            )
            self._thread.start()

    def sample(self, now: float) -> None:
        """Take one power sample at `now` (the thread does this every interval)."""
        with self._lock:
            self._sample(now)

    def _run(self) -> None:
        assert self._interval is not None
        while not self._stop.wait(self._interval):
            try:
                self.sample(self._clock())
            except Exception as exc:  # never let the thread die; report at the next read
                with self._lock:
                    self._error = f"NVML: power sampling failed: {exc}"

    def energy_j(self, now: float) -> float:
        """Joules since ``start()``: counter deltas plus power integrated up to `now`."""
        with self._lock:
            if self._closed:
                raise SensorError("NVML sensor is closed")
            if self._error:
                error, self._error = self._error, None
                raise SensorError(error)
            total_mj = 0
            d: Device | None = None
            try:
                for d in self._energy:
                    mj = self._read_mj(d)
                    if mj < d.base_mj:
                        raise SensorError(
                            f"NVML: the energy counter of GPU {d.uuid} went backwards "
                            f"(driver reloaded or GPU reset?)"
                        )
                    total_mj += mj - d.base_mj
                d = None
                self._sample(now)
            except self._nv.NVMLError as exc:
                raise self._fail(d, exc) from exc
            return total_mj / MJ_PER_J + sum(d.energy_j for d in self._power)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        try:
            self._nv.nvmlShutdown()
        except Exception as exc:  # shutting down must not raise
            logger.debug("nvmlShutdown failed: %s", exc)


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
            mode, why = probe_mode(nvml, d.handle)
            if mode is None:
                logger.info("NVML: GPU %s (%s) is not usable: %s", d.uuid, d.name, why)
                continue
            d.mode = mode
            if mode == "energy":
                d.base_mj = int(nvml.nvmlDeviceGetTotalEnergyConsumption(d.handle))
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
    """One line for reports: devices, models, how they were selected, and notes."""
    models = ", ".join(sensor.models)
    how = "energy counter" if sensor.method == NVML_ENERGY else "power samples, integrated"
    notes = "".join(f"; {n}" for n in sensor.notes)
    return f"NVML: {sensor.device_count} GPU(s) [{models}] ({sensor.selection}); {how}{notes}"

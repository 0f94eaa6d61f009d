"""AMD GPU energy from AMD SMI (``amdsmi``, ROCm 6+): the energy accumulator, or power.

``amdsmi_get_energy_count`` returns the accumulator and its ``counter_resolution`` in
microjoules per count (energy = accumulator x resolution, AMD SMI Python API reference). The
accumulator is under ``"power"`` in ROCm 6.0-6.2 and under ``"energy_accumulator"`` from 6.3
(which also keeps ``"power"``, "deprecating in 6.4"); both spellings are read. A lap is the
difference of two reads: no thread. GPUs whose counter cannot be read are sampled with
``amdsmi_get_power_info`` (``average_socket_power``, else ``current_socket_power``, watts;
"N/A" when the GPU has none) and integrated (`SampledPowerSensor`).

A reading below the previous one is a wrap or a restart. The accumulator is returned as 64
bits, but older firmware kept 32 (``amdsmi.h``: "energy_accumulator; // v1 mod. (32->64)"):
a drop is a wrap when adding 2^32 (or 2^64) counts gives at most what the GPU could draw at
its power cap (``amdsmi_get_power_cap_info``, µW) over the time since the last read; the
guard thread reads the counters every third of the time a 32-bit counter takes to wrap at
that cap, so a wrap always passes this test. Any other drop is a restart (AMD SMI: "energy
accumulation since last restart/gpu reset"; ROCm/amdsmi issue #115 shows counters going
back): handled like NVML's, the energy since the restart counted, the lost interval recorded
and warned once per GPU.

``amdsmi`` is imported only when ``/dev/kfd`` exists (the ROCm kernel driver); tests pass a
fake module as ``smi=``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from carbon_callbacks.errors import ErrorLog
from carbon_callbacks.sensors.amd_select import match_serial, visible_devices
from carbon_callbacks.sensors.base import AMDSMI_ENERGY, AMDSMI_POWER, Component, SensorError
from carbon_callbacks.sensors.base import SensorUnavailable as Unavailable
from carbon_callbacks.sensors.sampled import SampledPowerSensor
from carbon_callbacks.units import UJ_PER_J

logger = logging.getLogger(__name__)

KFD_PATH = "/dev/kfd"
_UW_PER_W = 1_000_000.0
_WIDTHS = (32, 64)  # counter widths a wrap may be at, narrowest first


@dataclass(eq=False)
class AmdDevice:
    """One measured AMD GPU and its counter state (owned by `AmdSmiSensor`)."""

    handle: Any
    index: int  # AMD SMI's index
    name: str
    uuid: str
    mode: str = ""  # "energy" (accumulator) or "power" (sampled)
    why: str = ""
    cap_w: float | None = None  # the power cap, for telling wraps from restarts
    resolution_uj: float = 0.0
    last_raw: int = 0
    last_t: float = 0.0
    counted_uj: float = 0.0


def load_amdsmi() -> Any:
    """The real ``amdsmi`` module; it prints to stdout when its library is missing."""
    with contextlib.redirect_stdout(io.StringIO()):
        import amdsmi
    return amdsmi


def read_counter(smi: Any, handle: Any) -> tuple[int, float]:
    """``(accumulator, µJ per count)`` under either key spelling of the ROCm versions."""
    data = smi.amdsmi_get_energy_count(handle)
    raw = data["energy_accumulator"] if "energy_accumulator" in data else data["power"]
    return int(raw), float(data["counter_resolution"])


def read_power_w(smi: Any, handle: Any) -> float:
    """Watts from ``amdsmi_get_power_info``: the average, else the current socket power."""
    info = smi.amdsmi_get_power_info(handle)
    for key in ("average_socket_power", "current_socket_power"):
        value = info.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    raise SensorError(f"amdsmi reports no socket power ({info!r})")


class AmdSmiSensor:
    """Energy of one or more AMD GPUs (summed): counters where readable, else power samples.

    Args:
        smi: the amdsmi module (or a fake), initialised.
        devices: the selected devices, each with its mode.
        selection: how they were selected, in words.
        sample_interval_s, clock: for the power sampler (see `SampledPowerSensor`).

    Example:
        >>> gpu = open_amd_sensor()  # doctest: +SKIP
        >>> gpu.start(0.0); gpu.energy_j(10.0)  # doctest: +SKIP
        4012.5
    """

    component: Component = "gpu"

    def __init__(
        self,
        smi: Any,
        devices: Sequence[AmdDevice],
        *,
        selection: str = "",
        sample_interval_s: float | None = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._smi = smi
        self._devices = list(devices)
        self._counters = [d for d in self._devices if d.mode == "energy"]
        sampled = [d for d in self._devices if d.mode == "power"]
        self.method = AMDSMI_POWER if sampled else AMDSMI_ENERGY
        self.device_count = len(self._devices)
        self.models = [d.name for d in self._devices]
        self.uuids = [d.uuid for d in self._devices]
        self.selection = selection
        self.errors = ErrorLog()
        self.lost_intervals: list[tuple[str, float, float]] = []
        self._lock = threading.Lock()
        self._clock = clock
        self._closed = False
        self._t0 = 0.0
        self._power = (
            SampledPowerSensor(
                "gpu",
                AMDSMI_POWER,
                lambda: sum(read_power_w(smi, d.handle) for d in sampled),
                name="amdsmi power",
                sample_interval_s=sample_interval_s,
                clock=clock,
            )
            if sampled
            else None
        )

    @property
    def devices(self) -> list[AmdDevice]:
        return list(self._devices)

    def bind_errors(self, errors: ErrorLog) -> None:
        """Record counter restarts in `errors` (the tracker's log) from now on."""
        self.errors = errors

    def _read(self, d: AmdDevice) -> tuple[int, float]:
        try:
            return read_counter(self._smi, d.handle)
        except Exception as exc:  # the library's own exception types vary across versions
            raise SensorError(f"amdsmi: reading GPU {d.uuid} ({d.name}) failed: {exc}") from exc

    def _wrapped(self, d: AmdDevice, raw: int, now: float) -> int | None:
        """Counts gained across a wrap, when a wrap can explain the drop (module docstring)."""
        if d.cap_w is None:
            return None
        for bits in _WIDTHS:
            modulus = 1 << bits
            if d.last_raw < modulus:
                gained = raw + modulus - d.last_raw
                if gained * d.resolution_uj / UJ_PER_J <= d.cap_w * (now - d.last_t):
                    return gained
        return None

    def _count(self, d: AmdDevice, now: float, restarts: list[tuple[str, str]]) -> None:
        raw, resolution = self._read(d)
        d.resolution_uj = resolution
        if raw >= d.last_raw:
            d.counted_uj += (raw - d.last_raw) * resolution
        else:
            gained = self._wrapped(d, raw, now)
            if gained is not None:
                d.counted_uj += gained * resolution
            else:
                d.counted_uj += raw * resolution
                self.lost_intervals.append((d.uuid, d.last_t, now))
                restarts.append(
                    (
                        f"amdsmi:counter-restart:{d.uuid}",
                        f"the energy counter of GPU {d.uuid} ({d.name}) went back between "
                        f"{d.last_t - self._t0:.0f} s and {now - self._t0:.0f} s after the "
                        "start (driver reloaded or GPU reset?): the energy since the restart "
                        "is counted, what the GPU used before it in that interval is not",
                    )
                )
        d.last_raw, d.last_t = raw, now

    def start(self, now: float) -> None:
        with self._lock:
            self._t0 = now
            self.lost_intervals = []
            for d in self._counters:
                d.last_raw, d.resolution_uj = self._read(d)
                d.last_t, d.counted_uj = now, 0.0
        if self._power is not None:
            self._power.start(now)

    def poll(self) -> None:
        """Read the counters now, so that no 32-bit wrap is missed (the guard thread)."""
        for cause, message in self._advance(self._clock()):
            self.errors.record(cause, message)

    def _advance(self, now: float) -> list[tuple[str, str]]:
        restarts: list[tuple[str, str]] = []
        with self._lock:
            if self._closed:
                return restarts
            for d in self._counters:
                self._count(d, now, restarts)
        return restarts

    def energy_j(self, now: float) -> float:
        """Joules since ``start()``: counter progress plus integrated power samples."""
        if self._closed:
            raise SensorError("amdsmi sensor is closed")
        restarts = self._advance(now)
        for cause, message in restarts:  # outside the lock: the log calls listeners
            self.errors.record(cause, message)
        with self._lock:
            total_j = sum(d.counted_uj for d in self._counters) / UJ_PER_J
        if self._power is not None:
            total_j += self._power.energy_j(now)
        return total_j

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._power is not None:
            self._power.close()
        try:
            self._smi.amdsmi_shut_down()
        except Exception as exc:  # shutting down must not raise
            logger.debug("amdsmi_shut_down failed: %s", exc)


class PollingAmdSmiSensor(AmdSmiSensor):
    """An `AmdSmiSensor` whose counters the tracker's guard thread reads every
    `poll_interval_s` (a third of the time a 32-bit counter takes to wrap at the cap)."""

    poll_interval_s: float = 0.0


def poll_interval(devices: Sequence[AmdDevice]) -> float | None:
    """Seconds between guard reads that miss no 32-bit wrap at any device's power cap."""
    times = [
        (1 << 32) * d.resolution_uj / UJ_PER_J / d.cap_w / 3.0
        for d in devices
        if d.mode == "energy" and d.cap_w and d.resolution_uj > 0
    ]
    return min(times, default=None)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _describe_device(smi: Any, index: int, handle: Any) -> AmdDevice:
    asic = smi.amdsmi_get_gpu_asic_info(handle)
    try:
        uuid = _text(smi.amdsmi_get_gpu_device_uuid(handle))
    except Exception:  # older libraries: the serial identifies the device too
        uuid = f"GPU-{_text(asic.get('asic_serial', index)).removeprefix('0x')}"
    return AmdDevice(handle, index, _text(asic.get("market_name", "AMD GPU")), uuid)


def _hip_order(smi: Any, handles: Sequence[Any]) -> tuple[dict[int, int], str]:
    """HIP index -> AMD SMI index (``hip_id``, ROCm 6.4+), and a note when it is missing."""
    order: dict[int, int] = {}
    for i, handle in enumerate(handles):
        try:
            hip_id = smi.amdsmi_get_gpu_enumeration_info(handle).get("hip_id")
        except Exception:  # before ROCm 6.4 the call does not exist
            hip_id = None
        if isinstance(hip_id, int):
            order[hip_id] = i
    if order or len(handles) < 2:
        return order, ""
    return {}, " (this AMD SMI gives no HIP numbering: its own order is used)"


def _select(
    smi: Any, handles: Sequence[Any], gpu_ids: Sequence[int | str] | None, env: Mapping[str, str]
) -> tuple[list[int], str]:
    """AMD SMI indices of the devices this process uses, and how they were chosen."""
    if gpu_ids is not None:
        tokens = [str(g) for g in gpu_ids]
        how = f"gpu_ids={list(gpu_ids)!r}"
    else:
        visible, how = visible_devices(env)
        if visible is None:
            return list(range(len(handles))), how
        tokens = visible
    order, note = _hip_order(smi, handles)
    serials = [_text(smi.amdsmi_get_gpu_asic_info(h).get("asic_serial", "")) for h in handles]
    chosen: list[int] = []
    for token in tokens:
        if token.upper().startswith("GPU-"):
            index = match_serial(token, serials)
        else:
            index = order.get(int(token), int(token)) if order else int(token)
            index = index if 0 <= index < len(handles) else None
        if index is None:
            if gpu_ids is not None:
                raise ValueError(
                    f"gpu_ids: {token!r} names no AMD GPU here; accepted: HIP indices "
                    f"0..{len(handles) - 1} or GPU-<serial> UUIDs"
                )
            break
        if index not in chosen:
            chosen.append(index)
    return chosen, how + note


def _probe(smi: Any, d: AmdDevice) -> None:
    """Set `d`'s mode: the counter when it reads, else power samples, else unusable."""
    try:
        d.last_raw, d.resolution_uj = read_counter(smi, d.handle)
        d.mode, d.why = "energy", "energy counter"
    except Exception as exc:  # not supported, e.g. in a VM guest
        why = f"no energy counter ({exc})"
        try:
            read_power_w(smi, d.handle)
            d.mode, d.why = "power", f"{why}; power sampled"
        except Exception as power_exc:
            d.mode, d.why = "", f"{why}; power unreadable ({power_exc})"
    try:
        d.cap_w = float(smi.amdsmi_get_power_cap_info(d.handle)["power_cap"]) / _UW_PER_W or None
    except Exception as exc:  # without a cap, a drop is always taken as a restart
        logger.debug("amdsmi: no power cap for %s: %s", d.uuid, exc)


def open_amd_sensor(
    *,
    gpu_ids: Sequence[int | str] | None = None,
    smi: Any = None,
    environ: Mapping[str, str] | None = None,
    sample_interval_s: float | None = 1.0,
    clock: Callable[[], float] = time.monotonic,
) -> AmdSmiSensor:
    """The AMD GPU sensor for the devices this process uses.

    Selection: explicit `gpu_ids` (HIP indices or ``GPU-<serial>`` UUIDs) > the ROCm
    visibility variables (`amd_select`) > every device.

    Raises:
        SensorUnavailable: no ROCm driver, amdsmi missing or failing, no usable GPU.
        ValueError: an explicit `gpu_ids` entry names no AMD GPU here.
    """
    env = os.environ if environ is None else environ
    if smi is None:
        if not os.path.exists(KFD_PATH):
            raise Unavailable(f"AMD SMI: no ROCm driver ({KFD_PATH} missing)")
        try:
            smi = load_amdsmi()
        except Exception as exc:  # ImportError, or OSError when libamd_smi.so is missing
            raise Unavailable(
                f"AMD SMI: amdsmi cannot be imported ({exc}): pip install "
                "'carbon-callbacks[amd]' (amdsmi matching your ROCm version)"
            ) from exc
    try:
        smi.amdsmi_init()
    except Exception as exc:
        raise Unavailable(f"AMD SMI: amdsmi_init failed ({exc})") from exc
    try:
        handles = list(smi.amdsmi_get_processor_handles())
        indices, selection = _select(smi, handles, gpu_ids, env)
        devices = [_describe_device(smi, i, handles[i]) for i in indices]
        for d in devices:
            _probe(smi, d)
            logger.info("AMD SMI: GPU %s (%s): %s", d.uuid, d.name, d.why)
        usable = [d for d in devices if d.mode]
        if not usable:
            why = "; ".join(f"{d.uuid} ({d.name}): {d.why}" for d in devices) or "none selected"
            raise Unavailable(f"AMD SMI: no usable GPU ({selection}): {why}")
        interval = poll_interval(usable)
        cls = AmdSmiSensor if interval is None else PollingAmdSmiSensor
        sensor = cls(
            smi, usable, selection=selection, sample_interval_s=sample_interval_s, clock=clock
        )
        if interval is not None:
            sensor.poll_interval_s = interval  # type: ignore[attr-defined]
        return sensor
    except BaseException:
        with contextlib.suppress(Exception):
            smi.amdsmi_shut_down()
        raise


def describe(sensor: AmdSmiSensor) -> str:
    """One line for reports: devices, models, selection, and how each is measured."""
    how = "; ".join(f"{d.uuid} ({d.name}): {d.why}" for d in sensor.devices)
    return f"AMD SMI: {sensor.device_count} GPU(s) ({sensor.selection}); {how}"

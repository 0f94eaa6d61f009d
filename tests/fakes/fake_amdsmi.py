"""A fake of the ``amdsmi`` module (AMD SMI Python API) whose counters tests move by hand.

Names, return dictionaries and units follow the AMD SMI Python API reference
(``py-interface/README.md``): ``amdsmi_get_energy_count`` returns ``power`` (ROCm 6.0-6.2)
or ``energy_accumulator`` and ``power`` (6.3) or ``energy_accumulator`` alone (later), plus
``counter_resolution`` (µJ per count) and ``timestamp`` (ns); ``amdsmi_get_power_info``
gives socket powers in watts, ``"N/A"`` when not supported; ``amdsmi_get_power_cap_info``
µW; ``AmdSmiLibraryException(err_code)`` with ``get_error_code()``.

Example:
    >>> smi = FakeAmdSmi([FakeAmdGpu("AMD Instinct MI300X", "0x1a2b", energy=0)])
    >>> smi.gpus[0].energy += 65_359  # about 1 J at 15.3 µJ per count
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

AMDSMI_STATUS_NOT_SUPPORTED = 2
AMDSMI_STATUS_NOT_INIT = 32
RESOLUTION_UJ = 15.300000190734863  # float32 15.3, as MI100/MI300 report it


class AmdSmiException(Exception):
    pass


class AmdSmiLibraryException(AmdSmiException):
    def __init__(self, err_code: int) -> None:
        super().__init__(err_code)
        self.err_code = abs(err_code)

    def get_error_code(self) -> int:
        return self.err_code

    def __str__(self) -> str:
        return f"Error code:\n\t{self.err_code} | AMDSMI_STATUS_{self.err_code}"


@dataclass(eq=False)
class FakeAmdGpu:
    """One GPU. ``energy=None``: no counter (NotSupported); ``power_w="N/A"``: no power.
    Lowering ``energy`` is what a GPU reset does; ``hip_id=None``: an AMD SMI before 6.4."""

    name: str
    serial: str  # asic_serial, "0x..."
    energy: int | None = 0
    resolution_uj: float = RESOLUTION_UJ
    power_w: int | str = 300
    cap_uw: int | None = 750_000_000
    hip_id: int | None = None
    uuid: str = ""
    fail: bool = False


class FakeAmdSmi:
    """Module-like object with the amdsmi functions the sensor uses.

    Args:
        gpus: the devices, in AMD SMI's order.
        key: ``"both"`` (ROCm 6.3), ``"power"`` (6.0-6.2) or ``"energy_accumulator"``.
    """

    AmdSmiException = AmdSmiException
    AmdSmiLibraryException = AmdSmiLibraryException

    def __init__(self, gpus: list[FakeAmdGpu], *, key: str = "both") -> None:
        self.gpus = gpus
        self.key = key
        self.init_count = 0
        self.shutdown_count = 0

    def amdsmi_init(self, flag: int = 2) -> None:
        self.init_count += 1

    def amdsmi_shut_down(self) -> None:
        self.shutdown_count += 1

    def _check(self, gpu: FakeAmdGpu) -> None:
        if self.init_count <= self.shutdown_count:
            raise AmdSmiLibraryException(AMDSMI_STATUS_NOT_INIT)
        if gpu.fail:
            raise AmdSmiLibraryException(8)  # AMDSMI_STATUS_TIMEOUT

    def amdsmi_get_processor_handles(self) -> list[FakeAmdGpu]:
        return list(self.gpus)

    def amdsmi_get_gpu_asic_info(self, handle: FakeAmdGpu) -> dict[str, Any]:
        return {"market_name": handle.name, "asic_serial": handle.serial, "vendor_id": 4098}

    def amdsmi_get_gpu_device_uuid(self, handle: FakeAmdGpu) -> str:
        return handle.uuid or f"uuid-{handle.serial}"

    def amdsmi_get_gpu_enumeration_info(self, handle: FakeAmdGpu) -> dict[str, int]:
        if handle.hip_id is None:
            raise AttributeError("amdsmi_get_gpu_enumeration_info")  # before ROCm 6.4
        return {"hip_id": handle.hip_id, "drm_render": 128 + handle.hip_id}

    def amdsmi_get_energy_count(self, handle: FakeAmdGpu) -> dict[str, Any]:
        self._check(handle)
        if handle.energy is None:
            raise AmdSmiLibraryException(AMDSMI_STATUS_NOT_SUPPORTED)
        out: dict[str, Any] = {}
        if self.key in ("both", "power"):
            out["power"] = handle.energy
        if self.key in ("both", "energy_accumulator"):
            out["energy_accumulator"] = handle.energy
        out["counter_resolution"] = handle.resolution_uj
        out["timestamp"] = 1_712_024_507_665
        return out

    def amdsmi_get_power_info(self, handle: FakeAmdGpu) -> dict[str, Any]:
        self._check(handle)
        return {
            "current_socket_power": handle.power_w,
            "average_socket_power": handle.power_w,
            "gfx_voltage": "N/A",
            "soc_voltage": "N/A",
            "mem_voltage": "N/A",
            "power_limit": 750,
        }

    def amdsmi_get_power_cap_info(self, handle: FakeAmdGpu) -> dict[str, Any]:
        if handle.cap_uw is None:
            raise AmdSmiLibraryException(AMDSMI_STATUS_NOT_SUPPORTED)
        return {
            "power_cap": handle.cap_uw,
            "default_power_cap": handle.cap_uw,
            "dpm_cap": 0,
            "min_power_cap": 0,
            "max_power_cap": handle.cap_uw,
        }

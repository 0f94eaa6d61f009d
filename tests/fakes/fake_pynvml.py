"""A fake of the ``pynvml`` module (nvidia-ml-py) whose counters tests move by hand.

Names, signatures, error classes and error values follow nvidia-ml-py 13: strings in and out
(``convertStrBytes``), ``nvmlDeviceGetMigMode`` returns ``[current, pending]``,
``NVMLError(value)`` returns the subclass for that value.

Example:
    >>> nv = FakeNvml([FakeGpu("NVIDIA A100-SXM4-40GB", "GPU-aaaa", energy_mj=0)])
    >>> nv.gpus[0].energy_mj += 5_000  # 5 J later
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, ClassVar

NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_UNKNOWN = 999
NVML_DEVICE_MIG_DISABLE = 0
NVML_DEVICE_MIG_ENABLE = 1


class NVMLError(Exception):
    """``NVMLError(value)`` builds the matching subclass, as pynvml's does."""

    _by_value: ClassVar[dict[int, type[NVMLError]]] = {}
    value: int

    def __new__(cls, value: int = NVML_ERROR_UNKNOWN) -> NVMLError:
        if cls is NVMLError:
            cls = NVMLError._by_value.get(value, cls)
        obj = Exception.__new__(cls)
        obj.value = value
        return obj

    def __init__(self, value: int = NVML_ERROR_UNKNOWN) -> None:
        super().__init__(value)

    def __str__(self) -> str:
        return _STRINGS.get(self.value, f"NVML Error with code {self.value}")


_STRINGS = {
    NVML_ERROR_UNINITIALIZED: "Uninitialized",
    NVML_ERROR_INVALID_ARGUMENT: "Invalid Argument",
    NVML_ERROR_NOT_SUPPORTED: "Not Supported",
    NVML_ERROR_NO_PERMISSION: "Insufficient Permissions",
    NVML_ERROR_NOT_FOUND: "Not Found",
    NVML_ERROR_DRIVER_NOT_LOADED: "Driver Not Loaded",
    NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
    NVML_ERROR_GPU_IS_LOST: "GPU is lost",
    NVML_ERROR_UNKNOWN: "Unknown Error",
}


def _subclass(name: str, value: int) -> type[NVMLError]:
    def new(cls: type[NVMLError], *args: Any) -> NVMLError:
        return NVMLError.__new__(cls, value)

    def init(self: NVMLError, *args: Any) -> None:
        Exception.__init__(self, value)

    cls = type(name, (NVMLError,), {"__new__": new, "__init__": init})
    NVMLError._by_value[value] = cls
    return cls


NVMLError_Uninitialized = _subclass("NVMLError_Uninitialized", NVML_ERROR_UNINITIALIZED)
NVMLError_InvalidArgument = _subclass("NVMLError_InvalidArgument", NVML_ERROR_INVALID_ARGUMENT)
NVMLError_NotSupported = _subclass("NVMLError_NotSupported", NVML_ERROR_NOT_SUPPORTED)
NVMLError_NoPermission = _subclass("NVMLError_NoPermission", NVML_ERROR_NO_PERMISSION)
NVMLError_NotFound = _subclass("NVMLError_NotFound", NVML_ERROR_NOT_FOUND)
NVMLError_DriverNotLoaded = _subclass("NVMLError_DriverNotLoaded", NVML_ERROR_DRIVER_NOT_LOADED)
NVMLError_LibraryNotFound = _subclass("NVMLError_LibraryNotFound", NVML_ERROR_LIBRARY_NOT_FOUND)
NVMLError_GpuIsLost = _subclass("NVMLError_GpuIsLost", NVML_ERROR_GPU_IS_LOST)
NVMLError_Unknown = _subclass("NVMLError_Unknown", NVML_ERROR_UNKNOWN)


_Error = NVMLError  # FakeNvml.NVMLError shadows the name inside that class


@dataclass(eq=False)
class FakeMig:
    """A MIG slice. Real NVML meters neither energy nor power on a MIG handle."""

    uuid: str
    name: str = "NVIDIA A100-SXM4-40GB MIG 1g.5gb"
    parent: FakeGpu | None = None


@dataclass(eq=False)
class FakeGpu:
    """One GPU. ``energy_mj=None``: no energy counter (NotSupported), as before Volta;
    ``power_mw=None`` / ``utilization=None``: no power reading / utilisation (NotSupported).
    Lowering ``energy_mj`` is what a driver reload or GPU reset does to the real counter.

    Set ``fail`` to an `NVMLError` to make every read of this GPU raise it.
    """

    name: str
    uuid: str
    energy_mj: int | None = 0
    power_mw: int | None = 100_000
    migs: list[FakeMig | None] = field(default_factory=list)  # None: an empty slot
    fail: NVMLError | None = None
    power_reads: int = 0
    utilization: int | None = None  # percent of time a kernel ran (nvmlUtilization_t.gpu)
    module_power_mw: int | None = None  # Grace Hopper module power (NVML_POWER_SCOPE_MODULE)

    def __post_init__(self) -> None:
        for mig in self.migs:
            if mig is not None:
                mig.parent = self


@dataclass(frozen=True)
class FakeUtilization:
    """``nvmlUtilization_t``: percentages of the last sample period."""

    gpu: int
    memory: int


class FakeNvml:
    """Module-like object with the pynvml functions the sensors use.

    Args:
        gpus: the devices, in NVML (PCI bus) order.
        init_error: an `NVMLError` that ``nvmlInit`` raises (e.g. no driver).
        mig_by_uuid: whether ``nvmlDeviceGetHandleByUUID`` resolves MIG UUIDs (old drivers
            do not).
    """

    NVMLError = NVMLError
    NVMLError_NotSupported = NVMLError_NotSupported
    NVMLError_NotFound = NVMLError_NotFound
    NVMLError_GpuIsLost = NVMLError_GpuIsLost
    NVMLError_LibraryNotFound = NVMLError_LibraryNotFound
    NVMLError_InvalidArgument = NVMLError_InvalidArgument
    NVML_ERROR_NOT_SUPPORTED = NVML_ERROR_NOT_SUPPORTED
    NVML_DEVICE_MIG_ENABLE = NVML_DEVICE_MIG_ENABLE

    def __init__(
        self,
        gpus: list[FakeGpu],
        *,
        init_error: _Error | None = None,
        mig_by_uuid: bool = True,
    ) -> None:
        self.gpus = gpus
        self.init_error = init_error
        self.mig_by_uuid = mig_by_uuid
        self.init_count = 0
        self.shutdown_count = 0

    # -- library -----------------------------------------------------------------------
    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise self.init_error
        self.init_count += 1

    def nvmlShutdown(self) -> None:
        if self.init_count <= self.shutdown_count:
            raise NVMLError(NVML_ERROR_UNINITIALIZED)
        self.shutdown_count += 1

    def _check(self) -> None:
        if self.init_count <= self.shutdown_count:
            raise NVMLError(NVML_ERROR_UNINITIALIZED)

    # -- devices -----------------------------------------------------------------------
    def nvmlDeviceGetCount(self) -> int:
        self._check()
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        self._check()
        if not 0 <= index < len(self.gpus):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return self.gpus[index]

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> FakeGpu | FakeMig:
        self._check()
        for gpu in self.gpus:
            if gpu.uuid == uuid:
                return gpu
            for mig in gpu.migs:
                if mig is not None and mig.uuid == uuid and self.mig_by_uuid:
                    return mig
        raise NVMLError(NVML_ERROR_NOT_FOUND)

    def nvmlDeviceGetUUID(self, handle: FakeGpu | FakeMig) -> str:
        return handle.uuid

    def nvmlDeviceGetName(self, handle: FakeGpu | FakeMig) -> str:
        return handle.name

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: FakeGpu | FakeMig) -> int:
        self._check()
        if isinstance(handle, FakeMig) or handle.energy_mj is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        if handle.fail is not None:
            raise handle.fail
        return handle.energy_mj

    def nvmlDeviceGetPowerUsage(self, handle: FakeGpu | FakeMig) -> int:
        self._check()
        if isinstance(handle, FakeMig) or handle.power_mw is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        if handle.fail is not None:
            raise handle.fail
        handle.power_reads += 1
        return handle.power_mw

    def nvmlDeviceGetUtilizationRates(self, handle: FakeGpu | FakeMig) -> FakeUtilization:
        self._check()
        if isinstance(handle, FakeMig) or handle.utilization is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        if handle.fail is not None:
            raise handle.fail
        return FakeUtilization(gpu=handle.utilization, memory=0)

    def nvmlDeviceGetFieldValues(self, handle: FakeGpu, fields: list[Any]) -> list[Any]:
        """``nvmlFieldValue_t`` per ``(fieldId, scopeId)``: only NVML_FI_DEV_POWER_INSTANT (186)
        at NVML_POWER_SCOPE_MODULE (1) is known here; others are NOT_SUPPORTED."""
        self._check()
        out = []
        for wanted in fields:
            known = tuple(wanted) == (186, 1) and handle.module_power_mw is not None
            value = SimpleNamespace(uiVal=handle.module_power_mw if known else 0)
            ret = NVML_SUCCESS if known else NVML_ERROR_NOT_SUPPORTED
            out.append(
                SimpleNamespace(fieldId=wanted[0], scopeId=wanted[1], nvmlReturn=ret, value=value)
            )
        return out

    # -- MIG -----------------------------------------------------------------------------
    def nvmlDeviceGetMigMode(self, handle: FakeGpu) -> list[int]:
        if isinstance(handle, FakeMig):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        mode = NVML_DEVICE_MIG_ENABLE if handle.migs else NVML_DEVICE_MIG_DISABLE
        return [mode, mode]

    def nvmlDeviceGetMaxMigDeviceCount(self, handle: FakeGpu) -> int:
        return len(handle.migs)

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle: FakeGpu, index: int) -> FakeMig:
        if not 0 <= index < len(handle.migs) or handle.migs[index] is None:
            raise NVMLError(NVML_ERROR_NOT_FOUND)
        mig = handle.migs[index]
        assert mig is not None
        return mig

    def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(self, handle: FakeMig) -> FakeGpu:
        if not isinstance(handle, FakeMig) or handle.parent is None:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return handle.parent

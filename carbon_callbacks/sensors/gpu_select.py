"""Which GPUs a process uses: explicit ids, ``CUDA_VISIBLE_DEVICES`` as CUDA reads it, or all.

``CUDA_VISIBLE_DEVICES`` entries are NVML indices (``0,2``), GPU UUIDs (``GPU-8932f937-…``,
or a unique prefix of one, as CUDA allows) and MIG UUIDs (``MIG-…``, or the legacy
``MIG-GPU-<uuid>/<gi>/<ci>``). Like CUDA, parsing stops at the first invalid entry (``-1``,
an index out of range, an unknown or ambiguous UUID), so ``-1`` alone means no GPU.

NVML cannot meter a MIG slice, so a MIG entry whose own handle gives no energy or power is
measured as its whole parent GPU (other slices' work included), and the report says so.
Devices are counted once even when several entries (two slices) resolve to the same one.

Indices are NVML (PCI bus) indices; CUDA orders devices fastest first unless
``CUDA_DEVICE_ORDER=PCI_BUS_ID``. The two agree when all GPUs are the same model; otherwise
the report advises UUIDs or ``CUDA_DEVICE_ORDER=PCI_BUS_ID``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from carbon_callbacks.sensors.base import SensorUnavailable

_INDEX = re.compile(r"\d+")
_NOT_SUPPORTED = 3  # NVML_ERROR_NOT_SUPPORTED


@dataclass(eq=False)
class Device:
    """One measured GPU and its per-device reading state (owned by `NvmlSensor`)."""

    handle: Any
    name: str
    uuid: str
    note: str = ""
    mode: str = ""  # "energy" (counter), "power" (sampled) or "tdp" (estimated, sampled)
    why: str = ""  # how it is measured, or why it cannot be, in words
    estimate: str = ""  # "tdp" mode: the estimate's inputs, in words
    last_mj: int = 0  # the counter's last reading
    counted_mj: int = 0  # counted since start()
    last_read_t: float = 0.0  # when the counter was last read (tracker clock)
    last_t: float | None = None
    last_w: float = 0.0
    energy_j: float = 0.0
    tdp_w: float = 0.0  # "tdp" mode: the TDP used
    has_util: bool = False  # "tdp" mode: NVML reports its utilisation


def probe_mode(nv: Any, handle: Any) -> tuple[str | None, str]:
    """(``"energy"`` | ``"power"`` | None, reason) for one device handle."""
    try:
        nv.nvmlDeviceGetTotalEnergyConsumption(handle)
        return "energy", "energy counter"
    except nv.NVMLError as exc:
        why = "no energy counter" if getattr(exc, "value", None) == _NOT_SUPPORTED else str(exc)
    try:
        nv.nvmlDeviceGetPowerUsage(handle)
        return "power", f"{why}; power sampled"
    except nv.NVMLError as exc:
        return None, f"{why}; power unreadable ({exc})"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def parse_visible_devices(value: str) -> list[str]:
    """The entries of ``CUDA_VISIBLE_DEVICES`` before the first syntactically invalid one."""
    tokens: list[str] = []
    for raw in value.split(","):
        token = raw.strip()
        if not (_INDEX.fullmatch(token) or token.startswith(("GPU-", "MIG-"))):
            break
        tokens.append(token)
    return tokens


class _Resolver:
    def __init__(self, nv: Any) -> None:
        self.nv = nv
        self.count = int(nv.nvmlDeviceGetCount())
        self._uuids: list[str] | None = None

    def device(self, handle: Any, note: str = "") -> Device:
        nv = self.nv
        return Device(
            handle, _text(nv.nvmlDeviceGetName(handle)), _text(nv.nvmlDeviceGetUUID(handle)), note
        )

    def uuids(self) -> list[str]:
        if self._uuids is None:
            nv = self.nv
            self._uuids = [
                _text(nv.nvmlDeviceGetUUID(nv.nvmlDeviceGetHandleByIndex(i)))
                for i in range(self.count)
            ]
        return self._uuids

    def by_index(self, index: int) -> Device | None:
        if not 0 <= index < self.count:
            return None
        return self.device(self.nv.nvmlDeviceGetHandleByIndex(index))

    def by_gpu_uuid(self, prefix: str) -> Device | None:
        matches = [i for i, u in enumerate(self.uuids()) if u.startswith(prefix)]
        exact = [i for i in matches if self.uuids()[i] == prefix]
        found = exact or matches
        return self.by_index(found[0]) if len(found) == 1 else None

    def _search_mig(self, uuid: str) -> tuple[Any, Any]:
        """(mig handle, parent handle) by walking every MIG-enabled GPU's slices."""
        nv = self.nv
        for i in range(self.count):
            parent = nv.nvmlDeviceGetHandleByIndex(i)
            try:
                if nv.nvmlDeviceGetMigMode(parent)[0] != 1:
                    continue
                slots = int(nv.nvmlDeviceGetMaxMigDeviceCount(parent))
            except nv.NVMLError:
                continue
            for k in range(slots):
                try:
                    mig = nv.nvmlDeviceGetMigDeviceHandleByIndex(parent, k)
                except nv.NVMLError:
                    continue  # empty slot
                if _text(nv.nvmlDeviceGetUUID(mig)) == uuid:
                    return mig, parent
        return None, None

    def by_mig_uuid(self, uuid: str) -> Device | None:
        nv = self.nv
        whole = "NVML cannot meter a MIG slice; its whole parent GPU {} is measured"
        if uuid.startswith("MIG-GPU-"):  # legacy MIG-GPU-<parent uuid>/<gi>/<ci>
            parent_dev = self.by_gpu_uuid(uuid[4:].split("/", 1)[0])
            if parent_dev is not None:
                parent_dev.note = f"{uuid}: " + whole.format(parent_dev.uuid)
            return parent_dev
        parent = None
        try:
            mig = nv.nvmlDeviceGetHandleByUUID(uuid)
        except nv.NVMLError:
            mig, parent = self._search_mig(uuid)
        if mig is None:
            return None
        if probe_mode(nv, mig)[0] is not None:
            return self.device(mig, f"{uuid}: MIG slice measured on its own")
        if parent is None:
            try:
                parent = nv.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(mig)
            except nv.NVMLError:
                return None
        parent_dev = self.device(parent)
        parent_dev.note = f"{uuid}: " + whole.format(parent_dev.uuid)
        return parent_dev

    def resolve(self, token: str | int) -> Device | None:
        if isinstance(token, int) and not isinstance(token, bool):
            return self.by_index(token)
        token = str(token).strip()
        if _INDEX.fullmatch(token):
            return self.by_index(int(token))
        if token.startswith("MIG-"):
            return self.by_mig_uuid(token)
        if token.startswith("GPU-"):
            return self.by_gpu_uuid(token)
        return None


def _add(devices: list[Device], dev: Device) -> None:
    for known in devices:
        if known.uuid == dev.uuid:
            if dev.note and dev.note not in known.note:
                known.note = f"{known.note}; {dev.note}" if known.note else dev.note
            return
    devices.append(dev)


def select_devices(
    nv: Any,
    gpu_ids: Sequence[int | str] | None,
    visible: str | None,
    env: Mapping[str, str],
) -> tuple[list[Device], str]:
    """(devices, how they were selected) for an initialised NVML.

    Raises:
        ValueError: an explicit `gpu_ids` entry names no GPU here.
        SensorUnavailable: nothing selected, or NVML fails.
    """
    try:
        resolver = _Resolver(nv)
        devices: list[Device] = []
        if gpu_ids is not None:
            ids = [gpu_ids] if isinstance(gpu_ids, (str, int)) else list(gpu_ids)
            for gpu_id in ids:
                dev = resolver.resolve(gpu_id)
                if dev is None:
                    raise ValueError(
                        f"gpu_ids: {gpu_id!r} names no GPU here; accepted: indices "
                        f"0..{resolver.count - 1} or UUIDs {resolver.uuids()} (or MIG UUIDs)"
                    )
                _add(devices, dev)
            return devices, f"gpu_ids={ids!r}"
        if visible is None:
            for i in range(resolver.count):
                _add(devices, resolver.device(nv.nvmlDeviceGetHandleByIndex(i)))
            return devices, "all devices"
        selection = f"CUDA_VISIBLE_DEVICES={visible}"
        used_index = False
        for token in parse_visible_devices(visible):
            dev = resolver.resolve(token)
            if dev is None:
                break
            used_index = used_index or token.isdigit()
            _add(devices, dev)
        if not devices:
            raise SensorUnavailable(f"NVML: {selection} selects no GPU")
        if used_index and env.get("CUDA_DEVICE_ORDER") != "PCI_BUS_ID" and resolver.count > 1:
            names = {
                _text(nv.nvmlDeviceGetName(nv.nvmlDeviceGetHandleByIndex(i)))
                for i in range(resolver.count)
            }
            if len(names) > 1:
                selection += (
                    " (mixed GPU models: CUDA indices may differ from NVML's; set "
                    "CUDA_DEVICE_ORDER=PCI_BUS_ID or use GPU UUIDs)"
                )
        return devices, selection
    except nv.NVMLError as exc:
        raise SensorUnavailable(f"NVML: listing GPUs failed ({exc})") from exc

"""The GPU estimate, for a GPU that NVML lists but cannot meter: TDP x utilisation.

Used only when a GPU has neither NVML's energy counter nor a power reading (some virtual
GPUs and consumer boards report neither); its method is ``estimate-gpu-tdp``. The TDP comes
from the bundled ``gpu_tdp.json`` (vendor datasheets; see its ``meta``), the utilisation from
``nvmlDeviceGetUtilizationRates`` when the GPU reports it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from carbon_callbacks.data import load_json

TDP_TABLE_FILE = "gpu_tdp.json"


@dataclass(frozen=True)
class GpuTdp:
    """The TDP used for one GPU.

    Args:
        tdp_w: watts per device, as NVML sees devices.
        model: the table row that matched, or None for an unknown GPU (the table's
            ``default_w``).
        verified: whether the row was checked against a vendor datasheet.
    """

    tdp_w: float
    model: str | None
    verified: bool

    def describe(self) -> str:
        """In words, for `carbon-callbacks detect`."""
        if self.model is None:
            return f"TDP {self.tdp_w:g} W (not in the GPU table: its default for an unknown GPU)"
        checked = "" if self.verified else ", a figure not checked against the datasheet"
        return f"TDP {self.tdp_w:g} W ({self.model!r} in the GPU table{checked})"


_CACHE: dict[str, GpuTdp] = {}


def _rows(table: Any) -> list[tuple[re.Pattern[str], int, dict[str, Any]]]:
    rows = []
    for gpu in table["gpus"]:
        for match in gpu["match"]:
            # The table's rule: the string occurs with no letter or digit right before or
            # after it, so "A10" does not match "A100" and "L40" does not match "L40S".
            pattern = re.compile(rf"(?<![a-z0-9]){re.escape(match)}(?![a-z0-9])", re.IGNORECASE)
            rows.append((pattern, len(match), gpu))
    return rows


def gpu_tdp(name: str, table: Any = None) -> GpuTdp:
    """The TDP of the GPU that NVML names `name` (e.g. ``"NVIDIA A40"``).

    Among the rows whose match string occurs in `name` (rule in `_rows`), the longest match
    string wins; no match gives the table's ``default_w`` with ``model=None``.

    Args:
        name: the device name as ``nvmlDeviceGetName`` returns it.
        table: a table shaped like ``gpu_tdp.json`` (tests); default: the bundled one.
    """
    if table is None and name in _CACHE:
        return _CACHE[name]
    data = load_json(TDP_TABLE_FILE) if table is None else table
    best: tuple[int, dict[str, Any]] | None = None
    for pattern, length, gpu in _rows(data):
        if (best is None or length > best[0]) and pattern.search(name):
            best = (length, gpu)
    if best is None:
        found = GpuTdp(float(data["default_w"]), None, False)
    else:
        gpu = best[1]
        found = GpuTdp(float(gpu["tdp_w"]), str(gpu["model"]), bool(gpu["verified"]))
    if table is None:
        _CACHE[name] = found
    return found


def reset() -> None:
    """Forget the cached lookups (tests)."""
    _CACHE.clear()


def gpu_power_w(tdp_w: float, utilisation: float | None) -> float:
    """Estimated power in watts of one GPU: ``P = TDP x u``.

    The shape is Green Algorithms' (Lannelongue, Grealey & Inouye 2021, Advanced Science,
    doi:10.1002/advs.202100707): power draw of the cores x a usage factor, whose default is 1
    (full usage). Here ``u`` is NVML's GPU utilisation, "percent of time over the past sample
    period during which one or more kernels was executing on the GPU" (``nvmlUtilization_t``),
    as a fraction. It charges nothing for an idle GPU, whose real draw is above zero, and the
    full TDP for a busy one, which real training rarely reaches; `METHOD_ERROR_BOUNDS` says
    how far off that is.

    Args:
        tdp_w: the GPU's TDP in watts (`gpu_tdp`).
        utilisation: busy fraction in [0, 1] (clamped), or None when the GPU does not report
            it: full usage, as in Green Algorithms.

    Example:
        >>> gpu_power_w(300.0, 0.5)
        150.0
    """
    u = 1.0 if utilisation is None else min(max(utilisation, 0.0), 1.0)
    return tdp_w * u

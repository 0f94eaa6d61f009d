"""Hardware and software metadata, as the flat dict of strings the ``carbon.*`` tags use."""

from __future__ import annotations

import functools
import os
import platform
import sys
from collections.abc import Mapping
from typing import Any

from carbon_callbacks._version import __version__
from carbon_callbacks.sensors.base import Sensor
from carbon_callbacks.sensors.cpuinfo import cpu_model, logical_cpus, total_ram_bytes
from carbon_callbacks.units import BYTES_PER_GB

# Frameworks whose versions are worth recording when the user already imported them. Never
# imported from here: that would cost seconds.
_FRAMEWORKS = ("torch", "lightning", "pytorch_lightning", "transformers", "keras", "mlflow")


@functools.cache
def _static() -> dict[str, str]:
    ram = total_ram_bytes()
    return {
        "cpu_model": cpu_model() or "unknown",
        "cpu_count": str(logical_cpus()),
        "ram_gb": "unknown" if ram is None else f"{ram / BYTES_PER_GB:.1f}",
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "version": __version__,
    }


DMI_ROOT = "/sys/class/dmi/id"
# What each provider's firmware writes into DMI (SMBIOS) on its VMs. Azure's chassis asset tag
# tells its VMs apart from other Hyper-V guests.
_AZURE_ASSET_TAG = "7783-7084-3265-9085-8269-3286-77"


def _dmi(name: str) -> str:
    try:
        with open(os.path.join(DMI_ROOT, name), encoding="utf-8", errors="replace") as f:
            return f.read(256).strip()
    except OSError:
        return ""


@functools.cache
def cloud_provider() -> str | None:
    """``"aws"``, ``"gcp"`` or ``"azure"`` when this machine's firmware (DMI, local files
    only: no metadata server is asked) says it is one of their instances; else None."""
    vendor, product = _dmi("sys_vendor"), _dmi("product_name")
    if vendor == "Amazon EC2" or "amazon" in _dmi("bios_version").lower():
        return "aws"
    if vendor == "Google" or product == "Google Compute Engine":
        return "gcp"
    if vendor == "Microsoft Corporation" and _dmi("chassis_asset_tag") == _AZURE_ASSET_TAG:
        return "azure"
    return None


def hardware_metadata(sensors: Mapping[Any, Sensor] | None = None) -> dict[str, str]:
    """CPU, GPU, RAM, OS and versions, as strings (keys without the ``carbon.`` prefix)."""
    meta = dict(_static())
    gpu = (sensors or {}).get("gpu")
    models = list(getattr(gpu, "models", None) or [])
    meta["gpu_model"] = ", ".join(sorted(set(models))) if models else "none"
    meta["gpu_count"] = str(getattr(gpu, "device_count", len(models)) if gpu else 0)
    for name in _FRAMEWORKS:
        module = sys.modules.get(name)
        version = getattr(module, "__version__", None)
        if version:
            meta[f"{name}_version"] = str(version)
    if "SLURM_JOB_ID" in os.environ:
        meta["slurm_job_id"] = os.environ["SLURM_JOB_ID"]
    return meta

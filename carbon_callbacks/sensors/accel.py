"""Google TPUs (a labelled estimate) and Intel Gaudi (``hl-smi`` power samples).

**TPU** (method ``estimate-tpu``): no TPU exposes its power to the VM it runs in, so a chip
is charged the power Google publishes for its generation: TPU v4, "Measured min/mean/max
power 90/170/192 W" (Cloud TPU v4 documentation); the estimate is the mean, its range the
measured min and max. Google's pages for v5e, v5p and v6e (Trillium) give no power figure,
so those chips are reported and not counted (no number is made up for them). The generation
comes from ``TPU_ACCELERATOR_TYPE`` (``v4-8``, ``v5litepod-16``, ``v5p-8``, ``v6e-8``: set by
GKE, and by hand on a TPU VM; no metadata server is asked), the chips from
``TPU_VISIBLE_CHIPS`` (what JAX and torch_xla use when a process is given some chips), else
the ``/dev/accel*`` (v2-v4) or ``/dev/vfio/<n>`` (v5e and later) devices, as Ray counts them.

**Gaudi** (method ``hlsmi-power``): ``hl-smi -Q index,module_id,uuid,name,power.draw -f
csv,noheader,nounits`` (Habana's hl-smi documentation), watts per device, sampled and
integrated; only the modules in ``HABANA_VISIBLE_MODULES`` when it is set (Habana's
multi-tenancy guide: module IDs, stable across reboots, unlike indices).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from carbon_callbacks.sensors.base import (
    ESTIMATE_TPU,
    HLSMI_POWER,
    TPU_V4_MIN_MEAN_MAX_W,
    SensorUnavailable,
)
from carbon_callbacks.sensors.estimate import ConstantPowerSensor
from carbon_callbacks.sensors.sampled import SampledPowerSensor

# Watts charged per chip, by generation, with the source of each figure.
TPU_CHIP_W: dict[str, tuple[float, str]] = {
    "v4": (TPU_V4_MIN_MEAN_MAX_W[1], "Google Cloud TPU v4 page, measured mean of 90/170/192 W"),
}
TPU_UNPUBLISHED = ("v5e", "v5p", "v6e")
_TYPE_RE = re.compile(r"^(v\d+[a-z]*)-(\d+)$")


def tpu_generation(accelerator_type: str) -> str | None:
    """``v4``, ``v5e``, ``v5p``, ``v6e``... from an accelerator type such as ``v4-8`` (GCP
    names v5e ``v5litepod``); None when the string is not one."""
    match = _TYPE_RE.match(accelerator_type.strip().lower())
    if match is None:
        return None
    generation = match.group(1)
    return "v5e" if generation == "v5litepod" else generation


def tpu_chips(env: Mapping[str, str], dev_root: str = "/dev") -> tuple[int, str]:
    """``(chips, how)`` of this process: ``TPU_VISIBLE_CHIPS``, else the device files."""
    visible = env.get("TPU_VISIBLE_CHIPS")
    if visible is not None:
        chips = [c for c in visible.split(",") if c.strip()]
        return len(chips), f"TPU_VISIBLE_CHIPS={visible}"
    try:
        accel = [e for e in os.listdir(dev_root) if re.fullmatch(r"accel\d+", e)]
    except OSError:
        accel = []
    if accel:
        return len(accel), f"{len(accel)} {dev_root}/accel* devices"
    try:
        vfio = [e for e in os.listdir(os.path.join(dev_root, "vfio")) if e.isdigit()]
    except OSError:
        vfio = []
    return len(vfio), f"{len(vfio)} {dev_root}/vfio/<n> devices"


def open_tpu_sensor(
    env: Mapping[str, str] | None = None, *, dev_root: str = "/dev"
) -> ConstantPowerSensor:
    """The TPU estimate: chips x published watts per chip of their generation.

    Raises:
        SensorUnavailable: no TPU, an unknown type, or a generation without a published
            power (the message says which).
    """
    env = os.environ if env is None else env
    accelerator = env.get("TPU_ACCELERATOR_TYPE")
    chips, how = tpu_chips(env, dev_root)
    if accelerator is None:
        where = f" ({how}): set TPU_ACCELERATOR_TYPE, e.g. v4-8" if chips else ""
        raise SensorUnavailable(f"TPU: TPU_ACCELERATOR_TYPE is not set{where}")
    generation = tpu_generation(accelerator)
    if generation is None:
        raise SensorUnavailable(f"TPU: TPU_ACCELERATOR_TYPE={accelerator!r} is not a TPU type")
    if generation not in TPU_CHIP_W:
        raise SensorUnavailable(
            f"TPU: {chips} {generation} chip(s) ({how}) not counted: Google publishes no "
            f"per-chip power for TPU {generation} (figures: {', '.join(TPU_CHIP_W)})"
        )
    if chips == 0:
        raise SensorUnavailable(f"TPU: {accelerator} but no chip visible ({how})")
    watts, source = TPU_CHIP_W[generation]
    sensor = ConstantPowerSensor("gpu", chips * watts)
    sensor.method = ESTIMATE_TPU
    described = f"{chips} TPU {generation} chip(s) ({how}) x {watts:g} W ({source})"
    sensor.describe = lambda: described  # type: ignore[attr-defined]
    sensor.device_count = chips  # type: ignore[attr-defined]
    sensor.models = [f"TPU {generation}"] * chips  # type: ignore[attr-defined]
    return sensor


@dataclass(frozen=True)
class GaudiDevice:
    index: int
    module_id: int
    uuid: str
    name: str
    power_w: float


def parse_hlsmi(text: str) -> list[GaudiDevice]:
    """The rows of ``hl-smi -Q index,module_id,uuid,name,power.draw -f csv,noheader,nounits``."""
    devices = []
    for line in text.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 5 or not fields[0].isdigit():
            continue
        index, module, uuid, name, power = fields
        devices.append(GaudiDevice(int(index), int(module), uuid, name, float(power.split()[0])))
    return devices


HLSMI_ARGS = ["-Q", "index,module_id,uuid,name,power.draw", "-f", "csv,noheader,nounits"]


def open_gaudi_sensor(
    env: Mapping[str, str] | None = None,
    *,
    sample_interval_s: float | None = 1.0,
    clock: Callable[[], float] = time.monotonic,
) -> SampledPowerSensor:
    """The Gaudi devices this process may use, their ``hl-smi`` power integrated.

    Raises:
        SensorUnavailable: no ``hl-smi`` on PATH, it fails, or no device is visible.
    """
    env = os.environ if env is None else env
    hlsmi = shutil.which("hl-smi", path=env.get("PATH"))
    if hlsmi is None:
        raise SensorUnavailable("Gaudi: hl-smi is not on PATH (no Intel Gaudi driver)")
    modules_env = env.get("HABANA_VISIBLE_MODULES")
    wanted = (
        None
        if modules_env is None
        else {int(m) for m in modules_env.split(",") if m.strip().isdigit()}
    )

    def devices() -> list[GaudiDevice]:
        done = subprocess.run(
            [hlsmi, *HLSMI_ARGS], capture_output=True, text=True, timeout=10.0, check=False
        )
        if done.returncode != 0:
            raise SensorUnavailable(f"Gaudi: hl-smi failed ({done.returncode})")
        return [d for d in parse_hlsmi(done.stdout) if wanted is None or d.module_id in wanted]

    found = devices()
    if not found:
        raise SensorUnavailable(f"Gaudi: no device visible (HABANA_VISIBLE_MODULES={modules_env})")
    sensor = SampledPowerSensor(
        "gpu",
        HLSMI_POWER,
        lambda: sum(d.power_w for d in devices()),
        name="hl-smi",
        sample_interval_s=sample_interval_s,
        clock=clock,
    )
    sensor.device_count = len(found)  # type: ignore[attr-defined]
    sensor.models = [d.name for d in found]  # type: ignore[attr-defined]
    sensor.uuids = [d.uuid for d in found]  # type: ignore[attr-defined]
    selection = "all modules" if wanted is None else f"HABANA_VISIBLE_MODULES={modules_env}"
    sensor.selection = selection  # type: ignore[attr-defined]
    return sensor

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from carbon_callbacks.sensors import amd as amd_mod
from carbon_callbacks.sensors import cpuinfo
from carbon_callbacks.sensors import nvml as nvml_mod
from carbon_callbacks.sensors.base import ESTIMATE_RAM, ESTIMATE_TDP, Sensor
from carbon_callbacks.sensors.detect import SensorSet, detect_sensors
from carbon_callbacks.sensors.hwmon import ROOT_ENV as HWMON_ROOT_ENV
from carbon_callbacks.sensors.rapl import ROOT_ENV
from tests.fakes.hwmon import FakeHwmon


@pytest.fixture
def bare_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No powercap tree, no hwmon meters, no NVIDIA, AMD, Gaudi or TPU."""
    monkeypatch.setenv(ROOT_ENV, str(tmp_path / "no-powercap"))
    monkeypatch.setenv(HWMON_ROOT_ENV, str(tmp_path / "no-hwmon"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.setattr(nvml_mod, "driver_found", lambda: None)
    monkeypatch.setattr(amd_mod, "KFD_PATH", str(tmp_path / "no-kfd"))
    for name in ("CUDA_VISIBLE_DEVICES", "TPU_ACCELERATOR_TYPE", "TPU_VISIBLE_CHIPS"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("bare_machine")
def test_bare_machine_estimates_and_explains() -> None:
    found = detect_sensors()
    assert found.cpu is not None and found.cpu.method == ESTIMATE_TDP
    assert found.ram is not None and found.ram.method == ESTIMATE_RAM
    assert found.gpu is None
    assert isinstance(found.cpu, Sensor) and isinstance(found.ram, Sensor)
    assert not found.needs_guard_thread and found.poll_interval_s is None
    table = [(r.component, r.name, r.available, r.method) for r in found.reports]
    assert table == [
        ("cpu", "RAPL", False, None),
        ("cpu", "Grace hwmon", False, None),
        ("cpu", "Apple silicon", False, None),
        ("cpu", "TDP estimate", True, ESTIMATE_TDP),
        ("ram", "RAPL", False, None),
        ("ram", "RAM estimate", True, ESTIMATE_RAM),
        ("gpu", "NVML", False, None),
        ("gpu", "Apple silicon", False, None),
        ("gpu", "AMD SMI", False, None),
        ("gpu", "Gaudi", False, None),
        ("gpu", "TPU", False, None),
    ]
    reasons = {(r.component, r.name): r.reason for r in found.reports}
    assert (
        "no-powercap not found (not Linux, or a VM/container without powercap)"
        in (reasons[("cpu", "RAPL")])
    )
    assert reasons[("gpu", "NVML")] == "NVML: no NVIDIA driver (/proc/driver/nvidia missing)"
    assert reasons[("gpu", "AMD SMI")].startswith("AMD SMI: no ROCm driver")
    assert reasons[("gpu", "Gaudi")] == "Gaudi: hl-smi is not on PATH (no Intel Gaudi driver)"
    assert reasons[("gpu", "TPU")] == "TPU: TPU_ACCELERATOR_TYPE is not set"
    assert "no Grace CPU telemetry" in reasons[("cpu", "Grace hwmon")]
    assert "not an Apple silicon Mac" in reasons[("cpu", "Apple silicon")]
    assert "W/GB" in reasons[("ram", "RAM estimate")]
    found.poll()
    found.close()


@pytest.mark.usefixtures("bare_machine")
def test_count_flags_leave_components_out() -> None:
    found = detect_sensors(count_cpu=False, count_ram=False, count_gpu=False)
    assert (found.cpu, found.gpu, found.ram) == (None, None, None)
    assert [r.reason for r in found.reports] == [
        "not counted in this process (count_cpu=False)",
        "not counted in this process (count_ram=False)",
        "not counted in this process (count_gpu=False)",
    ]


@pytest.mark.usefixtures("bare_machine")
def test_forced_watts() -> None:
    found = detect_sensors(cpu_power_w=65, ram_power_w=0.0)
    assert found.cpu is not None and found.cpu.method == "constant"
    assert found.ram is not None and found.ram.method == "constant"
    names = [r.name for r in found.reports]
    assert names == ["constant", "constant", "NVML", "Apple silicon", "AMD SMI", "Gaudi", "TPU"]
    found.cpu.start(0.0)
    assert found.cpu.energy_j(10.0) == 650.0


@pytest.mark.usefixtures("bare_machine")
@pytest.mark.parametrize("kwargs", [{"cpu_power_w": -5.0}, {"ram_power_w": float("nan")}])
def test_bad_forced_watts_raise(kwargs: dict[str, float]) -> None:
    value = next(iter(kwargs.values()))
    with pytest.raises(ValueError, match=f"got {value!r}"):
        detect_sensors(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError):  # validated even when the component is not counted
        detect_sensors(count_cpu=False, count_ram=False, **kwargs)  # type: ignore[arg-type]


@pytest.mark.usefixtures("bare_machine")
def test_empty_cuda_visible_devices_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    found = detect_sensors(count_cpu=False, count_ram=False)
    assert found.gpu is None
    nvml = [r for r in found.reports if r.name == "NVML"][0]
    assert "CUDA_VISIBLE_DEVICES is empty" in nvml.reason


@pytest.mark.usefixtures("bare_machine")
def test_fast_and_no_pynvml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "pynvml", raising=False)
    detect_sensors().close()  # warm caches (cpuinfo, imports)
    best = float("inf")
    for _ in range(20):
        cpuinfo.reset()
        t0 = time.perf_counter()
        detect_sensors().close()
        best = min(best, time.perf_counter() - t0)
    assert "pynvml" not in sys.modules
    assert best < 0.005  # target < 2 ms; the margin absorbs slow CI machines


def test_sensor_set_empty() -> None:
    empty = SensorSet()
    assert empty.sensors == [] and not empty.needs_guard_thread
    assert empty.poll_interval_s is None


@pytest.mark.usefixtures("bare_machine")
def test_grace_rails_measure_the_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = FakeHwmon(tmp_path / "hwmon")
    tree.add_grace(sockets=1)
    monkeypatch.setenv(HWMON_ROOT_ENV, str(tree.root))
    found = detect_sensors(count_ram=False, count_gpu=False)
    assert found.cpu is not None and found.cpu.method == "hwmon"
    grace = [r for r in found.reports if r.name == "Grace hwmon"][0]
    assert grace.available and "CPU Power Socket 0" in grace.reason
    found.close()


@pytest.mark.usefixtures("bare_machine")
def test_tpu_v4_estimated_and_newer_generations_explained(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TPU_ACCELERATOR_TYPE", "v4-8")
    monkeypatch.setenv("TPU_VISIBLE_CHIPS", "0,1,2,3")
    found = detect_sensors(count_cpu=False, count_ram=False)
    assert found.gpu is not None and found.gpu.method == "estimate-tpu"
    found.gpu.start(0.0)
    assert found.gpu.energy_j(10.0) == 4 * 170.0 * 10.0
    monkeypatch.setenv("TPU_ACCELERATOR_TYPE", "v6e-8")
    found = detect_sensors(count_cpu=False, count_ram=False)
    assert found.gpu is None
    tpu = [r for r in found.reports if r.name == "TPU"][0]
    assert "4 v6e chip(s)" in tpu.reason and "publishes no per-chip power" in tpu.reason

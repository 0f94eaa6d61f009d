"""The GPU TDP x utilisation estimate, for GPUs that NVML lists but cannot meter."""

from __future__ import annotations

import time
from typing import Any

import pytest

from carbon_callbacks.data import load_json
from carbon_callbacks.sensors import gpu_estimate
from carbon_callbacks.sensors.base import ESTIMATE_GPU_TDP, SensorError, is_estimate
from carbon_callbacks.sensors.detect import detect_sensors
from carbon_callbacks.sensors.gpu_estimate import GpuTdp, gpu_power_w, gpu_tdp
from carbon_callbacks.sensors.nvml import describe, open_gpu_sensor
from tests.fakes.fake_pynvml import FakeGpu, FakeNvml, NVMLError_GpuIsLost

UUID_A = "GPU-aaaaaaaa-0000-4000-8000-000000000000"
UUID_B = "GPU-bbbbbbbb-0000-4000-8000-000000000000"


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    gpu_estimate.reset()


def unmetered(
    name: str = "NVIDIA A40", utilization: int | None = 50, uuid: str = UUID_A
) -> FakeGpu:
    return FakeGpu(name, uuid, energy_mj=None, power_mw=None, utilization=utilization)


@pytest.mark.parametrize("name, tdp_w, model", [
    ("NVIDIA A40", 300.0, "A40"),
    ("NVIDIA L40", 300.0, "L40"),
    ("NVIDIA L40S", 350.0, "L40S"),  # 'L40' must not match 'L40S'
    ("NVIDIA H100 PCIe", 350.0, "H100 PCIe 80GB"),
    ("NVIDIA H100 80GB HBM3", 700.0, "H100 SXM5 80GB"),
    ("NVIDIA H200 NVL", 600.0, "H200 NVL 141GB"),  # the longest match wins over 'H200'
    ("NVIDIA H200", 700.0, "H200 SXM 141GB"),
    ("NVIDIA A100-SXM4-80GB", 400.0, "A100 SXM4 40GB/80GB"),
    ("Tesla P4", 75.0, "P4"),
    ("Tesla P40", 250.0, "P40"),  # 'Tesla P4' must not match 'Tesla P40'
    ("Tesla V100S-PCIE-32GB", 250.0, "V100S PCIe 32GB"),
])  # fmt: skip
def test_bundled_table_lookup(name: str, tdp_w: float, model: str) -> None:
    found = gpu_tdp(name)
    assert (found.tdp_w, found.model) == (tdp_w, model)


def test_unknown_and_dropped_gpus_get_the_labelled_default() -> None:
    table = load_json("gpu_tdp.json")
    assert table["default_w"] == 200.0
    for name in ("NVIDIA A10", "NVIDIA A30", "NVIDIA GeForce GT 1030"):
        assert gpu_tdp(name) == GpuTdp(200.0, None, False)
    assert "unknown GPU" in gpu_tdp("NVIDIA A10").describe()
    assert "not checked" in gpu_tdp("NVIDIA H200").describe()
    assert "not checked" not in gpu_tdp("NVIDIA A40").describe()


def test_lookup_rule_on_a_small_table() -> None:
    table: dict[str, Any] = {
        "default_w": 100.0,
        "gpus": [
            {"model": "X1", "match": ["X1"], "tdp_w": 10.0, "verified": True},
            {"model": "X1 Pro", "match": ["X1 Pro"], "tdp_w": 20.0, "verified": False},
        ],
    }
    assert gpu_tdp("Acme x1 pro", table) == GpuTdp(20.0, "X1 Pro", False)
    assert gpu_tdp("Acme X1", table) == GpuTdp(10.0, "X1", True)
    assert gpu_tdp("Acme X10", table) == GpuTdp(100.0, None, False)


def test_power_model() -> None:
    assert gpu_power_w(300.0, 0.5) == 150.0
    assert gpu_power_w(300.0, None) == 300.0  # no utilisation: full usage
    assert gpu_power_w(300.0, 1.5) == 300.0
    assert gpu_power_w(300.0, -0.1) == 0.0


def test_estimate_integrates_tdp_times_utilisation_exactly() -> None:
    gpu = unmetered(utilization=50)
    sensor = open_gpu_sensor(nvml=FakeNvml([gpu]), environ={}, sample_interval_s=None)
    assert sensor.method == ESTIMATE_GPU_TDP and is_estimate(sensor.method)
    sensor.start(0.0)  # 300 W x 0.5 = 150 W at t=0
    gpu.utilization = 100
    sensor.sample(10.0)  # (150 + 300) / 2 x 10 s = 2250 J
    gpu.utilization = 0
    assert sensor.energy_j(14.0) == 2250.0 + (300.0 + 0.0) / 2 * 4.0
    sensor.close()


def test_no_utilisation_means_constant_tdp_and_no_thread() -> None:
    gpu = unmetered(utilization=None)
    sensor = open_gpu_sensor(nvml=FakeNvml([gpu]), environ={}, sample_interval_s=0.01)
    t0 = time.monotonic()
    sensor.start(t0)
    assert not sensor.sampling
    assert sensor.energy_j(t0 + 10.0) == 3000.0
    assert "x 1, full usage (utilisation unreadable: Not Supported)" in describe(sensor)
    sensor.close()


def test_mixed_counter_and_estimate_is_labelled_an_estimate() -> None:
    metered = FakeGpu("NVIDIA A100-SXM4-40GB", UUID_A, energy_mj=1_000)
    nv = FakeNvml([metered, unmetered(uuid=UUID_B, utilization=100)])
    sensor = open_gpu_sensor(nvml=nv, environ={}, sample_interval_s=None)
    assert sensor.method == ESTIMATE_GPU_TDP
    sensor.start(0.0)
    metered.energy_mj = 1_000 + 500_000
    assert sensor.energy_j(2.0) == 500.0 + 600.0
    line = describe(sensor)
    assert f"{UUID_A} (NVIDIA A100-SXM4-40GB): energy counter" in line
    assert f"{UUID_B} (NVIDIA A40): no energy counter; power unreadable (Not Supported)" in line
    assert "estimated: TDP 300 W ('A40' in the GPU table) x its utilisation (NVML)" in line
    sensor.close()


def test_detect_says_why_nvml_is_not_used_and_what_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    found = detect_sensors(nvml=FakeNvml([unmetered()]), count_cpu=False, count_ram=False)
    assert found.gpu is not None and found.gpu.method == ESTIMATE_GPU_TDP
    nvml_report, estimate_report = [r for r in found.reports if r.component == "gpu"]
    assert (nvml_report.name, nvml_report.available, nvml_report.method) == ("NVML", False, None)
    assert nvml_report.reason == (
        f"NVML cannot meter {UUID_A} (NVIDIA A40): no energy counter; power unreadable "
        "(Not Supported)"
    )
    assert (estimate_report.name, estimate_report.available) == ("GPU TDP estimate", True)
    assert estimate_report.method == ESTIMATE_GPU_TDP
    assert estimate_report.reason.startswith("estimated: NVML: 1 GPU(s) [NVIDIA A40]")
    found.close()


def test_utilisation_failure_mid_run_is_a_sensor_error() -> None:
    gpu = unmetered()
    sensor = open_gpu_sensor(nvml=FakeNvml([gpu]), environ={}, sample_interval_s=None)
    sensor.start(0.0)
    gpu.fail = NVMLError_GpuIsLost()
    with pytest.raises(SensorError, match=f"GPU {UUID_A} .*GPU is lost"):
        sensor.energy_j(1.0)
    sensor.close()

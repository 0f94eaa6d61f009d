from __future__ import annotations

import sys
import threading
import time

import pytest

from carbon_callbacks import Tracker
from carbon_callbacks.sensors import nvml as nvml_mod
from carbon_callbacks.sensors.base import (
    ESTIMATE_GPU_TDP,
    NVML_ENERGY,
    NVML_POWER,
    SensorError,
    SensorUnavailable,
    SensorWarning,
)
from carbon_callbacks.sensors.detect import detect_sensors
from carbon_callbacks.sensors.gpu_select import parse_visible_devices
from carbon_callbacks.sensors.nvml import NvmlSensor, open_gpu_sensor
from tests.fakes.clock import FakeClock
from tests.fakes.fake_pynvml import FakeGpu, FakeMig, FakeNvml, NVMLError, NVMLError_GpuIsLost

UUIDS = [
    "GPU-11111111-aaaa-4000-8000-000000000000",
    "GPU-22222222-bbbb-4000-8000-000000000000",
    "GPU-33333333-cccc-4000-8000-000000000000",
]
MIG_A = "MIG-aaaaaaaa-0000-5000-8000-000000000001"
MIG_B = "MIG-aaaaaaaa-0000-5000-8000-000000000002"


def three_gpus(**kwargs: object) -> FakeNvml:
    gpus = [FakeGpu(f"NVIDIA A100-SXM4-40GB #{i}", u, energy_mj=1_000) for i, u in enumerate(UUIDS)]
    return FakeNvml(gpus, **kwargs)  # type: ignore[arg-type]


def open_sensor(nv: FakeNvml, env: dict[str, str] | None = None, **kw: object) -> NvmlSensor:
    return open_gpu_sensor(nvml=nv, environ=env or {}, sample_interval_s=None, **kw)  # type: ignore[arg-type]


def test_energy_counter_deltas_exact() -> None:
    nv = three_gpus()
    sensor = open_sensor(nv)
    assert sensor.method == NVML_ENERGY
    assert sensor.device_count == 3
    assert sensor.uuids == UUIDS
    sensor.start(0.0)
    nv.gpus[0].energy_mj = 1_000 + 250_500
    nv.gpus[2].energy_mj = 1_000 + 1_000_000
    assert sensor.energy_j(10.0) == 1250.5
    nv.gpus[1].energy_mj = 1_000 + 500
    assert sensor.energy_j(20.0) == 1251.0
    assert not sensor.sampling
    sensor.close()
    sensor.close()
    assert nv.shutdown_count == nv.init_count == 1


def test_no_counter_falls_back_to_trapezoid_power() -> None:
    gpu = FakeGpu("Tesla P100-PCIE-16GB", UUIDS[0], energy_mj=None, power_mw=100_000)
    nv = FakeNvml([gpu])
    sensor = open_sensor(nv)
    assert sensor.method == NVML_POWER
    sensor.start(0.0)  # first sample: 100 W at t=0
    gpu.power_mw = 200_000
    sensor.sample(10.0)  # (100 + 200) / 2 * 10 = 1500 J
    gpu.power_mw = 300_000
    # energy_j includes last sample -> now: (200 + 300) / 2 * 5 = 1250 J
    assert sensor.energy_j(15.0) == 2750.0
    # a sample not after the last one adds nothing
    sensor.sample(15.0)
    assert sensor.energy_j(15.0) == 2750.0
    sensor.close()


def test_mixed_devices_sum_and_label_power() -> None:
    a = FakeGpu("NVIDIA A100", UUIDS[0], energy_mj=0)
    b = FakeGpu("Tesla K80", UUIDS[1], energy_mj=None, power_mw=50_000)
    nv = FakeNvml([a, b])
    sensor = open_sensor(nv)
    assert sensor.method == NVML_POWER
    sensor.start(100.0)
    a.energy_mj = 7_000
    assert sensor.energy_j(110.0) == 7.0 + 500.0
    sensor.close()


def test_sampler_thread_only_when_needed() -> None:
    counted = three_gpus()
    sensor = open_gpu_sensor(nvml=counted, environ={})
    sensor.start(time.monotonic())
    assert not sensor.sampling
    sensor.close()

    gpu = FakeGpu("Tesla P100", UUIDS[0], energy_mj=None, power_mw=120_000)
    sensor = open_gpu_sensor(nvml=FakeNvml([gpu]), environ={}, sample_interval_s=0.01)
    t0 = time.monotonic()
    sensor.start(t0)
    assert sensor.sampling
    names = [t.name for t in threading.enumerate()]
    assert names.count("carbon-callbacks-gpu-sampler") == 1
    deadline = t0 + 5
    while gpu.power_reads < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert gpu.power_reads >= 4
    t1 = time.monotonic()
    # constant 120 W: 120 W x elapsed time (the thread may have sampled just after t1)
    assert sensor.energy_j(t1) == pytest.approx(120.0 * (t1 - t0), rel=0.05)
    sensor.close()
    assert not sensor.sampling


def test_sampler_thread_error_surfaces_as_sensor_error() -> None:
    gpu = FakeGpu("Tesla P100", UUIDS[0], energy_mj=None)
    clock = FakeClock(0.0)
    sensor = open_gpu_sensor(nvml=FakeNvml([gpu]), environ={}, sample_interval_s=0.005, clock=clock)
    sensor.start(0.0)
    gpu.fail = NVMLError_GpuIsLost()
    clock.advance(1.0)
    deadline = time.monotonic() + 5
    while sensor._error is None and time.monotonic() < deadline:
        time.sleep(0.005)
    with pytest.raises(SensorError, match="GPU is lost"):
        sensor.energy_j(2.0)
    sensor.close()


@pytest.mark.parametrize("env_value, expected", [
    ("0,2", [0, 2]),
    ("2", [2]),
    (" 1 , 0 ", [1, 0]),
    ("0,-1,2", [0]),  # CUDA stops at the first invalid entry
    ("1,7,2", [1]),  # out of range is invalid too
    ("0,0", [0]),  # counted once
    ("GPU-33333333-cccc-4000-8000-000000000000", [2]),
    ("GPU-2222,GPU-1111", [1, 0]),  # unique prefixes, as CUDA allows
    ("GPU-,1", []),  # ambiguous prefix stops parsing
])  # fmt: skip
def test_cuda_visible_devices_selects(env_value: str, expected: list[int]) -> None:
    nv = three_gpus()
    env = {"CUDA_VISIBLE_DEVICES": env_value, "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    if not expected:
        with pytest.raises(SensorUnavailable, match="selects no GPU"):
            open_sensor(nv, env)
        assert nv.shutdown_count == nv.init_count
        return
    sensor = open_sensor(nv, env)
    assert sensor.uuids == [UUIDS[i] for i in expected]
    assert f"CUDA_VISIBLE_DEVICES={env_value}" in sensor.selection
    sensor.close()


def test_cuda_visible_devices_empty_or_minus_one_means_no_gpu() -> None:
    nv = three_gpus()
    with pytest.raises(SensorUnavailable, match="empty"):
        open_sensor(nv, {"CUDA_VISIBLE_DEVICES": ""})
    assert nv.init_count == 0  # nothing initialised
    with pytest.raises(SensorUnavailable, match="selects no GPU"):
        open_sensor(nv, {"CUDA_VISIBLE_DEVICES": "-1"})


def test_parse_visible_devices() -> None:
    assert parse_visible_devices("0,1") == ["0", "1"]
    assert parse_visible_devices("MIG-x,abc,1") == ["MIG-x"]
    assert parse_visible_devices("-1") == []


def test_explicit_gpu_ids_win_over_env() -> None:
    nv = three_gpus()
    env = {"CUDA_VISIBLE_DEVICES": "0"}
    sensor = open_sensor(nv, env, gpu_ids=[2, UUIDS[1]])
    assert sensor.uuids == [UUIDS[2], UUIDS[1]]
    assert sensor.selection == f"gpu_ids=[2, {UUIDS[1]!r}]"
    sensor.close()
    with pytest.raises(ValueError, match="gpu_ids: 5 names no GPU here; accepted: indices 0..2"):
        open_sensor(nv, env, gpu_ids=[5])
    assert nv.shutdown_count == nv.init_count


def test_mixed_models_with_indices_advise_pci_order() -> None:
    nv = FakeNvml([FakeGpu("NVIDIA A100", UUIDS[0]), FakeGpu("NVIDIA T4", UUIDS[1])])
    sensor = open_sensor(nv, {"CUDA_VISIBLE_DEVICES": "1"})
    assert sensor.models == ["NVIDIA T4"]
    assert "CUDA_DEVICE_ORDER=PCI_BUS_ID" in sensor.selection
    sensor.close()


def mig_gpus(**kwargs: object) -> FakeNvml:
    parent = FakeGpu("NVIDIA A100-SXM4-40GB", UUIDS[0], energy_mj=0, migs=[
        FakeMig(MIG_A), None, FakeMig(MIG_B),
    ])  # fmt: skip
    other = FakeGpu("NVIDIA A100-SXM4-40GB", UUIDS[1], energy_mj=0)
    return FakeNvml([other, parent], **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("by_uuid", [True, False])
def test_mig_uuid_measures_parent_and_says_so(by_uuid: bool) -> None:
    nv = mig_gpus(mig_by_uuid=by_uuid)
    sensor = open_sensor(nv, {"CUDA_VISIBLE_DEVICES": f"{MIG_A},{MIG_B}"})
    assert sensor.uuids == [UUIDS[0]]  # both slices on one parent: counted once
    assert sensor.method == NVML_ENERGY
    assert len(sensor.notes) == 1
    assert MIG_A in sensor.notes[0] and MIG_B in sensor.notes[0]
    assert f"whole parent GPU {UUIDS[0]}" in sensor.notes[0]
    sensor.start(0.0)
    nv.gpus[1].energy_mj = 3_000
    assert sensor.energy_j(1.0) == 3.0
    sensor.close()


def test_legacy_mig_format_and_unknown_mig() -> None:
    nv = mig_gpus()
    sensor = open_sensor(nv, {"CUDA_VISIBLE_DEVICES": f"MIG-{UUIDS[0]}/1/0"})
    assert sensor.uuids == [UUIDS[0]] and "parent" in sensor.notes[0]
    sensor.close()
    with pytest.raises(SensorUnavailable, match="selects no GPU"):
        open_sensor(nv, {"CUDA_VISIBLE_DEVICES": "MIG-ffffffff-0000-5000-8000-000000000009"})


def test_errors_mid_run_raise_sensor_error() -> None:
    nv = three_gpus()
    sensor = open_sensor(nv)
    sensor.start(0.0)
    nv.gpus[1].fail = NVMLError_GpuIsLost()
    with pytest.raises(SensorError, match=f"GPU {UUIDS[1]} .*GPU is lost"):
        sensor.energy_j(1.0)
    sensor.close()
    with pytest.raises(SensorError, match="closed"):
        sensor.energy_j(3.0)


def test_power_error_mid_run_raises_sensor_error() -> None:
    gpu = FakeGpu("Tesla P100", UUIDS[0], energy_mj=None)
    sensor = open_sensor(FakeNvml([gpu]))
    sensor.start(0.0)
    gpu.fail = NVMLError(15)
    with pytest.raises(SensorError, match="GPU is lost"):
        sensor.energy_j(1.0)
    sensor.close()


def test_init_failure_is_unavailable() -> None:
    nv = three_gpus(init_error=NVMLError(12))
    with pytest.raises(SensorUnavailable, match="nvmlInit failed .*Library Not Found"):
        open_sensor(nv)


def test_unmeterable_gpu_is_estimated_not_skipped() -> None:
    broken = FakeGpu("Broken", UUIDS[0], energy_mj=None, fail=NVMLError(4))
    nv = FakeNvml([broken, FakeGpu("NVIDIA A100", UUIDS[1])])
    sensor = open_sensor(nv)
    assert sensor.uuids == UUIDS[:2]
    assert sensor.method == ESTIMATE_GPU_TDP
    assert sensor.devices[0].why == "no energy counter; power unreadable (Insufficient Permissions)"
    sensor.close()


def test_counter_restart_rebases_counts_and_marks_the_lost_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    nv = three_gpus()  # every counter at 1_000 mJ
    sensor = open_sensor(nv, gpu_ids=[0, 1])
    sensor.start(100.0)
    nv.gpus[0].energy_mj = 1_000 + 50_000
    nv.gpus[1].energy_mj = 1_000 + 20_000
    assert sensor.energy_j(110.0) == 70.0
    nv.gpus[0].energy_mj = 8_000  # driver reloaded: 8 J since the restart
    nv.gpus[1].energy_mj = 1_000 + 30_000
    assert sensor.energy_j(130.0) == 50.0 + 8.0 + 30.0  # not None, not 8 - 51 J
    assert sensor.lost_intervals == [(UUIDS[0], 110.0, 130.0)]
    [(cause, message)] = sensor.errors.items()
    assert cause == f"nvml:counter-restart:{UUIDS[0]}"
    assert "between 10 s and 30 s after the start" in message
    assert "before it in that interval is not" in message
    nv.gpus[0].energy_mj = 12_000  # counting goes on from the new base
    assert sensor.energy_j(140.0) == 50.0 + 12.0 + 30.0
    nv.gpus[0].energy_mj = 2_000  # a second restart: counted, recorded, not warned again
    assert sensor.energy_j(150.0) == 50.0 + 12.0 + 2.0 + 30.0
    assert sensor.lost_intervals[1] == (UUIDS[0], 140.0, 150.0)
    assert len(sensor.errors.items()) == 1
    warned = [r for r in caplog.records if "went back to zero" in r.getMessage()]
    assert len(warned) == 1 and warned[0].levelname == "WARNING"
    sensor.start(200.0)  # a new run forgets the old intervals
    assert sensor.lost_intervals == []
    sensor.close()


def test_counter_restart_lands_in_the_tracker_error_log() -> None:
    nv = three_gpus()
    sensor = open_sensor(nv, gpu_ids=[2])
    clock = FakeClock(0.0)
    tracker = Tracker(intensity_g_per_kwh=100, sensors=[sensor], clock=clock, output_dir=None)
    tracker.start()
    clock.advance(10.0)
    nv.gpus[2].energy_mj = 1_000 + 3_600_000
    assert tracker.lap().gpu_energy_kwh == 0.001
    clock.advance(10.0)
    nv.gpus[2].energy_mj = 360_000  # restarted: 360 J since then
    lap = tracker.lap()
    assert lap.gpu_energy_kwh == 0.0001
    assert [c for c, _ in tracker.errors.items()] == [f"nvml:counter-restart:{UUIDS[2]}"]
    tracker.close()


def test_no_driver_imports_no_pynvml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nvml_mod, "driver_found", lambda: None)
    monkeypatch.delitem(sys.modules, "pynvml", raising=False)
    with pytest.raises(SensorUnavailable, match="no NVIDIA driver"):
        open_gpu_sensor(environ={})
    assert "pynvml" not in sys.modules


def test_detect_uses_fake_nvml_and_warns_for_explicit_ids(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    found = detect_sensors(nvml=three_gpus(), count_cpu=False, count_ram=False)
    assert found.gpu is not None and found.gpu.method == NVML_ENERGY
    gpu_report = [r for r in found.reports if r.component == "gpu"][0]
    assert gpu_report.available and "3 GPU(s)" in gpu_report.reason
    found.close()
    monkeypatch.setattr(nvml_mod, "driver_found", lambda: None)
    with pytest.warns(SensorWarning, match=r"gpu_ids=\[0\] given"):
        found = detect_sensors(gpu_ids=[0], count_cpu=False, count_ram=False)
    assert found.gpu is None


@pytest.mark.gpu
def test_real_gpu_energy() -> None:
    if nvml_mod.driver_found() is None:
        pytest.skip(reason="no NVIDIA driver on this machine")
    sensor = open_gpu_sensor(sample_interval_s=0.05)
    try:
        t0 = time.monotonic()
        sensor.start(t0)
        time.sleep(1.0)
        t1 = time.monotonic()
        energy = sensor.energy_j(t1)
        # any GPU draws some idle power; none draws more than 1.5 kW
        assert 0.0 < energy < 1500.0 * sensor.device_count * (t1 - t0)
        assert sensor.device_count >= 1 and len(sensor.uuids) == sensor.device_count
        assert all(u.startswith(("GPU-", "MIG-")) for u in sensor.uuids)
    finally:
        sensor.close()

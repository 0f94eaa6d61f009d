from __future__ import annotations

import pytest

from carbon_callbacks import Tracker
from carbon_callbacks.errors import ErrorLog
from carbon_callbacks.sensors.amd import AmdSmiSensor, open_amd_sensor, poll_interval
from carbon_callbacks.sensors.amd_select import match_serial, visible_devices
from carbon_callbacks.sensors.base import (
    AMDSMI_ENERGY,
    AMDSMI_POWER,
    PollingSensor,
    SensorUnavailable,
)
from tests.fakes.clock import FakeClock
from tests.fakes.fake_amdsmi import FakeAmdGpu, FakeAmdSmi

# 2^-6 µJ steps: every product below is exact in binary floating point.
RES = 15.625


def four_gpus(**kwargs: object) -> FakeAmdSmi:
    gpus = [
        FakeAmdGpu(
            "AMD Instinct MI300X",
            f"0x{i}a2b3c4d5e6f7081",
            energy=1_000,
            hip_id=i,
            resolution_uj=RES,
        )
        for i in range(4)
    ]
    return FakeAmdSmi(gpus, **kwargs)  # type: ignore[arg-type]


def open_sensor(smi: FakeAmdSmi, env: dict[str, str] | None = None, **kw: object) -> AmdSmiSensor:
    return open_amd_sensor(smi=smi, environ=env or {}, sample_interval_s=None, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("key", ["power", "both", "energy_accumulator"])
def test_counter_deltas_exact_with_each_key_spelling(key: str) -> None:
    smi = four_gpus(key=key)
    sensor = open_sensor(smi)
    assert sensor.method == AMDSMI_ENERGY
    assert sensor.device_count == 4
    sensor.start(0.0)
    smi.gpus[0].energy = 1_000 + 64_000_000  # 64e6 counts x 15.625 µJ = 1000 J
    smi.gpus[3].energy = 1_000 + 320  # 5000 µJ
    assert sensor.energy_j(10.0) == 1000.005
    smi.gpus[1].energy = 1_000 + 64  # 1000 µJ
    assert sensor.energy_j(20.0) == 1000.006
    sensor.close()
    sensor.close()
    assert smi.shutdown_count == smi.init_count == 1


def test_real_resolution_of_15_3_microjoules() -> None:
    gpu = FakeAmdGpu("AMD Instinct MI100", "0x99", energy=8_152_136, hip_id=0)
    smi = FakeAmdSmi([gpu], key="power")  # ROCm 6.0.2, as in AMDResearch/hpcfund issue 21
    sensor = open_sensor(smi)
    sensor.start(0.0)
    gpu.energy += 1_000_000
    # 1e6 counts x 15.300000190734863 µJ (float32 15.3), by hand: 15.300000190734863 J
    assert sensor.energy_j(5.0) == pytest.approx(15.300000190734863, rel=1e-15)


def test_32_bit_wrap_counted() -> None:
    gpu = FakeAmdGpu(
        "AMD Instinct MI250X", "0x1", energy=2**32 - 1_000, hip_id=0, resolution_uj=RES
    )
    sensor = open_sensor(FakeAmdSmi([gpu]))
    errors = ErrorLog()
    sensor.bind_errors(errors)
    sensor.start(0.0)
    gpu.energy = 500  # 1000 counts up to 2^32 (where it reads 0 again), then 500: 1500
    assert sensor.energy_j(10.0) == 1_500 * RES / 1e6
    assert sensor.lost_intervals == [] and not errors
    sensor.close()


def test_reset_rebased_and_recorded() -> None:
    gpu = FakeAmdGpu(
        "AMD Instinct MI300X", "0x1", energy=10_000_000, hip_id=0, resolution_uj=RES, uuid="GPU-aa"
    )
    sensor = open_sensor(FakeAmdSmi([gpu]))
    errors = ErrorLog()
    sensor.bind_errors(errors)
    sensor.start(100.0)
    gpu.energy = 10_000_000 + 64_000  # 1 J
    assert sensor.energy_j(110.0) == 1.0
    gpu.energy = 2_000  # far below: a 32-bit wrap would mean 66,952 J in 10 s at 750 W
    assert sensor.energy_j(120.0) == 1.0 + 2_000 * RES / 1e6
    assert sensor.lost_intervals == [("GPU-aa", 110.0, 120.0)]
    assert "went back between 10 s and 20 s" in errors.messages()[0]
    gpu.energy = 2_000 + 64_000
    assert sensor.energy_j(130.0) == 2.0 + 2_000 * RES / 1e6
    sensor.close()


def test_without_power_cap_a_drop_is_a_restart() -> None:
    gpu = FakeAmdGpu("AMD GPU", "0x1", energy=2**32 - 10, hip_id=0, resolution_uj=RES, cap_uw=None)
    sensor = open_sensor(FakeAmdSmi([gpu]))
    assert not isinstance(sensor, PollingSensor)
    sensor.start(0.0)
    gpu.energy = 64
    assert sensor.energy_j(1.0) == 0.001
    assert len(sensor.lost_intervals) == 1


def test_poll_interval_from_32_bit_range_and_cap() -> None:
    smi = four_gpus()
    sensor = open_sensor(smi)
    assert isinstance(sensor, PollingSensor)
    # 2^32 counts x 15.625 µJ = 67,108.864 J; at 750 W that is 89.48 s; a third of it:
    assert sensor.poll_interval_s == pytest.approx(67108.864 / 750.0 / 3.0)
    assert poll_interval(sensor.devices) == sensor.poll_interval_s


def test_poll_sees_the_wrap_between_laps() -> None:
    clock = FakeClock(0.0)
    gpu = FakeAmdGpu(
        "AMD Instinct MI250X", "0x1", energy=2**32 - 64_000, hip_id=0, resolution_uj=RES
    )
    sensor = open_amd_sensor(smi=FakeAmdSmi([gpu]), environ={}, sample_interval_s=None, clock=clock)
    sensor.start(0.0)
    clock.advance(20.0)
    gpu.energy = 64_000  # 2 J across the wrap, read by the guard at t=20
    sensor.poll()  # type: ignore[attr-defined]
    assert sensor.energy_j(40.0) == 2.0


def test_power_samples_where_no_counter() -> None:
    gpu = FakeAmdGpu("AMD Radeon PRO W7900", "0x1", energy=None, power_w=200, hip_id=0)
    sensor = open_sensor(FakeAmdSmi([gpu]))
    assert sensor.method == AMDSMI_POWER
    assert "no energy counter" in sensor.devices[0].why
    sensor.start(0.0)
    gpu.power_w = 300
    assert sensor.energy_j(10.0) == 2500.0  # (200 + 300) / 2 x 10
    sensor.close()


def test_no_counter_and_no_power_unavailable() -> None:
    gpu = FakeAmdGpu("AMD GPU", "0x1", energy=None, power_w="N/A", hip_id=0)
    with pytest.raises(SensorUnavailable, match="power unreadable"):
        open_sensor(FakeAmdSmi([gpu]))


def test_visible_devices_composition() -> None:
    assert visible_devices({}) == (None, "all devices")
    assert visible_devices({"HIP_VISIBLE_DEVICES": "0,2"})[0] == ["0", "2"]
    assert visible_devices({"CUDA_VISIBLE_DEVICES": "3"})[0] == ["3"]
    # HIP_VISIBLE_DEVICES wins over CUDA_VISIBLE_DEVICES (HIP reads CUDA's only without it)
    assert visible_devices({"HIP_VISIBLE_DEVICES": "1", "CUDA_VISIBLE_DEVICES": "0,1,2"})[0] == [
        "1"
    ]
    both = {"ROCR_VISIBLE_DEVICES": "2,3", "HIP_VISIBLE_DEVICES": "1"}
    assert visible_devices(both)[0] == ["3"]
    assert visible_devices({"ROCR_VISIBLE_DEVICES": "GPU-ab,1", "HIP_VISIBLE_DEVICES": "0"})[0] == [
        "GPU-ab"
    ]
    assert visible_devices({"ROCR_VISIBLE_DEVICES": "1", "HIP_VISIBLE_DEVICES": "1"})[0] == []
    assert visible_devices({"HIP_VISIBLE_DEVICES": "1,-1,2"})[0] == ["1"]
    assert visible_devices({"HIP_VISIBLE_DEVICES": ""})[0] == []


def test_only_the_visible_devices_are_measured() -> None:
    smi = four_gpus()
    sensor = open_sensor(smi, {"ROCR_VISIBLE_DEVICES": "1,3", "HIP_VISIBLE_DEVICES": "1"})
    assert [d.index for d in sensor.devices] == [3]
    assert sensor.selection == "ROCR_VISIBLE_DEVICES=1,3, HIP_VISIBLE_DEVICES=1"
    sensor.start(0.0)
    for gpu in smi.gpus:
        gpu.energy = 1_000 + 64_000
    assert sensor.energy_j(1.0) == 1.0  # one GPU's joule, not four


def test_hip_numbering_differs_from_amdsmi_order() -> None:
    smi = four_gpus()
    for gpu, hip_id in zip(smi.gpus, [2, 3, 0, 1], strict=True):
        gpu.hip_id = hip_id
    sensor = open_sensor(smi, {"HIP_VISIBLE_DEVICES": "0"})
    assert [d.index for d in sensor.devices] == [2]


def test_uuid_selection_and_ranks_devices() -> None:
    smi = four_gpus()
    serials = [g.serial for g in smi.gpus]
    assert match_serial("GPU-2A2B", serials) == 2
    assert match_serial("GPU-", serials) is None  # ambiguous
    sensor = open_sensor(smi, {"CUDA_VISIBLE_DEVICES": "0,1,2,3"}, gpu_ids=["GPU-1a2b"])
    assert [d.index for d in sensor.devices] == [1]
    with pytest.raises(ValueError, match="names no AMD GPU"):
        open_sensor(smi, gpu_ids=[7])


def test_no_driver_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    from carbon_callbacks.sensors import amd

    monkeypatch.setattr(amd, "KFD_PATH", "/nonexistent/kfd")
    with pytest.raises(SensorUnavailable, match="no ROCm driver"):
        open_amd_sensor(environ={})


def test_tracker_tags_amdsmi_energy() -> None:
    from carbon_callbacks.outputs import run_tags

    smi = four_gpus()
    sensor = open_sensor(smi, {"HIP_VISIBLE_DEVICES": "0"})
    clock = FakeClock(0.0)
    tracker = Tracker(country="FR", sensors=[sensor], output_dir=None, clock=clock)
    tracker.start()
    smi.gpus[0].energy = 1_000 + 230_400_000  # 3600 J = 0.001 kWh
    clock.advance(10.0)
    lap = tracker.lap()
    assert lap.gpu_energy_kwh == 0.001
    assert lap.gpu_method == "amdsmi-energy"
    tags = run_tags(tracker)
    assert tags["carbon.gpu_method"] == "amdsmi-energy"
    assert tags["carbon.gpu_model"] == "AMD Instinct MI300X"
    assert tags["carbon.gpu_count"] == "1"
    tracker.stop()
    tracker.close()

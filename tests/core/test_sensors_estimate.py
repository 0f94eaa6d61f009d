from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pytest

from carbon_callbacks.data import load_json
from carbon_callbacks.sensors import cpu_model, cpuinfo, estimate
from carbon_callbacks.sensors.base import CONSTANT, ESTIMATE_RAM, ESTIMATE_TDP
from carbon_callbacks.sensors.estimate import (
    ConstantPowerSensor,
    CpuEstimateSensor,
    RamEstimateSensor,
    cpu_power_w,
    normalise_cpu_name,
)
from tests.core.conftest import TDP_TABLE
from tests.fakes.clock import FakeClock

GOLD_6248 = "Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz"


def test_normalise() -> None:
    assert normalise_cpu_name(GOLD_6248) == "intel xeon gold 6248"
    assert normalise_cpu_name("AMD EPYC 7742 64-Core Processor") == "amd epyc 7742 64 core"
    assert normalise_cpu_name("Intel® Core™ i7-8700K CPU @ 3.70GHz") == "intel core i7 8700k"


@pytest.mark.usefixtures("table")
@pytest.mark.parametrize("load, watts", [(0.0, 37.5), (0.5, 93.75), (1.0, 150.0)])
def test_cpu_power_known_cpu(load: float, watts: float) -> None:
    assert cpu_power_w(GOLD_6248, load, 40) == watts


@pytest.mark.usefixtures("table")
def test_cpu_power_unknown_cpu_uses_watts_per_thread() -> None:
    # TDP = 10 W x 8 threads = 80 W; at load 0.5: 80 x (0.25 + 0.75 x 0.5) = 50 W
    assert cpu_power_w("Some Future CPU 9000", 0.5, 8) == 50.0
    assert cpu_power_w("", 1.0, 4) == 40.0


@pytest.mark.usefixtures("table")
@pytest.mark.parametrize("model, tdp", [
    (GOLD_6248, 150.0),
    ("Intel(R) Xeon(R) Gold 6248R CPU @ 3.00GHz", 205.0),  # token match: not 6248
    ("Intel(R) Xeon(R) CPU E5-2686 v4 @ 2.30GHz", 145.0),
    ("AMD EPYC 7742 64-Core Processor", 225.0),
    ("AMD Opteron(tm) Processor 6274", 115.0),
    ("Intel(R) Core(TM) i7-8700K CPU @ 3.70GHz", 95.0),
    ("Intel(R) Xeon(R) Platinum 8480+", 350.0),
    ("Intel(R) Core(TM) i5 CPU       M 460  @ 2.53GHz", 35.0),  # ARK's "i5-460M", not "460"
    ("Apple M1", 10.0),
])  # fmt: skip
def test_tdp_matching(model: str, tdp: float) -> None:
    assert cpu_power_w(model, 1.0, 16) == tdp


@pytest.mark.usefixtures("table")
@pytest.mark.parametrize("model", [
    "Apple M1 Max", "Apple M1 Pro", "Apple M1 Ultra",  # not "Apple M1"'s 10 W
    "AMD Athlon II X3 460 Processor",  # not the vendorless "460"
    "Intel(R) Xeon(R) Gold 6248 CPU 9000",  # a longer model name
])  # fmt: skip
def test_a_row_matches_only_the_vendor_and_the_whole_model_name(model: str) -> None:
    assert estimate.tdp_table().lookup(model) is None
    assert cpu_power_w(model, 1.0, 4) == 40.0  # unknown: 10 W x 4 threads


def test_cpu_key() -> None:
    assert estimate.cpu_key("13th Gen Intel(R) Core(TM) i9-13900K") == "intel core i9 13900k"
    assert estimate.cpu_key("AMD Ryzen 7 PRO 4750U with Radeon Graphics") == (
        "amd ryzen 7 pro 4750u"
    )
    assert estimate.cpu_key("AMD EPYC 9R14 96-Core Processor") == "amd epyc 9r14"
    assert estimate.cpu_key("7th Gen AMD PRO A10-9700 APU") == "amd pro a10 9700"


@pytest.mark.usefixtures("table")
def test_load_clamped_and_bad_arguments() -> None:
    assert cpu_power_w(GOLD_6248, 1.7, 40) == 150.0
    assert cpu_power_w(GOLD_6248, -0.3, 40) == 37.5
    with pytest.raises(ValueError, match="nan"):
        cpu_power_w(GOLD_6248, math.nan, 40)
    for bad in (0, -1, True, 2.0):
        with pytest.raises(ValueError, match="logical_cpus"):
            cpu_power_w(GOLD_6248, 0.5, bad)  # type: ignore[arg-type]


def test_the_load_curve_is_piecewise_linear_and_scaled_by_its_full_load_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    table = {
        **TDP_TABLE,
        "load_curve": [[0.0, 0.2], [0.1, 0.4], [0.5, 0.6], [1.0, 1.2]],
    }
    monkeypatch.setattr(cpu_model, "read_json", lambda name: table)
    estimate.reset()
    try:
        # TDP 150 W: full load 150 x 1.2 = 180 W; P(u) = 180 x f(u) / 1.2 = 150 x f(u).
        assert cpu_power_w(GOLD_6248, 0.0, 40) == pytest.approx(30.0)  # 150 x 0.2
        assert cpu_power_w(GOLD_6248, 0.05, 40) == pytest.approx(45.0)  # 150 x 0.3
        assert cpu_power_w(GOLD_6248, 0.3, 40) == pytest.approx(75.0)  # 150 x 0.5
        assert cpu_power_w(GOLD_6248, 1.0, 40) == pytest.approx(180.0)
        # Per thread (unknown model): 10 W x 8 = 80 W at full load; idle 80 x 0.2 / 1.2.
        assert cpu_power_w("?", 1.0, 8) == pytest.approx(80.0)
        assert cpu_power_w("?", 0.0, 8) == pytest.approx(80 * 0.2 / 1.2)
    finally:
        estimate.reset()
    with pytest.raises(ValueError, match="load_curve"):
        estimate.TdpTable([], 6.0, [[0.1, 0.2], [1.0, 1.0]])


@pytest.mark.usefixtures("table")
def test_a_microarchitecture_gives_the_watts_per_thread() -> None:
    # "AMD EPYC 7R32" is no table row; the test family "rome" gives 2 W a thread.
    basis = estimate.cpu_basis("AMD EPYC 7R32", 8, virtual_machine=True)
    assert (basis.full_load_w, basis.tdp_w, basis.w_per_thread) == (16.0, None, 2.0)
    assert cpu_power_w("AMD EPYC 7R32", 1.0, 8, virtual_machine=True) == 16.0
    assert cpu_power_w("AMD EPYC 7R32", 0.0, 8, virtual_machine=True) == 4.0  # 25 %
    # A known Rome package in a VM: capped at 2 W a vCPU, not the 10 W default.
    assert cpu_power_w("AMD EPYC 7742 64-Core Processor", 1.0, 8, virtual_machine=True) == 16.0
    vm = CpuEstimateSensor(cpu_model="AMD EPYC 7742", logical_cpus=8, virtual_machine=True)
    assert vm.describe() == (
        "load-curve model for 'AMD EPYC 7742' (8 logical CPUs, 1 socket(s)): a virtual "
        "machine, 16 W per package at full load: 2 W a thread at full load (rome: test), "
        "below the 225 W TDP of the host's 'AMD EPYC 7742'"
    )


def test_bundled_table_when_present() -> None:
    try:
        load_json(estimate.TDP_TABLE_FILE)
    except FileNotFoundError:
        pytest.skip(reason="carbon_callbacks/data/cpu_tdp.json is not built yet")
    estimate.reset()
    table = estimate.tdp_table()
    assert table.lookup(GOLD_6248) == ("Intel Xeon Gold 6248", 150.0)
    curve = dict(table.load_curve)
    assert cpu_power_w(GOLD_6248, 1.0, 40) == pytest.approx(150.0 * curve[1.0])
    assert cpu_power_w(GOLD_6248, 0.0, 40) == pytest.approx(150.0 * curve[0.0])
    for model in ("Apple M1 Max", "AMD Athlon II X3 460", "460"):
        assert table.lookup(model) is None or table.lookup(model) == (model, 95.0), model
    assert table.lookup("Intel(R) Core(TM) i5 CPU M 460 @ 2.53GHz") == ("Intel Core i5-460M", 35)
    assert table.lookup("Apple M1") is None  # Apple publishes no TDP
    assert table.lookup("460") is None  # vendorless rows are dropped
    # The cases: 8 vCPUs of an EPYC 7R32 and one 192-thread EPYC 9R14 at full load,
    # from the Rome and Genoa watts per thread (docs/methodology.md), not 6 W a thread.
    rome = table.family("AMD EPYC 7R32")
    genoa = table.family("AMD EPYC 9R14 96-Core Processor")
    assert rome is not None and genoa is not None
    vm = cpu_power_w("AMD EPYC 7R32", 1.0, 8, virtual_machine=True)
    assert vm == pytest.approx(8 * rome.w_per_thread) and 10 < vm < 20
    metal = cpu_power_w("AMD EPYC 9R14 96-Core Processor", 1.0, 192)
    assert metal == pytest.approx(192 * genoa.w_per_thread) and metal < 400
    estimate.reset()


def test_the_energy_ratio_constant_is_what_the_bench_prints() -> None:
    try:
        load_json(estimate.TDP_TABLE_FILE)
    except FileNotFoundError:
        pytest.skip(reason="carbon_callbacks/data/cpu_tdp.json is not built yet")
    from bench import validate_cpu_model

    estimate.reset()
    assert validate_cpu_model.energy_ratio_range() == estimate.CPU_ESTIMATE_ENERGY_RATIO
    estimate.reset()


def test_constant_sensor_exact_with_fake_clock() -> None:
    clock = FakeClock()
    sensor = ConstantPowerSensor("cpu", 50)
    assert (sensor.component, sensor.method) == ("cpu", CONSTANT)
    sensor.start(clock())
    clock.advance(3600)
    assert sensor.energy_j(clock()) == 180_000.0
    clock.advance(1800)
    assert sensor.energy_j(clock()) == 270_000.0
    sensor.close()


@pytest.mark.parametrize("bad", [-1.0, math.inf, math.nan, "50", True])
def test_constant_sensor_rejects_bad_watts(bad: Any) -> None:
    with pytest.raises(ValueError, match=f"cpu_power_w must be .* got {bad!r}"):
        ConstantPowerSensor("cpu", bad)


def test_ram_estimate() -> None:
    sensor = RamEstimateSensor(total_bytes=16_000_000_000)
    assert (sensor.component, sensor.method) == ("ram", ESTIMATE_RAM)
    assert sensor.power_w == pytest.approx(5.96, rel=1e-12)  # 0.3725 W/GB x 16 GB
    sensor.start(0.0)
    assert sensor.energy_j(100.0) == pytest.approx(596.0, rel=1e-12)
    assert RamEstimateSensor().total_bytes == cpuinfo.total_ram_bytes()
    with pytest.raises(ValueError, match="positive"):
        RamEstimateSensor(total_bytes=0)


class ScriptedTimes:
    """(busy, total) CPU times returned in order."""

    def __init__(self, *values: tuple[float, float]) -> None:
        self.values = list(values)

    def __call__(self) -> tuple[float, float]:
        return self.values.pop(0)


@pytest.mark.usefixtures("table")
def test_cpu_estimate_integrates_mean_load() -> None:
    times = ScriptedTimes((0, 0), (50, 100), (50, 200), (50, 200), (250, 400))
    sensor = CpuEstimateSensor(
        cpu_model=GOLD_6248, logical_cpus=40, sockets=1, read_cpu_times=times
    )
    assert (sensor.component, sensor.method) == ("cpu", ESTIMATE_TDP)
    sensor.start(0.0)
    assert sensor.energy_j(10.0) == 937.5  # load 0.5: 93.75 W x 10 s
    assert sensor.last_load == 0.5
    assert sensor.energy_j(20.0) == 1312.5  # load 0: 37.5 W x 10 s
    assert sensor.energy_j(30.0) == 1687.5  # same tick: previous load kept
    assert sensor.energy_j(40.0) == 3187.5  # load 1: 150 W x 10 s
    sensor.close()


@pytest.mark.usefixtures("table")
def test_cpu_estimate_counts_one_tdp_per_socket() -> None:
    times = ScriptedTimes((0, 0), (100, 100))
    sensor = CpuEstimateSensor(
        cpu_model=GOLD_6248, logical_cpus=80, sockets=2, read_cpu_times=times
    )
    sensor.start(0.0)
    assert sensor.energy_j(1.0) == 300.0
    unknown = CpuEstimateSensor(cpu_model="?", logical_cpus=16, sockets=2)
    assert unknown.power_w(1.0) == 160.0  # 10 W x 16 threads, whatever the sockets
    assert CpuEstimateSensor(logical_cpus=4, sockets=9).sockets == 1  # nonsense -> 1


@pytest.mark.usefixtures("table")
def test_cpu_estimate_on_this_machine() -> None:
    sensor = CpuEstimateSensor()
    sensor.start(0.0)
    energy = sensor.energy_j(1.0)
    assert 0.0 <= energy <= sensor.power_w(1.0)


def test_proc_stat_parsing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 20 30 400 50 5 5 10 7 3\ncpu0 1 2 3 4 5 6 7 8 9 10\n")
    monkeypatch.setattr(cpuinfo, "PROC_STAT", str(stat))
    # total = 100+20+30+400+50+5+5+10 (guest excluded); busy = total - idle - iowait
    assert cpuinfo.proc_stat_times() == (170.0, 620.0)


def test_cpuinfo_probes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: {GOLD_6248}\n")
    topo = tmp_path / "package_cpus_list"
    topo.write_text("0-19,40-59\n")
    monkeypatch.setattr(cpuinfo, "PROC_CPUINFO", str(info))
    monkeypatch.setattr(cpuinfo, "_PACKAGE_CPUS", (str(tmp_path / "missing"), str(topo)))
    monkeypatch.setattr(cpuinfo, "logical_cpus", lambda: 80)
    cpuinfo.reset()
    try:
        assert cpuinfo.cpu_model() == GOLD_6248
        assert cpuinfo.cpu_sockets() == 2
    finally:
        cpuinfo.reset()
    busy, total = cpuinfo.system_cpu_times()
    assert 0 <= busy <= total
    busy, total = cpuinfo.psutil_times()
    assert 0 <= busy <= total


# -- the CPUs a run has: a virtual machine's vCPUs, a process's affinity ----------------------

PLATINUM = "Intel(R) Xeon(R) Platinum 8480+"  # 350 W in the test table


@pytest.mark.usefixtures("table")
def test_a_virtual_machine_is_charged_per_vcpu_not_the_host_package() -> None:
    # 4 vCPUs of a 350 W package: capped at 10 W x 4 (the table's watts per thread).
    basis = estimate.cpu_basis(PLATINUM, 4, virtual_machine=True)
    assert (basis.full_load_w, basis.table_name, basis.capped) == (
        40.0,
        "Intel Xeon Platinum 8480+",
        True,
    )
    assert cpu_power_w(PLATINUM, 1.0, 4, virtual_machine=True) == 40.0
    assert cpu_power_w(PLATINUM, 0.0, 4, virtual_machine=True) == 10.0  # idle: 25 %
    # Bare metal, or a VM that has the whole package's worth of threads: the package TDP.
    assert cpu_power_w(PLATINUM, 1.0, 4) == 350.0
    assert cpu_power_w(PLATINUM, 1.0, 112, virtual_machine=True) == 350.0
    assert cpu_power_w("Some Future CPU 9000", 1.0, 4, virtual_machine=True) == 40.0
    vm = CpuEstimateSensor(cpu_model=PLATINUM, logical_cpus=8, sockets=2, virtual_machine=True)
    assert vm.power_w(1.0) == 80.0  # 2 packages x 4 vCPUs x 10 W
    assert "a virtual machine, 40 W per package at full load: 10 W a thread at full load " in (
        vm.describe()
    )
    assert "below the 350 W TDP of the host's 'Intel Xeon Platinum 8480+'" in vm.describe()
    metal = CpuEstimateSensor(cpu_model=PLATINUM, logical_cpus=8, sockets=2)
    assert (metal.virtual_machine, metal.power_w(1.0)) == (False, 700.0)
    assert "350 W TDP per package ('Intel Xeon Platinum 8480+'), 350 W at full load" in (
        metal.describe()
    )


PROC_STAT = (
    "cpu  {all}\n"
    "cpu0 100 0 0 900 0 0 0 0 0 0\n"
    "cpu1 {one}\n"
    "cpu2 50 0 0 950 0 0 0 0 0 0\n"
    "cpu3 {three}\n"
    "intr 12345 1 2 3\n"
)


def write_stat(path: Path, one: tuple[int, int], three: tuple[int, int]) -> None:
    """cpu1 and cpu3 with (busy, idle) ticks; the machine line is all CPUs busy."""
    lines = {
        k: f"{busy} 0 0 {idle} 0 0 0 0 0 0" for k, (busy, idle) in (("one", one), ("three", three))
    }
    path.write_text(PROC_STAT.format(all="9999 0 0 0 0 0 0 0 0 0", **lines))


def test_per_cpu_times_from_proc_stat(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stat = tmp_path / "stat"
    write_stat(stat, one=(10, 90), three=(30, 70))
    monkeypatch.setattr(cpuinfo, "PROC_STAT", str(stat))
    assert cpuinfo.proc_stat_times() == (9999.0, 9999.0)
    assert cpuinfo.proc_stat_times(frozenset({1, 3})) == (40.0, 200.0)
    assert cpuinfo.proc_stat_times(frozenset({0})) == (100.0, 1000.0)
    with pytest.raises(ValueError, match=r"lines for 1 of the CPUs \[3, 7\]"):
        cpuinfo.proc_stat_times(frozenset({3, 7}))  # cpu7: offline, or not this machine's


@pytest.mark.usefixtures("table")
def test_a_process_confined_to_some_cpus_is_charged_their_share_at_their_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stat = tmp_path / "stat"
    write_stat(stat, one=(0, 0), three=(0, 0))
    monkeypatch.setattr(cpuinfo, "PROC_STAT", str(stat))
    sensor = CpuEstimateSensor(cpu_model=GOLD_6248, logical_cpus=4, sockets=1, cpus=[1, 3])
    assert (sensor.cpus, sensor.share) == (frozenset({1, 3}), 0.5)
    sensor.start(0.0)
    # cpu1 and cpu3 fully busy for 10 s (the rest of the machine's load is someone else's):
    # half the package at load 1, 75 W x 10 s.
    write_stat(stat, one=(100, 0), three=(100, 0))
    assert sensor.energy_j(10.0) == 750.0
    # Then idle for 10 s: half the package's idle power, 0.5 x 150 W x 0.25 x 10 s.
    write_stat(stat, one=(100, 100), three=(100, 100))
    assert sensor.energy_j(20.0) == 750.0 + 187.5
    assert "this process may run on 2 of them, charged 2/4 of that" in sensor.describe()
    # All of the machine's CPUs, or none: the whole machine.
    assert CpuEstimateSensor(cpu_model=GOLD_6248, logical_cpus=4, cpus=range(4)).cpus is None
    assert CpuEstimateSensor(cpu_model=GOLD_6248, logical_cpus=4, cpus=[]).cpus is None
    # CPUs without their own /proc/stat line: counted as the whole machine, not half at
    # the machine's load.
    lost = CpuEstimateSensor(cpu_model=GOLD_6248, logical_cpus=8, cpus=[1, 7])
    assert (lost.cpus, lost.share) == (None, 1.0)


def test_this_machines_affinity_and_hypervisor_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = tmp_path / "cpuinfo"
    monkeypatch.setattr(cpuinfo, "PROC_CPUINFO", str(info))
    monkeypatch.setattr(cpuinfo, "logical_cpus", lambda: 8)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {2, 3}, raising=False)
    flags = "flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr"
    try:
        for text, expected in ((flags + " hypervisor lahf_lm\n", True), (flags + "\n", False)):
            info.write_text(f"processor\t: 0\nmodel name\t: {GOLD_6248}\n{text}")
            cpuinfo.reset()
            assert cpuinfo.virtual_machine() is expected
        assert cpuinfo.usable_cpus() == frozenset({2, 3})
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
        cpuinfo.reset()
        assert cpuinfo.usable_cpus() is None  # may run anywhere
    finally:
        cpuinfo.reset()


def test_an_arm_neoverse_core_is_named_from_its_part_number(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An arm64 /proc/cpuinfo (as on Graviton2) has no "model name" line.
    info = tmp_path / "cpuinfo"
    info.write_text(
        "processor\t: 0\nBogoMIPS\t: 243.75\nFeatures\t: fp asimd evtstrm aes pmull\n"
        "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x3\n"
        "CPU part\t: 0xd0c\nCPU revision\t: 1\n"
    )
    monkeypatch.setattr(cpuinfo, "PROC_CPUINFO", str(info))
    cpuinfo.reset()
    try:
        assert cpuinfo.cpu_model() == "ARM Neoverse-N1"
    finally:
        cpuinfo.reset()

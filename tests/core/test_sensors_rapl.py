from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from carbon_callbacks.sensors import rapl
from carbon_callbacks.sensors.base import RAPL, SensorError, SensorUnavailable, SensorWarning
from carbon_callbacks.sensors.detect import detect_sensors
from tests.fakes.powercap import DEFAULT_RANGE_UJ, FakePowercap


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakePowercap:
    fake = FakePowercap(tmp_path / "powercap")
    monkeypatch.setenv(rapl.ROOT_ENV, str(fake.root))
    return fake


def test_two_packages_and_dram_exact_joules(tree: FakePowercap) -> None:
    tree.add_standard(packages=2, dram=True)
    sensors = rapl.open_rapl()
    assert sensors.cpu is not None and sensors.ram is not None
    assert sensors.cpu.names == ["package-0", "package-1"]
    assert sensors.ram.names == ["package-0/dram", "package-1/dram"]
    assert (sensors.cpu.component, sensors.cpu.method) == ("cpu", RAPL)
    sensors.cpu.start(0.0)
    sensors.ram.start(0.0)
    tree.set("intel-rapl:0", 10_000_000)
    tree.set("intel-rapl:1", 2_500_000)
    tree.set("intel-rapl:0:0", 99_000_000)  # core is inside the package: not added
    tree.set("intel-rapl:0:1", 1_000_000)
    tree.set("intel-rapl:1:1", 500_000)
    assert sensors.cpu.energy_j(1.0) == 12.5
    assert sensors.ram.energy_j(1.0) == 1.5
    tree.set("intel-rapl:0", 11_000_000)
    assert sensors.cpu.energy_j(2.0) == 13.5  # cumulative since start
    sensors.cpu.close()
    sensors.ram.close()
    sensors.cpu.close()  # idempotent


def test_start_resets_to_zero(tree: FakePowercap) -> None:
    tree.add("intel-rapl:0", "package-0", energy_uj=5_000_000)
    cpu = rapl.open_rapl().cpu
    assert cpu is not None
    tree.set("intel-rapl:0", 7_000_000)
    cpu.start(0.0)
    assert cpu.energy_j(0.0) == 0.0
    tree.set("intel-rapl:0", 8_000_000)
    assert cpu.energy_j(1.0) == 1.0
    cpu.close()


# The kernel's arithmetic (drivers/powercap/intel_rapl_common.c) for the common 2^-14 J unit:
# 61035 pJ a count, energy_uj = count x 61035 // 1000, max_energy_range_uj = (2^32 - 1) x
# 61035 // 1000 (= DEFAULT_RANGE_UJ). A wrap from count c to count d is 2^32 - c + d counts.
UNIT_PJ = 61035


def counter_uj(count: int) -> int:
    return count * UNIT_PJ // 1000


def test_kernel_range_is_the_default() -> None:
    assert counter_uj(2**32 - 1) == DEFAULT_RANGE_UJ


def test_wrap_around_between_reads(tree: FakePowercap) -> None:
    tree.add("intel-rapl:0", "package-0", energy_uj=counter_uj(2**32 - 1000))
    cpu = rapl.open_rapl().cpu
    assert cpu is not None
    cpu.start(0.0)
    tree.set("intel-rapl:0", counter_uj(3000))  # wrapped: 4000 counts of 61.035 uJ
    # 244140 uJ within the kernel's rounding of both values to whole microjoules (a modulus
    # of max_energy_range_uj, or of max + 1 uJ, would lose 61 or 60 uJ here)
    assert cpu.energy_j(1.0) == pytest.approx(4000 * 61.035e-6, abs=1e-6)
    tree.set("intel-rapl:0", DEFAULT_RANGE_UJ)
    cpu.start(0.0)
    tree.set("intel-rapl:0", 0)  # from the top to 0 is one count
    assert cpu.energy_j(1.0) == pytest.approx(61.035e-6, abs=1e-6)
    cpu.close()


def test_wrap_is_max_plus_one_count() -> None:
    assert rapl.wrap_uj(DEFAULT_RANGE_UJ) == DEFAULT_RANGE_UJ + 61.035
    assert rapl.wrap_uj(2**32 - 1) == 2**32  # a 1 uJ unit: max + 1


def test_poll_catches_multiple_wraps(tree: FakePowercap) -> None:
    top = 2**32
    tree.add("intel-rapl:0", "package-0", energy_uj=counter_uj(top - 3000))
    cpu = rapl.open_rapl().cpu
    assert cpu is not None
    # the range in joules / 500 W / 3
    assert cpu.poll_interval_s == DEFAULT_RANGE_UJ / 1e6 / 500 / 3
    cpu.start(0.0)
    # +4000 counts (a wrap), + half the range, + the rest up to 10 below the top, +510 (a wrap)
    for count in (1000, top // 2, top - 10, 500):
        tree.set("intel-rapl:0", counter_uj(count))
        cpu.poll()
    counts = 4000 + (top // 2 - 1000) + (top // 2 - 10) + 510  # = top + 3500
    assert cpu.energy_j(1.0) == pytest.approx(counts * 61.035e-6, abs=2e-6)
    cpu.close()


def test_poll_interval_of_real_range(tree: FakePowercap) -> None:
    tree.add("intel-rapl:0", "package-0")
    found = detect_sensors(count_gpu=False)
    assert found.needs_guard_thread
    assert found.poll_interval_s == pytest.approx(262_143.328_85 / 500 / 3)
    found.poll()
    found.close()


def test_duplicate_names_counted_once(tree: FakePowercap) -> None:
    # A multi-die CPU reporting package-0 twice, and the MMIO view of the same package.
    tree.add("intel-rapl:0", "package-0")
    tree.add("intel-rapl:0:0", "dram")
    tree.add("intel-rapl:1", "package-0")
    tree.add("intel-rapl:1:0", "dram")
    tree.add("intel-rapl-mmio:0", "package-0")
    tree.add("intel-rapl:2", "psys")  # whole platform: never summed with packages
    sensors = rapl.open_rapl()
    assert sensors.cpu is not None and sensors.ram is not None
    assert [d.zone for d in sensors.cpu.domains] == ["intel-rapl:0"]
    assert [d.zone for d in sensors.ram.domains] == ["intel-rapl:0:0"]
    sensors.cpu.start(0.0)
    for zone in ("intel-rapl:0", "intel-rapl:1", "intel-rapl-mmio:0", "intel-rapl:2"):
        tree.set(zone, 4_000_000)
    assert sensors.cpu.energy_j(1.0) == 4.0
    sensors.cpu.close()
    sensors.ram.close()


def test_multi_die_distinct_names_are_summed(tree: FakePowercap) -> None:
    tree.add("intel-rapl:0", "package-0-die-0")
    tree.add("intel-rapl:1", "package-0-die-1")
    cpu = rapl.open_rapl().cpu
    assert cpu is not None
    cpu.start(0.0)
    tree.set("intel-rapl:0", 1_000_000)
    tree.set("intel-rapl:1", 2_000_000)
    assert cpu.energy_j(1.0) == 3.0
    cpu.close()


def test_amd_and_mmio_only_trees(tree: FakePowercap) -> None:
    tree.add("amd-rapl:0", "package-0")
    tree.add("intel-rapl-mmio:0", "package-0")  # duplicate of the same package
    sensors = rapl.open_rapl()
    assert sensors.cpu is not None and sensors.ram is None
    assert [d.zone for d in sensors.cpu.domains] == ["amd-rapl:0"]
    assert "no dram domain" in sensors.ram_reason
    sensors.cpu.close()


def test_nested_layout(tmp_path: Path) -> None:
    fake = FakePowercap(tmp_path / "nested")
    fake.add("intel-rapl:0", "package-0")
    sub = fake.root / "intel-rapl:0" / "intel-rapl:0:0"
    sub.mkdir()
    (sub / "name").write_text("dram\n")
    (sub / "max_energy_range_uj").write_text("1000000\n")
    (sub / "energy_uj").write_text("0\n")
    sensors = rapl.open_rapl(str(fake.root))
    assert sensors.ram is not None and sensors.ram.names == ["package-0/dram"]
    assert sensors.cpu is not None
    sensors.cpu.close()
    sensors.ram.close()


def test_root_read_at_construction(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(rapl.ROOT_ENV, str(tmp_path / "missing"))
    with pytest.raises(SensorUnavailable, match="missing not found"):
        rapl.open_rapl()
    monkeypatch.delenv(rapl.ROOT_ENV)
    assert rapl.powercap_root() == "/sys/class/powercap"


def test_empty_tree(tree: FakePowercap) -> None:
    with pytest.raises(SensorUnavailable, match="no intel-rapl/amd-rapl domains"):
        rapl.open_rapl()


def _deny_energy(monkeypatch: pytest.MonkeyPatch) -> None:
    real = rapl._open_counter

    def deny(path: str) -> int:
        if path.endswith("energy_uj"):
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real(path)

    monkeypatch.setattr(rapl, "_open_counter", deny)


def test_permission_denied_falls_back_with_one_warning(
    tree: FakePowercap, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree.add_standard(packages=2, dram=True)
    _deny_energy(monkeypatch)
    with pytest.warns(SensorWarning) as caught:
        found = detect_sensors(count_gpu=False)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "sudo chmod -R a+r" in message and "udev" in message
    assert found.cpu is not None and found.cpu.method == "estimate-tdp"
    assert found.ram is not None and found.ram.method == "estimate-ram"
    assert not found.needs_guard_thread and found.poll_interval_s is None
    rapl_reports = [r for r in found.reports if r.name == "RAPL"]
    assert [r.available for r in rapl_reports] == [False, False]
    assert "not readable" in rapl_reports[0].reason


def test_energy_uj_not_a_file_is_unavailable(tree: FakePowercap) -> None:
    path = tree.add("intel-rapl:0", "package-0")
    os.remove(path / "energy_uj")
    os.mkdir(path / "energy_uj")
    with pytest.raises(SensorUnavailable, match="cannot read"):
        rapl.open_rapl()


def test_unreadable_mid_run_raises_sensor_error(
    tree: FakePowercap, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree.add("intel-rapl:0", "package-0")
    cpu = rapl.open_rapl().cpu
    assert cpu is not None
    cpu.start(0.0)

    def fail(fd: int) -> int:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(rapl, "_read_uj", fail)
    with pytest.raises(SensorError, match="RAPL counter could not be read"):
        cpu.energy_j(1.0)
    with pytest.raises(SensorError):
        cpu.poll()
    cpu.close()
    with pytest.raises(SensorError, match="closed"):
        cpu.energy_j(2.0)


def test_detect_prefers_rapl_and_forced_constants(tree: FakePowercap) -> None:
    tree.add_standard(packages=1, dram=True)
    found = detect_sensors(count_gpu=False)
    assert (found.cpu and found.cpu.method, found.ram and found.ram.method) == (RAPL, RAPL)
    found.close()
    found = detect_sensors(cpu_power_w=40.0, count_gpu=False)
    assert found.cpu is not None and found.cpu.method == "constant"
    assert found.ram is not None and found.ram.method == RAPL
    found.close()
    found = detect_sensors(ram_power_w=5, count_gpu=False)
    assert found.ram is not None and found.ram.method == "constant"
    assert found.cpu is not None and found.cpu.method == RAPL
    found.close()


@pytest.mark.rapl
def test_real_rapl(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(rapl.ROOT_ENV, raising=False)
    try:
        sensors = rapl.open_rapl()
    except SensorUnavailable as exc:
        pytest.skip(reason=f"no readable RAPL here: {exc}")
    assert sensors.cpu is not None
    try:
        sensors.cpu.start(0.0)
        sum(i * i for i in range(2_000_000))  # some work
        assert sensors.cpu.energy_j(1.0) > 0.0
    finally:
        sensors.cpu.close()
        if sensors.ram is not None:
            sensors.ram.close()

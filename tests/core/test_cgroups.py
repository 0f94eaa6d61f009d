"""Control-group limits (fake cgroup v1 and v2 trees; real v1 groups where writable): CPU
quotas and memory limits, and the CPU and RAM estimates under them."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from carbon_callbacks.sensors import cgroups
from carbon_callbacks.sensors.estimate import CpuEstimateSensor

GOLD_6248 = "Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz"


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty cgroup root and a fake ``/proc/self/cgroup``; the probe forgotten around."""
    root = tmp_path / "cgroup"
    root.mkdir()
    monkeypatch.setenv(cgroups.CGROUP_ROOT_ENV, str(root))
    monkeypatch.setattr(cgroups, "PROC_SELF_CGROUP", str(tmp_path / "self-cgroup"))
    cgroups.reset()
    yield root
    cgroups.reset()


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def membership(root: Path, text: str) -> None:
    (root.parent / "self-cgroup").write_text(text)


def test_v2_the_smallest_quota_on_the_way_up(tree: Path) -> None:
    membership(tree, "0::/kubepods/pod1/c1\n")
    write(tree / "cgroup.controllers", "cpuset cpu io memory pids\n")
    write(tree / "kubepods/cpu.max", "max 100000\n")
    write(tree / "kubepods/pod1/cpu.max", "400000 100000\n")  # the pod's limit: 4 CPUs
    write(tree / "kubepods/pod1/c1/cpu.max", "max 100000\n")
    write(tree / "kubepods/pod1/c1/cpu.stat", "usage_usec 2500000\nuser_usec 2000000\n")
    quota = cgroups.cpu_quota()
    assert quota is not None
    # The limit is the pod's; the CPU time is the process's own group's.
    assert (quota.cpus, quota.usage_s(), quota.group) == (4.0, 2.5, str(tree / "kubepods/pod1"))
    assert quota.usage_file == str(tree / "kubepods/pod1/c1/cpu.stat")


def test_v2_container_with_its_own_namespace(tree: Path) -> None:
    membership(tree, "0::/\n")
    write(tree / "cgroup.controllers", "cpu\n")
    write(tree / "cpu.max", "50000 100000\n")  # docker run --cpus=0.5
    write(tree / "cpu.stat", "usage_usec 1\n")
    quota = cgroups.cpu_quota()
    assert quota is not None and quota.cpus == 0.5


def test_v2_without_a_quota(tree: Path) -> None:
    membership(tree, "0::/user.slice\n")
    write(tree / "cgroup.controllers", "cpu\n")
    write(tree / "user.slice/cpu.max", "max 100000\n")
    write(tree / "user.slice/cpu.stat", "usage_usec 1\n")
    assert cgroups.cpu_quota() is None


def test_v1_without_a_namespace_reads_the_containers_own_mount(tree: Path) -> None:
    # /proc/self/cgroup names the host's path, which the container's mount does not have.
    membership(tree, "4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n0::/\n")
    write(tree / "cpu,cpuacct/cpu.cfs_quota_us", "200000\n")
    write(tree / "cpu,cpuacct/cpu.cfs_period_us", "100000\n")
    write(tree / "cpu,cpuacct/cpuacct.usage", "1500000000\n")
    quota = cgroups.cpu_quota()
    assert quota is not None and (quota.cpus, quota.usage_s()) == (2.0, 1.5)


def test_v1_separate_mounts_and_no_quota(tree: Path) -> None:
    membership(tree, "3:cpu:/slurm/job7\n2:cpuacct:/slurm/job7\n")
    write(tree / "cpu/slurm/cpu.cfs_quota_us", "-1\n")
    write(tree / "cpu/slurm/cpu.cfs_period_us", "100000\n")
    write(tree / "cpu/slurm/job7/cpu.cfs_quota_us", "300000\n")
    write(tree / "cpu/slurm/job7/cpu.cfs_period_us", "100000\n")
    write(tree / "cpuacct/slurm/job7/cpuacct.usage", "7000000000\n")
    quota = cgroups.cpu_quota()
    assert quota is not None and (quota.cpus, quota.usage_s()) == (3.0, 7.0)
    write(tree / "cpu/slurm/job7/cpu.cfs_quota_us", "-1\n")
    cgroups.reset()
    assert cgroups.cpu_quota() is None


@pytest.mark.parametrize(
    "files",
    [
        {},  # no /proc/self/cgroup (not Linux)
        {
            "self": "0::/\n",
            "cgroup.controllers": "cpu\n",
            "cpu.max": "100000 100000\n",
        },  # no cpu.stat
        {"self": "0::/\n", "cgroup.controllers": "cpu\n", "cpu.max": "x y\n", "cpu.stat": ""},
    ],
)
def test_an_unreadable_group_is_no_quota(tree: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        if name == "self":
            membership(tree, text)
        else:
            write(tree / name, text)
    assert cgroups.cpu_quota() is None


@pytest.mark.usefixtures("table")
def test_a_quota_is_charged_its_share_at_the_groups_own_cpu_time(tree: Path) -> None:
    membership(tree, "0::/\n")
    write(tree / "cgroup.controllers", "cpu\n")
    write(tree / "cpu.max", "200000 100000\n")  # 2 CPUs of the machine's 8
    usage = tree / "cpu.stat"
    usage.write_text("usage_usec 0\n")
    quota = cgroups.cpu_quota()
    sensor = CpuEstimateSensor(cpu_model=GOLD_6248, logical_cpus=8, sockets=1, cpu_quota=quota)
    assert (sensor.quota, sensor.share) == (quota, 0.25)
    sensor.start(0.0)
    usage.write_text("usage_usec 10000000\n")  # 10 CPU seconds in 10 s: half the quota
    # 2/8 of 150 W x (0.25 + 0.75 x 0.5) = 23.4375 W, for 10 s
    assert sensor.energy_j(10.0) == 234.375
    usage.write_text("usage_usec 30000000\n")  # 20 more in 10 s: the whole quota
    assert sensor.energy_j(20.0) == 234.375 + 375.0
    assert sensor.last_load == 1.0
    assert "a CPU quota of 2 CPUs" in sensor.describe()
    assert "charged 2/8 of that, at the group's own CPU time" in sensor.describe()
    # A quota of more CPUs than the process may run on, or than the machine has, changes
    # nothing: the cpuset, or the whole machine, is the limit.
    assert CpuEstimateSensor(cpu_model=GOLD_6248, logical_cpus=2, cpu_quota=quota).quota is None
    confined = CpuEstimateSensor(
        cpu_model=GOLD_6248, logical_cpus=8, cpus=[0], cpu_quota=quota,
        read_cpu_times=lambda: (0.0, 0.0),
    )  # fmt: skip
    assert (confined.quota, confined.share) == (None, 1 / 8)


CHILD = """
import json, time
from carbon_callbacks.sensors.estimate import CpuEstimateSensor
sensor = CpuEstimateSensor()
t0 = time.monotonic()
sensor.start(t0)
while time.monotonic() - t0 < 1.5:  # as busy as the quota lets it be
    pass
sensor.energy_j(time.monotonic())
busy = sensor.last_load
time.sleep(1.0)
sensor.energy_j(time.monotonic())
quota = sensor.quota
print(json.dumps({
    "cpus": None if quota is None else quota.cpus, "share": sensor.share,
    "busy": busy, "idle": sensor.last_load, "describe": sensor.describe(),
}))
"""


@contextlib.contextmanager
def real_v1_groups(*controllers: str) -> Iterator[list[Path]]:
    """New groups in the real cgroup v1 hierarchies of `controllers`, removed after; skips
    the test without root or writable v1 hierarchies."""
    root = Path("/sys/fs/cgroup")
    if (root / "cgroup.controllers").exists():
        pytest.skip("cgroup v2 here: these tests make v1 groups")
    groups = [root / c / f"carbon-callbacks-test-{os.getpid()}" for c in controllers]
    made: list[Path] = []
    try:
        for group in groups:
            try:
                group.mkdir()
            except OSError as exc:
                pytest.skip(f"needs root and writable cgroup v1 hierarchies ({exc})")
            made.append(group)
        yield groups
    finally:
        for group in reversed(made):
            group.rmdir()


def run_in(groups: list[Path], code: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Run Python `code` in a child that joins `groups` before it starts; its JSON output."""

    def join() -> None:  # in the child, before Python starts
        for group in groups:
            (group / "cgroup.procs").write_text(str(os.getpid()))

    monkeypatch.delenv(cgroups.CGROUP_ROOT_ENV, raising=False)
    out = subprocess.run(
        [sys.executable, "-c", code],
        preexec_fn=join,  # noqa: PLW1509 (the test process starts no threads before this)
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def test_a_real_quota_of_half_a_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process in a real cgroup v1 group with a quota of half a CPU: the quota is found,
    and its load is its own CPU time over the quota (1 while it spins, 0 while it sleeps)."""
    with real_v1_groups("cpu", "cpuacct") as groups:
        cpu = groups[0]
        (cpu / "cpu.cfs_period_us").write_text("100000")
        (cpu / "cpu.cfs_quota_us").write_text("50000")
        seen = run_in(groups, CHILD, monkeypatch)
    machine = os.cpu_count() or 1
    assert seen["cpus"] == 0.5
    assert seen["share"] == pytest.approx(0.5 / machine)
    assert 0.85 <= seen["busy"] <= 1.0
    assert seen["idle"] <= 0.05
    assert f"a CPU quota of 0.5 CPUs ({cpu})" in seen["describe"]


# -- memory limits: the RAM estimate of a job that shares a node ------------------------------


def test_v2_memory_limit_the_smallest_on_the_way_up(tree: Path) -> None:
    membership(tree, "0::/kubepods/pod1/c1\n")
    write(tree / "cgroup.controllers", "cpu memory\n")
    write(tree / "kubepods/memory.max", "64000000000\n")
    write(tree / "kubepods/pod1/memory.max", "16000000000\n")  # the pod's limit
    write(tree / "kubepods/pod1/c1/memory.max", "max\n")
    assert cgroups.memory_limit() == (16_000_000_000, str(tree / "kubepods/pod1"))


def test_v1_memory_limit_and_its_no_limit_value(tree: Path) -> None:
    membership(tree, "5:memory:/slurm/job7\n3:cpu,cpuacct:/slurm/job7\n")
    write(tree / "memory/memory.limit_in_bytes", "9223372036854771712\n")  # v1: no limit
    write(tree / "memory/slurm/job7/memory.limit_in_bytes", "9223372036854771712\n")
    assert cgroups.memory_limit() is None
    write(tree / "memory/slurm/job7/memory.limit_in_bytes", "8000000000\n")
    cgroups.reset()
    assert cgroups.memory_limit() == (8_000_000_000, str(tree / "memory/slurm/job7"))


def test_the_ram_estimate_counts_a_smaller_memory_limit(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from carbon_callbacks.sensors import cpuinfo
    from carbon_callbacks.sensors.estimate import RamEstimateSensor

    monkeypatch.setattr(cpuinfo, "total_ram_bytes", lambda: 512_000_000_000)
    membership(tree, "0::/\n")
    write(tree / "cgroup.controllers", "memory\n")
    write(tree / "memory.max", "16000000000\n")
    sensor = RamEstimateSensor()
    assert (sensor.total_bytes, sensor.power_w) == (16_000_000_000, pytest.approx(5.96))
    assert sensor.describe() == (
        f"0.3725 W/GB x 16.0 GB = 6.0 W (the memory limit of {tree}; the machine has 512.0 GB)"
    )
    assert RamEstimateSensor(total_bytes=4_000_000_000).total_bytes == 4_000_000_000  # given
    write(tree / "memory.max", "1000000000000\n")  # more than the machine has
    cgroups.reset()
    assert RamEstimateSensor().total_bytes == 512_000_000_000


RAM_CHILD = """
import json
from carbon_callbacks.sensors.estimate import RamEstimateSensor
sensor = RamEstimateSensor()
print(json.dumps({"bytes": sensor.total_bytes, "describe": sensor.describe()}))
"""


def test_a_real_memory_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process in a real cgroup v1 memory group limited to 1 GiB is charged 1 GiB of RAM."""
    with real_v1_groups("memory") as groups:
        (groups[0] / "memory.limit_in_bytes").write_text(str(1 << 30))
        seen = run_in(groups, RAM_CHILD, monkeypatch)
    assert seen["bytes"] == 1 << 30
    assert seen["describe"].startswith("0.3725 W/GB x 1.1 GB = 0.4 W (the memory limit of ")

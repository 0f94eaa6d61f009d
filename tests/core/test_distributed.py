from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import pytest

from carbon_callbacks import Measurement, Tracker
from carbon_callbacks.distributed import (
    Roles,
    apply_roles,
    cpus_of_node,
    gpu_ids_for_device,
    local_gpu_ids,
    roles_from_env,
    roles_from_lightning,
    roles_from_transformers,
    taken_by_lower_ranks,
)
from carbon_callbacks.outputs import run_tags
from carbon_callbacks.sensors import cpuinfo
from carbon_callbacks.sensors import nvml as nvml_mod
from carbon_callbacks.sensors.estimate import ConstantPowerSensor, CpuEstimateSensor
from tests.fakes.clock import FakeClock
from tests.fakes.fake_pynvml import FakeGpu, FakeMig, FakeNvml


def test_roles_from_torchrun_environment() -> None:
    env = {"RANK": "5", "LOCAL_RANK": "1", "WORLD_SIZE": "8", "LOCAL_WORLD_SIZE": "4"}
    env["GROUP_RANK"] = "1"
    assert roles_from_env(env) == Roles(5, 1, 8, 4, 1)
    assert not roles_from_env(env).is_global_zero and not roles_from_env(env).is_local_zero
    assert roles_from_env({}) == Roles() and not Roles().distributed
    slurm = {"SLURM_PROCID": "2", "SLURM_LOCALID": "0", "SLURM_NTASKS": "4", "SLURM_NODEID": "1"}
    assert roles_from_env(slurm) == Roles(2, 0, 4, 4, 1)


@pytest.mark.parametrize(
    ("env", "needle"),
    [({"RANK": "x"}, "RANK='x'"), ({"RANK": "4", "WORLD_SIZE": "2"}, "RANK=4")],
)
def test_bad_roles_name_the_value(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        roles_from_env(env)


def test_each_rank_gets_its_own_gpu() -> None:
    assert local_gpu_ids(1, {}) == ["1"]
    assert local_gpu_ids(1, {"CUDA_VISIBLE_DEVICES": "2,3"}) == ["3"]
    uuids = "GPU-aaaa,GPU-bbbb"
    assert local_gpu_ids(0, {"CUDA_VISIBLE_DEVICES": uuids}) == ["GPU-aaaa"]
    assert local_gpu_ids(2, {"CUDA_VISIBLE_DEVICES": "0,1"}) == []


class Ranks:
    """A reducer standing for `n` identical ranks of which `node_leaders` count CPU and RAM."""

    def __init__(self, n: int, node_leaders: int) -> None:
        self.n, self.leaders, self.calls = n, node_leaders, 0

    def __call__(self, values: list[float]) -> list[float]:
        self.calls += 1
        if len(values) == 1:  # the barrier before each lap's reads
            return [values[0] * self.n]
        if len(values) != 13:  # start: [counts the node, 1, GPUs, node meters, flags...]
            flags = [v * self.n for v in values[3:]]
            return [float(self.leaders), float(self.n), values[2] * self.n, *flags]
        cpu, gpu, ram, has_cpu, has_gpu, has_ram, low, high = values[:8]
        k = self.leaders
        # identical ranks: each node leader's CPU and RAM, every rank's GPU; the node shares
        # (no meter here: each leader's components) from the leaders
        return [
            cpu * k, gpu * self.n, ram * k, has_cpu * k, has_gpu * self.n, has_ram * k,
            low * k, high * k, *(v * k for v in values[8:]),
        ]  # fmt: skip


def test_laps_are_summed_over_ranks_and_nodes_counted() -> None:
    clock = FakeClock()
    ranks = Ranks(n=4, node_leaders=2)
    tracker = Tracker(
        cpu_power_w=50, ram_power_w=10, intensity_g_per_kwh=100, count_gpu=False,
        reducer=ranks, clock=clock, output_dir=None,
    )  # fmt: skip
    tracker.start()
    assert (tracker.nodes, tracker.world_size) == (2, 4)
    clock.advance(3600)
    lap = tracker.lap()
    assert lap.cpu_energy_kwh == pytest.approx(0.1) and lap.ram_energy_kwh == pytest.approx(0.02)
    assert lap.gpu_energy_kwh is None  # no rank counted a GPU
    assert lap.emissions_kg == pytest.approx(0.12 * 100 / 1000)
    tags = run_tags(tracker)
    assert (tags["carbon.nodes"], tags["carbon.world_size"]) == ("2", "4")
    tracker.stop()
    assert ranks.calls == 5  # start; a barrier and a sum per lap (the stop takes one)


def test_a_failing_reduce_is_recorded_and_the_rank_goes_on() -> None:
    def broken(values: list[float]) -> list[float]:
        if len(values) > 13:  # start
            return [1.0, 2.0, 0.0, *values[3:]]
        raise RuntimeError("process group destroyed")

    clock = FakeClock()
    synced: list[int] = []
    tracker = Tracker(
        cpu_power_w=50, intensity_g_per_kwh=1, count_gpu=False, count_ram=True, ram_power_w=0,
        reducer=broken, sync=lambda: synced.append(1), clock=clock, output_dir=None,
    )  # fmt: skip
    tracker.start()
    clock.advance(3600)
    assert tracker.lap().cpu_energy_kwh == pytest.approx(0.05)
    assert synced == [1]
    assert "summing over ranks failed" in tracker.errors.messages()[0]
    tracker.stop()


# -- roles from the frameworks, devices -------------------------------------------------------


def test_roles_from_a_lightning_trainer() -> None:
    trainer = SimpleNamespace(
        global_rank=3, local_rank=1, world_size=4, num_devices=2, node_rank=1, num_nodes=2
    )
    assert roles_from_lightning(trainer) == Roles(3, 1, 4, 2, 1)


def test_roles_from_transformers_arguments() -> None:
    args = SimpleNamespace(process_index=2, local_process_index=0, world_size=4)
    env = {"LOCAL_WORLD_SIZE": "2", "GROUP_RANK": "1"}
    assert roles_from_transformers(args, env) == Roles(2, 0, 4, 2, 1)
    single = SimpleNamespace(process_index=0, local_process_index=0, world_size=1)
    assert roles_from_transformers(single, {"GROUP_RANK": "x"}) == Roles()


def test_gpu_ids_of_the_training_device() -> None:
    assert gpu_ids_for_device("cuda:1", {"CUDA_VISIBLE_DEVICES": "4,5"}) == ["5"]
    assert gpu_ids_for_device("cuda:0", {"CUDA_VISIBLE_DEVICES": "MIG-x"}) == ["MIG-x"]
    assert gpu_ids_for_device("cuda:2", {}) == ["2"]
    assert gpu_ids_for_device("cpu", {}) == [] and gpu_ids_for_device("mps", {}) == []
    assert gpu_ids_for_device(None, {}) is None


def test_taken_by_lower_ranks() -> None:
    everyone = [["GPU-a"], None, ["GPU-a", "GPU-b"], ["GPU-b", "GPU-c"]]
    assert taken_by_lower_ranks(["GPU-a"], everyone, 0) == set()
    assert taken_by_lower_ranks(["GPU-a", "GPU-b"], everyone, 2) == {"GPU-a"}
    assert taken_by_lower_ranks(["GPU-b", "GPU-c"], everyone, 3) == {"GPU-b"}


def test_the_cpus_of_a_node_are_those_of_its_ranks() -> None:
    everyone = [("a", [0, 1]), ("b", [0]), ("a", [4, 5]), None, ("b", None)]
    assert cpus_of_node("a", everyone) == frozenset({0, 1, 4, 5})
    assert cpus_of_node("b", everyone) is None  # one of its ranks may run anywhere
    assert cpus_of_node("c", everyone) is None


@pytest.mark.parametrize(
    "gathered, counted, share",
    [(frozenset({1}), frozenset({1}), 0.5), (frozenset({0, 1}), None, 1.0), (None, None, 1.0)],
)
def test_local_rank_zero_estimates_the_cpus_of_every_rank_on_its_node(
    gathered: frozenset[int] | None,
    counted: frozenset[int] | None,
    share: float,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
) -> None:
    """Ranks confined to some CPUs (Slurm, ``taskset``): local rank 0 counts all of theirs,
    not only its own, and not the rest of the machine."""
    monkeypatch.setenv("CARBON_CALLBACKS_POWERCAP_ROOT", str(tmp_path))  # no RAPL: estimate
    monkeypatch.setattr(cpuinfo, "logical_cpus", lambda: 2)
    monkeypatch.setattr(cpuinfo, "usable_cpus", lambda: frozenset({0}))
    offered = []

    def node_cpus(mine: frozenset[int] | None) -> frozenset[int] | None:
        offered.append(mine)
        return gathered

    tracker = Tracker(intensity_g_per_kwh=100, count_gpu=False, output_dir=None)
    assert tracker.methods["cpu"] == "estimate-tdp"
    tracker.distribute(node_cpus=node_cpus)
    assert offered == [frozenset({0})]  # this rank's own
    sensor = tracker._sensors["cpu"]
    assert isinstance(sensor, CpuEstimateSensor)
    assert (sensor.cpus, sensor.share, sensor.logical_cpus) == (counted, share, 2)
    reason = next(r.reason for r in tracker.reports if r.component == "cpu" and r.available)
    assert ("may run on 1 of them" in reason) is (counted is not None)
    tracker.start()
    assert tracker.stop().cpu_energy_kwh is not None


# -- Tracker.distribute -----------------------------------------------------------------------


def constant(**kwargs: object) -> Tracker:
    return Tracker(
        cpu_power_w=50, ram_power_w=10, intensity_g_per_kwh=100, count_gpu=False,
        output_dir=None, **kwargs,  # type: ignore[arg-type]
    )  # fmt: skip


def test_other_local_ranks_drop_cpu_and_ram_and_say_why() -> None:
    clock = FakeClock()
    tracker = constant(clock=clock)
    tracker.distribute(count_cpu=False, count_ram=False)
    assert tracker.methods == {"cpu": "none", "gpu": "none", "ram": "none"}
    assert any("counted by local rank 0" in r.reason for r in tracker.reports)
    tracker.distribute()  # the same tracker on local rank 0 again: forced watts come back
    assert tracker.methods["cpu"] == tracker.methods["ram"] == "constant"
    tracker.start()
    clock.advance(3600)
    assert tracker.lap().cpu_energy_kwh == pytest.approx(0.05)
    with pytest.raises(RuntimeError, match="running"):
        tracker.distribute()
    tracker.stop()


def test_the_users_choices_win_over_the_role() -> None:
    tracker = constant(count_ram=False)
    tracker.distribute(count_cpu=True, count_ram=True)
    assert tracker.methods["ram"] == "none"  # the user left RAM out

    cpu, gpu = ConstantPowerSensor("cpu", 50), ConstantPowerSensor("gpu", 200)
    injected = Tracker(intensity_g_per_kwh=1, output_dir=None, sensors=[cpu, gpu])
    injected.distribute(count_cpu=False, count_ram=False, gpu_ids=[])
    assert injected.sensors == {"gpu": gpu}  # kept as given, not re-detected


class FakeGroup:
    """`n` ranks as threads: a sum all-reduce and an all-gather meeting at a barrier."""

    def __init__(self, n: int) -> None:
        self.n = n
        self._barrier = threading.Barrier(n, timeout=10)
        self._slots: list[Any] = [None] * n

    def _exchange(self, rank: int, value: Any) -> list[Any]:
        self._slots[rank] = value
        self._barrier.wait()
        everyone = list(self._slots)
        self._barrier.wait()  # nobody writes the next value before all have read this one
        return everyone

    def reducer(self, rank: int) -> Any:
        def all_reduce(values: list[float]) -> list[float]:
            return [float(sum(c)) for c in zip(*self._exchange(rank, values), strict=True)]

        return all_reduce

    def taken_gpus(self, rank: int) -> Any:
        return lambda uuids: taken_by_lower_ranks(uuids, self._exchange(rank, list(uuids)), rank)


UUIDS = [f"GPU-{i}{i}{i}{i}0000-aaaa-4000-8000-00000000000{i}" for i in range(4)]
MIGS = [f"MIG-{i}{i}{i}{i}0000-bbbb-5000-8000-00000000000{i}" for i in range(5)]


def four_gpus() -> FakeNvml:
    gpus = [FakeGpu("NVIDIA A100-SXM4-40GB", u, energy_mj=7) for u in UUIDS]
    gpus[0].migs = [FakeMig(MIGS[0])]
    gpus[1].migs = [FakeMig(MIGS[1])]
    gpus[2].migs = [FakeMig(MIGS[2]), None, FakeMig(MIGS[3])]  # two slices of GPU 2
    gpus[3].migs = [FakeMig(MIGS[4])]
    for gpu in gpus:
        gpu.__post_init__()
    return FakeNvml(gpus)


ALL_INDICES = "0,1,2,3"
# (CUDA_VISIBLE_DEVICES of each rank, its torch device, the NVML index it must count or None)
LAYOUTS = {
    "indices": ([ALL_INDICES] * 4, [f"cuda:{r}" for r in range(4)], [0, 1, 2, 3]),
    "reordered indices": (["3,2,1,0"] * 4, [f"cuda:{r}" for r in range(4)], [3, 2, 1, 0]),
    "uuids": ([",".join(UUIDS)] * 4, [f"cuda:{r}" for r in range(4)], [0, 1, 2, 3]),
    "one uuid per rank": (UUIDS, ["cuda:0"] * 4, [0, 1, 2, 3]),
    # NVML meters a MIG slice as its whole GPU: ranks 2 and 3 share GPU 2, counted once.
    "mig uuids": (MIGS[:4], ["cuda:0"] * 4, [0, 1, 2, None]),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_four_ranks_count_each_gpu_once(layout: str, monkeypatch: pytest.MonkeyPatch) -> None:
    visible, devices, expected = LAYOUTS[layout]
    nv = four_gpus()
    monkeypatch.setattr(nvml_mod, "driver_found", lambda: "/dev/nvidiactl")
    monkeypatch.setattr(nvml_mod, "load_nvml", lambda: nv)
    clocks = [FakeClock() for _ in range(4)]
    trackers = []
    for rank in range(4):  # each process builds its tracker before the ranks are known
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible[rank])
        trackers.append(
            Tracker(cpu_power_w=50, ram_power_w=10, intensity_g_per_kwh=100,
                    clock=clocks[rank], output_dir=None)
        )  # fmt: skip
    group, edge = FakeGroup(4), threading.Barrier(5, timeout=10)
    laps: dict[int, Measurement] = {}

    def rank_main(rank: int) -> None:
        tracker = trackers[rank]
        ids = gpu_ids_for_device(devices[rank], {"CUDA_VISIBLE_DEVICES": visible[rank]})
        tracker.distribute(
            count_cpu=rank == 0, count_ram=rank == 0, gpu_ids=ids,
            reducer=group.reducer(rank), taken_gpus=group.taken_gpus(rank),
        )  # fmt: skip
        tracker.start()
        edge.wait()  # started: the test moves the counters and clocks
        edge.wait()
        laps[rank] = tracker.lap()
        tracker.stop()
        tracker.close()

    threads = [threading.Thread(target=rank_main, args=(r,)) for r in range(4)]
    for t in threads:
        t.start()
    edge.wait()
    for i, gpu in enumerate(nv.gpus):
        assert gpu.energy_mj is not None
        gpu.energy_mj += (i + 1) * 1_000_000  # GPU i draws (i + 1) kJ in the epoch
    for clock in clocks:
        clock.advance(3600)
    edge.wait()
    for t in threads:
        t.join(timeout=10)

    counted = [i for i in expected if i is not None]
    assert len(set(counted)) == len(counted)  # the layout itself names no GPU twice
    for rank, tracker in enumerate(trackers):
        gpu = tracker.sensors.get("gpu")
        own = [] if gpu is None else gpu.uuids  # type: ignore[attr-defined]
        assert own == ([] if expected[rank] is None else [UUIDS[expected[rank]]]), rank
        assert (tracker.nodes, tracker.world_size, tracker.gpu_count) == (1, 4, len(counted))
        lap = laps[rank]  # the same sums on every rank
        assert lap.gpu_energy_kwh == pytest.approx(sum(i + 1 for i in counted) * 1000 / 3.6e6)
        assert lap.cpu_energy_kwh == pytest.approx(0.05)  # 50 W x 1 h, once
        assert lap.ram_energy_kwh == pytest.approx(0.01)
    assert run_tags(trackers[0])["carbon.gpu_count"] == str(len(counted))


def test_an_explicit_gpu_id_wins_over_the_training_device(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    nv = four_gpus()
    monkeypatch.setattr(nvml_mod, "driver_found", lambda: "/dev/nvidiactl")
    monkeypatch.setattr(nvml_mod, "load_nvml", lambda: nv)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", ALL_INDICES)
    default = Tracker(intensity_g_per_kwh=1, cpu_power_w=1, ram_power_w=1, output_dir=None)
    assert default.sensors["gpu"].uuids == UUIDS  # type: ignore[attr-defined]
    default.distribute(gpu_ids=gpu_ids_for_device("cuda:2"))
    assert default.sensors["gpu"].uuids == [UUIDS[2]]  # type: ignore[attr-defined]
    default.distribute(gpu_ids=[])  # trains on the CPU: no GPU of the node is charged
    assert "gpu" not in default.sensors
    assert any("trains on no GPU" in r.reason for r in default.reports)
    default.close()

    chosen = Tracker(
        intensity_g_per_kwh=1, cpu_power_w=1, ram_power_w=1, output_dir=None, gpu_ids=[3]
    )
    chosen.distribute(gpu_ids=gpu_ids_for_device("cuda:0"))
    assert chosen.sensors["gpu"].uuids == [UUIDS[3]]  # type: ignore[attr-defined]
    chosen.close()


# -- apply_roles and failures -------------------------------------------------------------------


def test_apply_roles_without_a_process_group_says_so() -> None:
    tracker = constant()
    apply_roles(tracker, Roles(1, 1, 2, 2, 0), device="cpu")
    assert tracker.methods["cpu"] == "none"  # still only local rank 0 counts the node
    assert "no torch.distributed process group" in tracker.errors.messages()[0]

    single = constant()
    apply_roles(single, Roles(), device="cpu")
    assert single.methods["cpu"] == "constant" and not single.errors


def test_apply_roles_never_raises() -> None:
    tracker = constant()
    apply_roles(tracker, Roles(), device="cuda:x")  # not an index
    assert "setting up distributed measurement failed" in tracker.errors.messages()[0]


def test_after_a_failure_laps_are_this_rank_only() -> None:
    clock = FakeClock()
    ranks = Ranks(n=2, node_leaders=1)
    tracker = constant(reducer=ranks, clock=clock)
    tracker.start()
    tracker.local_only("training raised RuntimeError")
    clock.advance(3600)
    assert tracker.stop().cpu_energy_kwh == pytest.approx(0.05)
    assert ranks.calls == 1  # the start only: no collective after the failure
    assert "this process only" in tracker.errors.messages()[0]

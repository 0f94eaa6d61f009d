from __future__ import annotations

import pytest

from carbon_callbacks import Tracker
from carbon_callbacks.distributed import Roles, local_gpu_ids, roles_from_env
from carbon_callbacks.outputs import run_tags
from tests.fakes.clock import FakeClock


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
        if len(values) == 2:  # start: [counts the node, 1]
            return [float(self.leaders), float(self.n)]
        cpu, gpu, ram, has_cpu, has_gpu, has_ram = values
        k = self.leaders
        return [cpu * k, gpu * self.n, ram * k, has_cpu * k, has_gpu * self.n, has_ram * k]


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
    assert ranks.calls == 3


def test_a_failing_reduce_is_recorded_and_the_rank_goes_on() -> None:
    def broken(values: list[float]) -> list[float]:
        if len(values) == 2:
            return [1.0, 2.0]
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

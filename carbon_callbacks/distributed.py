"""Distributed training: who counts what, and summing laps across processes.

Each node's CPU and RAM are counted by its local rank 0 only; each rank counts only the
GPU(s) it trains on. At every lap all ranks read their sensors, the per-component joules are
summed with ``torch.distributed.all_reduce`` over the process group the framework already
made, and global rank 0 alone writes the journal and the trackers.

This module imports torch only inside `torch_reducer`, and only when torch is already
imported by the training code.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

Reducer = Callable[[list[float]], list[float]]
"""Sums a vector of floats element-wise over all processes (a collective: every rank calls)."""


@dataclass(frozen=True)
class Roles:
    """This process's place in a distributed run.

    Args:
        global_rank: rank in the whole job (0 writes the journal and the trackers).
        local_rank: rank on this node (0 counts the node's CPU and RAM).
        world_size: processes in the job.
        local_world_size: processes on this node.
        node_rank: this node's index.
    """

    global_rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1
    node_rank: int = 0

    @property
    def is_global_zero(self) -> bool:
        return self.global_rank == 0

    @property
    def is_local_zero(self) -> bool:
        return self.local_rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _int(env: Mapping[str, str], names: Sequence[str], default: int) -> int:
    for name in names:
        value = env.get(name)
        if value is None or value == "":
            continue
        try:
            number = int(value)
        except ValueError:
            raise ValueError(f"{name}={value!r} is not an integer rank or size") from None
        if number < 0:
            raise ValueError(f"{name}={value!r} must be >= 0")
        return number
    return default


def roles_from_env(env: Mapping[str, str] | None = None) -> Roles:
    """Roles from the variables torchrun, Lightning, Accelerate and SLURM set.

    ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``LOCAL_WORLD_SIZE``, ``GROUP_RANK`` or
    ``NODE_RANK`` (then the ``SLURM_*`` equivalents); a single process when none is set.

    Raises:
        ValueError: a variable that is not a non-negative integer, or inconsistent values.
    """
    env = os.environ if env is None else env
    world = _int(env, ("WORLD_SIZE", "SLURM_NTASKS"), 1)
    rank = _int(env, ("RANK", "SLURM_PROCID"), 0)
    local = _int(env, ("LOCAL_RANK", "SLURM_LOCALID"), 0)
    local_world = _int(env, ("LOCAL_WORLD_SIZE", "SLURM_NTASKS_PER_NODE"), world)
    node = _int(env, ("GROUP_RANK", "NODE_RANK", "SLURM_NODEID"), 0)
    if world < 1 or rank >= world or local >= max(local_world, 1):
        raise ValueError(
            f"inconsistent distributed environment: RANK={rank}, LOCAL_RANK={local}, "
            f"WORLD_SIZE={world}, LOCAL_WORLD_SIZE={local_world}"
        )
    return Roles(rank, local, world, local_world, node)


def local_gpu_ids(local_rank: int, env: Mapping[str, str] | None = None) -> list[str]:
    """The GPU a rank trains on by the usual convention (device ``cuda:local_rank``), as an
    id for `Tracker(gpu_ids=...)`: the ``local_rank``-th entry of ``CUDA_VISIBLE_DEVICES``
    (an index or a UUID), or ``local_rank`` itself when that is unset."""
    from carbon_callbacks.sensors.gpu_select import parse_visible_devices

    env = os.environ if env is None else env
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return [str(local_rank)]
    entries = parse_visible_devices(visible)
    if local_rank >= len(entries):
        return []
    return [entries[local_rank]]


def torch_reducer() -> Reducer | None:
    """An all-reduce (sum) over torch's default process group, or None when torch is not in
    use or no group is initialised. NCCL needs the tensor on this rank's GPU; gloo takes CPU
    tensors. float64 keeps joules exact to well below a microjoule over a long run."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return None
    if dist.get_backend() == "nccl":
        device = torch.device("cuda", torch.cuda.current_device())
    else:
        device = torch.device("cpu")

    def all_reduce(values: list[float]) -> list[float]:
        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return [float(v) for v in tensor.tolist()]

    return all_reduce


def cuda_synchronizer() -> Callable[[], None] | None:
    """``torch.cuda.synchronize`` when torch is in use with CUDA, so that kernels queued in
    an epoch finish (and draw their energy) before that epoch's GPU counters are read."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    synchronize: Callable[[], None] = torch.cuda.synchronize
    return synchronize

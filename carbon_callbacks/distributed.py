"""Distributed training: who counts what, and summing laps across processes.

Each node's CPU and RAM are counted by its local rank 0 only; each rank counts only the
GPU(s) it trains on, and a GPU that two ranks would both measure (two MIG slices of one GPU,
which NVML meters only as a whole) is counted by the lower rank alone. At every lap all ranks
read their sensors, the per-component joules are summed with ``torch.distributed.all_reduce``
over the process group the framework already made, and global rank 0 alone writes the
journal and the trackers.

The framework callbacks call `apply_roles` when training starts: under Lightning DDP the
callback is built in the launching process, before ranks and the process group exist.

This module imports torch only inside its ``torch_*`` functions, and only when torch is
already imported by the training code.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from carbon_callbacks.tracker import Tracker

logger = logging.getLogger(__name__)

Reducer = Callable[[list[float]], list[float]]
"""Sums a vector of floats element-wise over all processes (a collective: every rank calls)."""

TakenGpus = Callable[[Sequence[str]], set[str]]
"""Given this rank's GPU UUIDs, the ones a lower rank counts already (a collective)."""

NodeCpus = Callable[[frozenset[int] | None], frozenset[int] | None]
"""Given the CPUs this rank may run on (None: all), those of every rank of the run on this
node (None: all of the machine's): the CPUs local rank 0 counts (a collective)."""

NodeMetered = Callable[[bool], bool]
"""Given whether this rank reads a node meter, whether any rank on its node does (a
collective): the other ranks of a metered node then add nothing to the node total."""


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


def _rocm(env: Mapping[str, str]) -> bool:
    """Whether devices are ROCm's: torch built for HIP is in use, or ROCm's own visibility
    variables are set."""
    torch = sys.modules.get("torch")
    hip = getattr(getattr(torch, "version", None), "hip", None) if torch is not None else None
    return bool(hip) or "ROCR_VISIBLE_DEVICES" in env or "HIP_VISIBLE_DEVICES" in env


def local_gpu_ids(local_rank: int, env: Mapping[str, str] | None = None) -> list[str]:
    """The GPU of CUDA device ``cuda:local_rank`` (the usual device of a rank), as an id for
    `Tracker(gpu_ids=...)`: the ``local_rank``-th entry of ``CUDA_VISIBLE_DEVICES`` (an index
    or a UUID), or ``local_rank`` itself when that is unset. Any CUDA device index works:
    with one device bound per rank (``CUDA_VISIBLE_DEVICES=<its GPU>``) pass 0. Under ROCm
    the entry comes from ROCm's composition of ``ROCR_VISIBLE_DEVICES`` and
    ``HIP_VISIBLE_DEVICES`` / ``CUDA_VISIBLE_DEVICES`` (`sensors.amd_select`)."""
    from carbon_callbacks.sensors.gpu_select import parse_visible_devices

    env = os.environ if env is None else env
    if _rocm(env):
        from carbon_callbacks.sensors.amd_select import visible_devices

        tokens, _ = visible_devices(env)
        if tokens is None:
            return [str(local_rank)]
        return [tokens[local_rank]] if local_rank < len(tokens) else []
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return [str(local_rank)]
    entries = parse_visible_devices(visible)
    if local_rank >= len(entries):
        return []
    return [entries[local_rank]]


def _torch_in_group() -> Any:
    """The imported ``torch`` when its default process group is initialised with two or more
    processes; None otherwise (torch not in use, no group, or a group of one)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return None
    return torch


def torch_reducer() -> Reducer | None:
    """An all-reduce (sum) over torch's default process group, or None when torch is not in
    use or no group is initialised. NCCL needs the tensor on this rank's GPU; gloo takes CPU
    tensors. float64 keeps joules exact to well below a microjoule over a long run."""
    torch = _torch_in_group()
    if torch is None:
        return None
    dist = torch.distributed
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


def taken_by_lower_ranks(
    mine: Sequence[str], everyone: Sequence[Sequence[str] | None], rank: int
) -> set[str]:
    """The UUIDs of `mine` that a rank below `rank` also measures (`everyone`: by rank)."""
    lower = {uuid for other in everyone[:rank] for uuid in (other or ())}
    return {uuid for uuid in mine if uuid in lower}


def torch_taken_gpus() -> TakenGpus | None:
    """`TakenGpus` over torch's default process group (``all_gather_object``), or None when
    torch is not in use or no group of two or more processes is initialised."""
    torch = _torch_in_group()
    if torch is None:
        return None
    dist = torch.distributed

    def taken(uuids: Sequence[str]) -> set[str]:
        everyone: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(everyone, list(uuids))
        return taken_by_lower_ranks(uuids, everyone, dist.get_rank())

    return taken


def cpus_of_node(
    host: str, everyone: Sequence[tuple[str, Sequence[int] | None] | None]
) -> frozenset[int] | None:
    """The union of the CPU sets of the ranks on `host` (`everyone`: ``(host, cpus)`` by
    rank); None when one of them may run on every CPU."""
    union: set[int] = set()
    for entry in everyone:
        if entry is None or entry[0] != host:
            continue
        if entry[1] is None:
            return None
        union.update(entry[1])
    return frozenset(union) or None


def torch_node_cpus() -> NodeCpus | None:
    """`NodeCpus` over torch's default process group (``all_gather_object`` of host names and
    CPU affinities), or None when torch is not in use or no group of two or more processes is
    initialised."""
    torch = _torch_in_group()
    if torch is None:
        return None
    dist = torch.distributed

    def node_cpus(cpus: frozenset[int] | None) -> frozenset[int] | None:
        host = socket.gethostname()
        everyone: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(everyone, (host, None if cpus is None else sorted(cpus)))
        return cpus_of_node(host, everyone)

    return node_cpus


def metered_hosts(host: str, everyone: Sequence[tuple[str, bool] | None]) -> bool:
    """Whether a rank on `host` reads a node meter (`everyone`: ``(host, reads)`` by rank)."""
    return any(entry is not None and entry[0] == host and entry[1] for entry in everyone)


def torch_node_metered() -> NodeMetered | None:
    """`NodeMetered` over torch's default process group (``all_gather_object`` of host
    names), or None when no group of two or more processes is initialised."""
    torch = _torch_in_group()
    if torch is None:
        return None
    dist = torch.distributed

    def node_metered(reads: bool) -> bool:
        host = socket.gethostname()
        everyone: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(everyone, (host, reads))
        return metered_hosts(host, everyone)

    return node_metered


def roles_from_lightning(trainer: Any) -> Roles:
    """Roles from a Lightning ``Trainer`` (``global_rank``, ``local_rank``, ``world_size``,
    ``num_devices`` per node, ``node_rank``); valid once the strategy is set up."""
    return Roles(
        global_rank=int(trainer.global_rank),
        local_rank=int(trainer.local_rank),
        world_size=int(getattr(trainer, "world_size", 1) or 1),
        local_world_size=int(getattr(trainer, "num_devices", 1) or 1),
        node_rank=int(getattr(trainer, "node_rank", 0) or 0),
    )


def roles_from_transformers(args: Any, env: Mapping[str, str] | None = None) -> Roles:
    """Roles from Hugging Face ``TrainingArguments`` (``process_index``,
    ``local_process_index``, ``world_size``); per-node size and node index from the
    environment torchrun and Accelerate set (``LOCAL_WORLD_SIZE``, ``GROUP_RANK``...)."""
    env = os.environ if env is None else env
    world = int(getattr(args, "world_size", 1) or 1)
    try:
        local_world = _int(env, ("LOCAL_WORLD_SIZE", "SLURM_NTASKS_PER_NODE"), world)
        node = _int(env, ("GROUP_RANK", "NODE_RANK", "SLURM_NODEID"), 0)
    except ValueError:
        local_world, node = world, 0  # informative only; the ranks below decide
    return Roles(
        global_rank=int(getattr(args, "process_index", 0) or 0),
        local_rank=int(getattr(args, "local_process_index", 0) or 0),
        world_size=world,
        local_world_size=local_world,
        node_rank=node,
    )


def gpu_ids_for_device(device: Any, env: Mapping[str, str] | None = None) -> list[str] | None:
    """The GPU ids (for `Tracker(gpu_ids=...)`) of the torch device a process trains on.

    ``cuda:i`` gives the GPU behind CUDA index ``i`` (see `local_gpu_ids`); a CPU (or any
    non-CUDA) device gives ``[]``: this process uses no NVIDIA GPU; None gives None: keep
    the tracker's own selection (e.g. one process driving several GPUs).

    Example:
        >>> gpu_ids_for_device("cuda:1", {"CUDA_VISIBLE_DEVICES": "4,5"})
        ['5']
    """
    if device is None:
        return None
    kind, _, index = str(device).partition(":")
    if kind != "cuda":
        return []
    if index:
        number = int(index)
    else:  # "cuda" alone: torch's current device
        torch = sys.modules.get("torch")
        in_use = torch is not None and torch.cuda.is_initialized()
        number = int(torch.cuda.current_device()) if torch is not None and in_use else 0
    return local_gpu_ids(number, env)


def apply_roles(tracker: Tracker, roles: Roles, *, device: Any = None) -> None:
    """Prepare a tracker that is not started for this process's place in the run.

    Called by the callbacks when training starts (the process group exists then). With
    several processes: CPU and RAM only on local rank 0, laps summed over torch's default
    process group, and a GPU that a lower rank measures too is dropped. Always: only the GPU
    of `device`, the torch device this process trains on (see `gpu_ids_for_device`; None
    keeps the tracker's selection), synchronised before each lap when CUDA is in use. What
    the user passed to the `Tracker` wins (``gpu_ids=``, ``count_*=False``, ``sensors=``,
    forced watts). A CPU estimate on local rank 0 covers the CPUs of all the run's processes
    on its node (their affinities, gathered).

    Never raises (it runs inside a training hook): a problem is recorded in
    ``tracker.errors`` and measuring goes on.
    """
    try:
        gpu_ids = gpu_ids_for_device(device)
        reducer: Reducer | None = None
        taken: TakenGpus | None = None
        node_cpus: NodeCpus | None = None
        node_metered: NodeMetered | None = None
        if roles.distributed:
            reducer = torch_reducer()
            if reducer is None:
                tracker.errors.record(
                    "distributed:no-group",
                    f"{roles.world_size} processes but no torch.distributed process group: "
                    "each process measures alone and rank 0 logs its own share only",
                )
            else:
                taken = torch_taken_gpus()
                node_cpus = torch_node_cpus()
                node_metered = torch_node_metered()
        logger.debug("carbon-callbacks: %s, GPUs %s, summed: %s", roles, gpu_ids, bool(reducer))
        tracker.distribute(
            count_cpu=roles.is_local_zero,
            count_ram=roles.is_local_zero,
            gpu_ids=gpu_ids,
            reducer=reducer,
            sync=cuda_synchronizer(),
            taken_gpus=taken,
            node_cpus=node_cpus,
            node_metered=node_metered,
        )
    except Exception as exc:  # the run-time boundary: never raise into training
        tracker.errors.record(
            f"distributed:{type(exc).__name__}",
            f"setting up distributed measurement failed ({exc}); this process measures alone",
        )

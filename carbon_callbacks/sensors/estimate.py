"""Labelled estimates for when no counter can be read: CPU load curve, RAM per GB, constants.

The CPU model is one pure function, `cpu_power_w` (in `cpu_model`, re-exported here), so it
can be compared against measured data. Every sensor here integrates a power over ``now`` (the
tracker's clock), so it is exact under a fake clock and needs no thread. The CPU power is
taken at the *mean* load of each read interval (from CPU-time deltas): exact while the load
stays within one linear piece of the load curve, an approximation otherwise.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Iterable

from carbon_callbacks.sensors import cgroups, cpuinfo
from carbon_callbacks.sensors.base import (
    CONSTANT,
    CPU_ESTIMATE_ENERGY_RATIO,
    ESTIMATE_RAM,
    ESTIMATE_TDP,
    Component,
)
from carbon_callbacks.sensors.cgroups import CpuQuota
from carbon_callbacks.sensors.cpu_model import (
    TDP_TABLE_FILE,
    CpuBasis,
    TdpTable,
    cpu_basis,
    cpu_key,
    cpu_power_w,
    normalise_cpu_name,
    reset,
    tdp_table,
)
from carbon_callbacks.units import BYTES_PER_GB

logger = logging.getLogger(__name__)

__all__ = [
    "CPU_ESTIMATE_ENERGY_RATIO",
    "RAM_W_PER_GB",
    "TDP_TABLE_FILE",
    "ConstantPowerSensor",
    "CpuBasis",
    "CpuEstimateSensor",
    "RamEstimateSensor",
    "TdpTable",
    "cpu_basis",
    "cpu_key",
    "cpu_power_w",
    "normalise_cpu_name",
    "reset",
    "tdp_table",
]

# Green Algorithms (Lannelongue et al. 2021), data/v3.0/referenceValues.csv, "memoryPower":
# 0.3725 W per GB of memory, from Karyakin & Salem 2017 (doi:10.1145/3076113.3076117).
RAM_W_PER_GB = 0.3725


def _check_power(name: str, power_w: float) -> float:
    if isinstance(power_w, bool) or not isinstance(power_w, (int, float)):
        raise ValueError(f"{name} must be a number of watts, got {power_w!r}")
    if not math.isfinite(power_w) or power_w < 0:
        raise ValueError(f"{name} must be a finite number of watts >= 0, got {power_w!r}")
    return float(power_w)


class ConstantPowerSensor:
    """A constant power (e.g. the user's ``cpu_power_w=``): energy = watts x elapsed time.

    Args:
        component: ``"cpu"``, ``"gpu"`` or ``"ram"``.
        power_w: watts, finite and >= 0.

    Raises:
        ValueError: `power_w` is negative, not finite or not a number.

    Example:
        >>> s = ConstantPowerSensor("cpu", 50.0)
        >>> s.start(0.0); s.energy_j(3600.0)
        180000.0
    """

    method = CONSTANT

    def __init__(self, component: Component, power_w: float) -> None:
        self.component: Component = component
        self.power_w = _check_power(f"{component}_power_w", power_w)
        self._t0: float | None = None

    def start(self, now: float) -> None:
        self._t0 = now

    def energy_j(self, now: float) -> float:
        if self._t0 is None:
            self._t0 = now
        return self.power_w * max(0.0, now - self._t0)

    def close(self) -> None:
        pass


class RamEstimateSensor(ConstantPowerSensor):
    """RAM power estimated as `RAM_W_PER_GB` (0.3725 W) per GB (10^9 bytes) of memory.

    The value is Green Algorithms' ``memoryPower`` (``referenceValues.csv``), from
    Karyakin & Salem 2017. It depends only on the memory size, not on its use. By default the
    size is the machine's, or the memory limit of this process's control group when that is
    smaller (a container's ``--memory``, a Kubernetes or Slurm job's limit): a job is not
    charged the memory of the whole node it shares.

    Args:
        total_bytes: memory size; default: the machine's total physical memory, or the
            group's limit (`cgroups.memory_limit`) when smaller.

    Raises:
        ValueError: the memory size is unknown or not positive.
    """

    method = ESTIMATE_RAM

    def __init__(self, total_bytes: int | None = None) -> None:
        self.machine_bytes = cpuinfo.total_ram_bytes() if total_bytes is None else None
        self.limit_group: str | None = None
        size = total_bytes if total_bytes is not None else self.machine_bytes
        if total_bytes is None:
            limit = cgroups.memory_limit()
            if limit is not None and (not size or limit[0] < size):
                size, self.limit_group = limit
        if not size or size <= 0:
            raise ValueError(f"total memory must be a positive number of bytes, got {size!r}")
        self.total_bytes = int(size)
        super().__init__("ram", RAM_W_PER_GB * self.total_bytes / BYTES_PER_GB)

    def describe(self) -> str:
        """The model's inputs in words, for `carbon-callbacks detect` and the logs."""
        gb = self.total_bytes / BYTES_PER_GB
        text = f"{RAM_W_PER_GB} W/GB x {gb:.1f} GB = {self.power_w:.1f} W"
        if self.limit_group is not None:
            machine = f"{self.machine_bytes / BYTES_PER_GB:.1f} GB" if self.machine_bytes else "?"
            text += f" (the memory limit of {self.limit_group}; the machine has {machine})"
        return text


class CpuEstimateSensor:
    """CPU energy from `cpu_power_w` at the mean load over each read interval, for the CPUs
    this process may use.

    Each ``energy_j(now)`` reads the CPU times (``/proc/stat`` on Linux, psutil elsewhere),
    takes load = busy delta / total delta since the previous read, and adds ``power_w(load)
    x (now - previous now)``, where ``power_w`` is ``sockets x cpu_power_w(model, load,
    logical_cpus / sockets)`` (one TDP per package) times the share of the machine's logical
    CPUs that the process may run on. No thread is needed.

    A process confined to some CPUs (``taskset``, a Slurm or container cpuset) is charged
    their share of the packages' power at *their* load, read from their own ``/proc/stat``
    lines: not the other jobs' CPUs. A process whose control group has a CPU quota of fewer
    CPUs (a container's ``--cpus``, a Kubernetes limit: `cgroups.cpu_quota`) is charged the
    quota's share at load = the group's CPU time / (quota x wall time). In a virtual machine
    each package's TDP is capped per vCPU (`cpu_basis`). The power is taken at the mean load
    of each read interval: the load curve is piecewise linear, so this is exact while the
    load stays within one of its pieces between two reads, and an approximation otherwise.

    Args:
        cpu_model: default: `cpuinfo.cpu_model()` ("" when unknown).
        logical_cpus: the machine's logical CPUs; default: `cpuinfo.logical_cpus()` (1 when
            unknown).
        sockets: CPU packages; default: `cpuinfo.cpu_sockets()`.
        cpus: the CPU numbers this process may run on, fewer than `logical_cpus`; default:
            `cpuinfo.usable_cpus()` (None: all of them) when this machine is described
            (neither `cpu_model` nor `logical_cpus` given), else all of them.
        virtual_machine: default: `cpuinfo.virtual_machine()` when this machine is
            described, else False.
        cpu_quota: default: `cgroups.cpu_quota()` when this machine is described, else
            none. Used when it is fewer CPUs than the others.
        read_cpu_times: returns ``(busy, total)`` cumulative CPU time (any unit) of the
            counted CPUs; default: `cpuinfo.proc_stat_times` of `cpus`, or
            `cpuinfo.system_cpu_times`. Tests inject a fake.

    Example:
        >>> cpu = CpuEstimateSensor()
        >>> cpu.start(0.0); cpu.energy_j(60.0)  # doctest: +SKIP
        3402.7
    """

    component: Component = "cpu"
    method = ESTIMATE_TDP

    def __init__(
        self,
        *,
        cpu_model: str | None = None,
        logical_cpus: int | None = None,
        sockets: int | None = None,
        cpus: Iterable[int] | None = None,
        virtual_machine: bool | None = None,
        cpu_quota: CpuQuota | None = None,
        read_cpu_times: Callable[[], tuple[float, float]] | None = None,
    ) -> None:
        this_machine = cpu_model is None and logical_cpus is None
        self.cpu_model = cpu_model if cpu_model is not None else (cpuinfo.cpu_model() or "")
        threads = logical_cpus if logical_cpus is not None else cpuinfo.logical_cpus()
        self.logical_cpus: int = threads or 1
        packages = sockets if sockets is not None else cpuinfo.cpu_sockets()
        self.sockets: int = packages if 1 <= packages <= self.logical_cpus else 1
        if virtual_machine is None:
            virtual_machine = this_machine and cpuinfo.virtual_machine()
        self.virtual_machine: bool = bool(virtual_machine)
        if cpus is not None:
            owned: frozenset[int] | None = frozenset(cpus)
        else:
            owned = cpuinfo.usable_cpus() if this_machine else None
        if cpu_quota is None and this_machine:
            cpu_quota = cgroups.cpu_quota()
        self.cpus: frozenset[int] | None = None
        self.quota: CpuQuota | None = None
        self._quota_cpus = 0.0  # > 0: load = the group's CPU time / (quota x wall time)
        self._read = self._counters(owned, cpu_quota, read_cpu_times)
        self._energy_j = 0.0
        self._load = 0.0
        self._t: float | None = None
        self._times = (0.0, 0.0)

    def _counters(
        self,
        owned: frozenset[int] | None,
        quota: CpuQuota | None,
        read: Callable[[], tuple[float, float]] | None,
    ) -> Callable[[], tuple[float, float]]:
        """Choose what is counted (a quota, some CPUs, or all), set `quota` / `cpus`, and
        return the reader of its CPU times."""
        if owned is not None and not 0 < len(owned) < self.logical_cpus:
            owned = None  # all of the machine's CPUs (or none: a nonsense set)
        self.cpus = owned
        if quota is not None and quota.cpus < (len(owned) if owned else self.logical_cpus):
            self.quota, self._quota_cpus = quota, quota.cpus
            if read is None:
                usage_s = quota.usage_s
                return lambda: (usage_s(), 0.0)  # the quota's wall time is taken in energy_j
            return read
        if owned is not None and read is None:
            read = functools.partial(cpuinfo.proc_stat_times, owned)
            try:
                read()
            except (OSError, ValueError, IndexError) as exc:
                # Without their own counters the share would be priced at the machine's load.
                logger.info("CPU estimate: counting the whole machine (%s)", exc)
                self.cpus, read = None, None
        return read or cpuinfo.system_cpu_times

    @property
    def threads_per_socket(self) -> int:
        return max(1, self.logical_cpus // self.sockets)

    @property
    def share(self) -> float:
        """The share of the machine's logical CPUs counted: the quota's CPUs, or
        ``len(cpus)``, over ``logical_cpus``."""
        if self._quota_cpus:
            return self._quota_cpus / self.logical_cpus
        return 1.0 if self.cpus is None else len(self.cpus) / self.logical_cpus

    def power_w(self, load: float) -> float:
        """Estimated power of the counted CPUs at `load`."""
        package_w = cpu_power_w(
            self.cpu_model, load, self.threads_per_socket, virtual_machine=self.virtual_machine
        )
        return self.sockets * package_w * self.share

    def describe(self) -> str:
        """The model's inputs in words, for `carbon-callbacks detect` and the logs."""
        basis = cpu_basis(
            self.cpu_model, self.threads_per_socket, virtual_machine=self.virtual_machine
        )
        per_thread = f"{basis.w_per_thread:g} W a thread at full load ({basis.per_thread_basis})"
        text = (
            f"load-curve model for {self.cpu_model or 'an unknown CPU'!r} "
            f"({self.logical_cpus} logical CPUs, {self.sockets} socket(s)): "
        )
        if basis.table_name is None:
            text += f"not in the TDP table, {basis.full_load_w:.4g} W per package: {per_thread}"
        elif basis.capped:
            text += (
                f"a virtual machine, {basis.full_load_w:.4g} W per package at full load: "
                f"{per_thread}, below the {basis.tdp_w:g} W TDP of the host's "
                f"{basis.table_name!r}"
            )
        else:
            text += (
                f"{basis.tdp_w:g} W TDP per package ({basis.table_name!r}), "
                f"{basis.full_load_w:.4g} W at full load"
            )
        if self.quota is not None:
            text += (
                f"; a CPU quota of {self.quota.cpus:g} CPUs ({self.quota.group}): charged "
                f"{self.quota.cpus:g}/{self.logical_cpus} of that, at the group's own CPU time"
            )
        elif self.cpus is not None:
            text += (
                f"; this process may run on {len(self.cpus)} of them, charged "
                f"{len(self.cpus)}/{self.logical_cpus} of that at their own load"
            )
        return text

    def start(self, now: float) -> None:
        self._times = self._read()
        self._t = now
        self._energy_j = 0.0

    def energy_j(self, now: float) -> float:
        if self._t is None:
            self.start(now)
            return 0.0
        times = self._read()
        dt = now - self._t
        d_busy = times[0] - self._times[0]
        d_total = self._quota_cpus * dt if self._quota_cpus else times[1] - self._times[1]
        if d_total > 0:  # reads within one clock tick keep the previous load
            self._load = d_busy / d_total
        if dt > 0:
            self._energy_j += self.power_w(self._load) * dt
        self._times, self._t = times, now
        return self._energy_j

    @property
    def last_load(self) -> float:
        """The load of the counted CPUs over the last read interval, in [0, 1]."""
        return min(max(self._load, 0.0), 1.0)

    def close(self) -> None:
        pass

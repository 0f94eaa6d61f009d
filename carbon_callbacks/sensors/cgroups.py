"""Limits on this process's control group, for the estimates: a CPU quota (a container's
``--cpus``, a Kubernetes CPU limit) with the group's own CPU time, and a memory limit.

Linux only; cgroup v2 (``cpu.max``, ``cpu.stat``, ``memory.max``) and v1
(``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``, ``cpuacct.usage``,
``memory.limit_in_bytes``). The environment variable ``CARBON_CALLBACKS_CGROUP_ROOT``
replaces ``/sys/fs/cgroup`` (tests build fake trees there). Every probe reads a few small
files once; `reset()` forgets them (tests).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger(__name__)

CGROUP_ROOT_ENV = "CARBON_CALLBACKS_CGROUP_ROOT"
PROC_SELF_CGROUP = "/proc/self/cgroup"


@dataclass(frozen=True)
class CpuQuota:
    """A CPU quota and where the group's CPU time is read.

    Attributes:
        cpus: the quota in CPUs (quota / period, e.g. 4.0 or 0.5), the smallest on the way
            from the process's group up to the root that is visible.
        usage_file: ``cpu.stat`` (v2, ``usage_usec``) or ``cpuacct.usage`` (v1, ns).
        group: the directory of the group that sets the quota, for messages.
    """

    cpus: float
    usage_file: str
    group: str

    def usage_s(self) -> float:
        """CPU seconds used by the group so far (every process in it, children included).
        Read at every lap: raw system calls, a few microseconds."""
        fd = os.open(self.usage_file, os.O_RDONLY)
        try:
            text = os.read(fd, 4096)
        finally:
            os.close(fd)
        if self.usage_file.endswith("cpu.stat"):
            for line in text.splitlines():
                key, _, value = line.partition(b" ")
                if key == b"usage_usec":
                    return int(value) / 1e6
            raise ValueError(f"{self.usage_file} has no usage_usec line")
        return int(text) / 1e9


def _read(path: str) -> str:
    with open(path, encoding="ascii") as f:
        return f.read(4096).strip()


def _groups() -> dict[str, str]:
    """``{controller: path}`` from ``/proc/self/cgroup``; ``""`` is the v2 group."""
    groups: dict[str, str] = {}
    for line in _read(PROC_SELF_CGROUP).splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            for controller in parts[1].split(",") if parts[1] else [""]:
                groups[controller] = parts[2]
    return groups


def _group_dir(mount: str, path: str) -> str | None:
    """The group's directory under `mount`: at its path, or the mount itself when the path
    is the host's (a container without a cgroup namespace mounts its own group there)."""
    for candidate in (os.path.join(mount, path.lstrip("/")), mount):
        if os.path.isdir(candidate):
            return os.path.normpath(candidate)
    return None


def _ancestors(mount: str, leaf: str) -> list[str]:
    dirs = [leaf]
    while os.path.normpath(dirs[-1]) != os.path.normpath(mount):
        parent = os.path.dirname(os.path.normpath(dirs[-1]))
        if len(parent) < len(os.path.normpath(mount)):
            break
        dirs.append(parent)
    return dirs


def _smallest(
    mount: str, leaf: str, limit: Callable[[str], float | None]
) -> tuple[float, str] | None:
    """``(limit, group directory)``: the smallest `limit` of `leaf` and its ancestors up to
    `mount` (``limit(directory)`` is None for "no limit"; a group without the files, such as
    the root, is skipped)."""
    found = []
    for directory in _ancestors(mount, leaf):
        try:
            value = limit(directory)
        except OSError:
            continue
        if value is not None:
            found.append((value, directory))
    return min(found) if found else None


def _v2_cpus(directory: str) -> float | None:
    quota, _, period = _read(os.path.join(directory, "cpu.max")).partition(" ")
    return None if quota == "max" else int(quota) / int(period or "100000")


def _v1_cpus(directory: str) -> float | None:
    quota = int(_read(os.path.join(directory, "cpu.cfs_quota_us")))
    period = int(_read(os.path.join(directory, "cpu.cfs_period_us")))
    return quota / period if quota > 0 and period > 0 else None


# cgroup v1 says "no limit" with the largest page-aligned signed 64-bit number.
_V1_UNLIMITED = 1 << 62


def _memory_bytes(name: str) -> Callable[[str], float | None]:
    def limit(directory: str) -> float | None:
        text = _read(os.path.join(directory, name))
        return int(text) if text != "max" and 0 < int(text) < _V1_UNLIMITED else None

    return limit


def _v1_group(root: str, mounts: tuple[str, ...], path: str) -> tuple[str, str] | None:
    """``(mount, group directory)`` of a v1 controller mounted at one of `mounts`."""
    mount = next((m for m in (os.path.join(root, n) for n in mounts) if os.path.isdir(m)), None)
    if mount is None:
        return None
    leaf = _group_dir(mount, path)
    return None if leaf is None else (mount, leaf)


def _hierarchy() -> tuple[str, bool, dict[str, str]]:
    """``(root, cgroup v2 mounted there, {controller: path})``."""
    root = os.environ.get(CGROUP_ROOT_ENV) or "/sys/fs/cgroup"
    return root, os.path.exists(os.path.join(root, "cgroup.controllers")), _groups()


@functools.cache
def cpu_quota() -> CpuQuota | None:
    """This process's CPU quota, or None when it has none (or this is not Linux, or the
    group cannot be read: logged at debug level). The group's CPU time is readable when a
    quota is returned."""
    try:
        root, v2, groups = _hierarchy()
        if v2:
            leaf = _group_dir(root, groups.get("", "/"))
            cpu = None if leaf is None else (root, leaf)
            usage = None if leaf is None else os.path.join(leaf, "cpu.stat")
        else:
            cpu = _v1_group(root, ("cpu,cpuacct", "cpu"), groups.get("cpu", "/"))
            acct = _v1_group(root, ("cpu,cpuacct", "cpuacct"), groups.get("cpuacct", "/"))
            usage = None if acct is None else os.path.join(acct[1], "cpuacct.usage")
        if cpu is None or usage is None:
            return None
        found = _smallest(*cpu, _v2_cpus if v2 else _v1_cpus)
        if found is None:
            return None
        quota = CpuQuota(found[0], usage, found[1])
        quota.usage_s()
        return quota
    except (OSError, ValueError) as exc:
        logger.debug("no CPU quota read: %s", exc)
        return None


@functools.cache
def memory_limit() -> tuple[int, str] | None:
    """``(bytes, group directory)``: the smallest memory limit on the way from this process's
    group up to the root that is visible; None when there is none (or this is not Linux, or
    the group cannot be read: logged at debug level)."""
    try:
        root, v2, groups = _hierarchy()
        if v2:
            leaf = _group_dir(root, groups.get("", "/"))
            group = None if leaf is None else (root, leaf)
        else:
            group = _v1_group(root, ("memory",), groups.get("memory", "/"))
        if group is None:
            return None
        name = "memory.max" if v2 else "memory.limit_in_bytes"
        found = _smallest(*group, _memory_bytes(name))
        return None if found is None else (int(found[0]), found[1])
    except (OSError, ValueError) as exc:
        logger.debug("no memory limit read: %s", exc)
        return None


def reset() -> None:
    """Forget the probes (tests)."""
    cpu_quota.cache_clear()
    memory_limit.cache_clear()

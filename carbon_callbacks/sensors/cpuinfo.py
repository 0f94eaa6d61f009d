"""Cheap, cached facts about this machine's CPU and memory.

Used by the estimate sensors and by `carbon_callbacks.hardware`. Every probe reads a small
file or calls the OS once and is cached; ``reset()`` clears the caches (tests). Nothing here
imports psutil on Linux.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import sys

logger = logging.getLogger(__name__)

PROC_CPUINFO = "/proc/cpuinfo"
PROC_STAT = "/proc/stat"
_PACKAGE_CPUS = (
    "/sys/devices/system/cpu/cpu0/topology/package_cpus_list",
    "/sys/devices/system/cpu/cpu0/topology/core_siblings_list",  # kernels before 5.4
)
_MODEL_RE = re.compile(rb"^model name\s*:\s*(.+?)\s*$", re.MULTILINE)
_HYPERVISOR_RE = re.compile(rb"^flags\s*:.*\bhypervisor\b", re.MULTILINE)
_ARM_PART_RE = re.compile(
    rb"^CPU implementer\s*:\s*0x41\s*$.*?^CPU part\s*:\s*(0x[0-9a-f]+)\s*$", re.M | re.S
)
# arm64 kernels print no "model name": the core is named from its part number, as
# util-linux's lscpu does (sys-utils/lscpu-arm.c, implementer 0x41 = Arm). Only the server
# cores the CPU estimate has figures for (Graviton2-4, Ampere Altra, Grace).
ARM_PARTS = {
    b"0xd0c": "Neoverse-N1",
    b"0xd40": "Neoverse-V1",
    b"0xd49": "Neoverse-N2",
    b"0xd4f": "Neoverse-V2",
    b"0xd84": "Neoverse-V3",
    b"0xd8e": "Neoverse-N3",
}


def _read_head(path: str, size: int) -> bytes:
    """The first `size` bytes of a (proc/sys) file, with raw syscalls: a few microseconds."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, size)
    finally:
        os.close(fd)


@functools.cache
def cpu_model() -> str | None:
    """The CPU model string, e.g. ``"Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz"``; None if unknown.

    Linux: the first ``model name`` of ``/proc/cpuinfo`` (only its first 8 KiB are read: on
    large machines generating the whole file is slow). Windows: the registry's
    ``ProcessorNameString``. macOS: ``sysctl machdep.cpu.brand_string``. Otherwise
    ``platform.processor()``. On Arm Linux, where there is no ``model name``, an Arm
    Neoverse core is named from its ``CPU part`` (``"ARM Neoverse-N1"``).
    """
    try:
        head = _read_head(PROC_CPUINFO, 8192)
        match = _MODEL_RE.search(head)
        if match:
            return match.group(1).decode("utf-8", "replace")
        part = _ARM_PART_RE.search(head)
        if part and part.group(1).lower() in ARM_PARTS:
            return f"ARM {ARM_PARTS[part.group(1).lower()]}"
    except OSError:
        pass
    if sys.platform == "win32":
        try:
            import winreg

            key = winreg.OpenKey(
                winreg.HKEY_LOCAL_MACHINE, r"HARDWARE\DESCRIPTION\System\CentralProcessor\0"
            )
            value = str(winreg.QueryValueEx(key, "ProcessorNameString")[0]).strip()
            if value:
                return value
        except OSError:
            pass
    if sys.platform == "darwin":
        import subprocess

        try:
            out = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"],
                capture_output=True,
                text=True,
                timeout=2.0,
                check=True,
            ).stdout.strip()
            if out:
                return out
        except (OSError, subprocess.SubprocessError):
            pass
    import platform

    return platform.processor().strip() or None


@functools.cache
def logical_cpus() -> int | None:
    """Logical CPUs (hardware threads) of the machine, ``os.cpu_count()``; None if unknown."""
    return os.cpu_count()


@functools.cache
def usable_cpus() -> frozenset[int] | None:
    """The CPUs this process may run on (``os.sched_getaffinity``: a ``taskset``, a batch
    scheduler's or a container's cpuset), when they are fewer than the machine's logical
    CPUs; None when it may run on all of them or the OS cannot tell (not Linux)."""
    getaffinity = getattr(os, "sched_getaffinity", None)
    total = logical_cpus()
    if getaffinity is None or not total:
        return None
    try:
        cpus = frozenset(getaffinity(0))
    except OSError:
        return None
    return cpus if 0 < len(cpus) < total else None


@functools.cache
def virtual_machine() -> bool:
    """True when the CPU says it runs under a hypervisor (the ``hypervisor`` flag of
    ``/proc/cpuinfo``, set by KVM, Xen HVM, Hyper-V and VMware guests on x86). False when
    it does not, or it cannot be told (other OSes and architectures)."""
    try:
        return _HYPERVISOR_RE.search(_read_head(PROC_CPUINFO, 8192)) is not None
    except OSError:
        return False


def _count_cpulist(text: str) -> int:
    """Number of CPUs in a Linux cpulist such as ``"0-19,40-59"``."""
    count = 0
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        count += int(hi or lo) - int(lo) + 1
    return count


@functools.cache
def cpu_sockets() -> int:
    """Number of CPU packages (sockets); 1 when it cannot be told.

    Computed as logical CPUs / CPUs in package 0 (one small sysfs read).
    """
    total = logical_cpus()
    if not total:
        return 1
    for path in _PACKAGE_CPUS:
        try:
            per_package = _count_cpulist(_read_head(path, 4096).decode("ascii"))
        except (OSError, ValueError):
            continue
        if per_package > 0:
            return max(1, round(total / per_package))
    return 1


@functools.cache
def total_ram_bytes() -> int | None:
    """Total physical memory in bytes (``os.sysconf`` on Linux, psutil elsewhere); None if
    unknown."""
    try:
        pages = os.sysconf("SC_PHYS_PAGES")
        page_size = os.sysconf("SC_PAGE_SIZE")
        if pages > 0 and page_size > 0:
            return int(pages * page_size)
    except (ValueError, OSError, AttributeError):
        pass
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except Exception as exc:  # psutil raises its own types on exotic platforms
        logger.debug("total memory unknown: %s", exc)
        return None


def _busy_total(line: bytes) -> tuple[int, int]:
    fields = [int(x) for x in line.split()[1:9]]
    total = sum(fields)
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return total - idle, total


def proc_stat_times(cpus: frozenset[int] | None = None) -> tuple[float, float]:
    """(busy, total) CPU time from ``/proc/stat``: of the whole machine (its first line), or
    summed over the ``cpuN`` lines of `cpus`.

    Units are clock ticks; only ratios of deltas are used. total = user + nice + system +
    idle + iowait + irq + softirq + steal (guest time is already inside user and nice);
    busy = total - idle - iowait.

    Raises:
        ValueError: a CPU of `cpus` has no line (offline, or not a CPU of this machine).
    """
    if cpus is None:
        busy, total = _busy_total(_read_head(PROC_STAT, 512).split(b"\n", 1)[0])
        return float(busy), float(total)
    # The per-CPU lines follow the first one, under 256 bytes each (ten counters of up to 20
    # digits): no need to read the long interrupt counters after them.
    lines = _read_head(PROC_STAT, 256 * (max(cpus) + 2)).split(b"\n")
    busy = total = 0
    seen = 0
    for line in lines[1:]:
        name = line.split(b" ", 1)[0]
        if not name.startswith(b"cpu") or not name[3:].isdigit():
            break
        if int(name[3:]) in cpus:
            b, t = _busy_total(line)
            busy, total, seen = busy + b, total + t, seen + 1
    if seen != len(cpus):
        raise ValueError(f"/proc/stat has lines for {seen} of the CPUs {sorted(cpus)}")
    return float(busy), float(total)


def psutil_times() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine from ``psutil.cpu_times()``."""
    import psutil

    times = psutil.cpu_times()
    values = times._asdict()
    # Linux guest times are already counted in user/nice.
    total = sum(v for k, v in values.items() if k not in ("guest", "guest_nice"))
    idle = values.get("idle", 0.0) + values.get("iowait", 0.0)
    return float(total - idle), float(total)


def system_cpu_times() -> tuple[float, float]:
    """(busy, total) CPU time of the whole machine: ``/proc/stat`` on Linux, else psutil."""
    if _use_proc_stat():
        return proc_stat_times()
    return psutil_times()


@functools.cache
def _use_proc_stat() -> bool:
    try:
        proc_stat_times()
        return True
    except (OSError, ValueError, IndexError):
        return False


def reset() -> None:
    """Forget every cached probe (tests)."""
    probes = (
        "cpu_model",
        "logical_cpus",
        "usable_cpus",
        "virtual_machine",
        "cpu_sockets",
        "total_ram_bytes",
        "_use_proc_stat",
    )
    for name in probes:
        clear = getattr(globals()[name], "cache_clear", None)  # tests may patch a probe
        if clear is not None:
            clear()

"""RAPL energy counters from the Linux powercap tree (``/sys/class/powercap``).

Two sensors come out of one tree: CPU (the ``package-N`` domains) and RAM (their ``dram``
subdomains, when the CPU has them). Each domain's ``energy_uj`` is a cumulative counter in
microjoules that runs from 0 to ``max_energy_range_uj`` inclusive and then wraps (`wrap_uj`
says by how much); the sensor keeps its file descriptors open and reads them with
``os.pread`` (a few microseconds a read).

Domains counted once (the de-duplication rule): domains are visited in the order
``intel-rapl`` > ``amd-rapl`` > ``intel-rapl-mmio``, then by zone number, and a domain is kept
only if no earlier one has the same identity. The identity of a package domain is its
``name`` (``package-0``, or ``package-0-die-1`` on multi-die CPUs, which are real separate
counters); the identity of a DRAM domain is its parent's name plus ``dram``. So the MMIO view
of ``package-0`` and a second zone reporting ``package-0`` (multi-die duplicates) are not
summed twice. Other domains (``psys``, which is the whole platform, ``core``, ``uncore``,
which are inside the package) are ignored.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from carbon_callbacks.sensors.base import RAPL, Component, SensorError, SensorUnavailable
from carbon_callbacks.units import UJ_PER_J

logger = logging.getLogger(__name__)

ROOT_ENV = "CARBON_CALLBACKS_POWERCAP_ROOT"
DEFAULT_ROOT = "/sys/class/powercap"
# Polling at a third of the time a counter takes to wrap at this power misses no wrap.
ASSUMED_MAX_POWER_W = 500.0
# The hardware counter's width: drivers/powercap/intel_rapl_common.c reads it through
# ENERGY_STATUS_MASK = GENMASK(31, 0), for the MSR, MMIO and TPMI interfaces alike.
_COUNTER_MAX = 0xFFFF_FFFF


def wrap_uj(max_energy_range_uj: int) -> float:
    """Microjoules a counter gains when it wraps from its top back to 0: the modulus.

    In Linux's drivers/powercap/intel_rapl_common.c, ``energy_uj`` is the raw 32-bit count
    times the domain's energy unit (``rapl_unit_xlate``), and ``max_energy_range_uj`` is
    ``rapl_unit_xlate(rd, ENERGY_UNIT, ENERGY_STATUS_MASK, 0)``: the top count, 2^32 - 1,
    times the unit. The counter therefore reads 0..max inclusive, and going from max to 0 is
    one more count, one unit (61.035 uJ for the common 2^-14 J unit), not 1 uJ. So the
    modulus is max + max / (2^32 - 1); the kernel truncates both values to whole uJ, which
    leaves an error under 1 uJ per wrap.

    >>> wrap_uj(262_143_328_850)  # the 2^-14 J unit (61035 pJ in the kernel)
    262143328911.035
    """
    return max_energy_range_uj + max_energy_range_uj / _COUNTER_MAX


_CONTROL_TYPES = ("intel-rapl", "amd-rapl", "intel-rapl-mmio")  # priority order
_ZONE_RE = re.compile(r"^(intel-rapl|amd-rapl|intel-rapl-mmio):(\d+)(?::(\d+))?$")


class RaplPermissionError(SensorUnavailable):
    """``energy_uj`` exists but is not readable (root-only since the 2020 PLATYPUS fix)."""


@dataclass(frozen=True)
class RaplDomain:
    """One RAPL counter: ``zone`` is the directory name (``intel-rapl:0:2``), ``name`` the
    content of its ``name`` file, ``parent`` the package name for a subdomain."""

    zone: str
    path: str
    name: str
    parent: str | None
    max_energy_range_uj: int

    @property
    def label(self) -> str:
        return self.name if self.parent is None else f"{self.parent}/{self.name}"


def powercap_root(root: str | None = None) -> str:
    """`root`, else ``$CARBON_CALLBACKS_POWERCAP_ROOT``, else ``/sys/class/powercap``."""
    return root or os.environ.get(ROOT_ENV) or DEFAULT_ROOT


def _read_text(path: str) -> str:
    with open(path, encoding="ascii", errors="replace") as f:
        return f.read().strip()


def _zone_dirs(root: str) -> dict[str, str]:
    """Zone directory name -> path, flat (``/sys/class/powercap``) or nested layouts."""
    zones: dict[str, str] = {}
    for entry in sorted(os.listdir(root)):  # OSError: handled by the caller
        if _ZONE_RE.match(entry):
            zones.setdefault(entry, os.path.join(root, entry))
    for name, path in list(zones.items()):
        if name.count(":") != 1:
            continue
        try:
            children = os.listdir(path)
        except OSError:
            continue
        for child in children:
            if _ZONE_RE.match(child):
                zones.setdefault(child, os.path.join(path, child))
    return zones


def _sort_key(zone: str) -> tuple[int, int, int]:
    m = _ZONE_RE.match(zone)
    assert m is not None
    return (_CONTROL_TYPES.index(m.group(1)), int(m.group(2)), int(m.group(3) or -1))


def find_domains(root: str | None = None) -> tuple[list[RaplDomain], list[RaplDomain]]:
    """``(packages, drams)`` of the powercap tree at `root`, de-duplicated (module docstring).

    Raises:
        SensorUnavailable: no tree, or no RAPL package or DRAM domain in it.
    """
    root = powercap_root(root)
    if not os.path.isdir(root):
        raise SensorUnavailable(
            f"RAPL: {root} not found (not Linux, or a VM/container without powercap)"
        )
    try:
        zones = _zone_dirs(root)
    except OSError as exc:
        raise SensorUnavailable(f"RAPL: cannot list {root}: {exc}") from exc
    if not zones:
        raise SensorUnavailable(
            f"RAPL: no intel-rapl/amd-rapl domains under {root} (RAPL driver not loaded, "
            f"or a VM without RAPL)"
        )
    names: dict[str, str] = {}
    for zone, path in zones.items():
        try:
            names[zone] = _read_text(os.path.join(path, "name"))
        except OSError:
            logger.debug("RAPL: %s has no readable name; skipped", path)
    packages: list[RaplDomain] = []
    drams: list[RaplDomain] = []
    seen: dict[str, str] = {}
    for zone in sorted(names, key=_sort_key):
        m = _ZONE_RE.match(zone)
        assert m is not None
        name = names[zone]
        if m.group(3) is None:
            parent = None
            if not name.startswith("package"):
                continue  # psys is the whole platform; other top-level zones are unknown
        else:
            parent = names.get(f"{m.group(1)}:{m.group(2)}")
            if name != "dram" or parent is None:
                continue  # core/uncore are inside the package
        identity = name if parent is None else f"{parent}/{name}"
        if identity in seen:
            logger.debug("RAPL: %s (%s) duplicates %s; counted once", zone, name, seen[identity])
            continue
        path = zones[zone]
        try:
            max_range = int(_read_text(os.path.join(path, "max_energy_range_uj")))
            if max_range <= 0:
                raise ValueError(f"max_energy_range_uj = {max_range}")
        except (OSError, ValueError) as exc:
            logger.debug("RAPL: %s has no usable max_energy_range_uj (%s); skipped", zone, exc)
            continue
        seen[identity] = zone
        domain = RaplDomain(zone, path, name, parent, max_range)
        (packages if parent is None else drams).append(domain)
    if not packages and not drams:
        raise SensorUnavailable(f"RAPL: no package or dram domain under {root}")
    return packages, drams


def _open_counter(path: str) -> int:
    """Open one ``energy_uj`` for reading (a seam: tests simulate permission errors here)."""
    return os.open(path, os.O_RDONLY)


def _read_uj(fd: int) -> int:
    return int(os.pread(fd, 32, 0))


def _permission_message(root: str, path: str) -> str:
    return (
        f"RAPL: {path} is not readable (since the 2020 PLATYPUS fix, energy_uj is root-only). "
        f"To measure CPU energy instead of estimating it, run "
        f"'sudo chmod -R a+r {root}/intel-rapl' (until reboot), or add a udev rule such as "
        f'ACTION=="add", SUBSYSTEM=="powercap", RUN+="/bin/chmod a+r /sys%p/energy_uj"'
    )


class RaplSensor:
    """The sum of some RAPL domains' energy counters, corrected for wrap-around.

    ``poll()`` reads the counters so that a wrap between two ``energy_j`` calls is not
    missed; the tracker calls it every `poll_interval_s` from its guard thread.

    Args:
        component: ``"cpu"`` (package domains) or ``"ram"`` (dram domains).
        domains: from `find_domains`.
        root: the powercap root, for messages.

    Raises:
        RaplPermissionError: an ``energy_uj`` is not readable.
        SensorUnavailable: a counter cannot be opened or read.

    Example:
        >>> cpu, ram, _ = open_rapl()  # doctest: +SKIP
        >>> cpu.start(now); ...; cpu.energy_j(later)  # doctest: +SKIP
        1234.5
    """

    method = RAPL

    def __init__(self, component: Component, domains: Sequence[RaplDomain], root: str) -> None:
        if not domains:
            raise SensorUnavailable(f"RAPL: no {component} domain under {root}")
        self.component: Component = component
        self.domains = tuple(domains)
        self._lock = threading.Lock()
        self._fds: list[int] = []
        self._ranges = [d.max_energy_range_uj for d in self.domains]
        self._moduli = [wrap_uj(r) for r in self._ranges]
        try:
            for d in self.domains:
                path = os.path.join(d.path, "energy_uj")
                try:
                    self._fds.append(_open_counter(path))
                    _read_uj(self._fds[-1])
                except PermissionError as exc:
                    raise RaplPermissionError(_permission_message(root, path)) from exc
                except (OSError, ValueError) as exc:
                    raise SensorUnavailable(f"RAPL: cannot read {path}: {exc}") from exc
        except SensorUnavailable:
            self.close()
            raise
        self.poll_interval_s = min(self._ranges) / UJ_PER_J / ASSUMED_MAX_POWER_W / 3.0
        self._last = self._read_all()
        self._total_uj = 0.0

    @property
    def names(self) -> list[str]:
        """The counted domains, e.g. ``["package-0", "package-1"]``."""
        return [d.label for d in self.domains]

    def _read_all(self) -> list[int]:
        try:
            return [_read_uj(fd) for fd in self._fds]
        except (OSError, ValueError) as exc:
            raise SensorError(f"RAPL counter could not be read: {exc}") from exc

    def _advance(self) -> None:
        values = self._read_all()
        for i, (old, new) in enumerate(zip(self._last, values, strict=True)):
            self._total_uj += new - old if new >= old else new + self._moduli[i] - old
        self._last = values

    def start(self, now: float) -> None:
        with self._lock:
            self._last = self._read_all()
            self._total_uj = 0.0

    def poll(self) -> None:
        """Read the counters now (from the tracker's guard thread)."""
        with self._lock:
            if self._fds:  # a guard thread outliving close() must not fail
                self._advance()

    def energy_j(self, now: float) -> float:
        with self._lock:
            if not self._fds:
                raise SensorError("RAPL sensor is closed")
            self._advance()
            return self._total_uj / UJ_PER_J

    def close(self) -> None:
        with self._lock:
            fds, self._fds = self._fds, []
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)


class RaplSensors(NamedTuple):
    """What `open_rapl` found: the sensors (None: not requested or no such domain)."""

    cpu: RaplSensor | None
    ram: RaplSensor | None
    ram_reason: str


def open_rapl(root: str | None = None, *, cpu: bool = True, ram: bool = True) -> RaplSensors:
    """The CPU and RAM sensors of the powercap tree at `root` (see `powercap_root`).

    Raises:
        RaplPermissionError: counters exist but are not readable.
        SensorUnavailable: no usable RAPL tree (the message says why).
    """
    root = powercap_root(root)
    packages, drams = find_domains(root)
    cpu_sensor = RaplSensor("cpu", packages, root) if cpu and packages else None
    if cpu and cpu_sensor is None:
        raise SensorUnavailable(f"RAPL: no package domain under {root}")
    ram_sensor: RaplSensor | None = None
    ram_reason = f"RAPL: no dram domain under {root} (common on client and AMD CPUs)"
    if ram and drams:
        try:
            ram_sensor = RaplSensor("ram", drams, root)
        except SensorUnavailable:
            if cpu_sensor is not None:
                cpu_sensor.close()
            raise
        ram_reason = "RAPL: " + ", ".join(ram_sensor.names)
    return RaplSensors(cpu_sensor, ram_sensor, ram_reason)

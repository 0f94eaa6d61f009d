"""Apple silicon (M1-M4): CPU, GPU, ANE and DRAM energy from macOS's own energy model.

**IOReport** (method ``ioreport``, no root): the ``Energy Model`` channel group, read as the
open tools macmon, asitop and all-smi read it. Each raw sample holds cumulative counters,
one per channel, with a unit label (``mJ``, ``uJ`` or ``nJ``); a lap is the difference of
two samples. The channels counted (`classify_channel`), every other one (clusters, cores,
SRAM, DTL telemetry) being inside these or not energy of the run:

- CPU: ``CPU Energy``, or ``DIE_<n>_CPU Energy`` on two-die chips (Ultra);
- GPU: ``GPU Energy``; ``GPU<n>`` only when a sample has no ``GPU Energy`` (the same energy);
- ANE: ``ANE``, ``ANE<n>``, ``ANE<n>_<m>``; DRAM: ``DRAM``, ``DRAM<n>``, ``DRAM<n>_<m>``.

**powermetrics** (method ``powermetrics``, root only): ``powermetrics --samplers
cpu_power,gpu_power,ane_power -f plist``, one plist per sample, samples separated by a NUL
byte; each sample's ``processor`` dictionary has ``cpu_energy``, ``gpu_energy``,
``ane_energy`` (mJ over the sample; ``*_power`` in mW on other macOS versions, times
``elapsed_ns``). The text format (``CPU Power: 1234 mW``, "(1004.32ms elapsed)") is parsed
too.

Components: the CPU is the CPU channels; the GPU is the GPU and the ANE (the accelerators);
RAM is the DRAM channels. Memory is unified, used by CPU and GPU alike, and counted once, as
RAM; when no DRAM channel exists RAM falls back on the per-GB estimate. Apple calls these
values estimates (``man powermetrics``: "estimated and may be inaccurate"), so both methods
are labelled estimates. mJ channels are published in batches of about 2 s (all-smi's M5 Max
measurements), so a lap boundary can move up to one batch of energy to the next lap.
"""

from __future__ import annotations

import plistlib
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from carbon_callbacks.sensors.base import IOREPORT, POWERMETRICS, Component, SensorError

# Counts are kept in nanojoules, integers, so that lap differences are exact.
NJ_PER_UNIT = {"mJ": 1_000_000, "uJ": 1_000, "nJ": 1}
NJ_PER_J = 1e9
RAILS = ("cpu", "gpu", "ane", "dram")
# The rails each component counts.
COMPONENT_RAILS: dict[Component, tuple[str, ...]] = {
    "cpu": ("cpu",),
    "gpu": ("gpu", "ane"),
    "ram": ("dram",),
}

_DIGITS = re.compile(r"\d+")


def _top_level(name: str, prefix: str) -> bool:
    """`prefix`, `prefix<n>` or `prefix<n>_<m>`: a block's own channel, not ``ANE0_SRAM``."""
    if not name.startswith(prefix):
        return False
    rest = name[len(prefix) :]
    if not rest:
        return True
    unit, _, instance = rest.partition("_")
    return bool(_DIGITS.fullmatch(unit)) and (not instance or bool(_DIGITS.fullmatch(instance)))


def classify_channel(name: str) -> str | None:
    """The rail an ``Energy Model`` channel counts towards (``gpu-fallback`` for
    ``GPU<n>``), or None for every other channel."""
    if name == "GPU Energy":
        return "gpu"
    if name == "CPU Energy" or re.fullmatch(r"DIE_\d+_CPU Energy", name):
        return "cpu"
    if name.startswith("GPU") and _DIGITS.fullmatch(name[3:]):
        return "gpu-fallback"
    if _top_level(name, "ANE"):
        return "ane"
    if _top_level(name, "DRAM"):
        return "dram"
    return None


def rails_nanojoules(channels: Iterable[tuple[str, str, int]]) -> dict[str, int]:
    """Cumulative nanojoules per rail of one raw IOReport sample, from ``(channel, unit,
    value)`` records. A channel with a unit other than mJ, uJ or nJ is not counted (no
    guessed scale): `SensorError` names it."""
    joules = dict.fromkeys(RAILS, 0)
    fallback = 0
    has_gpu = False
    for name, unit, value in channels:
        rail = classify_channel(name)
        if rail is None:
            continue
        scale = NJ_PER_UNIT.get(unit)
        if scale is None:
            raise SensorError(f"IOReport: channel {name!r} has unit {unit!r}, not mJ/uJ/nJ")
        if rail == "gpu-fallback":
            fallback += int(value) * scale
            continue
        has_gpu = has_gpu or rail == "gpu"
        joules[rail] += int(value) * scale
    if not has_gpu:
        joules["gpu"] = fallback
    return joules


def parse_powermetrics_plist(data: bytes) -> list[dict[str, float]]:
    """Joules per rail of each sample of ``powermetrics -f plist`` output (NUL-separated)."""
    samples: list[dict[str, float]] = []
    for chunk in data.split(b"\x00"):
        if not chunk.strip():
            continue
        doc = plistlib.loads(chunk.strip())
        processor = doc.get("processor", {})
        seconds = float(doc.get("elapsed_ns", 0)) / 1e9
        sample = {}
        for rail in RAILS:
            energy = processor.get(f"{rail}_energy")
            power = processor.get(f"{rail}_power")
            if energy is not None:
                sample[rail] = float(energy) / 1000.0  # mJ
            elif power is not None:
                sample[rail] = float(power) / 1000.0 * seconds  # mW x s
        samples.append(sample)
    return samples


_TEXT_POWER = re.compile(r"^(CPU|GPU|ANE|DRAM) Power:\s*([\d.]+)\s*mW\s*$", re.M)
_TEXT_ELAPSED = re.compile(r"\(([\d.]+)ms elapsed\)")


def parse_powermetrics_text(text: str) -> list[dict[str, float]]:
    """Joules per rail of each sample of ``powermetrics`` text output: the ``* Power: N mW``
    lines times the sample's "(N ms elapsed)"."""
    samples: list[dict[str, float]] = []
    for block in re.split(r"(?=\*\*\* Sampled system activity)", text):
        elapsed = _TEXT_ELAPSED.search(block)
        if elapsed is None:
            continue
        seconds = float(elapsed.group(1)) / 1000.0
        sample = {
            m.group(1).lower(): float(m.group(2)) / 1000.0 * seconds
            for m in _TEXT_POWER.finditer(block)
        }
        samples.append(sample)
    return samples


class EnergyReader(Protocol):
    """Cumulative nanojoules per rail since some origin, read on demand."""

    def read(self) -> Mapping[str, float]: ...

    def close(self) -> None: ...


class AppleEnergy:
    """One reader shared by the CPU, GPU and RAM sensors: read once per ``now``."""

    def __init__(self, reader: EnergyReader, method: str) -> None:
        self.reader = reader
        self.method = method
        self._lock = threading.Lock()
        self._now: float | None = None
        self._joules: Mapping[str, float] = {}
        self._users = 0

    def at(self, now: float) -> Mapping[str, float]:
        with self._lock:
            if now != self._now:
                try:
                    self._joules = self.reader.read()
                except Exception as exc:  # the OS interface's failures, as one error
                    raise SensorError(f"{self.method}: reading failed: {exc}") from exc
                self._now = now
            return self._joules

    def acquire(self) -> None:
        self._users += 1

    def release(self) -> None:
        self._users -= 1
        if self._users == 0:
            self.reader.close()


class AppleSensor:
    """One component's energy (CPU, GPU+ANE or DRAM) from a shared `AppleEnergy`."""

    def __init__(self, component: Component, energy: AppleEnergy) -> None:
        self.component: Component = component
        self.method = energy.method
        self._energy = energy
        self._rails = COMPONENT_RAILS[component]
        self._start_j = 0.0
        self._closed = False
        self.models: list[str] = []
        self.device_count = 0
        energy.acquire()

    def _total(self, now: float) -> float:
        joules = self._energy.at(now)
        return sum(joules.get(rail, 0.0) for rail in self._rails)

    def start(self, now: float) -> None:
        self._start_j = self._total(now)

    def energy_j(self, now: float) -> float:
        if self._closed:
            raise SensorError(f"{self.method} sensor is closed")
        return (self._total(now) - self._start_j) / NJ_PER_J

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._energy.release()


class IOReportReader:
    """`EnergyReader` over an IOReport sampler: ``sample()`` gives ``(channel, unit,
    value)`` records (`apple_ioreport.IOReportSampler` on macOS, a fake in tests)."""

    def __init__(self, sampler: Any) -> None:
        self.sampler = sampler

    def read(self) -> Mapping[str, float]:
        return rails_nanojoules(self.sampler.sample())

    def close(self) -> None:
        self.sampler.close()


class PowermetricsReader:
    """`EnergyReader` over a running ``powermetrics`` process: its samples summed as they
    arrive (`parse_powermetrics_plist`); ``lines`` yields the process's output chunks."""

    def __init__(self, chunks: Iterable[bytes], stop: Callable[[], None]) -> None:
        self._lock = threading.Lock()
        self._joules = dict.fromkeys(RAILS, 0.0)
        self._stop = stop
        self._error: str | None = None
        self._thread = threading.Thread(
            target=self._run, args=(chunks,), name="carbon-callbacks-powermetrics", daemon=True
        )
        self._thread.start()

    def _run(self, chunks: Iterable[bytes]) -> None:
        buffer = b""
        try:
            for chunk in chunks:
                buffer += chunk
                *complete, buffer = buffer.split(b"\x00")
                for sample in parse_powermetrics_plist(b"\x00".join(complete)):
                    with self._lock:
                        for rail, joules in sample.items():
                            self._joules[rail] += joules * NJ_PER_J
        except Exception as exc:  # reported at the next read
            self._error = f"powermetrics output could not be read: {exc}"

    def read(self) -> Mapping[str, float]:
        """Nanojoules per rail so far."""
        if self._error:
            raise SensorError(self._error)
        with self._lock:
            return dict(self._joules)

    def close(self) -> None:
        self._stop()
        self._thread.join(timeout=2.0)


def open_apple(
    *,
    sampler: Any = None,
    platform: str | None = None,
    machine: str | None = None,
    run_powermetrics: Callable[[], PowermetricsReader] | None = None,
    euid: int | None = None,
) -> tuple[dict[Component, AppleSensor], str]:
    """The CPU, GPU and RAM sensors of an Apple silicon Mac, and how they read.

    IOReport first (no root); ``powermetrics`` when IOReport cannot be read and this process
    is root. The RAM sensor is left out when the chip has no DRAM channel.

    Args:
        sampler: an IOReport sampler (tests); default the ctypes one on macOS.
        platform, machine: ``sys.platform`` and ``platform.machine()`` (tests).
        run_powermetrics: starts powermetrics (tests); euid: ``os.geteuid()`` (tests).

    Raises:
        SensorUnavailable: not Apple silicon, or neither source can be read.
    """
    import os
    import platform as platform_mod
    import sys

    from carbon_callbacks.sensors.base import SensorUnavailable

    platform = sys.platform if platform is None else platform
    machine = platform_mod.machine() if machine is None else machine
    if platform != "darwin" or machine != "arm64":
        raise SensorUnavailable(f"Apple silicon: not an Apple silicon Mac ({platform}, {machine})")
    reasons: list[str] = []
    try:
        if sampler is None:
            from carbon_callbacks.sensors.apple_ioreport import IOReportSampler

            sampler = IOReportSampler()
        reader: EnergyReader = IOReportReader(sampler)
        first = reader.read()
        method = IOREPORT
    except Exception as exc:  # ctypes, a missing library, or an unreadable group
        reasons.append(f"IOReport unreadable ({exc})")
        euid = os.geteuid() if euid is None else euid
        if euid != 0:
            raise SensorUnavailable(
                f"Apple silicon: {reasons[0]}; powermetrics needs root (sudo)"
            ) from exc
        reader = (run_powermetrics or start_powermetrics)()
        first, method = {}, POWERMETRICS
    energy = AppleEnergy(reader, method)
    sensors: dict[Component, AppleSensor] = {
        "cpu": AppleSensor("cpu", energy),
        "gpu": AppleSensor("gpu", energy),
    }
    from carbon_callbacks.sensors.cpuinfo import cpu_model

    gpu = sensors["gpu"]
    gpu.models = [f"{cpu_model() or 'Apple silicon'} GPU+ANE"]  # one device, for the tags
    gpu.device_count = 1
    has_dram = method == POWERMETRICS or first.get("dram", 0.0) > 0.0
    if has_dram:
        sensors["ram"] = AppleSensor("ram", energy)
    how = "; ".join([*reasons, f"{method}: CPU, GPU+ANE" + (", DRAM" if has_dram else "")])
    return sensors, how


def start_powermetrics(interval_ms: int = 1000) -> PowermetricsReader:
    """Start ``powermetrics`` (root) writing plist samples every `interval_ms`."""
    import subprocess

    process = subprocess.Popen(
        [
            "powermetrics",
            "--samplers",
            "cpu_power,gpu_power,ane_power",
            "-f",
            "plist",
            "-i",
            str(interval_ms),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert process.stdout is not None
    stdout = process.stdout

    def stop() -> None:
        process.terminate()
        try:
            process.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            process.kill()

    read = getattr(stdout, "read1", stdout.read)  # a buffered pipe returns what is there
    return PowermetricsReader(iter(lambda: read(65536), b""), stop)


def rails_of(samples: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """The joules of some samples, summed per rail."""
    total = dict.fromkeys(RAILS, 0.0)
    for sample in samples:
        for rail, joules in sample.items():
            total[rail] = total.get(rail, 0.0) + joules
    return total

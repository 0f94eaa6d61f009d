from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from carbon_callbacks.sensors import apple_ioreport
from carbon_callbacks.sensors.apple import (
    PowermetricsReader,
    classify_channel,
    open_apple,
    parse_powermetrics_plist,
    parse_powermetrics_text,
    rails_nanojoules,
    rails_of,
)
from carbon_callbacks.sensors.base import IOREPORT, POWERMETRICS, SensorError, SensorUnavailable

DATA = Path(__file__).parent.parent / "data" / "apple"


def recorded(name: str) -> list[list[tuple[str, str, int]]]:
    """The recorded samples, the first one twice: `open_apple` reads one to probe."""
    doc = json.loads((DATA / name).read_text())
    samples = [[tuple(c) for c in sample] for sample in doc["samples"]]
    return [samples[0], *samples]  # type: ignore[list-item]


class FakeSampler:
    """Replays recorded raw samples, one per ``sample()`` call (the last one repeats)."""

    def __init__(self, samples: list[list[tuple[str, str, int]]]) -> None:
        self.samples = samples
        self.calls = 0
        self.closed = False

    def sample(self) -> list[tuple[str, str, int]]:
        sample = self.samples[min(self.calls, len(self.samples) - 1)]
        self.calls += 1
        return sample

    def close(self) -> None:
        self.closed = True


def apple(sampler: Any) -> dict[str, Any]:
    sensors, _ = open_apple(sampler=sampler, platform="darwin", machine="arm64")
    return dict(sensors)


def lap(sensors: dict[str, Any]) -> dict[str, float]:
    for s in sensors.values():
        s.start(0.0)
    return {c: s.energy_j(1.0) for c, s in sensors.items()}


def test_m1_recorded_samples() -> None:
    sampler = FakeSampler(recorded("m1_energy_model.json"))
    sensors = apple(sampler)
    assert {s.method for s in sensors.values()} == {IOREPORT}
    assert sensors["gpu"].device_count == 1 and sensors["gpu"].models[0].endswith("GPU+ANE")
    # CPU Energy +4500 mJ; GPU Energy +1200 mJ and ANE +0; DRAM +300 mJ. ECPU/PCPU, AMCC,
    # DCS, DISP moved too but are not counted (inside the CPU, or not the run's energy)
    assert lap(sensors) == {"cpu": 4.5, "gpu": 1.2, "ram": 0.3}
    assert sampler.calls == 3  # open's probe, then one read per `now`, shared by all three
    for s in sensors.values():
        s.close()
    assert sampler.closed


def test_m4_max_recorded_samples_units_and_gpu_counted_once() -> None:
    sensors = apple(FakeSampler(recorded("m4_max_energy_model.json")))
    joules = lap(sensors)
    # CPU Energy +8000 mJ; GPU Energy +2e10 nJ = 20 J (GPU0's 20 J is the same energy and
    # not added) + ANE0 0.5 J; DRAM0 1.5 J (DRAM0_SRAM and every *_SRAM / DTL not counted)
    assert joules == {"cpu": 8.0, "gpu": 20.5, "ram": 1.5}


def test_m1_ultra_two_dies() -> None:
    joules = lap(apple(FakeSampler(recorded("m1_ultra_energy_model.json"))))
    assert joules == {"cpu": 5.5, "gpu": 10.3, "ram": 1.0}


def test_classification() -> None:
    assert classify_channel("CPU Energy") == "cpu"
    assert classify_channel("DIE_1_CPU Energy") == "cpu"
    assert classify_channel("GPU Energy") == "gpu"
    assert classify_channel("GPU0") == "gpu-fallback"
    for name in ("ANE", "ANE0", "ANE0_1"):
        assert classify_channel(name) == "ane"
    for name in ("DRAM", "DRAM1", "DRAM1_0"):
        assert classify_channel(name) == "dram"
    for name in ("ANE0_SRAM", "ANE0DTL00", "DRAM0_SRAM", "GPU", "GPU0_SRAM", "PCPU", "MCPU0", ""):
        assert classify_channel(name) is None
    assert rails_nanojoules([("GPU0", "mJ", 3)])["gpu"] == 3_000_000  # no GPU Energy: fallback
    with pytest.raises(SensorError, match="unit 'kJ'"):
        rails_nanojoules([("CPU Energy", "kJ", 1)])


def test_powermetrics_plist_energies_and_powers() -> None:
    samples = parse_powermetrics_plist((DATA / "m2_powermetrics.plist").read_bytes())
    assert samples == [
        {"cpu": 2.5, "gpu": 0.8, "ane": 0.0},
        {"cpu": 3.5, "gpu": 1.2, "ane": 0.04},
    ]
    old = parse_powermetrics_plist((DATA / "m1_powermetrics_power.plist").read_bytes())
    assert old == [{"cpu": 3.0, "gpu": 0.5, "ane": 0.0}]  # mW x 2 s


def test_powermetrics_text() -> None:
    samples = parse_powermetrics_text((DATA / "m1_pro_powermetrics.txt").read_text())
    assert samples == [
        {"cpu": 4.2, "gpu": 1.3, "ane": 0.0},
        {"cpu": 1.0, "gpu": 0.3, "ane": 0.05},
    ]
    assert rails_of(samples)["cpu"] == pytest.approx(5.2, rel=1e-15)


def test_powermetrics_reader_sums_the_stream() -> None:
    data = (DATA / "m2_powermetrics.plist").read_bytes()
    half = len(data) // 2
    stopped: list[bool] = []
    reader = PowermetricsReader(iter([data[:half], data[half:]]), lambda: stopped.append(True))
    reader._thread.join(timeout=5)
    nanojoules = reader.read()
    assert (nanojoules["cpu"], nanojoules["gpu"]) == (6e9, 2e9)
    reader.close()
    assert stopped == [True]


def test_powermetrics_when_ioreport_fails_as_root() -> None:
    class Broken:
        def sample(self) -> list[tuple[str, str, int]]:
            raise OSError("no Energy Model group")

        def close(self) -> None:
            pass

    data = (DATA / "m2_powermetrics.plist").read_bytes()
    sensors, how = open_apple(
        sampler=Broken(), platform="darwin", machine="arm64", euid=0,
        run_powermetrics=lambda: PowermetricsReader(iter([data]), lambda: None),
    )  # fmt: skip
    assert {s.method for s in sensors.values()} == {POWERMETRICS}
    assert "IOReport unreadable (no Energy Model group)" in how
    with pytest.raises(SensorUnavailable, match="powermetrics needs root"):
        open_apple(sampler=Broken(), platform="darwin", machine="arm64", euid=501)


def test_not_apple_silicon() -> None:
    with pytest.raises(SensorUnavailable, match="not an Apple silicon Mac"):
        open_apple(platform="linux", machine="x86_64")


def test_macos_reader_imports_here_and_loads_nothing() -> None:
    assert apple_ioreport.IOREPORT_PATH == "/usr/lib/libIOReport.dylib"
    with pytest.raises(OSError):
        apple_ioreport.IOReportSampler()  # no such library on Linux: ctypes says so

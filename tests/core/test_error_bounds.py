"""Each method's documented accuracy (`METHOD_ERROR_BOUNDS`) and `energy_bounds`."""

from __future__ import annotations

import pytest

from carbon_callbacks import Measurement
from carbon_callbacks.sensors.base import (
    ESTIMATED_METHODS,
    MEASURED_METHODS,
    METHOD_DESCRIPTIONS,
    METHOD_ERROR_BOUNDS,
    NONE,
    energy_bounds,
    is_estimate,
)


def test_every_label_has_bounds_around_the_value() -> None:
    assert set(METHOD_ERROR_BOUNDS) == MEASURED_METHODS | ESTIMATED_METHODS | {NONE}
    assert set(METHOD_ERROR_BOUNDS) == set(METHOD_DESCRIPTIONS)
    for low, high in METHOD_ERROR_BOUNDS.values():
        assert 0.0 < low <= 1.0 <= high


def test_cited_figures() -> None:
    assert METHOD_ERROR_BOUNDS["rapl"] == (1 - 0.056, 1 + 0.056)  # Khan et al. 2016: 5.6 %
    assert METHOD_ERROR_BOUNDS["nvml-energy"] == (0.95, 1.05)  # NVIDIA: +/- 5 %
    assert METHOD_ERROR_BOUNDS["nvml-power"] == (0.95, 1.05)
    # The CPU model's held-out energy ratios 0.698-1.071 (bench/validate_cpu_model.py):
    # the truth lies within [estimate / 1.071, estimate / 0.698].
    assert METHOD_ERROR_BOUNDS["estimate-tdp"] == (1 / 1.071, 1 / 0.698)
    assert METHOD_ERROR_BOUNDS["estimate-gpu-tdp"] == (1 - 0.37, 1 + 0.37)  # Latif et al.
    assert METHOD_ERROR_BOUNDS["constant"] == (1.0, 1.0)
    assert METHOD_ERROR_BOUNDS["none"] == (1.0, 1.0)
    # 40 W for 1 TB (1024 GB) and 10 W for 8 GB, against 0.3725 W/GB
    low, high = METHOD_ERROR_BOUNDS["estimate-ram"]
    assert low * 0.3725 == pytest.approx(0.0390625, rel=1e-12)
    assert high * 0.3725 == pytest.approx(1.25, rel=1e-12)


def test_energy_bounds_exact() -> None:
    assert energy_bounds("nvml-energy", 2.0) == (1.9, 2.1)
    assert energy_bounds("constant", 2.5) == (2.5, 2.5)
    assert energy_bounds("estimate-tdp", 1.071) == pytest.approx((1.0, 1.071 / 0.698))
    assert energy_bounds("none", 0.0) == (0.0, 0.0)


def test_merged_labels_take_the_widest_bounds() -> None:
    # rapl (0.944, 1.056) + estimate-tdp (0.934, 1.433): 0.934 and 1.433
    widest = (1 / 1.071, 1 / 0.698)
    assert energy_bounds("rapl+estimate-tdp", 1.0) == pytest.approx(widest)
    assert energy_bounds("estimate-tdp+rapl", 1.0) == pytest.approx(widest)
    assert energy_bounds("rapl+estimate-gpu-tdp", 1.0) == pytest.approx((0.63, 1.37))
    assert energy_bounds("nvml-energy+constant", 2.0) == (1.9, 2.1)


def test_a_label_without_documented_accuracy_gets_a_factor_of_two() -> None:
    # A custom sensor's own label: never an error at run time, and never called exact.
    assert energy_bounds("my-meter", 1.0) == (0.5, 2.0)
    assert energy_bounds("rapl+my-meter", 1.0) == (0.5, 2.0)


def test_merged_labels_count_as_estimates() -> None:
    assert is_estimate("rapl+estimate-tdp")
    assert is_estimate("estimate-gpu-tdp")
    assert not is_estimate("rapl+nvml-energy")
    m = Measurement(
        start_time=0.0,
        end_time=1.0,
        duration_s=1.0,
        energy_kwh=1.0,
        cpu_energy_kwh=1.0,
        gpu_energy_kwh=None,
        ram_energy_kwh=None,
        emissions_kg=0.1,
        intensity_g_per_kwh=100.0,
        intensity_source="test",
        intensity_year=None,
        pue=1.0,
        cpu_method="rapl+estimate-tdp",
    )
    assert m.estimated

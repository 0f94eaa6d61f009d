"""Unit conversions, in one place. SI inside the package; the unit is in every name."""

from __future__ import annotations

J_PER_KWH = 3_600_000.0
UJ_PER_J = 1_000_000.0
MJ_PER_J = 1_000.0  # millijoules per joule (NVML reports mJ)
MW_PER_W = 1_000.0  # milliwatts per watt (NVML reports mW)
G_PER_KG = 1_000.0
WH_PER_KWH = 1_000.0
BYTES_PER_GB = 1_000_000_000.0


def j_to_kwh(energy_j: float) -> float:
    return energy_j / J_PER_KWH


def kwh_to_j(energy_kwh: float) -> float:
    return energy_kwh * J_PER_KWH


def emissions_kg(energy_kwh: float, intensity_g_per_kwh: float) -> float:
    """kg CO2eq for `energy_kwh` at `intensity_g_per_kwh`."""
    return energy_kwh * intensity_g_per_kwh / G_PER_KG

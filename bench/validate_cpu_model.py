"""Validate the CPU estimate against measured SPECpower_ssj2008 results it was not fitted on.

For each server of ``scripts/cpu_specpower_curves.csv`` marked ``held_out`` (every third by
publication date, chosen before the fit), the estimate is ``chips x cpu_power_w(cpu, load,
threads / chips)`` at the eleven SPECpower load levels (active idle, 10 % ... 100 %), and is
compared with the measured average active power (whole server, at the wall). Printed:

- the mean absolute percentage error of power over all held-out points;
- per server, the ratio of estimated to measured energy of the whole run (the eleven levels
  run 240 s each, so the energy ratio is the ratio of the sums);
- the same with the model string hidden but its microarchitecture known (the per-thread
  figures used for cloud SKUs and VMs), and for the fit rows, for comparison.

Run: ``python bench/validate_cpu_model.py`` (uses the bundled table, no network).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from carbon_callbacks.sensors import cpu_model as model  # noqa: E402
from scripts import cpu_model as data  # noqa: E402


def estimate_w(machine: dict[str, Any], load: float, *, by_family: bool = False) -> float:
    """Estimated power of `machine` (a curve row) at `load`: one package per chip. With
    `by_family`, the TDP table is not used: the microarchitecture's watts per thread."""
    threads = machine["threads"] // machine["chips"]
    if not by_family:
        return machine["chips"] * model.cpu_power_w(machine["cpu"], load, threads)
    table = model.tdp_table()
    family = table.family(machine["cpu"])
    w = family.w_per_thread if family else table.default_w_per_thread
    top = table.load_curve[-1][1]
    return machine["chips"] * w * threads * table.fraction(load) / top


def evaluate(split: str, *, by_family: bool = False) -> tuple[float, list[tuple[str, float]]]:
    """(power MAPE over all points, [(server, energy ratio), ...]) for the rows of `split`."""
    errors, ratios = [], []
    for machine in data.curves(split):
        est = [estimate_w(machine, u, by_family=by_family) for u in data.SPEC_LOADS]
        errors += [abs(e - m) / m for e, m in zip(est, machine["watts"], strict=False)]
        name = f"{machine['system']} ({machine['chips']}x {machine['cpu']}, {machine['published']})"
        ratios.append((name, sum(est) / sum(machine["watts"])))
    return sum(errors) / len(errors), ratios


def energy_ratio_range() -> tuple[float, float]:
    """(lowest, highest) held-out energy ratio with the TDP table, rounded to 3 decimals:
    the figure of `estimate.CPU_ESTIMATE_ENERGY_RATIO`."""
    ratios = [r for _, r in evaluate("held_out")[1]]
    return round(min(ratios), 3), round(max(ratios), 3)


def main() -> int:
    model.reset()
    for split, by_family, title in (
        ("held_out", False, "held-out servers, TDP table"),
        ("held_out", True, "held-out servers, watts per thread of the microarchitecture"),
        ("fit", False, "fit servers, TDP table (in-sample)"),
    ):
        mape, ratios = evaluate(split, by_family=by_family)
        print(f"{title}: power MAPE {100 * mape:.1f} %")
        for name, ratio in ratios:
            print(f"  energy ratio {ratio:.3f}  {name}")
    low, high = energy_ratio_range()
    print(f"CPU_ESTIMATE_ENERGY_RATIO = ({low}, {high})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The CPU estimate's curated inputs and the fit of its load curve.

Read by ``build_cpu`` in ``scripts/build_data.py`` (which writes ``cpu_tdp.json``) and by
``bench/validate_cpu_model.py``. Three files sit beside this one, each row with its source:

- ``cpu_tdp_extra.csv``: package TDPs the upstream tables lack.
- ``cpu_families.csv``: microarchitectures, how a CPU model string names them, and where
  their watts per hardware thread come from (Cloud Carbon Footprint's coefficients, or the
  SPECpower results in ``cpu_specpower_full_load.csv``).
- ``cpu_specpower_curves.csv``: SPECpower_ssj2008 results with all eleven load levels;
  rows marked ``fit`` shape the load curve, rows marked ``held_out`` only validate it.

Everything here is standard library so the build script needs nothing installed.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CURVES_FILE = HERE / "cpu_specpower_curves.csv"
FULL_LOAD_FILE = HERE / "cpu_specpower_full_load.csv"
FAMILIES_FILE = HERE / "cpu_families.csv"
EXTRA_TDP_FILE = HERE / "cpu_tdp_extra.csv"

# SPECpower_ssj2008 runs at active idle, then 10 %, 20 % ... 100 % of the calibrated
# throughput, 240 s each: equal weights for the energy of a run.
SPEC_LOADS = tuple(i / 10 for i in range(11))
LEVEL_COLUMNS = ("w_idle", *(f"w_{p}" for p in range(10, 101, 10)))
# The loads at which the curve is fitted; linear in between. LOO on the fit rows gave the
# same error with 4 knots as with all 11 levels (docs/methodology.md).
CURVE_KNOTS = (0.0, 0.1, 0.5, 1.0)


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def curves(split: str | None = None) -> list[dict[str, Any]]:
    """The SPECpower curves: dicts with ``system``, ``cpu``, ``chips``, ``threads``,
    ``split`` and ``watts`` (11 floats, active idle then 10 % ... 100 %)."""
    out = []
    for row in rows(CURVES_FILE):
        if split is not None and row["split"] != split:
            continue
        out.append(
            {
                "system": row["system"],
                "cpu": row["cpu"],
                "chips": int(row["chips"]),
                "threads": int(row["threads"]),
                "published": row["published"],
                "split": row["split"],
                "watts": [float(row[c]) for c in LEVEL_COLUMNS],
                "url": row["result_url"],
            }
        )
    return out


def interpolate(knots: Sequence[Sequence[float]], load: float) -> float:
    """Piecewise-linear value of `knots` (``[(load, value), ...]``, loads ascending) at
    `load`, held constant outside them."""
    if load <= knots[0][0]:
        return float(knots[0][1])
    for (u0, f0), (u1, f1) in zip(knots, knots[1:], strict=False):
        if load <= u1:
            return float(f0 + (f1 - f0) * (load - u0) / (u1 - u0))
    return float(knots[-1][1])


def _weights(knots: Sequence[float], load: float) -> list[float]:
    """How much each knot's value counts in `interpolate` at `load`."""
    w = [0.0] * len(knots)
    for j in range(len(knots) - 1):
        u0, u1 = knots[j], knots[j + 1]
        if u0 <= load <= u1:
            t = (load - u0) / (u1 - u0)
            w[j], w[j + 1] = 1.0 - t, t
            return w
    w[-1 if load > knots[-1] else 0] = 1.0
    return w


def fit_curve(
    machines: Sequence[tuple[float, Sequence[float]]], knots: Sequence[float] = CURVE_KNOTS
) -> list[list[float]]:
    """Knot values ``f`` minimising the mean absolute percentage error of
    ``scale x f(load)`` against the measured watts of `machines` (``(scale_w, 11 watts at
    SPEC_LOADS)``), by exact coordinate descent: in one knot the error is convex and
    piecewise linear, so its minimum is at one of the points where a term is zero.
    Values are rounded to 3 decimals, so the result is the same on every machine."""
    points = [
        (scale, _weights(knots, u), watts)
        for scale, levels in machines
        for u, watts in zip(SPEC_LOADS, levels, strict=False)
    ]
    values = [0.5] * len(knots)

    def error(vals: Sequence[float]) -> float:
        return sum(
            abs(scale * sum(w * v for w, v in zip(ws, vals, strict=False)) - m) / m
            for scale, ws, m in points
        )

    for _ in range(100):
        before = list(values)
        for j in range(len(knots)):
            candidates = set()
            for scale, ws, m in points:
                if ws[j] > 0:
                    rest = sum(
                        w * v for k, (w, v) in enumerate(zip(ws, values, strict=False)) if k != j
                    )
                    candidates.add(round((m / scale - rest) / ws[j], 3))
            values[j] = min(
                sorted(candidates), key=lambda c: error([*values[:j], c, *values[j + 1 :]])
            )
        if values == before:
            break
    return [[u, v] for u, v in zip(knots, values, strict=False)]


def mean_w_per_thread(family: str) -> tuple[float, int]:
    """Mean full-load watts per hardware thread over the SPECpower results of `family` in
    ``cpu_specpower_full_load.csv``, and how many there are."""
    per_thread = [
        float(r["w_100"]) / int(r["threads"]) for r in rows(FULL_LOAD_FILE) if r["family"] == family
    ]
    if not per_thread:
        raise ValueError(f"no SPECpower rows for family {family!r}")
    return sum(per_thread) / len(per_thread), len(per_thread)

"""The CPU estimate model: a package's full-load watts, and a load curve fitted to measurements.

``P(load) = full_load_w x f(load) / f(1)``, where ``f`` is piecewise linear through the knots
of ``cpu_tdp.json``'s ``load_curve`` (fitted to SPECpower_ssj2008 results by
``scripts/build_data.py``: see docs/methodology.md) and ``full_load_w`` is, in this order:

1. ``TDP x f(1)`` when the bundled table has the model (matched on the vendor and the whole
   model name, `cpu_key`);
2. else ``watts per thread x logical CPUs`` for the microarchitecture the model string
   names (`TdpTable.family`: Cloud Carbon Footprint's SPECpower coefficients, or SPECpower
   results for the families it lacks);
3. else ``default_w_per_thread`` (6 W, Green Algorithms) per logical CPU.

In a virtual machine the logical CPUs are vCPUs of a host package whose size cannot be seen,
so case 1 is capped at the per-thread figure of case 2 or 3.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from carbon_callbacks.data import DATA_DIR, read_json

logger = logging.getLogger(__name__)

TDP_TABLE_FILE = "cpu_tdp.json"
_REMOVE = re.compile(r"\((?:r|tm|c)\)|®|™|@\s*[\d.]+\s*[gm]hz|\b[\d.]+\s*[gm]hz\b")
_SEPARATORS = re.compile(r"[^a-z0-9]+")
_FILLER = frozenset({"cpu", "processor"})
# Words around the model name that say nothing of the part: "13th Gen Intel ...",
# "... 64-Core Processor", "... with Radeon Graphics", "... APU".
_PREFIX = re.compile(r"^\d+(?:st|nd|rd|th) gen ")
_SUFFIX = re.compile(
    r" (?:\d+ cores?|with radeon.*|w radeon.*|radeon (?:r\d|vega).*|\d+ compute cores.*|apu)$"
)
# Intel's first Core i mobile parts report "Core(TM) i5 CPU M 460"; ARK names it "i5-460M".
_OLD_MOBILE = re.compile(r"^(intel core i[3579]) ([mu]) (\d{3})$")


def normalise_cpu_name(name: str) -> str:
    """Lower-case alphanumeric tokens joined by single spaces, without vendor marks
    ("(R)", "(TM)"), clock speeds ("@ 2.50GHz") and the words "CPU" and "Processor".

    >>> normalise_cpu_name("Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz")
    'intel xeon gold 6248'
    """
    text = name.lower()
    if "(" in text or "hz" in text or "®" in text or "™" in text:  # the regex is the slow part
        text = _REMOVE.sub(" ", text)
    text = _SEPARATORS.sub(" ", text).strip()
    if "cpu" in text or "processor" in text:
        text = " ".join(t for t in text.split(" ") if t not in _FILLER)
    return text


def cpu_key(name: str) -> str:
    """The name a CPU is matched on: `normalise_cpu_name` without generation prefixes and
    core-count or graphics suffixes. A table row matches a model only when their keys are
    equal: the vendor and the whole model name.

    >>> cpu_key("AMD EPYC 7742 64-Core Processor")
    'amd epyc 7742'
    >>> cpu_key("Intel(R) Core(TM) i5 CPU       M 460  @ 2.53GHz")
    'intel core i5 460m'
    """
    text = _PREFIX.sub("", normalise_cpu_name(name))
    while True:
        shorter = _SUFFIX.sub("", text)
        if shorter == text:
            break
        text = shorter
    return _OLD_MOBILE.sub(r"\1 \3\2", text)


class Family(NamedTuple):
    """A microarchitecture: its name, full-load watts per hardware thread and their basis."""

    name: str
    w_per_thread: float
    basis: str


class TdpTable:
    """CPU model -> TDP (W) table, the load curve and the per-thread figures.

    Matching rule: a row matches only when its `cpu_key` equals the model's, so "Apple M1"
    does not match "Apple M1 Max" and "Xeon Gold 6248" does not match "Gold 6248R".

    Args:
        cpus: ``(name, tdp_w)`` pairs (TDP in watts per CPU package), or the bundled
            ``key<TAB>name<TAB>tdp_w`` lines.
        default_w_per_thread: full-load watts per logical CPU when nothing is known.
        load_curve: ``[(load, fraction of TDP), ...]``, loads ascending from 0 to 1.
        families: ``{"family", "pattern", "w_per_thread", "basis"}`` dicts; the pattern is a
            regular expression searched in `cpu_key` of the model.

    Raises:
        ValueError: a load curve that does not start at load 0, end at load 1 and rise.
    """

    def __init__(
        self,
        cpus: Iterable[tuple[str, float]] | str,
        default_w_per_thread: float,
        load_curve: Sequence[Sequence[float]],
        families: Iterable[dict[str, Any]] = (),
    ) -> None:
        knots = [(float(u), float(f)) for u, f in load_curve]
        loads = [u for u, _ in knots]
        if len(knots) < 2 or loads[0] != 0.0 or loads[-1] != 1.0 or loads != sorted(set(loads)):
            raise ValueError(f"load_curve must rise from load 0 to load 1, got {load_curve!r}")
        if any(f <= 0 or not math.isfinite(f) for _, f in knots):
            raise ValueError(f"load_curve values must be finite and > 0, got {load_curve!r}")
        self.default_w_per_thread = float(default_w_per_thread)
        self.load_curve = knots
        self.families = [
            (re.compile(f["pattern"]), Family(f["family"], float(f["w_per_thread"]), f["basis"]))
            for f in families
        ]
        if isinstance(cpus, str):
            self._text = cpus
        else:
            self._text = "".join(f"{cpu_key(n)}\t{n}\t{w}\n" for n, w in cpus)
        self._cache: dict[str, tuple[str, float] | None] = {}

    @classmethod
    def from_json(cls, obj: Any, rows_text: str | None = None) -> TdpTable:
        """From ``cpu_tdp.json`` and its rows: `rows_text` (the ``rows_file`` TSV), or
        ``obj["cpus"]`` (``[[name, tdp_w], ...]``)."""
        rows = rows_text if rows_text is not None else [(str(n), float(w)) for n, w in obj["cpus"]]
        return cls(
            rows, float(obj["default_w_per_thread"]), obj["load_curve"], obj.get("families", ())
        )

    def lookup(self, cpu_model: str) -> tuple[str, float] | None:
        """The matching ``(table name, tdp_w)``, or None when the model is unknown."""
        if cpu_model in self._cache:
            return self._cache[cpu_model]
        key = cpu_key(cpu_model)
        found = None
        if key:  # one scan of the text in C: no row is parsed but the match
            m = re.search(rf"^{re.escape(key)}\t([^\t\n]*)\t([^\t\n]+)$", self._text, re.M)
            found = (m.group(1), float(m.group(2))) if m else None
        self._cache[cpu_model] = found
        return found

    def family(self, cpu_model: str) -> Family | None:
        """The microarchitecture `cpu_model` names, or None."""
        name = cpu_key(cpu_model)
        for pattern, family in self.families:
            if pattern.search(name):
                return family
        return None

    def fraction(self, load: float) -> float:
        """The load curve at `load` in [0, 1]: the fraction of TDP drawn."""
        knots = self.load_curve
        for (u0, f0), (u1, f1) in zip(knots, knots[1:], strict=False):
            if load <= u1:
                return f0 + (f1 - f0) * (load - u0) / (u1 - u0)
        return knots[-1][1]


def tdp_table() -> TdpTable:
    """The bundled table (``carbon_callbacks/data/cpu_tdp.json``), parsed anew.

    Not kept: a process needs one row of it. `cpu_basis` keeps what it looked up.
    """
    meta = read_json(TDP_TABLE_FILE)
    if "rows_file" not in meta:  # an inline table (tests)
        return TdpTable.from_json(meta)
    with open(os.path.join(DATA_DIR, meta["rows_file"]), encoding="utf-8") as f:
        return TdpTable.from_json(meta, f.read())


class CpuBasis(NamedTuple):
    """What one package's estimate rests on.

    Attributes:
        full_load_w: the package's watts at load 1.
        tdp_w: the table's TDP in watts, or None when the model is not in it.
        table_name: the matching table row, or None.
        w_per_thread: the per-thread full-load watts that apply (family or default).
        per_thread_basis: where `w_per_thread` comes from, in words.
        capped: a virtual machine's package charged per vCPU, below its TDP.
    """

    full_load_w: float
    tdp_w: float | None
    table_name: str | None
    w_per_thread: float
    per_thread_basis: str
    capped: bool


_BASES: dict[tuple[str, int, bool], CpuBasis] = {}
_CURVE: list[TdpTable] = []  # the table whose load curve is used, once read


def reset() -> None:
    """Forget the table's lookups and curve (tests)."""
    _BASES.clear()
    _CURVE.clear()


def _table() -> TdpTable:
    if not _CURVE:
        _CURVE.append(tdp_table())
    return _CURVE[0]


def cpu_basis(cpu_model: str, logical_cpus: int, *, virtual_machine: bool = False) -> CpuBasis:
    """One package's full-load watts and their basis (see the module docstring).

    Raises:
        ValueError: `logical_cpus` is not an int >= 1.
    """
    if isinstance(logical_cpus, bool) or not isinstance(logical_cpus, int) or logical_cpus < 1:
        raise ValueError(f"logical_cpus must be an int >= 1, got {logical_cpus!r}")
    key = (cpu_model, logical_cpus, virtual_machine)
    if key in _BASES:
        return _BASES[key]
    table = _table()
    match = table.lookup(cpu_model)
    family = table.family(cpu_model)
    if family is not None:
        w, how = family.w_per_thread, f"{family.name}: {family.basis}"
    else:
        w, how = table.default_w_per_thread, "microarchitecture unknown: the default"
    per_thread_w = w * logical_cpus
    top = table.load_curve[-1][1]
    if match is None:
        basis = CpuBasis(per_thread_w, None, None, w, how, False)
    else:
        tdp_full_w = match[1] * top
        capped = virtual_machine and per_thread_w < tdp_full_w
        full = per_thread_w if capped else tdp_full_w
        basis = CpuBasis(full, match[1], match[0], w, how, capped)
    _BASES[key] = basis
    return basis


def cpu_power_w(
    cpu_model: str, load: float, logical_cpus: int, *, virtual_machine: bool = False
) -> float:
    """Estimated power in watts of one CPU package at `load`.

    Model: ``P = full_load_w x f(load) / f(1)`` with ``f`` the piecewise-linear load curve
    of ``cpu_tdp.json`` (fraction of TDP drawn at each load), fitted to SPECpower_ssj2008
    results (whole-server AC power at 11 load levels) by ``scripts/build_data.py``; the
    full-load watts are the TDP x f(1) from the bundled table (matched on vendor and whole
    model name), else the microarchitecture's or the default watts per thread x
    `logical_cpus` (`cpu_basis`). docs/methodology.md gives the fit and its held-out error.

    Args:
        cpu_model: the CPU model string (e.g. from ``/proc/cpuinfo``); "" when unknown.
        load: busy fraction of all logical CPUs, clamped to [0, 1].
        logical_cpus: logical CPUs (hardware threads) of this package, >= 1.
        virtual_machine: the CPUs are a virtual machine's vCPUs.

    Raises:
        ValueError: `logical_cpus` is not an int >= 1, or `load` is NaN.

    Example:
        >>> gold = "Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz"
        >>> cpu_power_w(gold, 1.0, 40)  # 150 W TDP x f(1)  # doctest: +SKIP
        158.1
        >>> cpu_power_w("AMD EPYC 7R32", 1.0, 8, virtual_machine=True)  # doctest: +SKIP
        13.2
    """
    if math.isnan(load):
        raise ValueError("load must be a number in [0, 1], got nan")
    basis = cpu_basis(cpu_model, logical_cpus, virtual_machine=virtual_machine)
    table = _table()
    load = min(max(load, 0.0), 1.0)
    return basis.full_load_w * table.fraction(load) / table.load_curve[-1][1]

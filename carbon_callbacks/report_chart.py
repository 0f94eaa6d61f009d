"""The outputs of ``carbon-callbacks report --experiment``: its table, chart and HTML page.

Quantities are in units a person reads (`carbon_callbacks.humanize`). matplotlib is imported
only when a chart is drawn.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from typing import TYPE_CHECKING

from carbon_callbacks import humanize
from carbon_callbacks._version import __version__
from carbon_callbacks.outputs import short_source

if TYPE_CHECKING:
    from carbon_callbacks.report import RunRow

HEADER = ("run", "duration", "energy", "CO2eq", "CO2eq/epoch", "epochs", "g/kWh", "basis",
          "source", "estimated")  # fmt: skip


def table_cells(rows: Sequence[RunRow]) -> list[tuple[str, ...]]:
    """The table, header first, every cell a string (quantities in units a person reads)."""
    cells: list[tuple[str, ...]] = [HEADER]
    for r in rows:
        cells.append(
            (
                r.name,
                "?" if r.duration_s is None else humanize.duration(r.duration_s),
                humanize.energy(r.energy_kwh),
                humanize.mass(r.emissions_kg),
                "?" if r.kg_per_epoch is None else humanize.mass(r.kg_per_epoch),
                str(r.epochs),
                "?" if r.intensity_g_per_kwh is None else humanize.number(r.intensity_g_per_kwh, 4),
                r.intensity_basis,
                short_source(r.intensity_source),
                r.estimated,
            )
        )
    return cells


def format_table(rows: Sequence[RunRow]) -> str:
    cells = table_cells(rows)
    widths = [max(len(row[i]) for row in cells) for i in range(len(HEADER))]
    numeric = {1, 2, 3, 4, 5, 6}
    return "\n".join(
        "  ".join(
            c.rjust(w) if i in numeric else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in cells
    )


def render_png(rows: Sequence[RunRow], title: str) -> bytes:
    """A PNG: total emissions per run (bars) and energy per epoch (one line per run)."""
    import io

    from matplotlib.figure import Figure  # no pyplot: no global backend, no GUI
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(11, 0.9 + max(3.6, 0.32 * len(rows))), dpi=110, layout="constrained")
    bars, lines = fig.subplots(1, 2, width_ratios=(1, 1.2))
    colors = [f"C{i % 10}" for i in range(len(rows))]
    names = [r.name if len(r.name) <= 32 else r.name[:31] + "…" for r in rows]
    y = list(range(len(rows)))
    # One unit a person reads per axis, chosen by the largest value (no "1e-5" corner label).
    mass_unit, kg = humanize.pick_unit(max(r.emissions_kg for r in rows), humanize.MASS_KG)
    bars.barh(y, [r.emissions_kg / kg for r in rows], color=colors)
    bars.ticklabel_format(axis="x", style="plain", useOffset=False)
    bars.set_yticks(y, names)
    bars.invert_yaxis()  # lowest emissions on top, as in the table
    bars.set_xlabel(f"{mass_unit} CO2eq (run total)")
    bars.set_title("Emissions per run")
    largest = max((v for r in rows for _, v in r.epoch_energy_kwh), default=0.0)
    energy_unit, kwh = humanize.pick_unit(largest, humanize.ENERGY_KWH)
    for r, name, color in zip(rows, names, colors, strict=True):
        if r.epoch_energy_kwh:
            steps, values = zip(*r.epoch_energy_kwh, strict=True)
            lines.plot(steps, [v / kwh for v in values], marker="o", color=color, label=name)
    lines.ticklabel_format(axis="y", style="plain", useOffset=False)
    lines.xaxis.set_major_locator(MaxNLocator(integer=True))
    lines.set_xlabel("epoch")
    lines.set_ylabel(f"{energy_unit} per epoch")
    lines.set_title("Energy per epoch")
    lines.grid(alpha=0.3)
    if any(r.epoch_energy_kwh for r in rows) and len(rows) <= 12:
        lines.legend(fontsize="small")
    fig.suptitle(title)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def render_html(rows: Sequence[RunRow], title: str, png: bytes, about: str) -> str:
    """A self-contained page: the table and the chart (PNG inlined as base64)."""
    cells = table_cells(rows)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cells[0])
    body = "\n".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in cells[1:]
    )
    image = base64.b64encode(png).decode("ascii")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}
table{{border-collapse:collapse}}td,th{{padding:.3em .8em;border-bottom:1px solid #ddd;
text-align:left}}th{{background:#f4f4f4}}img{{max-width:100%}}p.note{{color:#555}}</style>
</head><body>
<h1>{html.escape(title)}</h1>
<p class="note">{html.escape(about)}</p>
<table><thead><tr>{head}</tr></thead><tbody>
{body}
</tbody></table>
<p><img alt="Emissions per run and energy per epoch" src="data:image/png;base64,{image}"></p>
<p class="note">CO2eq = energy (PUE included) x the run's carbon intensity; CO2eq/epoch is
the mean of <code>carbon/epoch_emissions_kg</code>. "estimated" lists the components whose
energy is an estimate (TDP model, RAM model or constant watts), not a measurement.
Generated by carbon-callbacks {html.escape(__version__)}.</p>
</body></html>
"""

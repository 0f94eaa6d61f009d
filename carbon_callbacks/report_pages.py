"""The organisation view in words: the text of ``report --all-experiments`` and its HTML page.

Both are made from the same sections (groups, months, top runs) and notes, with every
quantity in units a person reads (`carbon_callbacks.humanize`); ``--json`` keeps kWh and kg.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from carbon_callbacks import humanize
from carbon_callbacks._version import __version__
from carbon_callbacks.report_all import Group, OrgRun, group_runs, summarize, top_runs

BAR_WIDTH = 24  # characters of the longest bar in the text


@dataclass(frozen=True)
class Section:
    """One table: a title, rows of cells (header first), right-aligned columns, bar sizes."""

    title: str
    cells: list[tuple[str, ...]]
    right: frozenset[int]
    bars: tuple[float, ...] = ()  # one per row after the header, in [0, 1]


def sections(runs: Sequence[OrgRun], by: str, top: int) -> list[Section]:
    """The groups (with an ``all`` row), the trend per month and the top runs."""
    total = summarize(None, runs)
    label = f"tag {by[4:]}" if by.startswith("tag:") else by
    header = (label, "runs", "energy", "CO2eq", "CO2eq low-high", "estimated", "could save",
              "greener region")  # fmt: skip
    groups = group_runs(runs, by)
    rows = [_group_row(g, _key(g.key, by)) for g in groups] + [_group_row(total, "all")]
    out = [Section(f"By {label}", [header, *rows], frozenset(range(1, 7)))]
    months = group_runs(runs, "month")
    largest = max((g.emissions_kg for g in months), default=0.0)
    out.append(
        Section(
            "CO2eq per month",
            [("month", "runs", "energy", "CO2eq")]
            + [_group_row(g, _key(g.key, "month"))[:4] for g in months],
            frozenset({1, 2, 3}),
            tuple(g.emissions_kg / largest if largest else 0.0 for g in months),
        )
    )
    top_header = ("#", "CO2eq", "CO2eq low-high", "energy", "experiment", "run", "user",
                  "month", "estimated")  # fmt: skip
    rows = [
        (
            str(i),
            humanize.mass(r.emissions_kg),
            _span(r.emissions_kg_low, r.emissions_kg_high) if r.has_range else "no range",
            humanize.energy(r.energy_kwh),
            r.experiment,
            r.name,
            r.user or "-",
            r.month or "-",
            "?" if r.estimated is None else "yes" if r.estimated else "no",
        )
        for i, r in enumerate(top_runs(runs, top), 1)
    ]
    out.append(
        Section(f"Top {len(rows)} runs by CO2eq", [top_header, *rows], frozenset({0, 1, 2, 3}))
    )
    return out


def notes(runs: Sequence[OrgRun]) -> list[str]:
    """What a reader must know to trust the sums: ranges, estimates, advice, mixed bases."""
    total = summarize(None, runs)
    lines = [
        f"estimated: the share of CO2eq from runs with an estimated component (tag "
        f"carbon.estimated): {humanize.percent(total.estimated_emissions_kg, total.emissions_kg)}"
        f" ({total.estimated_runs:,} of {total.runs:,} runs)"
        + (f"; {total.unlabelled_runs:,} run(s) do not say" if total.unlabelled_runs else "")
        + ".",
        "could save: the CO2eq that moving each run to the region of its carbon.greener_region "
        "tag would have saved (its energy at that region's intensity): "
        f"{humanize.emissions(total.saving_kg)}, "
        f"{humanize.percent(total.saving_kg, total.emissions_kg)}"
        + (
            f"; {total.runs_without_advice:,} run(s) have no such tag (or a region unknown here)"
            if total.runs_without_advice
            else ""
        )
        + ".",
    ]
    if total.runs_without_range:
        lines.append(
            f"low-high: {total.runs_without_range:,} run(s) have no carbon/*_low and _high "
            "metrics; their range counts as their value."
        )
    bases = Counter(r.tags.get("carbon.intensity_basis", "not tagged") for r in runs)
    if len(bases) > 1:
        listed = ", ".join(f"{basis} {n:,}" for basis, n in sorted(bases.items()))
        lines.append(
            f"intensity basis (runs): {listed}. Sums mix bases: a direct figure is lower "
            "than a life-cycle one for the same grid."
        )
    return lines


def render_text(runs: Sequence[OrgRun], by: str, top: int, title: str) -> str:
    """The report as plain text: the title, each section as aligned columns, the notes."""
    lines = [title]
    for s in sections(runs, by, top):
        widths = [max(len(row[i]) for row in s.cells) for i in range(len(s.cells[0]))]
        lines += ["", f"{s.title}:"]
        for n, row in enumerate(s.cells):
            text = "  ".join(
                c.rjust(w) if i in s.right else c.ljust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
            if s.bars and n:
                text += "  " + "#" * round(s.bars[n - 1] * BAR_WIDTH)
            lines.append(text.rstrip())
    lines.append("")
    lines += notes(runs)
    return "\n".join(lines)


def render_html(runs: Sequence[OrgRun], by: str, top: int, title: str, about: str) -> str:
    """A self-contained page (no script, nothing fetched): the same sections and notes."""
    parts = []
    for s in sections(runs, by, top):
        head = "".join(f"<th>{html.escape(c)}</th>" for c in s.cells[0])
        body = []
        for n, row in enumerate(s.cells[1:]):
            cells = "".join(
                f"<td{' class=num' if i in s.right else ''}>{html.escape(c)}</td>"
                for i, c in enumerate(row)
            )
            if s.bars:
                cells += f'<td><div class="bar" style="width:{s.bars[n] * 20:.2f}em"></div></td>'
            body.append(f"<tr>{cells}</tr>")
        extra = "<th></th>" if s.bars else ""
        parts.append(
            f"<h2>{html.escape(s.title)}</h2>\n<table><thead><tr>{head}{extra}</tr></thead>"
            f"<tbody>\n" + "\n".join(body) + "\n</tbody></table>"
        )
    listed = "".join(f"<li>{html.escape(line)}</li>" for line in notes(runs))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}
table{{border-collapse:collapse}}td,th{{padding:.3em .8em;border-bottom:1px solid #ddd;
text-align:left}}th{{background:#f4f4f4}}td.num{{text-align:right}}
.bar{{height:.9em;background:#2e7d32}}p.note,li{{color:#555}}</style>
</head><body>
<h1>{html.escape(title)}</h1>
<p class="note">{html.escape(about)}</p>
{chr(10).join(parts)}
<h2>Notes</h2>
<ul>{listed}</ul>
<p class="note">Energy and CO2eq are the last values of <code>carbon/energy_kwh</code> and
<code>carbon/emissions_kg</code> of each run (its totals), summed. Generated by
carbon-callbacks {html.escape(__version__)}.</p>
</body></html>
"""


def _group_row(g: Group, key: str) -> tuple[str, ...]:
    if g.saving_kg > 0:
        save = f"{humanize.mass(g.saving_kg)} ({humanize.percent(g.saving_kg, g.emissions_kg)})"
    else:
        save = "-" if g.runs_without_advice == g.runs else humanize.mass(0.0)
    return (
        key,
        f"{g.runs:,}",
        humanize.energy(g.energy_kwh),
        humanize.mass(g.emissions_kg),
        "no range"
        if g.runs_without_range == g.runs
        else _span(g.emissions_kg_low, g.emissions_kg_high),
        humanize.percent(g.estimated_emissions_kg, g.emissions_kg),
        save,
        g.greener_region or "-",
    )


def _key(key: str | None, by: str) -> str:
    if key is not None:
        return key
    return "(no user)" if by == "user" else "(no start time)" if by == "month" else "(no tag)"


def _span(low: float | None, high: float | None) -> str:
    """``"410-500 g"``: both ends in the unit of the higher one."""
    assert low is not None and high is not None
    unit, size = humanize.pick_unit(abs(high), humanize.MASS_KG)
    return f"{humanize.number(low / size, 3)}-{humanize.number(high / size, 3)} {unit}"

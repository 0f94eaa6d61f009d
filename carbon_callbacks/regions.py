"""Cloud regions ranked by carbon intensity, and the greener-region advice of a run.

The intensities are those of the bundled tables (see `carbon_callbacks.intensity`), which do
not share one basis: a GCP region carries Google's own figure for its grid ("average
operational gross emissions", a *direct* basis), while an AWS or Azure region carries the
*life-cycle* value of its state or country (a Chinese province's is *co2-only*). Direct
figures are lower than life-cycle ones for the same grid, so every row and every alternative
says its basis and source. Within one basis, a state's value and a country's come from
different series (Ember's US state data total 345.6 g/kWh for 2024 where its national value
is 383.6): advice that crosses series says so too.

Example:
    >>> [r.intensity.location for r in rank_regions("aws", near="FR", top=2)]
    ['aws:eu-north-1', 'aws:eu-central-2']
"""

from __future__ import annotations

import argparse
import functools
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import NoReturn

from carbon_callbacks import humanize
from carbon_callbacks.intensity import (
    CloudRegion,
    Intensity,
    _tables,
    cloud_regions,
    normalize_cloud,
)
from carbon_callbacks.intensity._suggest import close_matches
from carbon_callbacks.intensity.locations import maybe_country, normalize_region
from carbon_callbacks.measurement import Measurement
from carbon_callbacks.units import emissions_kg

# Areas for `near`: the UN M49 geographic regions (https://unstats.un.org/unsd/methodology/m49/)
# by ISO 3166-1 alpha-2 code, with the Americas split into M49's "Northern America" and "Latin
# America and the Caribbean", and M49's "Western Asia" kept apart from the rest of Asia (the
# Gulf and Levant regions are far from Tokyo or Mumbai). Not in M49, placed by hand: TW
# (Eastern Asia), XK (Southern Europe). Antarctica (AQ) belongs to no area.
_AREA_CODES = {
    "africa": "DZ EG LY MA SD TN EH IO BI KM DJ ER ET TF KE MG MW MU YT MZ RE RW SC SO SS UG TZ"
    " ZM ZW AO CM CF TD CG CD GQ GA ST BW SZ LS NA ZA BJ BF CV CI GM GH GN GW LR ML MR NE NG SH"
    " SN SL TG",
    "northern-america": "BM CA GL PM US",
    "latin-america": "AI AG AW BS BB BQ VG KY CU CW DM DO GD GP HT JM MQ MS PR BL KN LC MF VC SX"
    " TT TC VI BZ CR SV GT HN MX NI PA AR BO BV BR CL CO EC FK GF GY PY PE GS SR UY VE",
    "europe": "BY BG CZ HU PL MD RO RU SK UA AX DK EE FO FI GG IS IE IM JE LV LT NO SJ SE GB AL"
    " AD BA HR GI GR VA IT MT ME MK PT SM RS SI ES XK AT BE FR DE LI LU MC NL CH",
    "western-asia": "AM AZ BH CY GE IQ IL JO KW LB OM QA SA PS SY TR AE YE",
    "asia": "KZ KG TJ TM UZ CN HK MO KP JP MN KR TW BN KH ID LA MY MM PH SG TH TL VN AF BD BT IN"
    " IR MV NP PK LK",
    "oceania": "AU NZ NF HM CX CC FJ NC PG SB VU GU KI MH FM NR MP PW UM AS CK PF NU PN WS TK TO"
    " TV WF",
}
AREAS: dict[str, str] = {
    code: area for area, codes in _AREA_CODES.items() for code in codes.split()
}
_NEAR_EXAMPLES = "'aws:eu-west-3', 'FR', 'France', 'US-CA' or an area (" + ", ".join(_AREA_CODES)
_BASIS_NOTES = {
    "direct": "direct = the provider's figure for its grid, combustion only (Google)",
    "life-cycle": "life-cycle = generation incl. upstream emissions, all gases as CO2e",
    "co2-only": "co2-only = combustion CO2 only, no other gases: g CO2, not CO2e (China MEE)",
}
# "Ember/OWID 2025 (country NO, for azure:norwayeast)" -> source, level of the data.
_DERIVED = re.compile(r"^(?P<source>.*) \((?P<level>(?:country|region) [A-Z0-9-]+), for [^)]*\)$")


@dataclass(frozen=True)
class Alternative:
    """The same run (same energy, PUE included) in another cloud region.

    Args:
        region: ``provider:region`` id, e.g. ``"gcp:europe-north1"``.
        location: the provider's name for the place, e.g. ``"Hamina"``.
        g_per_kwh: the region's carbon intensity (g CO2eq per kWh; g CO2 when co2-only).
        emissions_kg: the run's energy at that intensity, in kg CO2eq (kg CO2 when co2-only).
        change_pct: change against the run's own emissions, in % (negative = less).
        basis: ``"direct"``, ``"life-cycle"`` or ``"co2-only"`` (see the module docstring).
        source: where the intensity comes from (without its caveat); year: the year it
            describes.
        note: ``None`` when the region's figure and the run's are like with like (one basis,
            one series); else what differs, e.g. ``"direct figure (Google region-carbon-info
            2024) vs the user-given intensity of this run"``.
    """

    region: str
    location: str
    g_per_kwh: float
    emissions_kg: float
    change_pct: float
    basis: str
    source: str
    year: int | None
    note: str | None = None


def area_of(near: str) -> str:
    """The M49-based area (``"europe"``, ``"asia"``…) of a cloud region, country, region or area.

    Args:
        near: a cloud region id (``"aws:eu-west-3"``), an ISO 3166-1 code or English name
            (``"FR"``, ``"FRA"``, ``"France"``), an ISO 3166-2 region (``"US-CA"``), or an
            area name itself (``"europe"``).

    Raises:
        ValueError: none of those; the message gives close matches.
    """
    if not isinstance(near, str) or not near.strip():
        raise ValueError(f"near must be a non-empty string such as {_NEAR_EXAMPLES}), got {near!r}")
    text = near.strip()
    key = text.casefold().replace(" ", "-").replace("_", "-")
    if key in _AREA_CODES:
        return key
    if ":" in text:
        try:
            country: str | None = cloud_regions_by_id()[normalize_cloud(text)].country
        except ValueError as exc:
            raise ValueError(f"near={near!r}: {exc}") from None
    else:
        country = maybe_country(text)
        if country is None and "-" in text:
            country = _region_country(text)
    if country is None:
        choices = {c.partition(":")[2]: c for c in cloud_regions_by_id()}
        choices.update({area: area for area in _AREA_CODES})
        rows = _tables.countries().rows
        choices.update(
            {k: f"{v} ({rows[v]['name']})" for k, v in _tables.countries().labels.items()}
        )
        matches = close_matches(text, choices, n=4)
        hint = f"; close matches: {', '.join(matches)}" if matches else ""
        raise ValueError(f"unknown near={near!r}: expected {_NEAR_EXAMPLES}){hint}")
    if country not in AREAS:
        raise ValueError(f"near={near!r} ({country}) is in no area; give a country or area")
    return AREAS[country]


def cloud_regions_by_id() -> dict[str, CloudRegion]:
    """Every bundled cloud region by ``provider:region`` id."""
    return {f"{r.provider}:{r.region}": r for r in cloud_regions()}


def rank_regions(
    provider: str | None = None, near: str | None = None, top: int | None = None
) -> list[CloudRegion]:
    """Cloud regions sorted by carbon intensity, lowest first (ties by id).

    Args:
        provider: ``"aws"``, ``"gcp"`` (or ``"google"``), ``"azure"``; ``None`` for all.
        near: keep only the regions in the same area as this place (see `area_of`).
        top: keep the first `top` regions (an int >= 1); ``None`` keeps all.

    Raises:
        ValueError: an unknown provider or place, or a bad `top`; the message says what is
            accepted.

    Example:
        >>> rank_regions("gcp", top=1)[0].region
        'europe-north2'
    """
    if top is not None and (isinstance(top, bool) or not isinstance(top, int) or top < 1):
        raise ValueError(f"top must be a whole number >= 1, got {top!r}")
    regions = cloud_regions(provider)
    if near is not None:
        area = area_of(near)
        regions = [r for r in regions if AREAS.get(r.country) == area]
    regions.sort(key=lambda r: (r.intensity.g_per_kwh, r.provider, r.region))
    return regions if top is None else regions[:top]


def greener_alternatives(
    totals: Measurement, intensity: Intensity, n: int = 3, near: str | None = None
) -> list[Alternative]:
    """Up to `n` cloud regions where the same run would have emitted less, lowest first.

    When the run's intensity is a cloud region (``intensity.cloud``), the candidates are that
    provider's other regions; otherwise every bundled region. Only regions with a strictly
    lower intensity than the run's are returned, so an empty list means the run was already
    in the lowest one. The energy stays the run's (its PUE included): only the grid changes.
    Regions whose figure has another basis than the run's (Google's direct figures against a
    life-cycle country value) are left out, unless the run's intensity was given by the user;
    then, and where the region's figure is of another series than the run's (a state's value
    against a country's), the alternative's ``note`` says so.

    Args:
        totals: the run's totals (only ``energy_kwh`` is used).
        intensity: the intensity the run used (`Tracker.intensity`).
        n: at most this many alternatives (>= 1).
        near: only regions in the same area as this place (see `area_of`), e.g. the run's
            own ``intensity.cloud`` for advice that keeps the data on its continent.

    Raises:
        ValueError: `n` < 1, or a bad `near`.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a whole number >= 1, got {n!r}")
    provider = intensity.cloud.partition(":")[0] if intensity.cloud else None
    found: list[Alternative] = []
    for r in rank_regions(provider, near):
        key = f"{r.provider}:{r.region}"
        g = r.intensity.g_per_kwh
        if key == intensity.cloud or g >= intensity.g_per_kwh:
            continue
        if intensity.basis in _BASIS_NOTES and r.intensity.basis != intensity.basis:
            continue  # a direct figure looks far lower than a life-cycle one: not comparable
        source, _, _ = _provenance(r.intensity)
        found.append(
            Alternative(
                region=key,
                location=r.location,
                g_per_kwh=g,
                emissions_kg=emissions_kg_at(totals.energy_kwh, r),
                # The ratio of intensities is the ratio of emissions, even for a zero-energy run.
                change_pct=(g / intensity.g_per_kwh - 1.0) * 100.0,
                basis=r.intensity.basis,
                source=source,
                year=r.intensity.year,
                note=_difference(r.intensity, intensity),
            )
        )
        if len(found) == n:
            break
    return found


def advice_line(totals: Measurement, intensity: Intensity) -> str | None:
    """One line of advice for the end-of-training summary, or None in the best region already.

    Example: ``"the same run in gcp:europe-north1 would have emitted about 1.2 g CO2eq
    (-93 %)"``, followed by the alternative's `note` in brackets when it has one.
    """
    found = greener_alternatives(totals, intensity, n=1)
    if not found:
        return None
    best = found[0]
    unit = humanize.emissions_unit(best.basis)
    line = (
        f"the same run in {best.region} would have emitted about "
        f"{humanize.emissions(best.emissions_kg, 2, unit)} ({best.change_pct:+.0f} %)"
    )
    return line if best.note is None else f"{line} [{best.note}]"


def greener_region_tag(totals: Measurement, intensity: Intensity) -> str:
    """The value of the tag ``carbon.greener_region``: ``"gcp:europe-north1 (-93 %)"``, or
    ``"gcp:europe-north2 (-99 %, direct figure)"`` when the region's basis is not the run's
    (a user-given intensity).

    ``"none"`` when the run is already in the lowest region it is compared with.
    """
    found = greener_alternatives(totals, intensity, n=1)
    if not found:
        return "none"
    best = found[0]
    basis = "" if best.basis == intensity.basis else f", {best.basis} figure"
    return f"{best.region} ({best.change_pct:+.0f} %{basis})"


def saving_from_tag(tag: str, energy_kwh: float, emissions_kg: float) -> tuple[str, float] | None:
    """What a run would have saved in the region of its ``carbon.greener_region`` tag.

    The reverse of `greener_region_tag`, for runs read back from a tracking server: the
    region's emissions are those of `Alternative` (the run's energy, PUE included, at the
    region's bundled intensity), and the saving is the run's emissions minus them.

    Args:
        tag: the tag's value, ``"gcp:europe-north1 (-93 %)"`` or ``"none"``.
        energy_kwh: the run's energy, in kWh.
        emissions_kg: the run's emissions, in kg CO2eq.

    Returns:
        (region, kg CO2eq saved, >= 0); ``("none", 0.0)`` for a run already in the lowest
        region; ``None`` when the tag names no region of this version's table.

    Example:
        >>> saving_from_tag("gcp:europe-north2 (-99 %)", 1.0, 0.4)  # 1 kWh there: 2.73 g
        ('gcp:europe-north2', 0.39727)
    """
    region = tag.partition(" ")[0]
    if region == "none":
        return ("none", 0.0)
    found = _regions_by_id().get(region)
    if found is None:
        return None
    # Never below zero: a newer table may rank the region above the run's own intensity.
    return (region, max(0.0, emissions_kg - emissions_kg_at(energy_kwh, found)))


def emissions_kg_at(energy_kwh: float, region: CloudRegion) -> float:
    """The emissions of `energy_kwh` at a cloud region's bundled intensity, in kg CO2eq."""
    return emissions_kg(energy_kwh, region.intensity.g_per_kwh)


@functools.cache
def _regions_by_id() -> Mapping[str, CloudRegion]:
    return MappingProxyType(cloud_regions_by_id())  # read-only: it is shared


def _region_country(text: str) -> str | None:
    try:
        return normalize_region(text).partition("-")[0]
    except ValueError:
        return None


def _provenance(intensity: Intensity) -> tuple[str, str, str]:
    """The source without its caveat and its "(country NO, for …)" suffix, the caveat (after
    "; ", or ""), and the level of the data: ``"country NO"``, ``"region US-VA"``, ``"cloud
    region"`` (the provider's own figure), ``"world"`` or ``"user"``."""
    m = _DERIVED.match(intensity.source)
    if m is not None:
        source, level = m["source"], m["level"]
    else:
        source = intensity.source
        level = {
            "country": f"country {intensity.country}",
            "region": f"region {intensity.region}",
            "world-default": "world",
            "forced": "user",
        }.get(intensity.kind, "cloud region")
    short, _, caveat = source.partition("; ")
    return short, caveat, level


def _series(intensity: Intensity) -> str:
    """Which table a figure comes from: the country table (the world value is in it), one
    country's sub-national table, a provider's own figures, or the user."""
    level = _provenance(intensity)[2]
    if level.startswith("region "):
        return level.partition("-")[0]  # "region US": one country's states are one series
    if level.startswith(("country ", "world")):
        return "country"
    if level == "cloud region":
        return "cloud " + (intensity.cloud or "").partition(":")[0]
    return level


def _difference(region: Intensity, run: Intensity) -> str | None:
    """What makes a region's figure unlike the run's, in words; None when it is like it."""
    source, _, level = _provenance(region)
    if run.basis == "user":
        return f"{region.basis} figure ({source}) vs the user-given intensity of this run"
    if region.basis != run.basis:
        return f"{region.basis} figure ({source}) vs {run.basis} for this run"
    if _series(region) != _series(run):
        return f"{source} ({level}), another series than this run's {_provenance(run)[0]}"
    return None


def format_table(regions: Sequence[CloudRegion]) -> str:
    """A plain-text table: rank, region, location, country, g/kWh, basis, level, source, year;
    then what each basis means and the caveat of each source that has one."""
    header = ("rank", "region", "location", "country", "g/kWh", "basis", "data for", "source")
    rows = [header]
    caveats: dict[str, str] = {}
    for i, r in enumerate(regions, 1):
        source, caveat, level = _provenance(r.intensity)
        if caveat:
            caveats.setdefault(source, caveat)
        year = "" if r.intensity.year is None else str(r.intensity.year)
        location = r.location if len(r.location) <= 28 else r.location[:27] + "…"
        rows.append(
            (
                str(i),
                f"{r.provider}:{r.region}",
                location,
                r.country,
                f"{r.intensity.g_per_kwh:.1f}",
                r.intensity.basis,
                level,
                f"{source} ({year})" if year and year not in source else source,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    right = {0, 4}
    lines = [
        "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]
    bases = sorted({r.intensity.basis for r in regions})
    notes = [_BASIS_NOTES[b] for b in bases if b in _BASIS_NOTES]
    if notes:
        lines.append("Basis: " + "; ".join(notes) + ".")
    if len(bases) > 1:
        lines.append("Rows of different bases are not strictly comparable; yearly averages.")
    lines.extend(f"Note: {source}: {caveat}." for source, caveat in sorted(caveats.items()))
    return "\n".join(lines)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line on stderr and exit status 2, instead of the usage and the error."""
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def main(argv: Sequence[str] | None = None) -> int:
    """``carbon-callbacks regions [--provider P] [--near PLACE] [--top N]``; exit 2 on bad input."""
    parser = _Parser(
        prog="carbon-callbacks regions",
        description="Cloud regions ranked by carbon intensity (lowest first), with the source, "
        "year and basis of each figure. Bundled data only, no network.",
    )
    parser.add_argument("--provider", help="aws, gcp (or google) or azure; default: all")
    parser.add_argument(
        "--near",
        metavar="PLACE",
        help="only regions in the same area (UN M49 based) as a cloud region (aws:eu-west-3), "
        "a country (FR, France), a region (US-CA) or an area (" + ", ".join(_AREA_CODES) + ")",
    )
    parser.add_argument("--top", type=int, metavar="N", help="show the N lowest only")
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
        regions = rank_regions(args.provider, args.near, args.top)
    except SystemExit as exc:  # --help, or a parse error already printed
        return exc.code if isinstance(exc.code, int) else 2
    except ValueError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    if not regions:
        print("no bundled cloud region matches these filters")
        return 0
    print(format_table(regions))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Indexes over the bundled intensity tables, built on first use and cached.

Each table is loaded only when a lookup needs it: a country lookup never parses the cloud
table. ``reset()`` drops the indexes (tests); the parsed JSON stays cached in
``carbon_callbacks.data.load_json``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from carbon_callbacks.data import load_json

Row = dict[str, Any]


@dataclass(frozen=True)
class Countries:
    rows: dict[str, Row]  # alpha-2 -> row (alpha3, name, aka, g_per_kwh, year, source)
    labels: dict[str, str]  # casefolded alpha-2, alpha-3, name or alias -> alpha-2
    world: Row
    meta: Row


@dataclass(frozen=True)
class Regions:
    rows: dict[str, Row]  # ISO 3166-2 code -> row (name, country, g_per_kwh, year, source, ...)
    aliases: dict[str, str]  # retired code -> current code
    by_country: dict[str, list[str]]  # alpha-2 -> sorted codes


@functools.cache
def countries() -> Countries:
    data = load_json("countries.json")
    rows: dict[str, Row] = data["countries"]
    labels: dict[str, str] = {}
    for alpha2, row in rows.items():
        for label in (alpha2, row["alpha3"], row["name"], *row["aka"]):
            labels[label.casefold()] = alpha2
    return Countries(rows=rows, labels=labels, world=data["world"], meta=data["meta"])


@functools.cache
def regions() -> Regions:
    data = load_json("regions.json")
    rows: dict[str, Row] = data["regions"]
    by_country: dict[str, list[str]] = {}
    for code in sorted(rows):
        by_country.setdefault(rows[code]["country"], []).append(code)
    return Regions(rows=rows, aliases=data["aliases"], by_country=by_country)


@functools.cache
def clouds() -> dict[str, Row]:
    """``provider:region`` -> row (provider, region, location, country, subdivision, ...)."""
    rows: dict[str, Row] = load_json("cloud_regions.json")["regions"]
    return rows


def reset() -> None:
    """Forget the indexes, so the next lookup rebuilds them."""
    countries.cache_clear()
    regions.cache_clear()
    clouds.cache_clear()

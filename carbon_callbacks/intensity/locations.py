"""Countries and sub-national regions: name normalisation and their bundled intensities."""

from __future__ import annotations

from typing import NoReturn

from carbon_callbacks.intensity import _tables
from carbon_callbacks.intensity._model import Intensity
from carbon_callbacks.intensity._suggest import close_matches, listing


def normalize_country(value: str) -> str:
    """The ISO 3166-1 alpha-2 code of a country.

    Args:
        value: an alpha-2 or alpha-3 code in any case (``"fr"``, ``"FRA"``), or an English
            name (``"France"``, ``"United Kingdom"``), compared case-insensitively.

    Raises:
        ValueError: the value is not a bundled country; the message names it and the
            closest codes and names.

    Example:
        >>> normalize_country("fra")
        'FR'
    """
    tables = _tables.countries()
    found = tables.labels.get(value.strip().casefold()) if isinstance(value, str) else None
    if found is not None:
        return found
    matches = close_matches(value, tables.labels) if isinstance(value, str) else []
    if matches:
        hint = "close matches: " + ", ".join(_country_label(code) for code in matches)
    else:
        hint = f"{len(tables.rows)} countries are bundled, e.g. 'FR', 'FRA' or 'France'"
    raise ValueError(
        f"unknown country {value!r}: expected an ISO 3166-1 alpha-2 or alpha-3 code or an "
        f"English country name; {hint}"
    )


def country_name(alpha2: str) -> str:
    """The English name of a country, e.g. ``country_name("FR") == "France"``.

    Raises:
        ValueError: unknown country (see `normalize_country`).
    """
    name: str = _tables.countries().rows[normalize_country(alpha2)]["name"]
    return name


def normalize_region(value: str, country: str | None = None) -> str:
    """The ISO 3166-2 code of a bundled sub-national region.

    Args:
        value: a code in any case (``"us-ca"``, ``"IN-MH"``; retired codes such as ``IN-CT``
            are mapped to the current ones) or the region's English name (``"California"``).
        country: alpha-2 code the region must be in, or ``None``.

    Raises:
        ValueError: unknown region (with close matches in its country), a country with no
            bundled regions, or a region outside `country`.
    """
    tables = _tables.regions()
    if not isinstance(value, str):
        raise ValueError(f"region must be a string such as 'US-CA', got {value!r}")
    code = value.strip().upper().replace("_", "-")
    code = tables.aliases.get(code, code)
    if code not in tables.rows:
        by_name = [
            c
            for c, row in tables.rows.items()
            if row["name"].casefold() == value.strip().casefold()
            and (country is None or row["country"] == country)
        ]
        if len(by_name) != 1:
            _unknown_region(value, country)
        code = by_name[0]
    inside = tables.rows[code]["country"]
    if country is not None and inside != country:
        raise ValueError(
            f"region {value!r} ({tables.rows[code]['name']}) is in {_country_label(inside)}, "
            f"not in {_country_label(country)}: make country and region agree, or give only one"
        )
    return code


def country_intensity(alpha2: str) -> Intensity:
    tables = _tables.countries()
    row = tables.rows[alpha2]
    return Intensity(
        g_per_kwh=float(row["g_per_kwh"]),
        source=row["source"],
        year=row["year"],
        basis=tables.meta["basis"],
        kind="country",
        location=alpha2,
        country=alpha2,
        licence=tables.meta["licence"],
    )


def region_intensity(code: str) -> Intensity:
    row = _tables.regions().rows[code]
    return Intensity(
        g_per_kwh=float(row["g_per_kwh"]),
        source=row["source"],
        year=row["year"],
        basis=row["basis"],
        kind="region",
        location=code,
        country=row["country"],
        region=code,
        licence=row["licence"],
    )


def world_intensity() -> Intensity:
    tables = _tables.countries()
    row = tables.world
    return Intensity(
        g_per_kwh=float(row["g_per_kwh"]),
        source=f"{row['source']} world average (no location configured)",
        year=row["year"],
        basis=tables.meta["basis"],
        kind="world-default",
        location="world",
        licence=tables.meta["licence"],
    )


def maybe_country(value: str) -> str | None:
    """`normalize_country` that returns ``None`` instead of raising."""
    return _tables.countries().labels.get(value.strip().casefold())


def _country_label(alpha2: str) -> str:
    row = _tables.countries().rows[alpha2]
    return f"{alpha2} ({row['alpha3']}, {row['name']})"


def _region_label(code: str) -> str:
    return f"{code} {_tables.regions().rows[code]['name']}"


def _unknown_region(value: str, country: str | None) -> NoReturn:
    tables = _tables.regions()
    code = value.strip().upper().replace("_", "-")
    prefix, dash, _ = code.partition("-")
    available = ", ".join(sorted(tables.by_country))
    target = maybe_country(prefix) if dash else country
    if not dash and target is None and maybe_country(code) is not None:
        alpha2 = maybe_country(code)
        raise ValueError(
            f"region {value!r} is a country, not a region: pass country={alpha2!r}, or a "
            f"region code such as 'US-CA' (regions are bundled for {available})"
        )
    if target is not None and target in tables.by_country:
        codes = tables.by_country[target]
        choices = {c.casefold(): c for c in codes}
        choices.update({tables.rows[c]["name"].casefold(): c for c in codes})
        matches = close_matches(value, choices)
        hint = (
            "close matches: " + ", ".join(f"{c} ({tables.rows[c]['name']})" for c in matches)
            if matches
            else f"regions of {target}: {listing(codes)}"
        )
        raise ValueError(f"unknown region {value!r} in {_country_label(target)}; {hint}")
    if target is not None:
        raise ValueError(
            f"no sub-national data for {value!r}: regions are bundled for {available} only; "
            f"for {_country_label(target)} pass country={target!r}"
        )
    choices = {c.casefold(): c for c in tables.rows}
    choices.update({row["name"].casefold(): c for c, row in tables.rows.items()})
    matches = close_matches(value, choices)
    hint = ("; close matches: " + ", ".join(_region_label(c) for c in matches)) if matches else ""
    raise ValueError(
        f"unknown region {value!r}: expected an ISO 3166-2 code such as 'US-CA', 'CA-QC', "
        f"'IN-MH' or 'CN-BJ' (regions are bundled for {available}){hint}"
    )

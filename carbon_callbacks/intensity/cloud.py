"""Cloud regions (``provider:region``) and their intensities.

A GCP region uses Google's own published grid figure; any other region uses the bundled
value of its state or province when we have one, else its country's.
"""

from __future__ import annotations

import functools

from carbon_callbacks.intensity import _tables
from carbon_callbacks.intensity._model import CloudRegion, Intensity
from carbon_callbacks.intensity._suggest import close_matches, listing
from carbon_callbacks.intensity.locations import country_intensity, region_intensity

PROVIDERS = {"aws": "aws", "gcp": "gcp", "google": "gcp", "azure": "azure"}
_ACCEPTED = "aws, gcp (or google), azure"
_EXAMPLES = "'aws:us-east-1', 'gcp:europe-west1' or 'azure:westeurope'"


def normalize_provider(value: str) -> str:
    """``"aws"``, ``"gcp"`` or ``"azure"`` for any accepted spelling (``"Google"`` too)."""
    provider = PROVIDERS.get(value.strip().lower()) if isinstance(value, str) else None
    if provider is None:
        raise ValueError(f"unknown cloud provider {value!r}: accepted providers are {_ACCEPTED}")
    return provider


def normalize_cloud(value: str) -> str:
    """The ``provider:region`` key of a bundled cloud region, e.g. ``"gcp:europe-west1"``.

    Case-insensitive; ``google:`` means ``gcp:``; Azure display names (``"West Europe"``)
    are accepted.

    Raises:
        ValueError: malformed value, unknown provider (lists the accepted ones) or unknown
            region (lists close matches).
    """
    if not isinstance(value, str):
        raise ValueError(f"cloud must be a string such as {_EXAMPLES}, got {value!r}")
    table = _tables.clouds()
    provider_text, colon, region_text = value.strip().partition(":")
    if not colon:
        by_region = {key.partition(":")[2]: key for key in table}
        matches = close_matches(_region_part(value), by_region, n=3)
        hint = f"; did you mean {', '.join(matches)}?" if matches else ""
        raise ValueError(
            f"cloud region {value!r} must be 'provider:region' (providers: {_ACCEPTED}), "
            f"e.g. {_EXAMPLES}{hint}"
        )
    try:
        provider = normalize_provider(provider_text)
    except ValueError:
        raise ValueError(
            f"unknown cloud provider {provider_text.strip()!r} in cloud={value!r}: accepted "
            f"providers are {_ACCEPTED}, e.g. {_EXAMPLES}"
        ) from None
    region = _region_part(region_text) if provider == "azure" else region_text.strip().lower()
    key = f"{provider}:{region}"
    if key in table:
        return key
    own = {k.partition(":")[2]: k for k in table if k.startswith(provider + ":")}
    matches = close_matches(region, own)
    hint = f"close matches: {', '.join(matches)}" if matches else f"known: {listing(sorted(own))}"
    raise ValueError(
        f"unknown {provider} region {region_text.strip()!r} in cloud={value!r}; {hint}"
    )


def cloud_intensity(key: str) -> Intensity:
    """The intensity of a normalised ``provider:region`` key (see the module docstring)."""
    row = _tables.clouds()[key]
    country, subdivision = row["country"], row["subdivision"]
    if row["g_per_kwh"] is not None:
        return Intensity(
            g_per_kwh=float(row["g_per_kwh"]),
            source=row["source"],
            year=row["year"],
            basis=row["basis"],
            kind="cloud",
            location=key,
            country=country,
            region=subdivision,
            cloud=key,
            licence=row["licence"],
        )
    if subdivision is not None and subdivision in _tables.regions().rows:
        base, where = region_intensity(subdivision), f"region {subdivision}"
    else:
        base, where = country_intensity(country), f"country {country}"
    return Intensity(
        g_per_kwh=base.g_per_kwh,
        source=f"{base.source} ({where}, for {key})",
        year=base.year,
        basis=base.basis,
        kind="cloud",
        location=key,
        country=country,
        region=subdivision,
        cloud=key,
        licence=base.licence,
    )


def cloud_regions(provider: str | None = None) -> list[CloudRegion]:
    """Every bundled cloud region, or one provider's, sorted by ``provider:region``.

    Args:
        provider: ``"aws"``, ``"gcp"`` (or ``"google"``), ``"azure"``, or ``None`` for all.

    Raises:
        ValueError: unknown provider.

    Example:
        >>> len(cloud_regions("gcp")) > 30
        True
    """
    wanted = None if provider is None else normalize_provider(provider)
    return [r for r in _all_cloud_regions() if wanted is None or r.provider == wanted]


@functools.cache
def _all_cloud_regions() -> tuple[CloudRegion, ...]:
    """The bundled regions, built once (frozen: the end-of-training advice reads them)."""
    return tuple(
        CloudRegion(
            provider=row["provider"],
            region=row["region"],
            location=row["location"],
            country=row["country"],
            subdivision=row["subdivision"],
            intensity=cloud_intensity(key),
        )
        for key, row in sorted(_tables.clouds().items())
    )


def _region_part(text: str) -> str:
    """Region codes are lower case; Azure display names lose their spaces."""
    return "".join(text.split()).lower()

"""The value objects of the intensity lookup."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Intensity:
    """The carbon intensity of electricity used for a run, and where it came from.

    Args:
        g_per_kwh: grams of CO2 (CO2e unless ``basis`` says otherwise) per kWh consumed.
        source: human-readable provenance, e.g. ``"Ember/OWID 2025"``, ``"user-given"``;
            where the figure is not of the same series, year or basis as the country
            figures, a caveat follows a ``"; "``: ``"Google region-carbon-info 2024; direct:
            ..."``, ``"Ember US state data 2024; not the series of the United States national
            figure ..."``. A cloud region priced by its state or country ends in ``"(region
            US-VA, for aws:us-east-1)"`` or ``"(country FR, for aws:eu-west-3)"``.
        year: the year the value describes, or ``None`` (user-given).
        basis: ``"life-cycle"`` (upstream + combustion, CO2e), ``"direct"`` (combustion
            only), ``"co2-only"`` (combustion CO2, no other gases) or ``"user"``.
        kind: how it was chosen: ``"forced"``, ``"cloud"``, ``"region"``, ``"country"`` or
            ``"world-default"`` (nothing configured).
        location: what was looked up: ``"FR"``, ``"US-CA"``, ``"gcp:europe-west1"``,
            ``"world"`` or ``"user"``.
        country: ISO 3166-1 alpha-2 code, when known.
        region: ISO 3166-2 code (for a cloud region: its subdivision), when known.
        cloud: ``provider:region`` key, when a cloud region was given.
        licence: licence of the source data, when there is one.

    Example:
        >>> from carbon_callbacks.intensity import resolve
        >>> resolve(country="FRA").country
        'FR'
    """

    g_per_kwh: float
    source: str
    year: int | None
    basis: str
    kind: str
    location: str
    country: str | None = None
    region: str | None = None
    cloud: str | None = None
    licence: str | None = None

    @property
    def is_default(self) -> bool:
        """True when no location was configured and the world average is used."""
        return self.kind == "world-default"


@dataclass(frozen=True)
class CloudRegion:
    """One public cloud region of the bundled table.

    Args:
        provider: ``"aws"``, ``"gcp"`` or ``"azure"``.
        region: the provider's region code, e.g. ``"europe-west1"``.
        location: city or area, as the provider names it.
        country: ISO 3166-1 alpha-2 code.
        subdivision: ISO 3166-2 code (``"US-VA"``) when the provider names the state or
            province, else ``None``.
        intensity: what ``resolve(cloud=f"{provider}:{region}")`` returns.
    """

    provider: str
    region: str
    location: str
    country: str
    subdivision: str | None
    intensity: Intensity

"""Carbon intensity of electricity: bundled tables and their lookup.

Tables (``carbon_callbacks/data``, built by ``scripts/build_data.py``; provenance and
licences in ``DATA_LICENSES.md``): countries by ISO 3166-1 code (Ember, life-cycle),
sub-national regions by ISO 3166-2 code (US and IN: Ember state data, life-cycle; CA:
generation mix x IPCC median factors, life-cycle; CN: CO2 only), and public AWS / GCP / Azure
regions (GCP: Google's direct figures). Every `Intensity` says its ``basis``, and its
``source`` says how it differs from the country figures when it does. Everything loads
lazily on the first lookup and is cached; nothing here touches the network.

Live providers (opt-in, ``Tracker(intensity_provider=...)``) live in their own modules,
imported only when one is named: `providers` (names, specs, the shared base),
`electricitymaps`, `carbonintensity_uk`, `energidataservice`, `watttime`; `series` (time
weighting, the best window), `live` (the fetch thread and the pricing of laps), `cache`,
`reprice` (``carbon-callbacks sync``).

Example:
    >>> from carbon_callbacks.intensity import resolve
    >>> resolve(country="FR").kind
    'country'
    >>> resolve(cloud="aws:eu-west-3").country
    'FR'
"""

from __future__ import annotations

from carbon_callbacks.intensity._model import CloudRegion, Intensity
from carbon_callbacks.intensity._tables import reset
from carbon_callbacks.intensity.cloud import cloud_regions, normalize_cloud
from carbon_callbacks.intensity.locations import country_name, normalize_country, normalize_region
from carbon_callbacks.intensity.lookup import (
    ENV_CLOUD,
    ENV_COUNTRY,
    ENV_INTENSITY,
    ENV_REGION,
    resolve,
)

__all__ = [
    "ENV_CLOUD",
    "ENV_COUNTRY",
    "ENV_INTENSITY",
    "ENV_REGION",
    "CloudRegion",
    "Intensity",
    "cloud_regions",
    "country_name",
    "normalize_cloud",
    "normalize_country",
    "normalize_region",
    "reset",
    "resolve",
]

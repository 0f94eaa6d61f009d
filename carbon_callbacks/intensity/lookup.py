"""`resolve`: which carbon intensity a run uses, from arguments or the environment."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping

from carbon_callbacks.intensity._model import Intensity
from carbon_callbacks.intensity.cloud import cloud_intensity, normalize_cloud
from carbon_callbacks.intensity.locations import (
    country_intensity,
    normalize_country,
    normalize_region,
    region_intensity,
    world_intensity,
)

logger = logging.getLogger(__name__)

ENV_INTENSITY = "CARBON_CALLBACKS_INTENSITY_G_PER_KWH"
ENV_CLOUD = "CARBON_CALLBACKS_CLOUD"
ENV_REGION = "CARBON_CALLBACKS_REGION"
ENV_COUNTRY = "CARBON_CALLBACKS_COUNTRY"
ENV_PROVIDER = "CARBON_CALLBACKS_INTENSITY_PROVIDER"  # read by the tracker; see `live`


def resolve(
    country: str | None = None,
    region: str | None = None,
    cloud: str | None = None,
    intensity_g_per_kwh: float | None = None,
    env: Mapping[str, str] | None = None,
) -> Intensity:
    """The carbon intensity to use, with its provenance.

    Precedence: ``intensity_g_per_kwh`` (forced) > ``cloud`` > ``region`` > ``country``.
    Every value given is validated, even one that a higher one overrides. When all four
    arguments are ``None`` the same four settings are read from `env` instead
    (``CARBON_CALLBACKS_INTENSITY_G_PER_KWH``, ``CARBON_CALLBACKS_CLOUD``,
    ``CARBON_CALLBACKS_REGION``, ``CARBON_CALLBACKS_COUNTRY``; empty means unset). With
    nothing configured the bundled world average is returned with ``kind="world-default"``;
    warning about that is the caller's job. Only bundled data is read, never the network.

    Args:
        country: ISO 3166-1 alpha-2 or alpha-3 code, or English name (any case).
        region: ISO 3166-2 code such as ``"US-CA"`` (any case) or the region's name; must
            lie in `country` when both are given.
        cloud: ``"provider:region"``, e.g. ``"aws:us-east-1"``, ``"gcp:europe-west1"``,
            ``"azure:westeurope"``.
        intensity_g_per_kwh: a fixed intensity in gCO2e/kWh (finite, >= 0).
        env: where to read the settings from; ``os.environ`` when ``None``.

    Raises:
        ValueError: a bad value; the message names it and the accepted values or the
            closest matches.

    Example:
        >>> resolve(country="fr").location
        'FR'
        >>> resolve(cloud="gcp:europe-west1").kind
        'cloud'
    """
    forced_name = "intensity_g_per_kwh"
    forced_raw: object = intensity_g_per_kwh
    if country is None and region is None and cloud is None and intensity_g_per_kwh is None:
        settings = os.environ if env is None else env
        country = _setting(settings, ENV_COUNTRY)
        region = _setting(settings, ENV_REGION)
        cloud = _setting(settings, ENV_CLOUD)
        forced_raw = _setting(settings, ENV_INTENSITY)
        forced_name = ENV_INTENSITY
    forced = None if forced_raw is None else _check_forced(forced_raw, forced_name)
    located = _locate(country, region, cloud)
    if forced is not None:
        result = Intensity(
            g_per_kwh=forced,
            source="user-given",
            year=None,
            basis="user",
            kind="forced",
            location="user",
            country=located.country if located else None,
            region=located.region if located else None,
            cloud=located.cloud if located else None,
        )
    else:
        result = located if located is not None else world_intensity()
    logger.debug("carbon intensity %.2f g/kWh from %s", result.g_per_kwh, result.source)
    return result


def _locate(country: str | None, region: str | None, cloud: str | None) -> Intensity | None:
    alpha2 = None if country is None else normalize_country(country)
    code = None if region is None else normalize_region(region, alpha2)
    key = None if cloud is None else normalize_cloud(cloud)
    if key is not None:
        return cloud_intensity(key)
    if code is not None:
        return region_intensity(code)
    if alpha2 is not None:
        return country_intensity(alpha2)
    return None


def _setting(settings: Mapping[str, str], name: str) -> str | None:
    value = settings.get(name)
    return value if value is not None and value.strip() else None


def _check_forced(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{name} must be a number of gCO2e/kWh, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{name} must be a number of gCO2e/kWh, got {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{name} must be a finite number >= 0 (gCO2e/kWh), got {value!r}")
    return number

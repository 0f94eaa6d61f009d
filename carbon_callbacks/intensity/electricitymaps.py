"""Electricity Maps API v3: hourly carbon intensity of a zone's consumption.

Endpoints (``auth-token`` header from ``ELECTRICITYMAPS_API_KEY``; the free personal tier
has ``latest`` and ``history``, ``past-range`` and ``forecast`` need a commercial plan):

- ``GET /v3/carbon-intensity/latest?zone=Z``: one object, ``{"zone", "carbonIntensity",
  "datetime", "updatedAt", "createdAt", "emissionFactorType", "isEstimated",
  "estimationMethod"}``;
- ``GET /v3/carbon-intensity/history?zone=Z``: ``{"zone", "history": [...]}``, the last 24 h;
- ``GET /v3/carbon-intensity/past-range?zone=Z&start=T&end=T``: ``{"zone", "data": [...]}``,
  at most 10 days per request;
- ``GET /v3/carbon-intensity/forecast?zone=Z``: ``{"zone", "forecast": [{"carbonIntensity",
  "datetime"}], "updatedAt"}``.

Values are gCO2eq/kWh; ``emissionFactorType`` says ``lifecycle`` (the API's default) or
``direct``; ``isEstimated`` marks the provider's estimates. We read ``datetime`` as the start
of the hour the value covers. Every request sets ``shouldUseFallbackCallerLookup=false``:
without it the API answers an unknown zone with the caller's own location.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from carbon_callbacks.intensity import _http
from carbon_callbacks.intensity._model import Intensity
from carbon_callbacks.intensity.locations import maybe_country
from carbon_callbacks.intensity.providers import Provider, chunks, location_country
from carbon_callbacks.intensity.series import ESTIMATED, FORECAST, MEASURED, Point, format_time

KEY_ENV = "ELECTRICITYMAPS_API_KEY"
URL_ENV = "CARBON_CALLBACKS_ELECTRICITYMAPS_URL"
_BASES = {"lifecycle": "life-cycle", "direct": "direct"}
_ZONE = re.compile(r"^[A-Z]{2}(-[A-Z0-9]+)*$")
_HISTORY_S = 24 * 3600.0  # what /history covers


class ElectricityMaps(Provider):
    """The Electricity Maps API for one zone (``"DE"``, ``"FR"``, ``"DK-DK1"``...)."""

    name = "electricitymaps"
    label = "Electricity Maps"
    url_env = URL_ENV
    default_url = "https://api.electricitymaps.com"
    period_s = 3600.0
    resolution = "hourly"
    default_basis = "life-cycle"
    max_range_s = 10 * 86400.0
    credentials = (KEY_ENV,)

    def __init__(self, zone: str, env: Mapping[str, str], spec: object = None) -> None:
        super().__init__(zone, env, spec)
        self.country = zone[:2]
        self._key = env[KEY_ENV].strip()

    @property
    def spec(self) -> str:
        return f"{self.name}:{self.zone}"

    def history(self, start: float, end: float, now: float) -> list[Point]:
        if start >= now - now % self.period_s:  # only the current hour is missing
            latest = self._point(self._get_zone("latest"), "latest")
            return [] if latest is None else [latest]
        if start >= now - _HISTORY_S + self.period_s:
            return self._points(self._get_zone("history"), "history")
        out: list[Point] = []
        for a, b in chunks(start, end, self.max_range_s):
            query = {"start": format_time(a), "end": format_time(b)}
            out.extend(self._points(self._get_zone("past-range", query), "data"))
        return out

    def forecast(self, now: float) -> list[Point]:
        items = self._list(self._get_zone("forecast"), "forecast")
        return [p for p in (self._point(item, "forecast", FORECAST) for item in items) if p]

    def _get_zone(self, endpoint: str, query: Mapping[str, str] | None = None) -> Any:
        params = {"zone": self.zone, **(query or {}), "shouldUseFallbackCallerLookup": "false"}
        try:
            body = self._get(
                f"/v3/carbon-intensity/{endpoint}", params, **{"auth-token": self._key}
            )
        except _http.ProviderError as exc:
            if exc.cause == _http.AUTH:
                exc.message += f" (check {KEY_ENV}, and that your plan includes /{endpoint})"
            elif exc.cause in (_http.NOT_FOUND, _http.REFUSED):
                exc.message += f" (is {self.zone!r} an Electricity Maps zone?)"
            raise
        if not isinstance(body, dict):
            raise self._garbage(f"/{endpoint} is not a JSON object")
        zone = body.get("zone")
        if zone is not None and zone != self.zone:
            raise self._garbage(f"/{endpoint} answered for zone {zone!r}, not {self.zone!r}")
        return body

    def _points(self, body: dict[str, Any], key: str) -> list[Point]:
        return [p for p in (self._point(item, key) for item in self._list(body, key)) if p]

    def _list(self, body: dict[str, Any], key: str) -> list[Any]:
        items = body.get(key)
        if not isinstance(items, list):
            raise self._garbage(f"no {key!r} list")
        return items

    def _point(self, item: object, where: str, status: str | None = None) -> Point | None:
        if not isinstance(item, dict):
            raise self._garbage(f"an item of {where!r} is not an object")
        value = item.get("carbonIntensity")
        if value is None:  # an hour the provider could not fill: a hole, not a zero
            return None
        g = self._number(value, "carbonIntensity")
        start = self._time(item.get("datetime"), "datetime")
        factor = item.get("emissionFactorType", "lifecycle")
        basis = _BASES.get(factor) if isinstance(factor, str) else None
        if basis is None:
            raise self._garbage(f"emissionFactorType is {factor!r}, not lifecycle or direct")
        self.basis = basis
        if status is None:
            status = ESTIMATED if item.get("isEstimated") else MEASURED
        return Point(start, start + self.period_s, g, status, basis)


def build(
    zone: str | None, location: Intensity | None, env: Mapping[str, str], spec: object
) -> ElectricityMaps:
    """The provider for `zone`, or for the country of `location`.

    Raises:
        ValueError: a zone that is not ``CC`` or ``CC-…`` with a known country code ``CC``; a
            location inside a country (a region or a cloud region) without a zone, where
            the country is not the zone; no location and no zone; no API key.
    """
    if zone is None:
        zone = _zone_of(location, spec)
    key = zone.upper()
    if not _ZONE.match(key) or maybe_country(key[:2]) != key[:2]:
        raise ValueError(
            f"intensity_provider={spec!r}: {zone!r} is not an Electricity Maps zone key; "
            "zones are a country code or a country code and a grid area, e.g. 'DE', 'FR', "
            "'DK-DK1', 'US-CAL-CISO' (see the zone of your grid on app.electricitymaps.com)"
        )
    return ElectricityMaps(key, env, spec)


def _zone_of(location: Intensity | None, spec: object) -> str:
    country = location_country(location)
    if country is None:
        raise ValueError(
            f"intensity_provider={spec!r} needs a zone: pass country= (its code is the zone) "
            "or name the zone, e.g. 'electricitymaps:DE'"
        )
    assert location is not None
    if location.region is not None:
        raise ValueError(
            f"intensity_provider={spec!r}: the run's location {location.location} lies inside "
            f"{country}, and Electricity Maps splits some countries into several zones; name "
            f"the zone of that grid, 'electricitymaps:{country}' or "
            f"'electricitymaps:{country}-<area>' (see app.electricitymaps.com)"
        )
    return country


PROVIDER = ElectricityMaps

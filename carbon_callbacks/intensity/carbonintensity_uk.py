"""The GB Carbon Intensity API (National Energy System Operator): half-hourly, no key.

Endpoints (times ``YYYY-MM-DDThh:mmZ``, UTC):

- national: ``GET /intensity/{from}/{to}`` and the forecast ``GET /intensity/{from}/fw48h``,
  ``{"data": [{"from", "to", "intensity": {"forecast", "actual", "index"}}]}``; ``actual``
  is null until the half-hour is settled;
- regional, by region id 1-17: ``GET /regional/intensity/{from}/{to}/regionid/{id}`` and
  ``…/{from}/fw48h/regionid/{id}``, ``{"data": [{"regionid", "dnoregion", "shortname",
  "data": [{"from", "to", "intensity": {"forecast", "index"}, "generationmix"}]}]}``: the
  regional series is forecasts only.

Errors are ``{"error": {"code", "message"}}`` with HTTP 400 or 500. The API counts the CO2 of
electricity generation only (power stations, imports, losses; zero for nuclear, wind and
solar), so its figures are on a direct basis, in gCO2/kWh.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from carbon_callbacks.intensity._model import Intensity
from carbon_callbacks.intensity.providers import Provider, chunks, location_country, wrong_country
from carbon_callbacks.intensity.series import FORECAST, MEASURED, Point, format_time

URL_ENV = "CARBON_CALLBACKS_CARBONINTENSITY_UK_URL"
REGIONS = {
    1: "North Scotland",
    2: "South Scotland",
    3: "North West England",
    4: "North East England",
    5: "Yorkshire",
    6: "North Wales",
    7: "South Wales",
    8: "West Midlands",
    9: "East Midlands",
    10: "East England",
    11: "South West England",
    12: "South England",
    13: "London",
    14: "South East England",
    15: "England",
    16: "Scotland",
    17: "Wales",
}
_HALF_HOUR_S = 1800.0


class CarbonIntensityUK(Provider):
    """Great Britain's national series (``zone="national"``) or one region's (``"1"``-``"17"``)."""

    name = "carbonintensity-uk"
    label = "Carbon Intensity API"
    url_env = URL_ENV
    default_url = "https://api.carbonintensity.org.uk"
    period_s = _HALF_HOUR_S
    resolution = "half-hourly"
    default_basis = "direct"
    max_range_s = 13 * 86400.0  # the documented cap is 14 days
    country = "GB"

    @property
    def zone_label(self) -> str:
        if self.zone == "national":
            return "GB"
        return f"GB region {self.zone} ({REGIONS[int(self.zone)]})"

    def history(self, start: float, end: float, now: float) -> list[Point]:
        out: list[Point] = []
        a, b = _floor(start), _ceil(end)
        for lo, hi in chunks(a, b, self.max_range_s):
            window = f"{format_time(lo, seconds=False)}/{format_time(hi, seconds=False)}"
            out.extend(self._series(window))
        return out

    def forecast(self, now: float) -> list[Point]:
        return self._series(f"{format_time(_floor(now), seconds=False)}/fw48h")

    def _series(self, window: str) -> list[Point]:
        if self.zone == "national":
            return self._periods(self._data(self._get(f"/intensity/{window}")), national=True)
        body = self._data(self._get(f"/regional/intensity/{window}/regionid/{self.zone}"))
        # The documented shape is a list of one region; the same region as an object is read too.
        region = body[0] if isinstance(body, list) and len(body) == 1 else body
        if not isinstance(region, dict):
            raise self._garbage("regional data is not one region")
        if str(region.get("regionid")) != self.zone:
            raise self._garbage(f"regionid {region.get('regionid')!r}, not {self.zone}")
        return self._periods(region.get("data"), national=False)

    def _data(self, body: Any) -> Any:
        if not isinstance(body, dict) or "data" not in body:
            raise self._garbage("no 'data'")
        return body["data"]

    def _periods(self, items: object, *, national: bool) -> list[Point]:
        if not isinstance(items, list):
            raise self._garbage("'data' is not a list")
        out = []
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("intensity"), dict):
                raise self._garbage("a period without 'intensity'")
            start = self._time(item.get("from"), "from")
            end = self._time(item.get("to"), "to")
            if not end > start:
                raise self._garbage(f"a period from {item.get('from')} to {item.get('to')}")
            values = item["intensity"]
            actual = values.get("actual") if national else None
            if actual is not None:
                out.append(Point(start, end, self._number(actual, "actual"), MEASURED, "direct"))
            elif values.get("forecast") is not None:
                g = self._number(values["forecast"], "forecast")
                out.append(Point(start, end, g, FORECAST, "direct"))
        return out


def _floor(t: float) -> float:
    return math.floor(t / _HALF_HOUR_S) * _HALF_HOUR_S


def _ceil(t: float) -> float:
    return math.ceil(t / _HALF_HOUR_S) * _HALF_HOUR_S


def build(
    zone: str | None, location: Intensity | None, env: Mapping[str, str], spec: object
) -> CarbonIntensityUK:
    """The national series, or region `zone` (an id 1-17).

    Raises:
        ValueError: a region id outside 1-17, or a location outside Great Britain.
    """
    country = location_country(location)
    if location is not None and country is not None and country != "GB":
        raise wrong_country(spec, location, "Great Britain", country)
    if zone is None or zone.lower() == "national":
        return CarbonIntensityUK("national", env, spec)
    if not zone.isdigit() or int(zone) not in REGIONS:
        listed = ", ".join(f"{i} {n}" for i, n in REGIONS.items())
        raise ValueError(
            f"intensity_provider={spec!r}: {zone!r} is not a region id of the GB Carbon "
            f"Intensity API; accepted: 'national' or a region id: {listed}"
        )
    return CarbonIntensityUK(str(int(zone)), env, spec)


PROVIDER = CarbonIntensityUK

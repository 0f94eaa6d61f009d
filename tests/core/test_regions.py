from __future__ import annotations

import dataclasses

import pytest

from carbon_callbacks import humanize
from carbon_callbacks.intensity import Intensity, cloud_regions, resolve
from carbon_callbacks.measurement import Measurement
from carbon_callbacks.regions import (
    AREAS,
    advice_line,
    area_of,
    greener_alternatives,
    greener_region_tag,
    main,
    rank_regions,
    saving_from_tag,
)


@pytest.fixture(autouse=True)
def _offline(no_network: list[object]) -> None:
    """Everything here reads bundled data only."""


def _run(energy_kwh: float, intensity: Intensity) -> Measurement:
    return Measurement(
        start_time=0.0,
        end_time=100.0,
        duration_s=100.0,
        energy_kwh=energy_kwh,
        cpu_energy_kwh=energy_kwh,
        gpu_energy_kwh=None,
        ram_energy_kwh=None,
        emissions_kg=energy_kwh * intensity.g_per_kwh / 1000,
        intensity_g_per_kwh=intensity.g_per_kwh,
        intensity_source=intensity.source,
        intensity_year=intensity.year,
        pue=1.0,
    )


def _g(region_id: str) -> float:
    return resolve(cloud=region_id).g_per_kwh


def test_rank_is_sorted_lowest_first_and_covers_every_region() -> None:
    ranked = rank_regions()
    values = [r.intensity.g_per_kwh for r in ranked]
    assert values == sorted(values)
    assert len(ranked) == len(cloud_regions())


@pytest.mark.parametrize("provider", ["aws", "gcp", "azure", "Google", "AWS"])
def test_provider_filter(provider: str) -> None:
    expected = {"google": "gcp"}.get(provider.lower(), provider.lower())
    ranked = rank_regions(provider)
    assert ranked and {r.provider for r in ranked} == {expected}


def test_top_keeps_the_lowest() -> None:
    top = rank_regions("aws", top=5)
    assert len(top) == 5
    assert top == rank_regions("aws")[:5]
    assert all(r.intensity.source and r.intensity.year for r in top)


@pytest.mark.parametrize(
    ("near", "area"),
    [
        ("aws:eu-west-3", "europe"),
        ("gcp:us-central1", "northern-america"),
        ("FR", "europe"),
        ("fra", "europe"),
        ("France", "europe"),
        ("US-CA", "northern-america"),
        ("in-mh", "asia"),
        ("BR", "latin-america"),
        ("IL", "western-asia"),
        ("AU", "oceania"),
        ("ZA", "africa"),
        ("Europe", "europe"),
        ("northern america", "northern-america"),
    ],
)
def test_area_of(near: str, area: str) -> None:
    assert area_of(near) == area


def test_near_restricts_to_the_same_area() -> None:
    ranked = rank_regions(near="aws:eu-west-3")
    assert ranked
    assert {AREAS[r.country] for r in ranked} == {"europe"}
    assert "aws:eu-west-3" in {f"{r.provider}:{r.region}" for r in ranked}
    assert [r.region for r in rank_regions("aws", near="FR", top=2)] == [
        "eu-north-1",
        "eu-central-2",
    ]


def test_every_cloud_region_has_an_area() -> None:
    assert all(r.country in AREAS for r in cloud_regions())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"provider": "ibm"}, "unknown cloud provider 'ibm'.*aws, gcp"),
        ({"near": "Frnace"}, r"unknown near='Frnace'.*close matches: FR \(France\)"),
        ({"near": "eu-west-3"}, "close matches: aws:eu-west-3"),
        ({"near": "aws:eu-wst-3"}, "near='aws:eu-wst-3'.*close matches: aws:eu-west-3"),
        ({"near": ""}, "near must be a non-empty string"),
        ({"top": 0}, "top must be a whole number >= 1, got 0"),
        ({"top": -3}, "top must be a whole number >= 1"),
        ({"top": 2.5}, "top must be a whole number >= 1"),
        ({"top": True}, "top must be a whole number >= 1"),
    ],
)
def test_bad_input_raises_value_error_with_suggestions(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        rank_regions(**kwargs)  # type: ignore[arg-type]


def test_alternatives_of_a_cloud_run_are_the_same_provider_lowest_first() -> None:
    intensity = resolve(cloud="gcp:us-central1")
    totals = _run(2.0, intensity)
    found = greener_alternatives(totals, intensity, n=3)
    assert [a.region for a in found] == [f"gcp:{r.region}" for r in rank_regions("gcp", top=3)]
    for a in found:
        assert a.region.startswith("gcp:")
        assert a.g_per_kwh == _g(a.region) < intensity.g_per_kwh
        assert a.emissions_kg == pytest.approx(2.0 * a.g_per_kwh / 1000, rel=1e-12)
        assert a.change_pct == pytest.approx(
            (a.emissions_kg / totals.emissions_kg - 1) * 100, rel=1e-9
        )
        assert a.change_pct < 0
        assert a.basis == "direct" and a.year == 2024
        assert a.source == "Google region-carbon-info 2024" and a.note is None
    assert [a.g_per_kwh for a in found] == sorted(a.g_per_kwh for a in found)


def test_alternatives_of_a_country_run_are_the_lowest_overall_of_its_basis() -> None:
    intensity = resolve(country="PL")
    found = greener_alternatives(_run(1.0, intensity), intensity, n=3)
    lowest = [
        f"{r.provider}:{r.region}" for r in rank_regions() if r.intensity.basis == "life-cycle"
    ][:3]
    assert [a.region for a in found] == lowest
    assert all(a.basis == "life-cycle" for a in found)
    assert greener_alternatives(_run(1.0, intensity), intensity, n=1)[0].region == lowest[0]


def test_alternatives_never_include_the_run_region_or_a_higher_one() -> None:
    intensity = resolve(cloud="aws:us-east-1")
    found = greener_alternatives(_run(1.0, intensity), intensity, n=50)
    assert found and all(a.region.startswith("aws:") for a in found)
    assert "aws:us-east-1" not in {a.region for a in found}
    assert all(a.g_per_kwh < intensity.g_per_kwh for a in found)


def test_the_best_region_has_no_alternative_and_no_advice() -> None:
    best = rank_regions("aws", top=1)[0]
    intensity = resolve(cloud=f"aws:{best.region}")
    totals = _run(1.0, intensity)
    assert greener_alternatives(totals, intensity) == []
    assert advice_line(totals, intensity) is None
    assert greener_region_tag(totals, intensity) == "none"


def test_a_forced_intensity_lower_than_every_region_has_no_advice() -> None:
    intensity = resolve(intensity_g_per_kwh=1.0)
    assert advice_line(_run(1.0, intensity), intensity) is None


def test_advice_line_and_tag() -> None:
    intensity = resolve(cloud="gcp:us-central1")
    totals = _run(0.05, intensity)
    best = greener_alternatives(totals, intensity, n=1)[0]
    line = advice_line(totals, intensity)
    pct = round(best.change_pct)
    assert line == (
        f"the same run in {best.region} would have emitted about "
        f"{humanize.emissions(best.emissions_kg, 2)} ({pct:+d} %)"
    )
    assert greener_region_tag(totals, intensity) == f"{best.region} ({pct:+d} %)"


def test_advice_compares_like_with_like() -> None:
    intensity = resolve(country="DE")  # Ember life-cycle; the lowest overall is a Google figure
    line = advice_line(_run(1.0, intensity), intensity)
    assert line is not None and not line.split()[4].startswith("gcp:")
    assert "direct" not in line


@pytest.mark.parametrize("country", ["US", "DE", "IN", "CN", "FR", "BR"])
def test_a_life_cycle_run_is_never_sent_to_a_direct_or_co2_only_figure(country: str) -> None:
    intensity = resolve(country=country)
    found = greener_alternatives(_run(1.0, intensity), intensity, n=200)
    assert found and {a.basis for a in found} == {"life-cycle"}
    assert greener_region_tag(_run(1.0, intensity), intensity).endswith(" %)")


def test_a_user_given_intensity_against_a_direct_figure_says_so() -> None:
    forced = resolve(intensity_g_per_kwh=400)  # the user's own figure: any region compares
    # gcp:europe-north2: 2.73 g/kWh in Google's 2024 file; 1 kWh x 2.73 g = 0.00273 kg;
    # 2.73 / 400 - 1 = -99.3 %
    assert advice_line(_run(1.0, forced), forced) == (
        "the same run in gcp:europe-north2 would have emitted about 2.7 g CO2eq (-99 %) "
        "[direct figure (Google region-carbon-info 2024) vs the user-given intensity of this "
        "run]"
    )
    assert greener_region_tag(_run(1.0, forced), forced) == (
        "gcp:europe-north2 (-99 %, direct figure)"
    )
    (a,) = greener_alternatives(_run(1.0, forced), forced, n=1)
    assert (
        a.note
        == "direct figure (Google region-carbon-info 2024) vs the user-given intensity of this run"
    )


def test_advice_across_series_says_so() -> None:
    intensity = resolve(country="US")  # Ember/OWID 2025, 384.4 g/kWh
    # aws:ca-central-1 is Quebec, 27.95 g/kWh from the 2023 mix x IPCC factors: another series;
    # 1 kWh x 27.95 g = 0.02795 kg; 27.95 / 384.4 - 1 = -92.7 %
    assert advice_line(_run(1.0, intensity), intensity) == (
        "the same run in aws:ca-central-1 would have emitted about 28 g CO2eq (-93 %) "
        "[Canada 2023 generation mix x IPCC median life-cycle factors (region CA-QC), another "
        "series than this run's Ember/OWID 2025]"
    )
    assert greener_region_tag(_run(1.0, intensity), intensity) == "aws:ca-central-1 (-93 %)"


def test_advice_within_one_series_has_no_note() -> None:
    intensity = resolve(cloud="aws:us-east-1")  # Virginia, Ember US state data
    found = greener_alternatives(_run(1.0, intensity), intensity, n=50, near="US")
    in_us = [a for a in found if a.region in {"aws:us-west-2", "aws:us-west-1", "aws:us-east-2"}]
    assert in_us and all(a.note is None for a in in_us)
    assert all(a.note is not None for a in found if resolve(cloud=a.region).country != "US")


def test_a_co2_only_run_is_compared_with_co2_only_figures_in_kg_co2() -> None:
    intensity = resolve(region="CN-HE")  # Hebei, 651.6 g CO2/kWh (MEE/NBS 2023)
    found = greener_alternatives(_run(1.0, intensity), intensity, n=50)
    assert found and {a.basis for a in found} == {"co2-only"}
    # aws:cn-north-1 is Beijing, 555.4: 0.5554 kg CO2; 555.4 / 651.6 - 1 = -14.8 %
    assert advice_line(_run(1.0, intensity), intensity) == (
        "the same run in aws:cn-north-1 would have emitted about 560 g CO2 (-15 %)"
    )


def test_zero_energy_run_still_gets_a_percentage() -> None:
    intensity = resolve(cloud="aws:us-east-1")
    (a,) = greener_alternatives(_run(0.0, intensity), intensity, n=1)
    assert a.emissions_kg == 0.0 and a.change_pct < 0


@pytest.mark.parametrize("n", [0, -1, 1.5])
def test_bad_n(n: object) -> None:
    intensity = resolve(country="FR")
    with pytest.raises(ValueError, match="n must be a whole number >= 1"):
        greener_alternatives(_run(1.0, intensity), intensity, n=n)  # type: ignore[arg-type]


def test_alternative_is_frozen() -> None:
    intensity = resolve(country="FR")
    (a,) = greener_alternatives(_run(1.0, intensity), intensity, n=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.region = "x"  # type: ignore[misc]


def test_cli_lists_five_aws_regions_with_intensity_and_source(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--provider", "aws", "--top", "5"]) == 0
    out = capsys.readouterr().out.splitlines()
    header, rows = out[0], out[1:6]
    for column in ("rank", "region", "location", "country", "g/kWh", "basis", "source"):
        assert column in header
    expected = rank_regions("aws", top=5)
    for i, (line, region) in enumerate(zip(rows, expected, strict=True), 1):
        cells = line.split()
        assert cells[0] == str(i)
        assert cells[1] == f"aws:{region.region}"
        assert f"{region.intensity.g_per_kwh:.1f}" in cells
        assert "life-cycle" in cells
    assert "Ember" in "\n".join(rows)
    assert out[6] == "Basis: life-cycle = generation incl. upstream emissions, all gases as CO2e."
    assert out[7:] == [
        "Note: Canada 2023 generation mix x IPCC median life-cycle factors: not the series of "
        "the Canada national figure, Ember/OWID 2025."
    ]


def test_cli_shows_each_rows_basis_and_the_caveat_of_each_source(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--near", "CN"]) == 0
    out = capsys.readouterr().out.splitlines()
    header = out[0].split()
    rows = {line.split()[1]: line for line in out[1:] if line.split()[0].isdigit()}
    assert len(rows) == len(rank_regions(near="CN"))
    for region_id, line in rows.items():
        assert resolve(cloud=region_id).basis in line.split(), region_id
    assert "co2-only" in rows["azure:chinanorth"].split()
    assert "direct" in rows["gcp:asia-east2"].split()
    assert header[5] == "basis"
    assert (
        "Basis: co2-only = combustion CO2 only, no other gases: g CO2, not CO2e (China MEE); "
        "direct = the provider's figure for its grid, combustion only (Google); life-cycle = "
        "generation incl. upstream emissions, all gases as CO2e." in out
    )
    assert (
        "Note: China MEE/NBS 2023 provincial factors, CO2 only: not the series or basis of the "
        "China national figure, Ember/OWID 2025 life-cycle." in out
    )
    assert (
        "Note: Google region-carbon-info 2024: direct (Google's operational grid figure), not "
        "life-cycle." in out
    )


def test_cli_through_the_main_command(capsys: pytest.CaptureFixture[str]) -> None:
    from carbon_callbacks.cli import main as cli_main

    assert cli_main(["regions", "--near", "aws:eu-west-3", "--top", "5"]) == 0
    out = capsys.readouterr().out
    assert "gcp:europe-north2" in out and "direct" in out and "not strictly comparable" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["--provider", "ibm"],
        ["--near", "Frnace"],
        ["--top", "0"],
        ["--top", "x"],
        ["--bogus"],
    ],
)
def test_cli_bad_input_exits_2_with_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("carbon-callbacks regions: error:")


def test_alternatives_near_the_run_stay_in_its_area() -> None:
    intensity = resolve(cloud="gcp:us-central1")
    found = greener_alternatives(_run(1.0, intensity), intensity, n=3, near=intensity.cloud)
    assert [a.region for a in found] == [
        "gcp:northamerica-northeast1",
        "gcp:northamerica-northeast2",
        "gcp:us-west1",
    ]


def test_saving_from_tag_reverses_the_tag() -> None:
    """The tag written at the end of a run, read back: the same alternative's emissions."""
    intensity = resolve(country="DE")
    totals = _run(2.0, intensity)
    best = greener_alternatives(totals, intensity, n=1)[0]
    tag = greener_region_tag(totals, intensity)
    assert saving_from_tag(tag, totals.energy_kwh, totals.emissions_kg) == (
        best.region,
        totals.emissions_kg - best.emissions_kg,
    )
    # By hand: 1 kWh in gcp:europe-north2 (Google 2024: 2.73 g/kWh) instead of 400 g.
    assert saving_from_tag("gcp:europe-north2 (-99 %)", 1.0, 0.4) == (
        "gcp:europe-north2",
        0.4 - 0.00273,
    )
    assert saving_from_tag("none", 1.0, 0.4) == ("none", 0.0)
    assert saving_from_tag("aws:atlantis-1 (-50 %)", 1.0, 0.4) is None  # not in this table
    assert saving_from_tag("gcp:europe-north2 (-99 %)", 1.0, 0.001) == ("gcp:europe-north2", 0.0)

"""The organisation view's pure parts: arguments, sums, ranges and savings (no MLflow)."""

from __future__ import annotations

import pytest

from carbon_callbacks.report_all import OrgRun, check_by, group_runs, parse_since, summarize


def run(key: str, kwh: float, kg: float, **kw: object) -> OrgRun:
    fields: dict[str, object] = {
        "run_id": key, "name": key, "experiment": "e", "user": None, "month": "2026-01",
        "energy_kwh": kwh, "emissions_kg": kg, "energy_kwh_low": None, "energy_kwh_high": None,
        "emissions_kg_low": None, "emissions_kg_high": None, "estimated": None,
        "greener_region": None, "tags": {},
    }  # fmt: skip
    return OrgRun(**{**fields, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "ms"),
    [("2026-01-01", 1_767_225_600_000), ("2026-02", 1_769_904_000_000)],  # date -u +%s
)
def test_since_is_utc_midnight_in_ms(text: str, ms: int) -> None:
    assert parse_since(text) == ms


@pytest.mark.parametrize("text", ["2026-13-01", "yesterday", "2026/01/01", ""])
def test_a_bad_since_names_the_format(text: str) -> None:
    with pytest.raises(
        ValueError, match=f"--since must be a date such as 2026-01-31 or 2026-01, got {text!r}"
    ):
        parse_since(text)


@pytest.mark.parametrize("by", ["experiment", "user", "month", "tag:team", "tag:carbon.country"])
def test_by_accepts(by: str) -> None:
    assert check_by(by) == by


@pytest.mark.parametrize("by", ["team", "tag:", "Experiment", ""])
def test_by_refuses(by: str) -> None:
    with pytest.raises(ValueError, match="--by must be one of experiment, user, month, tag:KEY"):
        check_by(by)


def test_sums_are_correctly_rounded_whatever_the_order() -> None:
    """0.1 + 0.2 + 0.3 is 0.6000000000000001 left to right; fsum gives the nearest float."""
    runs = [run(k, v, v / 10) for k, v in (("a", 0.1), ("b", 0.2), ("c", 0.3))]
    assert summarize(None, runs).energy_kwh == 0.6
    assert summarize(None, runs[::-1]).energy_kwh == 0.6


def test_range_estimates_and_savings_of_a_group() -> None:
    runs = [
        run("a", 2.0, 0.5, energy_kwh_low=1.5, energy_kwh_high=2.5, emissions_kg_low=0.375,
            emissions_kg_high=0.625, estimated=True,
            greener_region="gcp:europe-north2 (-99 %)"),  # 2.73 g/kWh: 2 kWh = 5.46 g
        run("b", 1.0, 0.25, estimated=False, greener_region="none"),
        run("c", 1.0, 0.25, greener_region="aws:atlantis-1 (-50 %)"),  # not in the table
    ]  # fmt: skip
    g = summarize("team", runs)
    assert (g.energy_kwh_low, g.energy_kwh_high) == (1.5 + 1.0 + 1.0, 2.5 + 1.0 + 1.0)
    assert (g.emissions_kg_low, g.emissions_kg_high) == (0.375 + 0.5, 0.625 + 0.5)
    assert (g.runs_without_range, g.estimated_runs, g.estimated_emissions_kg) == (2, 1, 0.5)
    assert g.unlabelled_runs == 1
    assert (g.saving_kg, g.greener_region, g.runs_without_advice) == (
        0.5 - 2.0 * 2.73 / 1000,
        "gcp:europe-north2",
        1,
    )
    assert list(g.to_json())[:4] == ["key", "runs", "energy_kwh", "emissions_kg"]


def test_groups_put_the_missing_key_last() -> None:
    runs = [run("a", 1.0, 0.5, user="ann"), run("b", 9.0, 4.0), run("c", 2.0, 1.0, user="bo")]
    assert [(g.key, g.emissions_kg) for g in group_runs(runs, "user")] == [
        ("bo", 1.0), ("ann", 0.5), (None, 4.0)
    ]  # fmt: skip
    months = [run("a", 1, 1, month="2026-02"), run("b", 1, 2, month="2025-11"), run("c", 1, 3)]
    assert [g.key for g in group_runs(months, "month")] == ["2025-11", "2026-01", "2026-02"]

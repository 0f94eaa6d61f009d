"""`carbon-callbacks report --all-experiments`: sums over a real store of several experiments."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mlflow", reason="MLflow is not installed")

from mlflow.entities import Metric, RunTag  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from carbon_callbacks import report_all  # noqa: E402
from carbon_callbacks.report import main  # noqa: E402

MS_2025_12 = int(dt.datetime(2025, 12, 20, tzinfo=dt.timezone.utc).timestamp() * 1000)
MS_2026_01 = int(dt.datetime(2026, 1, 5, tzinfo=dt.timezone.utc).timestamp() * 1000)
MS_2026_02 = int(dt.datetime(2026, 2, 1, tzinfo=dt.timezone.utc).timestamp() * 1000)
MS_2026_03 = int(dt.datetime(2026, 3, 31, 23, 59, tzinfo=dt.timezone.utc).timestamp() * 1000)

# Values that are exact in binary (kWh; kg = kWh x 250 or 500 g/kWh), so hand sums are exact.
# experiment -> runs: (name, user, start ms, kWh, g/kWh, range (kWh low, high) or None,
#                      carbon.estimated tag or None, carbon.greener_region tag or None)
RUNS: dict[str, list[tuple[Any, ...]]] = {
    "vision": [
        ("v1", "alice", MS_2026_01, 2.0, 250, (1.5, 2.5), "true", "gcp:europe-north2 (-99 %)"),
        ("v2", "alice", MS_2026_02, 0.25, 500, None, "false", "none"),
    ],
    "nlp": [
        ("n1", "bob", MS_2026_02, 1.5, 250, (1.0, 2.0), "true", None),
        ("n2", "bob", MS_2026_03, 0.125, 500, None, None, "aws:atlantis-1 (-50 %)"),
    ],
    "speech": [
        ("s1", "alice", MS_2025_12, 4.0, 250, None, "true", None),
    ],
}


def log_run(client: MlflowClient, experiment_id: str, spec: tuple[Any, ...], **tags: str) -> str:
    """One finished run with the contract's totals, range and tags, written in one batch."""
    name, user, start, kwh, g_per_kwh, span, estimated, greener = spec
    run_id = client.create_run(
        experiment_id, start_time=start, run_name=name, tags={"mlflow.user": user}
    ).info.run_id
    kg = kwh * g_per_kwh / 1000
    values = {"carbon/energy_kwh": kwh, "carbon/emissions_kg": kg,
              "carbon/epoch_energy_kwh": kwh / 2,
              "carbon/intensity_g_per_kwh": g_per_kwh}  # fmt: skip
    if span is not None:
        low, high = span
        values |= {"carbon/energy_kwh_low": low, "carbon/energy_kwh_high": high,
                   "carbon/emissions_kg_low": low * g_per_kwh / 1000,
                   "carbon/emissions_kg_high": high * g_per_kwh / 1000}  # fmt: skip
    metrics = [Metric("carbon/energy_kwh", kwh / 2, start, 0)]  # an epoch: not the total
    metrics += [Metric(k, v, start + 1000, 2) for k, v in values.items()]
    all_tags = {"carbon.intensity_basis": "life-cycle", **tags}
    if estimated is not None:
        all_tags["carbon.estimated"] = estimated
    if greener is not None:
        all_tags["carbon.greener_region"] = greener
    client.log_batch(run_id, metrics=metrics, tags=[RunTag(k, v) for k, v in all_tags.items()])
    client.set_terminated(run_id, end_time=start + 2000)
    return run_id


def populate(uri: str, suffix: str = "") -> None:
    """The runs above, plus what the report must leave out."""
    client = MlflowClient(uri)
    for experiment, specs in RUNS.items():
        experiment_id = client.create_experiment(experiment + suffix)
        for spec in specs:
            extra = {"team": "audio"} if experiment == "speech" else {}
            log_run(client, experiment_id, spec, **extra, **({"org": suffix} if suffix else {}))
        if experiment == "nlp":
            client.create_run(experiment_id, run_name="no-carbon-metrics", start_time=MS_2026_02)
            deleted = log_run(client, experiment_id, ("gone", "bob", MS_2026_02, 64.0, 500,
                                                      None, "true", None))  # fmt: skip
            client.delete_run(deleted)
    gone = client.create_experiment("deleted" + suffix)
    log_run(client, gone, ("d1", "carol", MS_2026_02, 128.0, 500, None, "true", None))
    client.delete_experiment(gone)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A store of its own: the sums cover every experiment in it."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('org') / 'mlflow.db'}"
    populate(uri)
    yield uri


def report(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["--all-experiments", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# By hand, from RUNS: the deleted run (64 kWh), the deleted experiment (128 kWh) and the run
# without carbon metrics are left out. gcp:europe-north2 is 2.73 g/kWh (Google 2024).
V1_SAVING_KG = 0.5 - 2.0 * 2.73 / 1000
EXPECTED_BY_EXPERIMENT = [  # most CO2eq first
    {"key": "speech", "runs": 1, "energy_kwh": 4.0, "emissions_kg": 1.0},
    {"key": "vision", "runs": 2, "energy_kwh": 2.0 + 0.25, "emissions_kg": 0.5 + 0.125},
    {"key": "nlp", "runs": 2, "energy_kwh": 1.5 + 0.125, "emissions_kg": 0.375 + 0.0625},
]
EXPECTED_TOTAL = {"runs": 5, "energy_kwh": 7.875, "emissions_kg": 2.0625}
CONTRACT = ("key", "runs", "energy_kwh", "emissions_kg")


def contract(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: g[k] for k in CONTRACT} for g in groups]


def test_json_sums_exactly_over_several_experiments(
    store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = report(capsys, "--tracking-uri", store, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert contract(doc["groups"]) == EXPECTED_BY_EXPERIMENT
    assert {k: doc["total"][k] for k in EXPECTED_TOTAL} == EXPECTED_TOTAL
    vision = doc["groups"][1]
    # v1 has a range (1.5-2.5 kWh at 250 g/kWh); v2 has none, so it adds its value to both ends
    assert (vision["energy_kwh_low"], vision["energy_kwh_high"]) == (1.5 + 0.25, 2.5 + 0.25)
    assert (vision["emissions_kg_low"], vision["emissions_kg_high"]) == (
        0.375 + 0.125,
        0.625 + 0.125,
    )
    assert vision["runs_without_range"] == 1
    assert (vision["estimated_runs"], vision["estimated_emissions_kg"]) == (1, 0.5)
    assert (vision["saving_kg"], vision["greener_region"]) == (V1_SAVING_KG, "gcp:europe-north2")
    assert vision["runs_without_advice"] == 0  # v2 is tagged "none": nothing to save
    nlp = doc["groups"][2]
    assert (nlp["unlabelled_runs"], nlp["runs_without_advice"], nlp["saving_kg"]) == (1, 2, 0.0)
    assert [(m["key"], m["emissions_kg"]) for m in doc["months"]] == [
        ("2025-12", 1.0), ("2026-01", 0.5), ("2026-02", 0.125 + 0.375), ("2026-03", 0.0625)
    ]  # fmt: skip
    assert [r["name"] for r in doc["top_runs"]] == ["s1", "v1", "n1", "v2", "n2"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--by", "user"], [("alice", 3, 1.0 + 0.5 + 0.125), ("bob", 2, 0.375 + 0.0625)]),
        (["--by", "tag:team"], [("audio", 1, 1.0), (None, 4, 0.5 + 0.125 + 0.375 + 0.0625)]),
        (["--by", "month", "--since", "2026-02"], [("2026-02", 2, 0.5), ("2026-03", 1, 0.0625)]),
        (["--since", "2026-01-01"], [("vision", 2, 0.625), ("nlp", 2, 0.4375)]),
        (["--since", "2030-01-01"], []),
    ],
)
def test_groups_and_since(
    store: str, capsys: pytest.CaptureFixture[str], args: list[str], expected: list[Any]
) -> None:
    code, out, err = report(capsys, "--tracking-uri", store, "--json", *args)
    assert code == 0, err
    doc = json.loads(out)
    assert [(g["key"], g["runs"], g["emissions_kg"]) for g in doc["groups"]] == expected
    assert doc["total"]["runs"] == sum(runs for _, runs, _ in expected)


def test_small_pages_give_the_same_sums(
    store: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs of several experiments over several pages and several experiment batches."""
    calls: list[int] = []
    search_runs = MlflowClient.search_runs

    def counted(self: MlflowClient, *args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs["max_results"])
        return search_runs(self, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "search_runs", counted)
    monkeypatch.setattr(report_all, "PAGE_SIZE", 2)
    monkeypatch.setattr(report_all, "EXPERIMENTS_PER_SEARCH", 2)
    code, out, _ = report(capsys, "--tracking-uri", store, "--json")
    doc = json.loads(out)
    assert contract(doc["groups"]) == EXPECTED_BY_EXPERIMENT
    assert {k: doc["total"][k] for k in EXPECTED_TOTAL} == EXPECTED_TOTAL
    # Experiments 0 (Default) and 1 (vision: 2 runs), one page; 2 and 3 (3 runs), two pages.
    assert calls == [2, 2, 2]
    runs = report_all.load_all_runs(MlflowClient(store), max_runs=3)
    assert len(runs) == 3


def test_text_and_page(store: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    page = tmp_path / "org" / "report.html"
    code, out, err = report(capsys, "--tracking-uri", store, "--out", str(page), "--top", "2")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"Carbon footprint of 5 run(s) in 3 experiment(s) at {store}"
    rows = {line.split("  ")[0]: [c.strip() for c in line.split("  ") if c.strip()]
            for line in lines[4:8]}  # fmt: skip
    # vision: 0.625 kg, 0.5 of it estimated (80 %); saves 0.49454 kg (79 % of 0.625)
    assert rows["vision"] == ["vision", "2", "2.25 kWh", "625 g", "500-750 g", "80 %",
                              "495 g (79 %)", "gcp:europe-north2"]  # fmt: skip
    assert rows["speech"] == ["speech", "1", "4 kWh", "1 kg", "no range", "100 %", "-", "-"]
    # all: 1.875 of 2.0625 kg estimated = 90.9 %; low 0.5 + 0.3125 + 1, high 0.75 + 0.5625 + 1
    assert rows["all"] == ["all", "5", "7.88 kWh", "2.06 kg", "1.81-2.31 kg", "91 %",
                           "495 g (24 %)", "gcp:europe-north2"]  # fmt: skip
    assert "2025-12     1     4 kWh    1 kg  " + "#" * 24 in out
    top = lines.index("Top 2 runs by CO2eq:")
    assert lines[top + 3].split() == ["2", "500", "g", "375-625", "g", "2", "kWh", "vision", "v1",
                                      "alice", "2026-01", "yes"]  # fmt: skip
    assert lines[top + 4] == ""
    assert "91 % (3 of 5 runs); 1 run(s) do not say." in out
    assert out.rstrip().endswith(f"wrote {page}")
    text = page.read_text(encoding="utf-8")
    assert "<td>vision</td>" in text and 'class="bar" style="width:20.00em"' in text


def test_an_empty_selection(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = report(capsys, "--tracking-uri", store, "--json", "--since", "2030-01")
    doc = json.loads(out)
    assert code == 0 and doc["groups"] == [] and doc["total"]["emissions_kg"] == 0.0
    code, out, err = report(capsys, "--tracking-uri", store, "--since", "2030-01")
    assert code == 1 and out == ""
    assert err.endswith(f"error: no run with carbon/* metrics at {store} since 2030-01\n")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--all-experiments", "--by", "team"],
         "--by must be one of experiment, user, month, tag:KEY, got 'team'"),
        (["--all-experiments", "--by", "tag:"], "--by must be one of"),
        (["--all-experiments", "--since", "2026-13-01"],
         "--since must be a date such as 2026-01-31 or 2026-01, got '2026-13-01'"),
        (["--all-experiments", "--out", "org.png"], "--out must end in .html, got 'org.png'"),
        (["--all-experiments", "--top", "0"], "--top must be >= 1, got 0"),
        (["--experiment", "e", "--json", "--by", "user"],
         "--by and --json need --all-experiments, not --experiment"),
        (["--experiment", "e", "--all-experiments"], "not allowed with argument"),
    ],
)  # fmt: skip
def test_bad_arguments_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--tracking-uri", "sqlite:///unused.db", *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1


def test_on_a_server(mlflow_server_uri: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Through the REST API; the server's store is shared, so this store's runs carry a tag."""
    org = uuid.uuid4().hex[:8]
    populate(mlflow_server_uri, suffix=org)
    capsys.readouterr()  # MLflow prints "View run ... at: URL" when a run ends on a server
    code, out, err = report(
        capsys, "--tracking-uri", mlflow_server_uri, "--json", "--by", "tag:org"
    )
    assert code == 0, err
    (group,) = [g for g in json.loads(out)["groups"] if g["key"] == org]
    assert group == {**group, **EXPECTED_TOTAL, "saving_kg": V1_SAVING_KG}

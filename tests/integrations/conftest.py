"""Shared set-up of the framework tests: one sqlite MLflow store and, on demand, one server.

Each framework's tests live in one module (an import costs 5-9 s here) and share one sqlite
database per session (its first use costs ~4 s of migrations). Nothing here relies on MLflow's
process-global state: tests pass tracking URIs explicitly.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from carbon_callbacks.artifacts import CHART_FILE, SUMMARY_FILE
from carbon_callbacks.outputs import CONTRACT_TAGS
from scripts.mlflow_server import MlflowServer

# Before any framework import: Keras picks its backend at import, HF must never go online.
os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# Transformers imports comet_ml when installed; comet_ml would mirror MLflow runs into Comet.
os.environ.setdefault("COMET_DISABLE_AUTO_LOGGING", "1")
# Nothing may leave 127.0.0.1: MLflow 3 fetches a telemetry config from the internet when
# imported, Comet reports its own errors online, unless told not to.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("COMET_ERROR_TRACKING_ENABLE", "false")
# W&B: never online, never reporting its own errors; `wandb_offline` sets the rest per test.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_ERROR_REPORTING", "false")
os.environ.setdefault("WANDB_SILENT", "true")

SERVER_URI_ENV = "CARBON_TEST_MLFLOW_SERVER_URI"

# Deterministic sensors: constant 50 W CPU and 10 W RAM, no GPU, a fixed intensity.
INTENSITY_G_PER_KWH = 100.0
TRACKER_KWARGS: dict[str, Any] = {
    "cpu_power_w": 50,
    "ram_power_w": 10,
    "count_gpu": False,
    "intensity_g_per_kwh": INTENSITY_G_PER_KWH,
}

EPOCH_KEYS = (
    "carbon/epoch_energy_kwh",
    "carbon/epoch_emissions_kg",
    "carbon/epoch_duration_s",
    "carbon/epoch_cpu_energy_kwh",
    "carbon/epoch_ram_energy_kwh",
    "carbon/epoch_power_w",
    "carbon/intensity_g_per_kwh",
)
EQUIVALENT_KEYS = (
    "carbon/equivalent_car_km",
    "carbon/equivalent_tv_hours",
    "carbon/equivalent_phone_charges",
)


@pytest.fixture(scope="session")
def sqlite_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One sqlite store for the session, migrated once; also ``$MLFLOW_TRACKING_URI``."""
    from mlflow.tracking import MlflowClient

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        # MLflow resolves its default artifact root (./mlruns) against the current folder
        # when it opens a store, and keeps the store: artifacts go to `root`, not the repo.
        mp.chdir(root)
        MlflowClient(uri).search_experiments()  # runs the migrations now, once
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)  # nothing may land in the repo's folder
        yield uri


@pytest.fixture(scope="session")
def mlflow_server_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``mlflow server`` on 127.0.0.1 (``$CARBON_TEST_MLFLOW_SERVER_URI`` if set)."""
    given = os.environ.get(SERVER_URI_ENV)
    if given:
        yield given.rstrip("/")
        return
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    try:
        yield server.start()
    finally:
        server.stop()


def _history(client: Any, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


CheckRun = Callable[..., dict[str, list[tuple[int, float]]]]
REPO = Path(__file__).resolve().parents[2]
DOCUMENTED_IN = ("README.md", "docs/trackers/mlflow.md")


def undocumented(keys: Sequence[str]) -> list[str]:
    """The `carbon/*` keys of `keys` that the README or the MLflow page does not name."""
    texts = {name: (REPO / name).read_text(encoding="utf-8") for name in DOCUMENTED_IN}
    return sorted(
        f"{key} ({name})"
        for key in keys
        if key.startswith("carbon/")
        for name, text in texts.items()
        if f"`{key}`" not in text
    )


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def read_artifacts(client: Any, run_id: str) -> tuple[dict[str, Any], bytes | None]:
    """The run's ``carbon/summary.json`` (parsed) and chart (PNG bytes, None if absent)."""
    paths = {f.path for f in client.list_artifacts(run_id, "carbon")}
    assert SUMMARY_FILE in paths, f"no {SUMMARY_FILE} in the run's artifacts: {paths}"
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(client.download_artifacts(run_id, "carbon", tmp))
        summary = json.loads((local / Path(SUMMARY_FILE).name).read_text())
        chart = local / Path(CHART_FILE).name
        return summary, chart.read_bytes() if CHART_FILE in paths else None


def check_artifacts(
    client: Any, run_id: str, totals: Any, epochs: Sequence[tuple[int, float]]
) -> dict[str, Any]:
    """The run's summary document holds the totals and the `epochs` ((step, kWh) as logged
    under ``carbon/epoch_energy_kwh``); the chart is a PNG. Returns the document."""
    summary, chart = read_artifacts(client, run_id)
    assert summary["totals"]["energy_kwh"] == totals.energy_kwh
    assert summary["totals"]["emissions_kg"] == totals.emissions_kg
    assert summary["totals"]["duration_s"] == totals.duration_s
    for key in ("energy_kwh", "emissions_kg"):
        assert summary["ranges"][key] == {
            "low": getattr(totals, f"{key}_low", getattr(totals, key)),
            "high": getattr(totals, f"{key}_high", getattr(totals, key)),
        }
    rows = {row["epoch"]: row["energy_kwh"] for row in summary["epochs"]}
    for step, kwh in epochs:  # rows restored from a checkpoint may come before these
        assert rows[step] == pytest.approx(kwh, rel=1e-12), step
    assert summary["methods"]["cpu"]["method"] == "constant"
    assert summary["hardware"]["cpu_model"]
    assert chart is not None and chart.startswith(PNG_MAGIC), "no chart (matplotlib missing?)"
    return summary


@pytest.fixture
def check_carbon_run() -> CheckRun:
    """Assert the contract of an MLflow run written by a `CarbonCallback`; return histories.

    Args (of the returned function): ``client`` (an `MlflowClient`), ``run_id``, ``totals``
    (the session's final `Measurement`), ``epochs`` (the epoch indices logged in this run),
    ``offset_kwh`` (the total carried over from a checkpoint), ``artifacts`` (check
    ``carbon/summary.json`` and the chart too).
    """

    def check(
        client: Any,
        run_id: str,
        totals: Any,
        epochs: Sequence[int] = (0, 1, 2),
        offset_kwh: float = 0.0,
        artifacts: bool = True,
    ) -> dict[str, list[tuple[int, float]]]:
        epochs = list(epochs)
        final_step = epochs[-1] + 1
        hist = {key: _history(client, run_id, key) for key in EPOCH_KEYS}
        for key, points in hist.items():
            assert [step for step, _ in points] == epochs, key
            assert all(value > 0 for _, value in points), (key, points)
        assert _history(client, run_id, "carbon/epoch_gpu_energy_kwh") == []  # not counted

        intensity = hist["carbon/intensity_g_per_kwh"][0][1]
        energy = _history(client, run_id, "carbon/energy_kwh")
        emissions = _history(client, run_id, "carbon/emissions_kg")
        assert [step for step, _ in energy] == [*epochs, final_step]
        assert [step for step, _ in emissions] == [*epochs, final_step]
        running = offset_kwh
        for (step, epoch_kwh), (_, total_kwh) in zip(
            hist["carbon/epoch_energy_kwh"], energy, strict=False
        ):
            running += epoch_kwh
            assert total_kwh == pytest.approx(running, rel=1e-9), step
        for (_, epoch_kwh), (_, epoch_kg) in zip(
            hist["carbon/epoch_energy_kwh"], hist["carbon/epoch_emissions_kg"], strict=True
        ):
            assert epoch_kg == pytest.approx(epoch_kwh * intensity / 1000, rel=1e-9)
        for (_, kwh), (_, kg) in zip(energy, emissions, strict=True):
            assert kg == pytest.approx(kwh * intensity / 1000, rel=1e-9)
        # The last value is the run total: every epoch plus the tail after the last one.
        assert energy[-1][1] == pytest.approx(totals.energy_kwh, rel=1e-9)
        assert emissions[-1][1] == pytest.approx(totals.emissions_kg, rel=1e-9)
        assert energy[-1][1] >= running
        for key in EQUIVALENT_KEYS:
            points = _history(client, run_id, key)
            assert [step for step, _ in points] == [final_step], key
            assert points[0][1] > 0
        # The range, at the end only: the user's own watts are exact, so it is the value.
        for key, total in (
            ("energy_kwh", totals.energy_kwh),
            ("emissions_kg", totals.emissions_kg),
        ):
            for end in ("low", "high"):
                points = _history(client, run_id, f"carbon/{key}_{end}")
                assert points == [(final_step, pytest.approx(total, rel=1e-9))], (key, end)

        tags = client.get_run(run_id).data.tags
        missing = [tag for tag in CONTRACT_TAGS if tag not in tags]
        assert not missing, f"contract tags missing: {missing}"
        assert tags["carbon.cpu_method"] == "constant"
        assert tags["carbon.estimated"] == "true"
        assert tags["carbon.intensity_basis"] == "user"  # intensity_g_per_kwh given
        if artifacts:
            check_artifacts(client, run_id, totals, hist["carbon/epoch_energy_kwh"])
        return {**hist, "carbon/energy_kwh": energy, "carbon/emissions_kg": emissions}

    return check


@pytest.fixture
def wandb_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """W&B in offline mode, everything it writes under ``tmp_path/wandb-home``; a base URL on
    a closed port of 127.0.0.1, so that even a call that ignored the offline mode could not
    leave the machine. Yields the ``WANDB_DIR`` (runs land in ``<it>/wandb/offline-run-*``).
    Afterwards any run still active is finished and W&B is torn down (it reads its settings
    from the environment once per process, at its first run)."""
    home = tmp_path / "wandb-home"
    home.mkdir()
    for name, value in {
        "WANDB_MODE": "offline",
        "WANDB_DIR": str(home),
        "WANDB_CONFIG_DIR": str(home / "config"),
        "WANDB_CACHE_DIR": str(home / "cache"),
        "WANDB_DATA_DIR": str(home / "data"),
        "WANDB_ARTIFACT_DIR": str(home / "artifacts"),
        "WANDB_BASE_URL": "http://127.0.0.1:9",
        "WANDB_SILENT": "true",
        "WANDB_ERROR_REPORTING": "false",
        "WANDB_DISABLE_GIT": "true",
        "WANDB_DISABLE_CODE": "true",
        "WANDB_CONSOLE": "off",
        "WANDB_PROJECT": "carbon-tests",
    }.items():
        monkeypatch.setenv(name, value)
    import wandb

    wandb.teardown()
    yield home
    if wandb.run is not None:
        wandb.finish()
    wandb.teardown()


@pytest.fixture
def tracker_kwargs(tmp_path: Path) -> dict[str, Any]:
    """Tracker arguments giving exact relations: constant 60 W, 100 g/kWh, journal in tmp."""
    return {**TRACKER_KWARGS, "output_dir": tmp_path / "journal"}

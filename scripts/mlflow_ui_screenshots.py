"""Screenshots of the MLflow UI showing what `CarbonCallback` logs, taken in a real browser.

Starts ``mlflow server`` on 127.0.0.1 (a free port, a sqlite store in a temp dir), trains
three tiny Lightning models with `CarbonCallback` into one experiment (3 epochs each, of
different sizes), then drives the system's Chromium (Debian ``chromium``; never a downloaded
browser) with Playwright for Python and saves:

- ``mlflow-runs.png``: the experiment's runs table with the ``carbon/*`` metric columns;
- ``mlflow-epoch-energy.png``: the chart of ``carbon/epoch_energy_kwh`` per epoch, one line
  per run (the experiment's chart view);
- ``mlflow-artifacts.png``: the *Artifacts* tab of the largest run, showing the
  ``carbon/energy_per_epoch.png`` the callback stored next to ``carbon/summary.json``.

The runs' artifacts go through the server (``mlflow-artifacts:``), so the page shows no path
of this machine.

The server is stopped in all cases. Nothing but 127.0.0.1 is contacted.

Usage::

    python scripts/mlflow_ui_screenshots.py [OUT_DIR]     # default docs/assets/

Needs: ``chromium`` on PATH (``apt-get install chromium``), ``pip install playwright``
(the Python package only: do not run ``playwright install``), ``mlflow`` and ``lightning``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script: `scripts` is importable from the repo root

from scripts.mlflow_server import MlflowServer  # noqa: E402

DEFAULT_OUT = REPO / "docs" / "assets"
RUNS_PNG = "mlflow-runs.png"
CHART_PNG = "mlflow-epoch-energy.png"
ARTIFACTS_PNG = "mlflow-artifacts.png"
EXPERIMENT = "carbon-screenshots"
ARTIFACT_LOCATION = f"mlflow-artifacts:/{EXPERIMENT}"  # stored by the server, shown as such
ARTIFACT_RUN = "mlp-large"  # the run whose Artifacts tab is shown
SHOWN_ARTIFACT = "carbon/energy_per_epoch.png"
ARTIFACTS = ("carbon/energy_per_epoch.png", "carbon/summary.json")
EPOCHS = 3
SAMPLES = 2048
# run name -> hidden width of the MLP: three clearly different energy figures. The large one
# takes a few seconds per epoch, so that its energy per epoch (~1e-5 kWh) gets readable ticks
# in the MLflow chart (its labels are rounded to 6 decimals).
RUNS = {"mlp-small": 64, "mlp-medium": 512, "mlp-large": 2048}
# MLflow picks run colours at random; these keep the chart readable (and the same each time).
RUN_COLORS = {"mlp-small": "#2ca02c", "mlp-medium": "#ff7f0e", "mlp-large": "#d62728"}
CHART_METRIC = "carbon/epoch_energy_kwh"
# Shown in the runs table (the first one sorts it); the tag says how the CPU was measured.
TABLE_METRICS = (
    "carbon/emissions_kg",
    "carbon/energy_kwh",
    "carbon/epoch_energy_kwh",
    "carbon/duration_s",
    "carbon/intensity_g_per_kwh",
)
TABLE_COLUMNS = (*TABLE_METRICS, "carbon.cpu_method")
HIDDEN_DEFAULT_COLUMNS = ("Dataset", "Source", "Models")
UI_TIMEOUT_MS = 60_000
TABLE_VIEWPORT = {"width": 1920, "height": 440}
CHART_VIEWPORT = {"width": 1440, "height": 720}
ARTIFACTS_VIEWPORT = {"width": 1280, "height": 800}
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def log(message: str) -> None:
    print(f"[screenshots] {message}", flush=True)


def train_runs(uri: str, journal_dir: Path) -> tuple[str, dict[str, str]]:
    """Train the `RUNS` with `CarbonCallback` into `uri`; return (experiment id, name -> id)."""
    import warnings

    # torch 2.13 deprecates a class Lightning 2.6 still uses; not this script's concern.
    warnings.filterwarnings("ignore", r"`isinstance\(treespec, LeafSpec\)`", FutureWarning)
    import lightning.pytorch as pl
    import torch
    from lightning.pytorch.loggers import MLFlowLogger
    from torch.utils.data import DataLoader, TensorDataset

    from carbon_callbacks.integrations.lightning import CarbonCallback

    features = 32

    class Regressor(pl.LightningModule):
        def __init__(self, hidden: int) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(
                torch.nn.Linear(features, hidden),
                torch.nn.ReLU(),
                torch.nn.Linear(hidden, hidden),
                torch.nn.ReLU(),
                torch.nn.Linear(hidden, 1),
            )

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.net(x), y)
            self.log("train_loss", loss, on_step=False, on_epoch=True)
            return loss

        def configure_optimizers(self) -> Any:
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(SAMPLES, features, generator=gen)
    y = x @ torch.randn(features, 1, generator=gen) + 0.1 * torch.randn(SAMPLES, 1, generator=gen)
    loader = DataLoader(TensorDataset(x, y), batch_size=64)

    def trainer(root: str, **kwargs: Any) -> Any:
        return pl.Trainer(
            accelerator="cpu",
            devices=1,
            enable_progress_bar=False,
            enable_model_summary=False,
            enable_checkpointing=False,
            default_root_dir=root,
            **kwargs,
        )

    # A first fit in a process pays one-off start-up costs: keep them out of the first run.
    with tempfile.TemporaryDirectory() as root:
        trainer(root, max_epochs=1, limit_train_batches=8, logger=False).fit(Regressor(64), loader)

    run_ids: dict[str, str] = {}
    experiment_id = ""
    for name, hidden in RUNS.items():
        logger = MLFlowLogger(
            experiment_name=EXPERIMENT,
            tracking_uri=uri,
            run_name=name,
            artifact_location=ARTIFACT_LOCATION,
        )
        logger.log_hyperparams({"hidden": hidden})
        callback = CarbonCallback(country="FR", output_dir=journal_dir, summary=False)
        with tempfile.TemporaryDirectory() as root:
            trainer(root, max_epochs=EPOCHS, logger=logger, callbacks=[callback]).fit(
                Regressor(hidden), loader
            )
        run_ids[name] = logger.run_id
        experiment_id = logger.experiment_id
        log(f"trained {name} (hidden={hidden}): run {logger.run_id}")
    return experiment_id, run_ids


def check_logged(uri: str, run_ids: dict[str, str]) -> None:
    """Fail early, with a clear message, if the callback did not log what we will show."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    for name, run_id in run_ids.items():
        history = client.get_metric_history(run_id, CHART_METRIC)
        if [m.step for m in sorted(history, key=lambda m: m.step)] != list(range(EPOCHS)):
            raise RuntimeError(f"run {name} has no {CHART_METRIC} per epoch: {history}")
        data = client.get_run(run_id).data
        missing = [k for k in TABLE_METRICS if k not in data.metrics]
        missing += [k for k in TABLE_COLUMNS if "/" not in k and k not in data.tags]
        stored = {f.path for f in client.list_artifacts(run_id, "carbon")}
        missing += [path for path in ARTIFACTS if path not in stored]
        if missing:
            raise RuntimeError(f"run {name} lacks {missing}")


def take_screenshots(
    uri: str, experiment_id: str, run_ids: dict[str, str], out_dir: Path, browser_path: str
) -> list[Path]:
    """Open the MLflow UI in headless Chromium; save `RUNS_PNG`, `CHART_PNG`, `ARTIFACTS_PNG`."""
    from playwright.sync_api import Route, sync_playwright

    host = urlsplit(uri).hostname
    blocked: list[str] = []

    def local_only(route: Route) -> None:  # the UI links to mlflow.org: never fetch it
        if urlsplit(route.request.url).hostname == host:
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    with (
        tempfile.TemporaryDirectory(prefix="carbon-chromium-") as profile,
        sync_playwright() as playwright,
    ):
        context = playwright.chromium.launch_persistent_context(
            profile,  # a fresh user-data-dir, deleted afterwards
            executable_path=browser_path,
            args=CHROMIUM_FLAGS,
            headless=True,
            viewport=TABLE_VIEWPORT,
            device_scale_factor=1,
        )
        try:
            context.set_default_timeout(UI_TIMEOUT_MS)
            context.route("**/*", local_only)
            page = context.new_page()
            runs_png = out_dir / RUNS_PNG
            runs_table(page, uri, experiment_id, list(run_ids))
            page.screenshot(path=str(runs_png))
            log(f"runs table: {runs_png}")
            chart_png = out_dir / CHART_PNG
            epoch_chart(page, uri, experiment_id, list(run_ids))
            page.screenshot(path=str(chart_png))
            log(f"{CHART_METRIC} chart: {chart_png}")
            artifacts_png = out_dir / ARTIFACTS_PNG
            artifact_view(page, uri, experiment_id, run_ids[ARTIFACT_RUN])
            page.screenshot(path=str(artifacts_png))
            log(f"{ARTIFACT_RUN} artifacts: {artifacts_png}")
        finally:
            context.close()
    if blocked:
        log(f"blocked {len(blocked)} request(s) to other hosts, e.g. {blocked[0]}")
    return [runs_png, chart_png, artifacts_png]


def close_assistant(page: Any) -> None:
    """Close MLflow 3's assistant side panel if it is open (it hides part of the page)."""
    close = page.locator('button[data-component-id="mlflow.assistant.chat_panel.close"]')
    try:
        close.wait_for(state="visible", timeout=3_000)
    except Exception:  # not shown: nothing to close
        return
    close.click()


def collapse_sidebar(page: Any) -> None:
    """Collapse the left navigation (its state is remembered from one page to the next)."""
    if page.get_by_text("Model registry", exact=True).is_visible():
        page.get_by_role("button", name="Toggle sidebar").click()
        page.get_by_text("Model registry", exact=True).wait_for(state="hidden")


def runs_table(page: Any, uri: str, experiment_id: str, names: list[str]) -> None:
    """The experiment's runs, sorted by emissions, with the `TABLE_COLUMNS` shown."""
    order = quote(f"metrics.`{TABLE_COLUMNS[0]}`", safe="")
    page.set_viewport_size(TABLE_VIEWPORT)
    page.goto(
        f"{uri}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"
        f"&orderByKey={order}&orderByAsc=true&startTime=ALL"
    )
    for name in names:
        page.get_by_text(name, exact=True).first.wait_for()
    close_assistant(page)
    collapse_sidebar(page)  # room for the columns
    for name, color in RUN_COLORS.items():  # remembered by the UI for the chart page too
        row = page.locator(".ag-row").filter(has=page.get_by_text(name, exact=True))
        row.locator('input[type="color"]').first.fill(color, force=True)

    # Columns are chosen in the "Columns" tree: hide three default ones, tick ours.
    page.get_by_role("button", name="Columns").click()
    search = page.get_by_placeholder("Search columns")
    search.wait_for()

    def tick(title: str) -> None:
        node = page.locator(".du-bois-light-tree-treenode").filter(
            has=page.get_by_text(title, exact=True)
        )
        node.first.locator(".du-bois-light-tree-checkbox").click()

    for title in HIDDEN_DEFAULT_COLUMNS:
        tick(title)
    for title in TABLE_COLUMNS:
        search.fill(title)  # the tree is long and virtualised: filter it first
        tick(title)
    search.fill("")
    page.keyboard.press("Escape")

    # Fit each carbon column to its content (double-click on the header's resize handle).
    headers = page.locator(".ag-header-cell[col-id*='carbon']")
    headers.nth(len(TABLE_COLUMNS) - 1).wait_for()
    for i in range(headers.count()):
        headers.nth(i).locator(".ag-header-cell-resize").dblclick()
    page.evaluate(
        "for (const el of document.querySelectorAll("
        "'.ag-body-horizontal-scroll-viewport, .ag-center-cols-viewport, .ag-header-viewport'"
        ")) el.scrollLeft = 0"
    )
    page.mouse.move(TABLE_VIEWPORT["width"] // 2, TABLE_VIEWPORT["height"] - 30)  # no hover
    page.wait_for_timeout(800)
    width = TABLE_VIEWPORT["width"]
    for title in TABLE_COLUMNS:
        header = page.locator(".ag-header-cell").filter(has=page.get_by_text(title, exact=True))
        box = header.first.bounding_box()
        if box is None or box["x"] < 0 or box["x"] + box["width"] > width:
            raise RuntimeError(f"column {title} is not fully visible in the runs table: {box}")


def epoch_chart(page: Any, uri: str, experiment_id: str, names: list[str]) -> None:
    """The experiment's chart view: `CHART_METRIC` per epoch, one line per run, widened.

    (A single run's *Model metrics* tab shows the same chart, but with nearly equal epochs
    its y-axis ticks are rounded to the same label, and it ignores a configured axis range.)
    """
    page.set_viewport_size(CHART_VIEWPORT)
    page.goto(
        f"{uri}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"
        "&compareRunsMode=CHART&startTime=ALL"
    )
    for name in names:
        page.get_by_text(name, exact=True).first.wait_for()
    close_assistant(page)
    collapse_sidebar(page)
    page.get_by_placeholder("Search metric charts").fill(CHART_METRIC.split("/", 1)[1])
    card = page.locator('[data-testid="experiment-view-compare-runs-card"]:visible').filter(
        has_text=CHART_METRIC
    )
    lines = card.locator("svg.main-svg path.js-line")
    lines.nth(len(names) - 1).wait_for()  # the chart SVG is drawn, one line per run
    # Widen the card by dragging its resize handle to the right edge.
    handle = page.locator('[data-testid="draggable-card-resize-handle"]:visible').first
    box = handle.bounding_box()
    if box is not None:
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.move(x, y)
        page.mouse.down()
        page.mouse.move(x + 300, y + 20, steps=10)
        page.mouse.move(CHART_VIEWPORT["width"], y + 30, steps=10)
        page.mouse.up()
    lines.nth(len(names) - 1).wait_for()
    points = card.locator("svg.main-svg .point").count()
    if points < len(names) * EPOCHS:
        raise RuntimeError(f"the {CHART_METRIC} chart shows {points} points, not {len(names)}x3")
    page.mouse.move(CHART_VIEWPORT["width"] // 2, 60)  # an empty spot: no tooltip, no toolbar
    page.wait_for_timeout(800)


def artifact_view(page: Any, uri: str, experiment_id: str, run_id: str) -> None:
    """The run's *Artifacts* tab with `SHOWN_ARTIFACT` selected and drawn."""
    page.set_viewport_size(ARTIFACTS_VIEWPORT)
    page.goto(f"{uri}/#/experiments/{experiment_id}/runs/{run_id}/artifacts/{SHOWN_ARTIFACT}")
    for path in ARTIFACTS:
        page.get_by_text(path.rsplit("/", 1)[1], exact=True).first.wait_for()
    close_assistant(page)
    collapse_sidebar(page)
    # The image is fetched, then drawn: wait until the browser has decoded it.
    page.wait_for_function(
        "() => [...document.images].some(i => i.complete && i.naturalWidth >= 700)",
        timeout=UI_TIMEOUT_MS,
    )
    page.mouse.move(ARTIFACTS_VIEWPORT["width"] - 10, ARTIFACTS_VIEWPORT["height"] - 10)
    page.wait_for_timeout(800)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", nargs="?", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    browser = shutil.which("chromium")
    if browser is None:
        print("chromium not found on PATH (apt-get install chromium)", file=sys.stderr)
        return 2
    args.out_dir.mkdir(parents=True, exist_ok=True)
    # No usage reports from MLflow 3 (this process and the server) nor from the HF hub.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="carbon-screenshots-") as tmp:
        root = Path(tmp)
        with MlflowServer(root) as uri:
            log(f"mlflow server ready at {uri} in {time.monotonic() - start:.1f} s")
            experiment_id, run_ids = train_runs(uri, root / "journal")
            check_logged(uri, run_ids)
            paths = take_screenshots(uri, experiment_id, run_ids, args.out_dir, browser)
    for path in paths:
        log(f"wrote {path} ({path.stat().st_size} bytes)")
    log(f"done in {time.monotonic() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``carbon-callbacks report``: compare the emissions of an MLflow experiment's runs.

Reads the runs with ``MlflowClient`` (the ``carbon/*`` metrics and ``carbon.*`` tags of
DESIGN.md: the last value of ``carbon/emissions_kg`` is the run total, per-epoch
``carbon/epoch_*`` metrics have step = epoch), prints a table sorted by emissions (lowest
first) and, with ``--out``, writes a chart (total emissions per run, energy per epoch) as a
PNG or a self-contained HTML page (`carbon_callbacks.report_chart`). MLflow and matplotlib
are imported only when the command runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit, urlunsplit

from carbon_callbacks import humanize, report_all, report_chart
from carbon_callbacks.sensors.base import ESTIMATED_METHODS

PROG = "carbon-callbacks report"
EPOCH_ENERGY = "carbon/epoch_energy_kwh"
EPOCH_EMISSIONS = "carbon/epoch_emissions_kg"
T = TypeVar("T")


class ReportError(Exception):
    """Something the user must fix (store unreachable, unknown experiment); one line."""


@dataclass(frozen=True)
class RunRow:
    """One run of the report. Energies in kWh, emissions in kg CO2eq, durations in s."""

    run_id: str
    name: str
    duration_s: float | None
    energy_kwh: float
    emissions_kg: float
    epochs: int
    kg_per_epoch: float | None
    intensity_g_per_kwh: float | None
    intensity_source: str
    intensity_basis: str  # life-cycle, direct, co2-only, user; "?" for runs without the tag
    estimated: str  # "cpu, ram", "none", or from carbon.estimated when no method tags
    epoch_energy_kwh: tuple[tuple[int, float], ...]


def load_runs(client: Any, experiment_id: str, max_runs: int) -> tuple[list[RunRow], int]:
    """The runs with carbon metrics, sorted by emissions, and how many runs had none."""
    runs: list[Any] = []
    token = None
    while len(runs) < max_runs:
        page = client.search_runs(
            [experiment_id], max_results=min(1000, max_runs - len(runs)), page_token=token
        )
        runs.extend(page)
        token = page.token
        if not token:
            break
    rows = [row for row in (_row(client, run) for run in runs) if row is not None]
    rows.sort(key=lambda r: (r.emissions_kg, r.name))
    return _unique_names(rows), len(runs) - len(rows)


def _row(client: Any, run: Any) -> RunRow | None:
    metrics, tags, info = run.data.metrics, run.data.tags, run.info
    if "carbon/emissions_kg" not in metrics or "carbon/energy_kwh" not in metrics:
        return None
    energy = sorted((m.step, m.value) for m in client.get_metric_history(info.run_id, EPOCH_ENERGY))
    per_epoch = [m.value for m in client.get_metric_history(info.run_id, EPOCH_EMISSIONS)]
    duration = metrics.get("carbon/duration_s")
    if duration is None and info.end_time and info.start_time:
        duration = (info.end_time - info.start_time) / 1000.0
    return RunRow(
        run_id=info.run_id,
        name=info.run_name or tags.get("mlflow.runName") or info.run_id[:8],
        duration_s=duration,
        energy_kwh=metrics["carbon/energy_kwh"],  # the last value is the run total
        emissions_kg=metrics["carbon/emissions_kg"],
        epochs=len(energy),
        kg_per_epoch=sum(per_epoch) / len(per_epoch) if per_epoch else None,
        intensity_g_per_kwh=metrics.get("carbon/intensity_g_per_kwh"),
        intensity_source=tags.get("carbon.intensity_source", "?"),
        intensity_basis=tags.get("carbon.intensity_basis", "?"),
        estimated=_estimated(tags),
        epoch_energy_kwh=tuple(energy),
    )


def _estimated(tags: dict[str, str]) -> str:
    methods = {c: tags.get(f"carbon.{c}_method") for c in ("cpu", "gpu", "ram")}
    if all(m is None for m in methods.values()):
        return {"true": "yes", "false": "none"}.get(tags.get("carbon.estimated", ""), "?")
    found = [c for c, m in methods.items() if m and set(m.split("+")) & ESTIMATED_METHODS]
    return ", ".join(found) or "none"


def _unique_names(rows: list[RunRow]) -> list[RunRow]:
    """Runs that share a name get their short id appended, so the chart tells them apart."""
    names = [r.name for r in rows]
    return [
        r if names.count(r.name) == 1 else dataclasses.replace(r, name=f"{r.name} ({r.run_id[:6]})")
        for r in rows
    ]


def redact(uri: str) -> str:
    """The URI without a password (``http://user:***@host``)."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{netloc[2]}"))


def _check_server(uri: str) -> None:
    """Fail in seconds when an HTTP server does not answer (MLflow retries for minutes)."""
    if urlsplit(uri).scheme not in ("http", "https"):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=10):
            pass
    except urllib.error.HTTPError:
        pass  # it answered (a proxy or auth in front): let MLflow report what it means
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ReportError(f"cannot reach the MLflow server at {redact(uri)}: {reason}") from None


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=PROG,
        description="Compare the energy and emissions of an MLflow experiment's runs (a table "
        "sorted by emissions, and a chart with --out), or sum every run with carbon metrics "
        "on a server by experiment, user, month or tag (--all-experiments).",
    )
    p.add_argument(
        "--tracking-uri",
        metavar="URI",
        default=os.environ.get("MLFLOW_TRACKING_URI"),
        help="sqlite:///mlflow.db, http://127.0.0.1:5000, file:./mlruns "
        "(default: $MLFLOW_TRACKING_URI)",
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--experiment", metavar="NAME", help="one experiment's runs, by name")
    which.add_argument(
        "--all-experiments",
        action="store_true",
        help="the organisation view: every run with carbon metrics, summed by group",
    )
    p.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="write the chart: FILE.png, or FILE.html (table and chart in one self-contained "
        "page); with --all-experiments, FILE.html",
    )
    p.add_argument(
        "--max-runs",
        type=int,
        metavar="N",
        help="read at most N runs (default 500; with --all-experiments, all)",
    )
    g = p.add_argument_group("with --all-experiments")
    g.add_argument("--by", metavar="GROUP", help="experiment (default), user, month or tag:KEY")
    g.add_argument("--since", metavar="DATE", help="only runs started on or after DATE (UTC)")
    g.add_argument("--json", action="store_true", help="print JSON (kWh, kg) instead of text")
    g.add_argument("--top", type=int, metavar="N", help="list the N runs with most CO2eq (10)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``carbon-callbacks report``; 0 done, 1 store or experiment problem, 2 bad arguments."""
    parser = _parser()
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    out: Path | None = args.out
    suffixes = (".html", ".htm") if args.all_experiments else (".png", ".html", ".htm")
    org_only = [f"--{k}" for k in ("by", "since", "json", "top") if getattr(args, k)]
    problem = None
    if not args.tracking_uri:
        problem = "--tracking-uri is required (or set MLFLOW_TRACKING_URI)"
    elif out is not None and out.suffix.lower() not in suffixes:
        problem = f"--out must end in {' or '.join(suffixes[:-1])}, got {str(out)!r}"
    elif args.max_runs is not None and args.max_runs < 1:
        problem = f"--max-runs must be >= 1, got {args.max_runs}"
    elif args.top is not None and args.top < 1:
        problem = f"--top must be >= 1, got {args.top}"
    elif org_only and not args.all_experiments:
        needs = "needs" if len(org_only) == 1 else "need"
        problem = f"{' and '.join(org_only)} {needs} --all-experiments, not --experiment"
    try:
        since = None if args.since is None else report_all.parse_since(args.since)
        by = report_all.check_by(args.by or "experiment")
    except ValueError as exc:
        problem = problem or str(exc)
    if problem:
        print(f"{PROG}: error: {problem}", file=sys.stderr)
        return 2
    try:
        if args.all_experiments:
            return _report_all(args, by, since)
        return _report(args.tracking_uri, args.experiment, out, args.max_runs or 500)
    except ReportError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1


def _read(uri: str, read: Callable[[Any], T]) -> T:
    """`read(client)` with an `MlflowClient` of `uri`; store problems become `ReportError`."""
    try:
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise ReportError(
            "the report reads MLflow runs: pip install 'carbon-callbacks[mlflow]'"
        ) from None
    _check_server(uri)
    try:
        return read(MlflowClient(tracking_uri=uri))
    except (MlflowException, OSError) as exc:  # requests' errors are OSErrors
        message = " ".join(str(getattr(exc, "message", exc)).split())
        raise ReportError(f"cannot read {redact(uri)}: {message}") from None


def _report(uri: str, experiment: str, out: Path | None, max_runs: int) -> int:
    def read(client: Any) -> tuple[list[RunRow], int]:
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            names = [e.name for e in client.search_experiments(max_results=1000)]
            raise ReportError(
                f"no experiment {experiment!r} at {redact(uri)}; " + _known(experiment, names)
            )
        return load_runs(client, exp.experiment_id, max_runs)

    rows, skipped = _read(uri, read)
    if not rows:
        raise ReportError(f"experiment {experiment!r} has no run with carbon/* metrics "
                          f"({skipped} run(s) without)")  # fmt: skip
    print(report_chart.format_table(rows))
    total = sum(r.emissions_kg for r in rows)
    note = f"; {skipped} run(s) without carbon metrics not shown" if skipped else ""
    print(f"{len(rows)} run(s), {humanize.emissions(total)} in all{note}")
    if out is not None:
        _write(rows, experiment, uri, out)
        print(f"wrote {out}")
    return 0


def _known(name: str, names: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, names, n=3)
    if close:
        return "close matches: " + ", ".join(repr(n) for n in close)
    return "experiments: " + (", ".join(repr(n) for n in sorted(names)[:20]) or "none")


def _write(rows: Sequence[RunRow], experiment: str, uri: str, out: Path) -> None:
    title = f"Carbon footprint of the runs of {experiment!r}"
    try:
        png = report_chart.render_png(rows, title)
    except ImportError:
        raise ReportError("the chart needs matplotlib: pip install matplotlib") from None
    when = time.strftime("%Y-%m-%d %H:%M")
    about = f"{len(rows)} runs from {redact(uri)}, read {when}; lowest emissions first."
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix.lower() == ".png":
            out.write_bytes(png)
        else:
            out.write_text(report_chart.render_html(rows, title, png, about), encoding="utf-8")
    except OSError as exc:
        raise ReportError(f"cannot write {out}: {exc.strerror or exc}") from None


def _report_all(args: argparse.Namespace, by: str, since: int | None) -> int:
    """The organisation view (`carbon_callbacks.report_all`): text or JSON, and a page."""
    from carbon_callbacks import report_pages

    uri, top = args.tracking_uri, args.top or 10
    runs = _read(uri, lambda c: report_all.load_all_runs(c, since, args.max_runs))
    if args.json:
        print(json.dumps(report_all.to_json(runs, by, top), indent=2))
    elif not runs:
        raise ReportError(f"no run with carbon/* metrics at {redact(uri)}"
                          + (f" since {args.since}" if since is not None else ""))  # fmt: skip
    experiments = len({r.experiment for r in runs})
    title = (f"Carbon footprint of {len(runs):,} run(s) in {experiments:,} experiment(s) at "
             f"{redact(uri)}" + (f", since {args.since}" if since is not None else ""))  # fmt: skip
    if not args.json:
        print(report_pages.render_text(runs, by, top, title))
    if args.out is not None:
        when = time.strftime("%Y-%m-%d %H:%M")
        page = report_pages.render_html(runs, by, top, title, f"Read {when}; grouped by {by}.")
        try:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(page, encoding="utf-8")
        except OSError as exc:
            raise ReportError(f"cannot write {args.out}: {exc.strerror or exc}") from None
        print(f"wrote {args.out}", file=sys.stderr if args.json else sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())

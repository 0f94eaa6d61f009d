"""Time ``carbon-callbacks report --all-experiments --json`` against an ``mlflow server``.

Builds an MLflow store of ``--runs`` runs with carbon metrics (10,000 by default) spread over
``--experiments`` experiments, ``--users`` users and ``--months`` months, plus
``--plain-runs`` runs without them (the report must skip those), each written as a
`CarbonCallback` would: the contract's ``carbon.*`` tags, ``--epochs`` epochs of per-epoch
metrics, the final totals with their low/high range, a few params. Runs are created with the
public client against the sqlite file (``create_run`` with its tags, one ``log_batch``), which
is much faster than through HTTP; then an ``mlflow server`` on 127.0.0.1 serves that file
(``scripts/mlflow_server.py``), and the command is timed in fresh processes, the way a user
runs it. Its JSON totals are checked against the sums of the values written.

Run: ``python bench/bench_report.py [--runs 10000] [--repeats 3] [--store DIR]``. With
``--store DIR`` the store is kept in DIR and reused by the next run with the same arguments.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # nothing leaves 127.0.0.1

from scripts.mlflow_server import MlflowServer  # noqa: E402

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MONTH_MS = 30 * 86_400_000
REGIONS = ("aws:eu-west-3", "aws:us-east-1", "gcp:europe-west1", "azure:westeurope")
GREENER = ("aws:eu-north-1 (-15 %)", "aws:ca-central-1 (-92 %)", "gcp:europe-north2 (-98 %)",
           "none")  # fmt: skip


def build(db: Path, args: argparse.Namespace) -> dict[str, float]:
    """Write the store; return the sums the report must find (runs, kWh, kg)."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{db}")
    rng = random.Random(0)
    experiments = [client.create_experiment(f"project-{i:03d}") for i in range(args.experiments)]
    energies: list[float] = []
    emissions: list[float] = []
    started = time.monotonic()
    for i in range(args.runs + args.plain_runs):
        carbon = i < args.runs
        start = START_MS + rng.randrange(args.months) * MONTH_MS + rng.randrange(MONTH_MS)
        user = f"user{rng.randrange(args.users):02d}@example.org"
        tags = {"mlflow.user": user, "team": f"team-{rng.randrange(5)}"}
        metrics, ts = [], start
        if carbon:
            intensity = rng.choice((41.44, 383.6, 472.99, 118.0))
            watts, epoch_s = rng.uniform(50, 900), rng.uniform(10, 600)
            kwh_epoch = watts * epoch_s / 3.6e6
            for epoch in range(args.epochs):
                total = kwh_epoch * (epoch + 1)
                metrics += [
                    Metric(k, v, ts, epoch)
                    for k, v in (
                        ("carbon/epoch_energy_kwh", kwh_epoch),
                        ("carbon/epoch_emissions_kg", kwh_epoch * intensity / 1000),
                        ("carbon/epoch_duration_s", epoch_s),
                        ("carbon/epoch_power_w", watts),
                        ("carbon/epoch_cpu_energy_kwh", kwh_epoch * 0.3),
                        ("carbon/epoch_gpu_energy_kwh", kwh_epoch * 0.6),
                        ("carbon/epoch_ram_energy_kwh", kwh_epoch * 0.1),
                        ("carbon/intensity_g_per_kwh", intensity),
                        ("carbon/energy_kwh", total),
                        ("carbon/emissions_kg", total * intensity / 1000),
                    )
                ]
            kwh = kwh_epoch * args.epochs
            kg = kwh * intensity / 1000
            metrics += [
                Metric(k, v, ts, args.epochs)
                for k, v in (
                    ("carbon/energy_kwh", kwh),
                    ("carbon/emissions_kg", kg),
                    ("carbon/energy_kwh_low", kwh * 0.8),
                    ("carbon/energy_kwh_high", kwh * 1.3),
                    ("carbon/emissions_kg_low", kg * 0.8),
                    ("carbon/emissions_kg_high", kg * 1.3),
                    ("carbon/duration_s", epoch_s * args.epochs),
                    ("carbon/equivalent_car_km", kg / 0.2442),
                )
            ]
            energies.append(kwh)
            emissions.append(kg)
            region = rng.choice(REGIONS)
            tags |= {
                "carbon.cloud": region,
                "carbon.country": "FR",
                "carbon.region": "",
                "carbon.intensity_source": "Ember/OWID 2025",
                "carbon.intensity_basis": "life-cycle",
                "carbon.pue": "1.2",
                "carbon.cpu_model": "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz",
                "carbon.cpu_count": "8",
                "carbon.cpu_method": "estimate-tdp",
                "carbon.gpu_model": "NVIDIA A10G",
                "carbon.gpu_count": "1",
                "carbon.gpu_method": "nvml-energy",
                "carbon.ram_gb": "32",
                "carbon.ram_method": "estimate-ram",
                "carbon.estimated": "true",
                "carbon.nodes": "1",
                "carbon.world_size": "1",
                "carbon.version": "0.1.0",
                "carbon.greener_region": rng.choice(GREENER),
            }
        metrics += [Metric("loss", 1.0 / (e + 1), ts, e) for e in range(args.epochs)]
        params = [Param(k, str(rng.random())) for k in ("lr", "batch_size", "seed", "model")]
        run = client.create_run(rng.choice(experiments), start_time=start, tags=tags,
                                run_name=f"run-{i}")  # fmt: skip
        client.log_batch(run.info.run_id, metrics=metrics, params=params,
                         tags=[RunTag("mlflow.source.name", "train.py")])  # fmt: skip
        if (i + 1) % 1000 == 0:
            rate = (i + 1) / (time.monotonic() - started)
            print(f"  {i + 1:,} runs written ({rate:.0f} runs/s)", flush=True)
    return {
        "runs": args.runs,
        "energy_kwh": math.fsum(energies),
        "emissions_kg": math.fsum(emissions),
    }


def time_report(uri: str, extra: list[str]) -> tuple[float, dict[str, Any]]:
    command = [sys.executable, "-m", "carbon_callbacks.report", "--tracking-uri", uri,
               "--all-experiments", "--json", *extra]  # fmt: skip
    started = time.perf_counter()
    out = subprocess.run(command, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if out.returncode != 0:
        raise RuntimeError(f"report failed ({out.returncode}): {out.stderr}")
    return elapsed, json.loads(out.stdout)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=10_000, help="runs with carbon metrics")
    p.add_argument("--plain-runs", type=int, default=1_000, help="runs without them")
    p.add_argument("--experiments", type=int, default=50)
    p.add_argument("--users", type=int, default=20)
    p.add_argument("--months", type=int, default=12)
    p.add_argument("--epochs", type=int, default=5, help="epochs of metrics per run")
    p.add_argument("--repeats", type=int, default=3, help="timed runs of the command")
    p.add_argument("--store", type=Path, help="keep the store here (reused when it matches)")
    args = p.parse_args()

    root = args.store or Path(tempfile.mkdtemp(prefix="bench-report-"))
    root.mkdir(parents=True, exist_ok=True)
    db, sums_file = root / "server.db", root / "sums.json"
    shape = {k: getattr(args, k) for k in ("runs", "plain_runs", "experiments", "users",
                                           "months", "epochs")}  # fmt: skip
    known = json.loads(sums_file.read_text()) if sums_file.exists() else {}
    if db.exists() and known.get("shape") == shape:
        sums = known["sums"]
        print(f"store: {db} (reused; built in {known['build_s']:.0f} s)")
    else:
        db.unlink(missing_ok=True)
        print(f"building {args.runs:,} + {args.plain_runs:,} runs in {db} ...", flush=True)
        started = time.monotonic()
        sums = build(db, args)
        build_s = time.monotonic() - started
        sums_file.write_text(json.dumps({"shape": shape, "sums": sums, "build_s": build_s}))
        print(f"built in {build_s:.0f} s ({db.stat().st_size / 1e6:.0f} MB)")

    server = MlflowServer(root)
    started = time.monotonic()
    uri = server.start()
    print(f"mlflow server {uri} ready in {time.monotonic() - started:.1f} s")
    try:
        rows = []
        for extra in ([], ["--by", "user"], ["--by", "month", "--since", "2026-07-01"]):
            times = []
            for _ in range(args.repeats):
                elapsed, doc = time_report(uri, extra)
                times.append(elapsed)
            if not extra:
                total = doc["total"]
                assert total["runs"] == sums["runs"], (total, sums)
                for key in ("energy_kwh", "emissions_kg"):
                    assert math.isclose(total[key], sums[key], rel_tol=1e-12), (key, total, sums)
            rows.append((" ".join(extra) or "(by experiment)", doc["total"]["runs"], times))
    finally:
        server.stop()
    print(f"\ncarbon-callbacks report --all-experiments --json, {args.runs:,} carbon runs "
          f"+ {args.plain_runs:,} others, {args.experiments} experiments, mlflow server "
          f"on 127.0.0.1 (sqlite):")  # fmt: skip
    for label, runs, times in rows:
        shown = ", ".join(f"{t:.1f}" for t in times)
        print(f"  {label:<32} {runs:>6,} runs  median {statistics.median(times):5.1f} s ({shown})")
    print("totals match the values written: yes")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The one-off cost of the end-of-training artifacts (``carbon/summary.json`` and the chart).

`CarbonSession.end()` waits for the sinks' end-of-training flush; with artifacts on, that
flush also draws the chart (matplotlib imported then, the first time in the process) and
writes both files into the run. This measures the wall time of ``end()`` with an MLflow sink
on a sqlite store, after 30 epochs of 10 ms, with ``artifacts=True`` and ``artifacts=False``:
for the first and the second run of fresh processes (``--processes``, default 5), medians.

Run: ``python bench/bench_artifacts.py [--processes 5]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EPOCHS = 30


def child(artifacts: bool) -> list[float]:
    """In a fresh process: two runs into one store; ``end()`` wall time of each, in s."""
    from mlflow.tracking import MlflowClient

    from carbon_callbacks import Tracker
    from carbon_callbacks.integrations.mlflow import MlflowSink
    from carbon_callbacks.session import CarbonSession

    times = []
    with tempfile.TemporaryDirectory(prefix="carbon-bench-artifacts-") as tmp:
        root = Path(tmp)
        os.chdir(root)  # MLflow's default artifact root (./mlruns) goes there too
        uri = f"sqlite:///{root / 'mlflow.db'}"
        client = MlflowClient(uri)
        experiment = client.create_experiment("bench")
        for _ in range(2):
            run_id = client.create_run(experiment).info.run_id
            tracker = Tracker(country="FR", output_dir=root / "journal")
            session = CarbonSession(
                tracker, [MlflowSink(run_id, uri)], summary=False, artifacts=artifacts
            )
            session.begin(total_epochs=EPOCHS)
            for epoch in range(EPOCHS):
                time.sleep(0.01)
                session.epoch_end(epoch)
            began = time.perf_counter()
            session.end()
            times.append(time.perf_counter() - began)
        os.chdir(tempfile.gettempdir())
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=5)
    parser.add_argument("--child", choices=("on", "off"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child == "on")))
        return 0
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    results: dict[str, list[list[float]]] = {"on": [], "off": []}
    for _ in range(args.processes):
        for mode in ("off", "on"):  # interleaved
            out = subprocess.run(
                [sys.executable, __file__, "--child", mode],
                capture_output=True, text=True, check=True, env=env,
            )  # fmt: skip
            results[mode].append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"end() wall time, median of {args.processes} processes (30 epochs, MLflow sqlite):")
    for mode in ("off", "on"):
        first = statistics.median(t[0] for t in results[mode])
        second = statistics.median(t[1] for t in results[mode])
        print(f"  artifacts={mode:>3}: first run {first:.3f} s, second run {second:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What the Lightning-logger and TensorBoard sinks cost the training thread, per epoch.

    python bench/bench_logger_sinks.py [--epochs 200] [--gap-s 0.02]

Each variant logs an epoch's nine ``carbon/*`` values `--epochs` times, `--gap-s` seconds
apart (an epoch's training in between), and prints the median and 95th percentile of the time
the call took on the calling thread, in microseconds: `CSVLogger` and `TensorBoardLogger`
called there (``LoggerSink``), `TensorBoardLogger` through a worker thread
(``LoggerSink(background=True)``), and the HF `TensorBoardSink` (its own thread).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from carbon_callbacks.integrations.loggers import LoggerSink
from carbon_callbacks.integrations.tensorboard import TensorBoardSink

METRICS = {f"carbon/value_{i}": 0.1 * i for i in range(9)}


def measure(sink: Any, epochs: int, gap_s: float) -> tuple[float, float]:
    sink.log_metrics(METRICS, 0)  # the first call opens files
    times = []
    for step in range(1, epochs + 1):
        began = time.perf_counter()
        sink.log_metrics(METRICS, step)
        times.append(time.perf_counter() - began)
        time.sleep(gap_s)
    assert sink.flush(60.0)
    sink.close()
    times.sort()
    return statistics.median(times) * 1e6, times[int(0.95 * len(times))] * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--gap-s", type=float, default=0.02)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="carbon-bench-"))
    variants = {
        "CSVLogger, training thread": LoggerSink(CSVLogger(root / "csv")),
        "TensorBoardLogger, training thread": LoggerSink(TensorBoardLogger(root / "tb")),
        "TensorBoardLogger, background": LoggerSink(
            TensorBoardLogger(root / "tb-bg"), background=True
        ),
        "TensorBoardSink (HF), background": TensorBoardSink(root / "hf"),
    }
    print(f"{args.epochs} epochs of {len(METRICS)} values, {args.gap_s} s apart")
    for name, sink in variants.items():
        median_us, p95_us = measure(sink, args.epochs, args.gap_s)
        print(f"{name:<38} median {median_us:7.1f} us   p95 {p95_us:7.1f} us")


if __name__ == "__main__":
    main()

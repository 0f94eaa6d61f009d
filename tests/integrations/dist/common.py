"""What the distributed scripts share: the callback's arguments and each rank's report.

The scripts run as real processes (Lightning's launcher re-executes them; torchrun starts
them), so they import this module from their own folder, not through the test package.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

# Constant 50 W CPU and 10 W RAM (per node), no GPU, 100 g/kWh: exact relations.
CALLBACK_KWARGS: dict[str, Any] = {
    "cpu_power_w": 50,
    "ram_power_w": 10,
    "intensity_g_per_kwh": 100,
    "summary": False,
}
STEP_S = 0.05  # each training step also sleeps, so that an epoch lasts a few tenths of a second


def write_report(out: Path, rank: int, callback: Any, **extra: Any) -> None:
    """``out/rank<k>.json``: this rank's view of the run after training."""
    tracker = callback.tracker
    totals = callback.session.totals
    report = {
        "rank": rank,
        "methods": tracker.methods,
        "local_methods": tracker.local_methods,
        "nodes": tracker.nodes,
        "world_size": tracker.world_size,
        "journal": None if tracker.journal_path is None else str(tracker.journal_path),
        "totals": None if totals is None else dataclasses.asdict(totals),
        "errors": tracker.errors.messages(),
        **extra,
    }
    (out / f"rank{rank}.json").write_text(json.dumps(report, indent=1))


def leave(code: int = 0) -> None:
    """End the process now, past the interpreter's teardown: after every rank has written its
    report (and left the process group), torch's C++ teardown at exit aborted now and then on
    this loaded 2-core machine ("terminate called without an active exception", SIGABRT),
    failing a run whose results were all written."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)

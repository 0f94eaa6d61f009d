"""The ``carbon-callbacks`` command: detect, run (``--autolog``), and the delegated commands
below."""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any

from carbon_callbacks import humanize
from carbon_callbacks._version import __version__

if TYPE_CHECKING:
    from carbon_callbacks.tracker import Tracker

EPILOG = (
    "Location can also come from CARBON_CALLBACKS_COUNTRY / _REGION / _CLOUD, a live provider "
    "from CARBON_CALLBACKS_INTENSITY_PROVIDER."
)

# Commands with their own parser, in their own module: `main(argv) -> int`. They may import
# a framework or a tracking client, so they load only when run.
DELEGATED = {
    "demo": (
        "carbon_callbacks.demo",
        "train a tiny model with the callback into a local MLflow store",
    ),
    "report": (
        "carbon_callbacks.report",
        "compare an MLflow experiment's runs, or sum every run on a server (--all-experiments)",
    ),
    "regions": (
        "carbon_callbacks.regions",
        "cloud regions ranked by carbon intensity, with the basis and source of each",
    ),
    "sync": (
        "carbon_callbacks.sync",
        "send journaled metrics that did not reach MLflow/Comet/W&B (server down) to their runs",
    ),
    "when": (
        "carbon_callbacks.when",
        "when to start a job of N hours: the lowest window of a live provider's forecast",
    ),
}


def _add_location_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("location and power (all optional)")
    g.add_argument("--country", help="ISO country code or name, e.g. FR or FRA")
    g.add_argument("--region", help="sub-national region, e.g. US-CA, CA-QC, IN-MH")
    g.add_argument("--cloud", help="cloud region, e.g. aws:us-east-1, gcp:europe-west1")
    g.add_argument("--intensity", type=float, metavar="G_PER_KWH", help="force the intensity")
    g.add_argument(
        "--intensity-provider",
        metavar="PROVIDER[:ZONE]",
        help="price each lap at a live provider's values (electricitymaps, carbonintensity-uk, "
        "energidataservice:DK1, watttime:REGION); the bundled value is the fallback",
    )
    g.add_argument("--pue", type=float, default=1.0, help="data-centre PUE (default 1.0)")
    g.add_argument("--cpu-power-w", type=float, help="force a constant CPU power (estimate)")
    g.add_argument("--ram-power-w", type=float, help="force a constant RAM power (estimate)")
    g.add_argument(
        "--node-power",
        choices=("auto", "hwmon", "ipmi", "redfish"),
        help="read the node's own power meter (opt-in; ipmi and redfish contact the BMC)",
    )


def _tracker_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "country": args.country,
        "region": args.region,
        "cloud": args.cloud,
        "intensity_g_per_kwh": args.intensity,
        "intensity_provider": args.intensity_provider,
        "pue": args.pue,
        "cpu_power_w": args.cpu_power_w,
        "ram_power_w": args.ram_power_w,
        "node_power": args.node_power,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="carbon-callbacks",
        description="Energy and CO2 of ML training runs, measured where hardware allows.",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("detect", help="which sensors work here, and the location/intensity used")
    _add_location_args(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of text")

    p = sub.add_parser(
        "run",
        help="measure a command: carbon-callbacks run [options] -- COMMAND ...",
        epilog=EPILOG,
    )
    _add_location_args(p)
    p.add_argument("--output-dir", help="journal folder (default ./carbon_runs)")
    p.add_argument(
        "--autolog",
        action="store_true",
        help="measure per epoch instead: add a CarbonCallback to every Lightning/HF Trainer "
        "and Keras fit in the command's Python processes (no code change), logging into the "
        "script's own MLflow/Comet/W&B run and loggers",
    )
    p.add_argument(
        "--interval", type=float, default=60.0, help="seconds between journal laps (default 60)"
    )
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="a live power/energy line on stderr (default: when stderr is a terminal)",
    )
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="the command, after --")

    for name, (_, help_text) in DELEGATED.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in DELEGATED:
        import importlib

        code: int = importlib.import_module(DELEGATED[argv[0]][0]).main(argv[1:])
        return code
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "detect":
            return _detect(args)
        if args.command == "run":
            return _run(args, parser)
    except ValueError as exc:  # configuration errors: one clear line, no traceback
        print(f"carbon-callbacks: error: {exc}", file=sys.stderr)
        return 2
    parser.error(f"unknown command {args.command!r}")
    return 2  # unreachable; parser.error exits


def _detect(args: argparse.Namespace) -> int:
    from carbon_callbacks.hardware import hardware_metadata
    from carbon_callbacks.humanize import emissions_unit
    from carbon_callbacks.tracker import Tracker

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tracker = Tracker(output_dir=None, **_tracker_kwargs(args))
    intensity = tracker.intensity
    hw = hardware_metadata(tracker.sensors)
    report: dict[str, Any] = {
        "sensors": [
            {
                "component": r.component,
                "name": r.name,
                "available": r.available,
                "method": r.method,
                "reason": r.reason,
            }
            for r in tracker.reports
        ],
        "methods": dict(tracker.methods),
        "node_method": tracker.node_method,
        "location": intensity.location,
        "intensity_kind": intensity.kind,
        "intensity_g_per_kwh": intensity.g_per_kwh,
        "intensity_source": intensity.source,
        "intensity_basis": intensity.basis,
        "intensity_provider": None if tracker.live is None else tracker.live.spec,
        "hardware": hw,
        "warnings": [str(w.message) for w in caught],
    }
    tracker.close()
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print("Sensors:")
    for s in report["sensors"]:
        mark = "yes" if s["available"] else "no "
        method = f" [{s['method']}]" if s["method"] else ""
        print(f"  {mark} {s['component']:<3} {s['name']}{method}: {s['reason']}")
    used = ", ".join(f"{c}={m}" for c, m in report["methods"].items())
    print(f"Used: {used}, node={report['node_method']}")
    print(
        f"Location: {intensity.location} ({intensity.kind}), {intensity.g_per_kwh:g} "
        f"g {emissions_unit(intensity.basis)}/kWh ({intensity.basis}) from {intensity.source}"
    )
    if tracker.live is not None:
        print(f"Live: {tracker.live.describe()} (contacted only while a run is measured)")
    print(
        f"Hardware: {hw['cpu_model']} x{hw['cpu_count']}, RAM {hw['ram_gb']} GB, "
        f"GPU {hw['gpu_model']}"
    )
    for w in report["warnings"]:
        print(f"Warning: {w}")
    return 0


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from carbon_callbacks.equivalents import equivalents
    from carbon_callbacks.outputs import summary
    from carbon_callbacks.tracker import Tracker

    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        parser.error("run needs a command after --, e.g. carbon-callbacks run -- python train.py")
    if args.interval <= 0:
        raise ValueError(f"--interval must be > 0 seconds, got {args.interval!r}")
    kwargs = _tracker_kwargs(args)
    if args.output_dir:
        kwargs["output_dir"] = args.output_dir
    if args.autolog:
        return _run_autolog(cmd, kwargs)
    tracker = Tracker(**kwargs)
    tracker.start()
    try:
        child = subprocess.Popen(cmd)
    except OSError as exc:
        tracker.stop()
        print(f"carbon-callbacks: cannot start {cmd[0]!r}: {exc}", file=sys.stderr)
        return 127

    def forward(signum: int, frame: FrameType | None) -> None:
        child.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    progress = Progress(tracker) if _show_progress(args) else None
    try:
        next_lap = time.monotonic() + args.interval
        while True:
            wait_s = next_lap - time.monotonic()
            if progress is not None:
                wait_s = min(wait_s, Progress.INTERVAL_S)
            try:
                code = child.wait(timeout=max(wait_s, 0.0))
                break
            except subprocess.TimeoutExpired:
                if time.monotonic() >= next_lap:
                    tracker.lap()
                    next_lap += args.interval
                if progress is not None:
                    progress.show()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if progress is not None:
            progress.clear()
        totals = tracker.stop()
        tracker.close()
    print(summary(totals, equivalents(totals), title="carbon-callbacks run"), file=sys.stderr)
    if tracker.journal_path is not None:
        print(f"  journal: {tracker.journal_path}", file=sys.stderr)
    return code if code >= 0 else 128 - code


def _run_autolog(cmd: list[str], kwargs: dict[str, Any]) -> int:
    """Run `cmd` with autolog in its Python processes; this process measures nothing itself
    (the callbacks do, per epoch, on global rank 0: one writer). Returns its exit status."""
    import os
    from pathlib import Path

    from carbon_callbacks.autologging import checked_config, child_environment
    from carbon_callbacks.tracker import DEFAULT_OUTPUT_DIR, OUTPUT_DIR_ENV

    config = {k: v for k, v in kwargs.items() if v is not None}
    out = Path(config.get("output_dir") or os.environ.get(OUTPUT_DIR_ENV) or DEFAULT_OUTPUT_DIR)
    config["output_dir"] = str(out.resolve())  # the same folder if the command changes dir
    config = checked_config(**config)  # raises here; its warnings are shown once, here
    started = time.time()
    try:
        child = subprocess.Popen(cmd, env=child_environment(config, os.environ))
    except OSError as exc:
        print(f"carbon-callbacks: cannot start {cmd[0]!r}: {exc}", file=sys.stderr)
        return 127

    def forward(signum: int, frame: FrameType | None) -> None:
        child.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = child.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    journals = sorted(
        p for p in out.glob("*.jsonl") if p.is_file() and p.stat().st_mtime >= started - 1
    )
    for journal in journals:
        print(f"carbon-callbacks run --autolog: journal {journal}", file=sys.stderr)
    if not journals:
        print(
            "carbon-callbacks run --autolog: no Lightning, Hugging Face or Keras training wrote "
            f"a journal in {out} (run without --autolog to measure the command as a whole)",
            file=sys.stderr,
        )
    return code if code >= 0 else 128 - code


def _show_progress(args: argparse.Namespace) -> bool:
    if args.progress is not None:
        return bool(args.progress)
    return sys.stderr.isatty()


class Progress:
    """One line on the terminal, rewritten in place: power now, energy and CO2 so far."""

    INTERVAL_S = 1.0

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker
        self._last: tuple[float, float] | None = None  # (duration_s, energy_kwh) of the run

    def show(self) -> None:
        current = self.tracker.peek()
        done = self.tracker.totals
        duration = current.duration_s + (done.duration_s if done else 0.0)
        energy = current.energy_kwh + (done.energy_kwh if done else 0.0)
        emissions = current.emissions_kg + (done.emissions_kg if done else 0.0)
        since, before = self._last or (0.0, 0.0)
        watts = (energy - before) * 3.6e6 / (duration - since) if duration > since else 0.0
        self._last = (duration, energy)
        line = (
            f"carbon-callbacks: {watts:7.1f} W  {humanize.energy(energy)}  "
            f"{humanize.emissions(emissions)}  {humanize.duration(duration, 3)}"
        )
        sys.stderr.write("\r" + line + "\x1b[K")
        sys.stderr.flush()

    def clear(self) -> None:
        sys.stderr.write("\r\x1b[K")
        sys.stderr.flush()


if __name__ == "__main__":
    sys.exit(main())

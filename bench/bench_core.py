"""Core cost of carbon-callbacks against CodeCarbon, measured in the same run.

Run by hand (never a test):  python bench/bench_core.py [--codecarbon-python PATH] [--idle-s 30]

Every figure is measured in fresh subprocesses on this machine and printed next to
CodeCarbon's, with the ratio. CodeCarbon (3.3.2, the `bench` extra) may live in another
virtual environment: pass its interpreter with --codecarbon-python. Both sides run offline
with a fixed country (no geo-IP lookup) and write their files to a temp folder.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap

OURS = {
    "import": "import carbon_callbacks",
    "import_tracker": "from carbon_callbacks import Tracker",
    "make": "t = Tracker(country='FR', output_dir=OUT)",
    "start": "t.start()",
    "lap": "t.lap()",
    "stop": "t.stop()",
    "module": "carbon_callbacks",
}
CODECARBON = {
    "import": "import codecarbon",
    "import_tracker": "from codecarbon import OfflineEmissionsTracker as Tracker",
    "make": (
        "t = Tracker(country_iso_code='FRA', output_dir=OUT, log_level='error', save_to_file=True)"
    ),
    "start": "t.start()",
    "lap": "t.flush()",
    "stop": "t.stop()",
    "module": "codecarbon",
}

PROBE = r"""
import json, os, resource, sys, time, statistics
OUT = {out!r}
def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
r = {{}}
rss0 = rss_mib()
t0 = time.perf_counter(); {import_tracker}
r["import_tracker_ms"] = (time.perf_counter() - t0) * 1e3
t0 = time.perf_counter(); {make}; {start}; r["first_start_ms"] = (time.perf_counter() - t0) * 1e3
# per-lap cost, as a callback pays it at each epoch end
laps = []
for _ in range({n_laps}):
    t0 = time.perf_counter_ns(); {lap}; laps.append(time.perf_counter_ns() - t0)
r["lap_median_us"] = statistics.median(laps) / 1e3
r["lap_p90_us"] = sorted(laps)[int(len(laps) * 0.9)] / 1e3
# idle cost of background threads while "training" sleeps
c0 = time.process_time(); w0 = time.perf_counter()
time.sleep({idle_s})
r["idle_cpu_pct"] = (time.process_time() - c0) / (time.perf_counter() - w0) * 100
r["rss_added_mib"] = rss_mib() - rss0
{stop}
print(json.dumps(r))
"""

EPOCHS = r"""
import json, statistics, time
OUT = {out!r}
{import_tracker}
def epoch():  # a short CPU-bound "epoch" of about 20 ms
    s = 0
    for i in range(300_000):
        s += i * i
    return s
def run(lap):
    t0 = time.perf_counter()
    for _ in range(50):
        epoch()
        lap()
    return time.perf_counter() - t0
{make}; {start}
base, ours = [], []
for _ in range({repeats}):  # interleaved: baseline and measured runs alternate
    base.append(run(lambda: None))
    ours.append(run(lambda: {lap}))
{stop}
print(json.dumps({{"base_s": statistics.median(base), "with_s": statistics.median(ours)}}))
"""


def run_py(python: str, code: str) -> dict[str, float]:
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{python} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def import_ms(python: str, module: str, repeats: int) -> tuple[float, float]:
    """Median wall time of a cold `import module`, and -X importtime's cumulative figure."""
    walls, cumulative = [], []
    for _ in range(repeats):
        code = f"import time; t=time.perf_counter(); import {module}; print(time.perf_counter()-t)"
        out = subprocess.run(
            [python, "-X", "importtime", "-c", code], capture_output=True, text=True, check=True
        )
        walls.append(float(out.stdout) * 1e3)
        for line in out.stderr.splitlines():
            parts = [p.strip() for p in line.split("|")]
            if len(parts) == 3 and parts[2] == module:
                cumulative.append(int(parts[1]) / 1e3)
    return statistics.median(walls), statistics.median(cumulative)


def dependency_count(python: str, dist: str) -> int:
    code = textwrap.dedent(
        f"""
        import importlib.metadata as md, re
        seen, todo = set(), [{dist!r}]
        while todo:
            name = re.split(r"[ ;<>=!~\\[(]", todo.pop(), maxsplit=1)[0].lower().replace("_", "-")
            if name in seen:
                continue
            try:
                reqs = md.requires(name) or []
            except md.PackageNotFoundError:
                continue
            seen.add(name)
            todo += [r for r in reqs if "extra ==" not in r]
        print(len(seen) - 1)
        """
    )
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--python", default=sys.executable, help="interpreter with carbon-callbacks")
    ap.add_argument("--codecarbon-python", default=sys.executable)
    ap.add_argument("--idle-s", type=float, default=30.0)
    ap.add_argument("--laps", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    rows: list[tuple[str, float, float]] = []
    sides = ((args.python, OURS), (args.codecarbon_python, CODECARBON))
    results = []
    for python, side in sides:
        with tempfile.TemporaryDirectory() as out:
            n_laps = 50 if side is CODECARBON else args.laps  # flush() costs ms: fewer laps
            fields = dict(side, out=out, n_laps=n_laps, idle_s=args.idle_s)
            r = run_py(python, PROBE.format(**fields))
            r.update(run_py(python, EPOCHS.format(**dict(fields, repeats=args.repeats))))
        r["import_wall_ms"], r["import_cumulative_ms"] = import_ms(python, side["module"], 5)
        r["deps"] = dependency_count(python, "carbon-callbacks" if side is OURS else "codecarbon")
        results.append(r)
    ours, cc = results
    overhead = {name: r["with_s"] / r["base_s"] for name, r in (("ours", ours), ("codecarbon", cc))}
    rows = [
        (
            "import (-X importtime cumulative, ms)",
            ours["import_cumulative_ms"],
            cc["import_cumulative_ms"],
        ),
        ("import, wall (ms)", ours["import_wall_ms"], cc["import_wall_ms"]),
        ("import the tracker class (ms)", ours["import_tracker_ms"], cc["import_tracker_ms"]),
        ("first start: construct + start (ms)", ours["first_start_ms"], cc["first_start_ms"]),
        ("per epoch: lap() vs flush(), median (us)", ours["lap_median_us"], cc["lap_median_us"]),
        ("50 x 20 ms epochs, wall-time ratio", overhead["ours"], overhead["codecarbon"]),
        (
            f"idle CPU over {args.idle_s:g} s (% of a core)",
            ours["idle_cpu_pct"],
            cc["idle_cpu_pct"],
        ),
        ("RSS added by import + start (MiB)", ours["rss_added_mib"], cc["rss_added_mib"]),
        ("installed dependencies (transitive)", ours["deps"], cc["deps"]),
    ]
    print(f"| {'measure':<44} | {'carbon-callbacks':>16} | {'CodeCarbon':>12} | {'ratio':>8} |")
    print(f"|{'-' * 46}|{'-' * 18}|{'-' * 14}|{'-' * 10}|")
    for name, a, b in rows:
        ratio = f"{a / b:.3g}" if b else "-"
        print(f"| {name:<44} | {a:>16.4g} | {b:>12.4g} | {ratio:>8} |")


if __name__ == "__main__":
    main()

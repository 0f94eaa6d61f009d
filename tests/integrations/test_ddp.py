"""Distributed training in real processes on 127.0.0.1 (CPU, gloo): each node counted once,
the laps summed over ranks, one writer.

Each scenario runs a script of ``tests/integrations/dist/`` as subprocesses (Lightning's DDP
launcher re-executes its script; torchrun starts its workers), into the session's sqlite
MLflow store. Every rank reports what it saw in ``rank<k>.json``. CPU and RAM are forced
constants (50 W, 10 W), so a node's CPU energy in an epoch is 50 W x the epoch's duration:
counted twice on one node, it would be twice that.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("torch", reason="torch is not installed")
pytest.importorskip("mlflow", reason="MLflow is not installed")

from mlflow.tracking import MlflowClient  # noqa: E402

from carbon_callbacks.sensors.base import METHOD_ERROR_BOUNDS  # noqa: E402
from carbon_callbacks.sensors.estimate import CpuEstimateSensor  # noqa: E402

pytestmark = pytest.mark.slow

DIST = Path(__file__).parent / "dist"
TIMEOUT_S = 240.0  # one scenario; each takes 15-30 s on 2 cores
CPU_W, RAM_W = 50.0, 10.0  # as in dist/common.py
J_PER_KWH = 3.6e6
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "NODE_RANK")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def environment(sqlite_uri: str, experiment: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in RANK_VARIABLES}
    env.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(free_port()),
        OMP_NUM_THREADS="1",
        MLFLOW_TRACKING_URI=sqlite_uri,
        MLFLOW_EXPERIMENT_NAME=experiment,  # the HF Trainer's MLflowCallback
        CARBON_TEST_EXPERIMENT=experiment,  # the Lightning script's MLFlowLogger
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        COMET_DISABLE_AUTO_LOGGING="1",
        CUDA_VISIBLE_DEVICES="",  # CPU training, even on a GPU machine
    )
    return env


# A torchrun worker whose script does not leave the process group itself (an ordinary HF
# script: `Trainer` never does) can abort in C++ teardown at interpreter exit, after its last
# line ran and its summary printed: "terminate called without an active exception", SIGABRT.
# Seen about once in six runs of the autolog torchrun test under CPU load, never in the same
# script run 16 times outside pytest; the cause was not found. The scripts of this folder
# leave the group and end with os._exit (dist/common.py), and do not need this.
TEARDOWN_ABORT = "terminate called without an active exception"


def run_together(
    commands: Sequence[list[str]],
    env: dict[str, str],
    cwd: Path,
    *,
    teardown_abort_ok: bool = False,
) -> None:
    """Run `commands` at once (each in its own process group); fail with their output.

    With `teardown_abort_ok`, a process that failed only by torch's abort at exit
    (`TEARDOWN_ABORT`, once training and the summary are done) does not fail the test: what
    it wrote is checked by the test itself."""
    logs = [cwd / f"process{i}.log" for i in range(len(commands))]
    procs = []
    for command, log in zip(commands, logs, strict=True):
        with open(log, "wb") as f:
            procs.append(
                subprocess.Popen(
                    command,
                    stdout=f,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=cwd,
                    start_new_session=True,
                )  # fmt: skip
            )
    deadline = time.monotonic() + TIMEOUT_S
    try:
        for proc in procs:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        pass
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)  # torchrun's and Lightning's workers too
                proc.wait()
    failed = [(p, log) for p, log in zip(procs, logs, strict=True) if p.returncode != 0]
    if teardown_abort_ok:
        failed = [(p, log) for p, log in failed if not _aborted_at_exit(log)]
    if failed:
        text = "\n\n".join(f"{log}:\n{_ends(log.read_text(errors='replace'))}" for _, log in failed)
        pytest.fail(
            f"distributed script failed (exit {[p.returncode for p, _ in failed]}):\n{text}"
        )


def _aborted_at_exit(log: Path) -> bool:
    """The log shows the summary printed, then torch's abort at exit and nothing else wrong."""
    text = log.read_text(errors="replace")
    summary = text.find("  Journal: ")
    return (
        summary >= 0
        and text.find(TEARDOWN_ABORT, summary) > summary
        and "Error" not in (text[:summary])
    )


def _ends(text: str, n: int = 5000) -> str:
    """The start (the worker's own error) and the end (the launcher's) of a long log."""
    return text if len(text) <= 2 * n else f"{text[:n]}\n[...]\n{text[-n:]}"


def torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *args]


def check_distributed(
    out: Path, sqlite_uri: str, experiment: str, nodes: int, check_carbon_run: Any
) -> None:
    """One run, every epoch summed over ranks, CPU/RAM once per node, rank 0 the only writer."""
    zero, one = (json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1))
    assert zero["errors"] == [] and one["errors"] == []
    for rank in (zero, one):
        assert (rank["nodes"], rank["world_size"]) == (nodes, 2)
    # Local rank 0 of each node counts its CPU and RAM; a second rank on a node, nothing here.
    assert zero["local_methods"] == {"cpu": "constant", "gpu": "none", "ram": "constant"}
    other = "constant" if nodes == 2 else "none"
    assert one["local_methods"] == {"cpu": other, "gpu": "none", "ram": other}
    # The run's methods are every rank's: both ranks know them.
    assert zero["methods"] == one["methods"] == zero["local_methods"]
    # Every rank holds the sums (the laps were all-reduced), whatever it measured itself.
    assert one["totals"]["energy_kwh"] == pytest.approx(zero["totals"]["energy_kwh"], rel=1e-12)

    # Only global rank 0 wrote: one journal, one MLflow run.
    assert one["journal"] is None
    assert [p.name for p in (out / "journal").glob("*.jsonl")] == [Path(zero["journal"]).name]
    client = MlflowClient(sqlite_uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None
    runs = client.search_runs([found.experiment_id])
    assert len(runs) == 1, [r.info.run_id for r in runs]
    run_id = runs[0].info.run_id
    hist = check_carbon_run(client, run_id, SimpleNamespace(**zero["totals"]))
    tags = client.get_run(run_id).data.tags
    assert (tags["carbon.nodes"], tags["carbon.world_size"]) == (str(nodes), "2")

    # CPU and RAM once per node: 50 W and 10 W x the epoch (rank 0's clock). One node: exact;
    # two: each node over its own clock, read at the same barrier.
    tolerance = 1e-9 if nodes == 1 else 0.2
    for (step, duration_s), (_, cpu_kwh), (_, ram_kwh) in zip(
        hist["carbon/epoch_duration_s"],
        hist["carbon/epoch_cpu_energy_kwh"],
        hist["carbon/epoch_ram_energy_kwh"],
        strict=True,
    ):
        assert duration_s > 0.05, step  # training steps sleep: epochs are measurable
        assert cpu_kwh == pytest.approx(nodes * CPU_W * duration_s / J_PER_KWH, rel=tolerance)
        assert ram_kwh == pytest.approx(nodes * RAM_W * duration_s / J_PER_KWH, rel=tolerance)


def test_lightning_ddp_two_processes(
    sqlite_uri: str, tmp_path: Path, check_carbon_run: Any
) -> None:
    pytest.importorskip("lightning", reason="Lightning is not installed")
    experiment = f"ddp-lightning-{tmp_path.name}"
    env = environment(sqlite_uri, experiment)
    run_together([[sys.executable, str(DIST / "lightning_ddp.py"), str(tmp_path)]], env, tmp_path)
    check_distributed(tmp_path, sqlite_uri, experiment, 1, check_carbon_run)


def test_transformers_under_torchrun_two_processes(
    sqlite_uri: str, tmp_path: Path, check_carbon_run: Any
) -> None:
    pytest.importorskip("transformers", reason="Transformers is not installed")
    experiment = f"ddp-hf-{tmp_path.name}"
    env = environment(sqlite_uri, experiment)
    command = torchrun(
        "--nproc_per_node=2", "--master_addr=127.0.0.1", f"--master_port={env['MASTER_PORT']}",
        str(DIST / "hf_torchrun.py"), str(tmp_path),
    )  # fmt: skip
    run_together([command], env, tmp_path)
    check_distributed(tmp_path, sqlite_uri, experiment, 1, check_carbon_run)


def test_two_nodes_count_two_cpus(sqlite_uri: str, tmp_path: Path, check_carbon_run: Any) -> None:
    """Two torchrun "nodes" of one process each on this machine: each counts its own node."""
    pytest.importorskip("transformers", reason="Transformers is not installed")
    experiment = f"ddp-nodes-{tmp_path.name}"
    env = environment(sqlite_uri, experiment)
    commands = [
        torchrun(
            "--nnodes=2",
            f"--node_rank={node}",
            "--nproc_per_node=1",
            "--master_addr=127.0.0.1",
            f"--master_port={env['MASTER_PORT']}",
            str(DIST / "hf_torchrun.py"),
            str(tmp_path),
        )  # fmt: skip
        for node in (0, 1)
    ]
    run_together(commands, env, tmp_path)
    check_distributed(tmp_path, sqlite_uri, experiment, 2, check_carbon_run)


def plain_torchrun(
    env: dict[str, str], out: Path, *, nodes: int = 1
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``dist/plain_torchrun.py`` under torchrun, 2 processes (on one "node", or one on each
    of two): the two ranks' reports, each free of errors."""
    commands = [
        torchrun(
            f"--nnodes={nodes}",
            f"--node_rank={node}",
            f"--nproc_per_node={2 // nodes}",
            "--master_addr=127.0.0.1",
            f"--master_port={env['MASTER_PORT']}",
            str(DIST / "plain_torchrun.py"),
            str(out),
        )  # fmt: skip
        for node in range(nodes)
    ]
    run_together(commands, env, out)
    zero, one = (json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1))
    assert zero["errors"] == [] and one["errors"] == []
    return zero, one


def test_one_tracker_per_process_without_a_framework(sqlite_uri: str, tmp_path: Path) -> None:
    """The README's recipe: `roles_from_env` + `apply_roles` + a journal on rank 0 only."""
    zero, one = plain_torchrun(environment(sqlite_uri, "unused"), tmp_path)
    assert (zero["nodes"], zero["world_size"]) == (one["nodes"], one["world_size"]) == (1, 2)
    assert one["local_methods"]["cpu"] == one["local_methods"]["ram"] == "none"
    assert one["journal"] is None and len(list((tmp_path / "journal").glob("*.jsonl"))) == 1
    for mine, theirs in zip(zero["laps"], one["laps"], strict=True):  # both hold the sums
        for key in ("energy_kwh", "cpu_energy_kwh", "ram_energy_kwh", "emissions_kg"):
            assert theirs[key] == pytest.approx(mine[key], rel=1e-12), key
        # One CPU, over rank 0's epoch (not 50 W x 2).
        assert mine["cpu_energy_kwh"] == pytest.approx(CPU_W * mine["duration_s"] / J_PER_KWH)


def test_another_nodes_estimate_labels_the_run_estimated(sqlite_uri: str, tmp_path: Path) -> None:
    """Node 0 is given its CPU power, node 1 estimates its own: the run's methods gather both
    ranks', so the run is estimated and its CPU method says both, and the range is wide."""
    env = environment(sqlite_uri, "unused")
    env["CARBON_TEST_ESTIMATE_ON_NODE"] = "1"
    zero, one = plain_torchrun(env, tmp_path, nodes=2)
    assert zero["local_methods"]["cpu"] == "constant"
    assert one["local_methods"]["cpu"] == "estimate-tdp"
    assert zero["methods"]["cpu"] == "constant+estimate-tdp"
    assert one["methods"]["cpu"] == "estimate-tdp+constant"
    assert zero["tags"]["carbon.cpu_method"] == "constant+estimate-tdp"
    assert zero["tags"]["carbon.estimated"] == "true"
    for lap in zero["laps"]:
        assert lap["cpu_method"] == "constant+estimate-tdp"
        # Node 0's 50 W CPU and both RAMs are exact; node 1's estimated CPU is the range.
        exact_kwh = (CPU_W + 2 * RAM_W) * lap["duration_s"] / J_PER_KWH
        estimated_kwh = lap["energy_kwh"] - exact_kwh
        low, high = METHOD_ERROR_BOUNDS["estimate-tdp"]
        assert estimated_kwh > 0
        assert lap["energy_kwh_low"] == pytest.approx(exact_kwh + low * estimated_kwh, rel=0.02)
        assert lap["energy_kwh_high"] == pytest.approx(exact_kwh + high * estimated_kwh, rel=0.02)


@pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or (os.cpu_count() or 1) < 2,
    reason="needs Linux CPU affinity and 2 CPUs",
)
@pytest.mark.parametrize("pins, counted", [("1", 1), ("0;1", 2)])
def test_ranks_confined_to_cpus_count_those_of_the_node(
    pins: str, counted: int, sqlite_uri: str, tmp_path: Path
) -> None:
    """Each rank confined to some CPUs (a cpuset, ``taskset``): local rank 0's CPU estimate
    covers every rank's CPUs on the node (gathered over gloo), and no others."""
    env = environment(sqlite_uri, "unused")
    env["CARBON_TEST_PIN_CPUS"] = pins
    zero, one = plain_torchrun(env, tmp_path)
    assert zero["local_methods"]["cpu"] == "estimate-tdp"
    assert one["local_methods"]["cpu"] == "none"
    machine = os.cpu_count() or 1
    (reason,) = zero["cpu_reports"]
    share = counted / machine
    if share < 1:
        assert f"may run on {counted} of them, charged {counted}/{machine} of that" in reason
    else:
        assert "may run on" not in reason  # one rank on each CPU: the whole machine
    full_w = CpuEstimateSensor(cpus=range(machine)).power_w(1.0)  # this machine, all CPUs
    idle_w = CpuEstimateSensor(cpus=range(machine)).power_w(0.0)
    for lap in zero["laps"]:
        watts = lap["cpu_energy_kwh"] * J_PER_KWH / lap["duration_s"]
        assert share * idle_w * 0.999 <= watts <= share * full_w * 1.001

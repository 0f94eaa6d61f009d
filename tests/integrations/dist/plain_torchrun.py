"""One `Tracker` per process, no framework, under torchrun (gloo, CPU): the README's recipe.

    python -m torch.distributed.run --nproc_per_node=2 ... plain_torchrun.py OUT_DIR

Every rank writes ``OUT_DIR/rank<k>.json``; the journal goes to ``OUT_DIR/journal``. With
``CARBON_TEST_PIN_CPUS=1,2`` each rank first confines itself to those CPUs (as a batch
scheduler's cpuset would; ``0;1``: local rank k to the k-th set) and the CPU is estimated
instead of given in watts; with ``CARBON_TEST_ESTIMATE_ON_NODE=1`` node 1 does so too.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
from common import CALLBACK_KWARGS, STEP_S, leave

from carbon_callbacks import Tracker
from carbon_callbacks.distributed import apply_roles, roles_from_env
from carbon_callbacks.outputs import run_tags


def main(out: Path) -> None:
    dist.init_process_group("gloo")  # torchrun set RANK, LOCAL_RANK, WORLD_SIZE, ...
    roles = roles_from_env()
    kwargs = {k: v for k, v in CALLBACK_KWARGS.items() if k != "summary"}
    pinned = os.environ.get("CARBON_TEST_PIN_CPUS")
    if pinned:
        sets = pinned.split(";")
        mine = sets[roles.local_rank % len(sets)]
        os.sched_setaffinity(0, {int(cpu) for cpu in mine.split(",")})
        del kwargs["cpu_power_w"]
    if os.environ.get("CARBON_TEST_ESTIMATE_ON_NODE") == str(roles.node_rank):
        del kwargs["cpu_power_w"]  # this node's CPU is estimated; the other's is given
    tracker = Tracker(output_dir=out / "journal" if roles.is_global_zero else None, **kwargs)
    apply_roles(tracker, roles, device=torch.device("cpu"))
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(4, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    tracker.start()
    laps = []
    for _ in range(3):
        for _ in range(4):
            x = torch.randn(8, 4)
            loss = torch.nn.functional.mse_loss(model(x), x.sum(dim=1, keepdim=True))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            time.sleep(STEP_S)
        laps.append(dataclasses.asdict(tracker.lap()))  # every rank: the sum over ranks
    totals = tracker.stop()
    report = {
        "rank": roles.global_rank,
        "methods": tracker.methods,
        "local_methods": tracker.local_methods,
        "tags": run_tags(tracker),
        "cpu_reports": [r.reason for r in tracker.reports if r.component == "cpu" and r.available],
        "nodes": tracker.nodes,
        "world_size": tracker.world_size,
        "journal": None if tracker.journal_path is None else str(tracker.journal_path),
        "laps": laps,
        "totals": dataclasses.asdict(totals),
        "errors": tracker.errors.messages(),
    }
    (out / f"rank{roles.global_rank}.json").write_text(json.dumps(report, indent=1))
    dist.barrier()  # neither rank tears gloo down while the other still uses it
    dist.destroy_process_group()
    leave()


if __name__ == "__main__":
    main(Path(sys.argv[1]))

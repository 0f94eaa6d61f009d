"""Wall-time overhead of `CarbonCallback`, next to Hugging Face's CodeCarbon callback.

Lightning: a small MLP, 30 short epochs of ``--batches`` steps (64: about 0.1 s each here),
``MLFlowLogger`` on a sqlite store, with and without `CarbonCallback` (default sensors, MLflow
sink; and journal only); and, as the floor of any MLflow sink, a callback that measures nothing
and writes as many values and tags as ours in one ``log_batch`` when training ends.
Transformers: a tiny BERT from a config, 30 short epochs, ``report_to="none"`` vs
``report_to=["codecarbon"]`` vs `CarbonCallback` (journal only, as CodeCarbon writes a CSV);
with ``--hf-report-to mlflow`` every variant also reports to MLflow (sqlite), and ours logs to
that run through its MLflow sink.
The end-of-training artifacts (``carbon/summary.json`` and the chart) are off here
(``artifacts=False``): they cost once per run, not per epoch, and are measured apart.
Variants run interleaved, in a rotating order, after one warm-up round, each after a
``gc.collect()``.

The table gives, for each variant: its median wall time (callback construction + trainer
construction + fit); the median of its per-round ratio to the baseline of the same round, with
a bootstrap 95 % interval of that median; the ratio of its fastest run to the baseline's
fastest (interference only slows a run down, so the fastest runs are the least disturbed); the
time spent in our hooks on the training thread; the CPU time of the sink thread outside the
end-of-training flush (which the hooks' time includes), both as shares of the run's wall time;
and the ratio those two account for at most, ``1 / (1 - hooks - sink CPU)``, as if no sink work
overlapped training. That last figure is measured inside each run, so it does not move with the
machine's speed; on a shared machine the wall-time ratios do, by several per cent from one run
to the next.

Run: ``python bench/bench_callback_overhead.py [--rounds 7] [--epochs 30] [--batches 64]``.
CodeCarbon (``pip install codecarbon==3.3.2``) is optional; its online tracker looks the
machine up on the internet, so it is swapped for
``OfflineEmissionsTracker(country_iso_code="FRA")``, and a socket guard refuses any connection
that is not to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import io
import logging
import os
import random
import socket
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("COMET_DISABLE_AUTO_LOGGING", "1")
os.environ.setdefault("CODECARBON_LOG_LEVEL", "error")
warnings.filterwarnings("ignore", r"`isinstance\(treespec, LeafSpec\)`", FutureWarning)
warnings.filterwarnings("ignore", category=UserWarning, module="lightning")

Result = dict[str, list[float]]
# Values logged per epoch on a machine without a GPU: energy, emissions, duration, power,
# intensity, the CPU and RAM components, the two cumulative totals (see DESIGN's keys).
PER_EPOCH_KEYS = 9
# Tags of a run like the bench's: the contract's, the estimates' inputs, framework versions...
RUN_TAGS = 27


def guard_network() -> list[object]:
    """Refuse every connection but loopback and AF_UNIX; return the refused addresses."""
    refused: list[object] = []
    real_connect = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> None:
        if self.family == socket.AF_UNIX or (
            isinstance(address, tuple) and address[0] in ("127.0.0.1", "::1", "localhost")
        ):
            return real_connect(self, address)
        refused.append(address)
        raise OSError(f"bench: network refused: {address}")

    socket.socket.connect = connect  # type: ignore[method-assign]
    return refused


class Clock:
    """Seconds spent inside wrapped methods (wall on the caller's thread, or thread CPU)."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def wrap(
        self,
        cls: type,
        names: tuple[str, ...],
        cpu: bool = False,
        unless: Callable[[], bool] | None = None,
    ) -> None:
        """Time the `names` methods of `cls`; a call that starts while ``unless()`` holds is
        not counted."""
        timer = time.thread_time if cpu else time.perf_counter
        for name in names:
            original = getattr(cls, name)

            @functools.wraps(original)
            def timed(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
                if unless is not None and unless():
                    return _original(*args, **kwargs)
                began = timer()
                try:
                    return _original(*args, **kwargs)
                finally:
                    self.seconds += timer() - began

            setattr(cls, name, timed)

    def mark(self, cls: type, name: str) -> Callable[[], bool]:
        """Note when a `cls.name` call is under way; returns the test for `wrap`'s `unless`."""
        original = getattr(cls, name)
        under_way = [0]

        @functools.wraps(original)
        def marked(*args: Any, **kwargs: Any) -> Any:
            under_way[0] += 1
            try:
                return original(*args, **kwargs)
            finally:
                under_way[0] -= 1

        setattr(cls, name, marked)
        return lambda: under_way[0] > 0


HOOKS = Clock()  # callback hooks, on the training thread
WORKER = Clock()  # sink thread CPU
SERVER: list[Callable[[], float]] = []  # CPU seconds of the MLflow server so far, when one runs


def process_tree_cpu(pid: int) -> Callable[[], float]:
    """CPU seconds (user + system) used so far by process `pid` and its children."""
    import psutil

    def cpu() -> float:
        root = psutil.Process(pid)
        total = 0.0
        for process in (root, *root.children(recursive=True)):
            with contextlib.suppress(psutil.NoSuchProcess):  # a worker that just went
                times = process.cpu_times()
                total += times.user + times.system
        return total

    return cpu


def interleave(variants: dict[str, Callable[[], None]], rounds: int) -> Result:
    names = list(variants)
    for name in names:  # warm-up round, not counted
        with contextlib.redirect_stdout(io.StringIO()):
            variants[name]()
    keys = ("", ":hooks", ":cpu", ":server")
    times: Result = {f"{name}{key}": [] for name in names for key in keys}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            HOOKS.seconds = WORKER.seconds = 0.0
            gc.collect()
            server = SERVER[0]() if SERVER else 0.0
            with contextlib.redirect_stdout(io.StringIO()):  # HF prints a dict per run
                began = time.perf_counter()
                variants[name]()
                wall = time.perf_counter() - began
            times[name].append(wall)
            times[f"{name}:hooks"].append(HOOKS.seconds / wall)
            times[f"{name}:cpu"].append(WORKER.seconds / wall)
            times[f"{name}:server"].append(((SERVER[0]() - server) if SERVER else 0.0) / wall)
    return times


def time_sink_thread(sink: type) -> None:
    """Count the sink thread's CPU in `WORKER`, once. The end-of-training flush is in the
    hooks' wall time already: the sends it waits for are not counted twice."""
    if getattr(sink, "_bench_timed", False):
        return
    flushing = WORKER.mark(sink, "flush")
    WORKER.wrap(sink, ("_open", "_send"), cpu=True, unless=flushing)
    sink._bench_timed = True  # type: ignore[attr-defined]


def lightning_variants(
    root: Path, epochs: int, batches: int, uri: str
) -> dict[str, Callable[[], None]]:
    import lightning.pytorch as pl
    import torch
    from lightning.pytorch.loggers import MLFlowLogger
    from torch.utils.data import DataLoader, TensorDataset

    from carbon_callbacks.integrations.lightning import CarbonCallback
    from carbon_callbacks.integrations.mlflow import MlflowSink

    hooks = ("__init__", "on_train_start", "on_train_epoch_end", "on_train_end")
    HOOKS.wrap(CarbonCallback, hooks)
    time_sink_thread(MlflowSink)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(32 * batches, 32, generator=gen)
    loader = DataLoader(TensorDataset(x, x.sum(dim=1, keepdim=True)), batch_size=32)

    class Mlp(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(
                torch.nn.Linear(32, 256), torch.nn.ReLU(), torch.nn.Linear(256, 1)
            )

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            loss = torch.nn.functional.mse_loss(self.net(batch[0]), batch[1])
            self.log("train_loss", loss, on_step=False, on_epoch=True)
            return loss

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=1e-3)

    class FloorCallback(pl.Callback):
        """No measuring: the same number of values and tags as ours, written when training
        ends in one ``log_batch`` on the training thread: what MLflow's client alone costs to
        store them (a sink cannot do with less: one request, no thread, no journal)."""

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            self.epochs = trainer.current_epoch + 1

        def on_train_end(self, trainer: Any, pl_module: Any) -> None:
            from mlflow.entities import Metric, RunTag
            from mlflow.tracking import MlflowClient

            now = int(time.time() * 1000)
            metrics = [
                Metric(f"carbon/epoch_key_{k}", 1.0, now, step)
                for step in range(self.epochs)
                for k in range(PER_EPOCH_KEYS)
            ]
            metrics += [Metric(f"carbon/end_key_{k}", 1.0, now, self.epochs) for k in range(8)]
            tags = [RunTag(f"carbon.tag_{k}", "value") for k in range(RUN_TAGS)]
            MlflowClient(uri).log_batch(trainer.logger.run_id, metrics=metrics, tags=tags)

    HOOKS.wrap(FloorCallback, ("on_train_epoch_end", "on_train_end"))

    def run(with_callback: bool, sinks: Any = "auto", floor: bool = False) -> None:
        callbacks: list[pl.Callback] = []
        if with_callback:
            # artifacts=False: the per-epoch cost, as measured before the end-of-training
            # artifacts existed; their one-off cost is measured apart (see the README).
            callbacks.append(
                CarbonCallback(country="FR", summary=False, sinks=sinks, artifacts=False)
            )
        if floor:
            callbacks.append(FloorCallback())
        trainer = pl.Trainer(
            max_epochs=epochs,
            accelerator="cpu",
            devices=1,
            logger=MLFlowLogger(experiment_name="bench", tracking_uri=uri),
            callbacks=callbacks,
            enable_progress_bar=False,
            enable_model_summary=False,
            enable_checkpointing=False,
            default_root_dir=root,
            log_every_n_steps=50,
        )
        trainer.fit(Mlp(), loader)

    return {
        "MLFlowLogger (baseline)": functools.partial(run, False),
        "MLFlowLogger + CarbonCallback": functools.partial(run, True),
        # The same measuring, written to the journal only: the cost of our MLflow writes apart.
        "MLFlowLogger + CarbonCallback (journal only)": functools.partial(run, True, None),
        "MLFlowLogger + the same values in one log_batch (MLflow's floor)": functools.partial(
            run, False, floor=True
        ),
    }


def transformers_variants(
    root: Path, epochs: int, batches: int, uri: str, report_to: tuple[str, ...] = ()
) -> dict[str, Callable[[], None]]:
    """`report_to` the baseline's integrations (``("mlflow",)``: every variant reports to an
    MLflow run, which ours finds and logs to; else ours writes the journal only)."""
    import mlflow  # noqa: F401  (before transformers: see carbon_callbacks.demo)
    import torch
    from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments
    from transformers.integrations import CodeCarbonCallback

    from carbon_callbacks.integrations.mlflow import MlflowSink
    from carbon_callbacks.integrations.transformers import CarbonCallback

    HOOKS.wrap(CarbonCallback, ("__init__", "on_train_begin", "on_epoch_end", "on_train_end"))
    time_sink_thread(MlflowSink)
    if "mlflow" in report_to:
        os.environ["MLFLOW_TRACKING_URI"] = uri
        os.environ["MLFLOW_EXPERIMENT_NAME"] = "bench-hf"
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 100, (32 * max(1, batches // 8), 16), generator=gen)
    data = [{"input_ids": i, "labels": int(i[0] % 2)} for i in ids]
    sizes: dict[str, Any] = {"hidden_size": 32, "intermediate_size": 64, "num_labels": 2}
    config = BertConfig(
        vocab_size=100, num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=32,
        **sizes,
    )  # fmt: skip

    def run(extra: list[str], ours: bool) -> None:
        args = TrainingArguments(
            output_dir=str(root / "hf"),
            num_train_epochs=epochs,
            per_device_train_batch_size=32,
            report_to=[*report_to, *extra],
            save_strategy="no",
            logging_strategy="no",
            use_cpu=True,
            disable_tqdm=True,
        )
        sinks = "auto" if report_to else None
        callbacks = (  # artifacts=False: as for Lightning above
            [CarbonCallback(country="FR", sinks=sinks, summary=False, artifacts=False)]
            if ours
            else []
        )
        trainer = Trainer(
            model=BertForSequenceClassification(config),
            args=args,
            train_dataset=data,
            callbacks=callbacks,
        )
        trainer.train()

    reported = f"report_to={list(report_to)}" if report_to else 'report_to="none"'
    variants = {
        f"{reported} (baseline)": functools.partial(run, [], False),
        f"{reported} + CarbonCallback ({'MLflow sink' if report_to else 'journal only'})": (
            functools.partial(run, [], True)
        ),
    }
    try:
        import codecarbon
    except ImportError:
        print("codecarbon is not installed: pip install codecarbon==3.3.2", file=sys.stderr)
    else:
        codecarbon.EmissionsTracker = functools.partial(  # type: ignore[misc]
            codecarbon.OfflineEmissionsTracker, country_iso_code="FRA"
        )
        HOOKS.wrap(CodeCarbonCallback, ("on_init_end", "on_train_begin", "on_train_end"))
        variants[f"report_to={[*report_to, 'codecarbon']} (offline)"] = functools.partial(
            run, ["codecarbon"], False
        )
    return variants


def median_interval(values: list[float], draws: int = 2000) -> tuple[float, float]:
    """A bootstrap 95 % interval of the median of `values` (seeded: the same data, the same
    interval)."""
    rng = random.Random(0)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(draws))
    return medians[int(0.025 * draws)], medians[int(0.975 * draws) - 1]


def table(framework: str, times: Result, server: bool) -> list[str]:
    names = [name for name in times if ":" not in name]
    base = times[names[0]]
    base_server = statistics.median(times[f"{names[0]}:server"])
    rows = []
    for name in names:
        ratios = [t / b for t, b in zip(times[name], base, strict=True)]
        low, high = median_interval(ratios)
        hooks = statistics.median(times[f"{name}:hooks"])
        cpu = statistics.median(times[f"{name}:cpu"])
        # Our share of the run's own wall time, at most: the hooks, plus the sink thread's CPU
        # as if none of it overlapped training. Measured within each run, so the machine's
        # speed changes cancel out of it.
        bound = 1 / (1 - hooks - cpu)
        fastest = min(times[name]) / min(base)
        row = (
            f"| {framework} | {name} | {statistics.median(times[name]):.3f} | "
            f"{statistics.median(ratios):.4f} | {low:.4f}-{high:.4f} | {fastest:.4f} | "
            f"{min(ratios):.3f}-{max(ratios):.3f} | {hooks * 100:.2f} % | {cpu * 100:.2f} % | "
            f"{bound:.4f} |"
        )
        if server:
            # The server's extra work for this variant, as if it ran on the training's CPU.
            extra = statistics.median(times[f"{name}:server"]) - base_server
            row += f" {extra * 100:.2f} % | {1 / (1 - hooks - cpu - extra):.4f} |"
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument(
        "--batches", type=int, default=64, help="Lightning steps per epoch (HF: an eighth)"
    )
    parser.add_argument("--only", choices=("lightning", "transformers"), default=None)
    parser.add_argument(
        "--store",
        choices=("sqlite", "server"),
        default="sqlite",
        help="Lightning's MLflow store: a sqlite file, or an 'mlflow server' on 127.0.0.1 "
        "(sqlite behind it) whose CPU is measured too",
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: steadier timings; default)"
    )
    parser.add_argument(
        "--hf-report-to",
        choices=("none", "mlflow"),
        default="none",
        help="HF: what every variant reports to (mlflow: the sqlite store, and ours logs "
        "to that run; none: ours writes the journal only, as CodeCarbon writes a CSV)",
    )
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    logging.disable(logging.WARNING)  # framework chatter; the table is the output
    refused = guard_network()
    server = args.store == "server"
    rows = [
        "| framework | variant | median wall s | median ratio to baseline "
        "| 95 % interval of the median | ratio of the fastest runs | ratio range "
        "| in callback hooks | sink thread CPU | accounted ratio, at most |"
        + (" server CPU beyond the baseline's | accounted ratio with the server's CPU |"
           if server else ""),
        "|---|---|---|---|---|---|---|---|---|---|" + ("---|---|" if server else ""),
    ]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        root = Path(tmp)
        os.environ["CARBON_CALLBACKS_OUTPUT_DIR"] = str(root / "journal")
        uri = f"sqlite:///{root / 'bench.db'}"
        if server:
            sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
            from scripts.mlflow_server import MlflowServer

            (root / "server").mkdir()
            mlflow_server = MlflowServer(root / "server")
            uri = stack.enter_context(mlflow_server)
            assert mlflow_server.process is not None
            SERVER.append(process_tree_cpu(mlflow_server.process.pid))
        hf_report_to = () if args.hf_report_to == "none" else (args.hf_report_to,)
        builders = {
            "lightning": lightning_variants,
            "transformers": functools.partial(transformers_variants, report_to=hf_report_to),
        }
        for framework, build in builders.items():
            if args.only in (None, framework):
                variants = build(root, args.epochs, args.batches, uri)
                rows += table(framework, interleave(variants, args.rounds), server)
    print(
        f"\n{args.epochs} epochs of {args.batches} batches per run, {args.rounds} interleaved "
        f"rounds after a warm-up; MLflow store: {args.store}; "
        f"{os.cpu_count()} CPUs, torch threads {args.threads}, Python {sys.version.split()[0]}"
    )
    print("\n".join(rows))
    if refused:
        print(f"refused network connections: {refused}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Checks on a real NVIDIA GPU (marker `gpu`; skipped elsewhere). Under 5 minutes.

    python -m pytest -m gpu tests/gpu -s

Prints the figures the README quotes; with CARBON_GPU_REPORT=path also writes them as JSON.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from carbon_callbacks.sensors.nvml import driver_found, open_gpu_sensor

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(driver_found() is None, reason="no NVIDIA driver on this machine"),
]

FIGURES: dict[str, Any] = {}


@pytest.fixture(scope="module", autouse=True)
def _report() -> Any:
    yield
    print("\nGPU figures:", json.dumps(FIGURES, indent=2))
    path = os.environ.get("CARBON_GPU_REPORT")
    if path:
        Path(path).write_text(json.dumps(FIGURES, indent=2))


def _torch_cuda() -> Any:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip(reason="torch sees no CUDA device")
    return torch


def _matmuls(torch: Any, seconds: float) -> None:
    a = torch.randn(8192, 8192, device="cuda")
    b = torch.randn(8192, 8192, device="cuda")
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for _ in range(10):
            a = (a @ b).tanh_()
        torch.cuda.synchronize()


def test_real_counter_reads() -> None:
    sensor = open_gpu_sensor(gpu_ids=[0])
    try:
        sensor.start(time.monotonic())
        assert sensor.method in ("nvml-energy", "nvml-power")
        time.sleep(1.0)
        first = sensor.energy_j(time.monotonic())
        time.sleep(1.0)
        second = sensor.energy_j(time.monotonic())
        assert 0 < first < second  # an idle GPU still draws tens of watts
        FIGURES["model"] = sensor.models[0]
        FIGURES["method"] = sensor.method
        FIGURES["idle_power_w"] = second - first
    finally:
        sensor.close()


def test_energy_counter_vs_power_integral() -> None:
    """The counter against a 10 Hz integral of nvmlDeviceGetPowerUsage over >= 5 s of work."""
    import pynvml

    torch = _torch_cuda()
    pynvml.nvmlInit()
    try:
        handle = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())
        try:
            e0 = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        except pynvml.NVMLError_NotSupported:
            pytest.skip(reason="this GPU has no energy counter")
        samples: list[tuple[float, float]] = []
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                samples.append((time.monotonic(), pynvml.nvmlDeviceGetPowerUsage(handle) / 1e3))
                done.wait(0.1)

        thread = threading.Thread(target=sample)
        t0 = time.monotonic()
        thread.start()
        _matmuls(torch, 6.0)
        done.set()
        thread.join()
        e1 = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        t1 = time.monotonic()
    finally:
        pynvml.nvmlShutdown()
    counter_j = (e1 - e0) / 1e3
    integral_j = sum(
        (tb - ta) * (pa + pb) / 2 for (ta, pa), (tb, pb) in zip(samples, samples[1:], strict=False)
    )
    diff_pct = (integral_j - counter_j) / counter_j * 100
    FIGURES["counter_vs_10hz_integral"] = {
        "seconds": t1 - t0,
        "counter_j": counter_j,
        "integral_j": integral_j,
        "difference_pct": diff_pct,
        "mean_power_w": counter_j / (t1 - t0),
    }
    assert t1 - t0 >= 5
    assert counter_j > 0 and abs(diff_pct) < 15


def test_lightning_gpu_training_matches_an_independent_counter(tmp_path: Path) -> None:
    import pynvml

    torch = _torch_cuda()
    pl = pytest.importorskip("lightning.pytorch")
    from torch.utils.data import DataLoader, TensorDataset

    from carbon_callbacks.integrations.lightning import CarbonCallback

    class Model(pl.LightningModule):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(
                torch.nn.Linear(4096, 4096), torch.nn.ReLU(), torch.nn.Linear(4096, 1)
            )

        def training_step(self, batch: Any, _: int) -> Any:
            x, y = batch
            return torch.nn.functional.mse_loss(self.net(x).squeeze(-1), y)

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=1e-4)

    x = torch.randn(16384, 4096)
    data = DataLoader(TensorDataset(x, x.sum(1)), batch_size=1024)
    callback = CarbonCallback(intensity_g_per_kwh=100, sinks=None, output_dir=tmp_path)
    trainer = pl.Trainer(
        accelerator="gpu",
        devices=1,
        max_epochs=4,
        callbacks=[callback],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        num_sanity_val_steps=0,
    )
    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())
    e0 = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    trainer.fit(Model(), data)
    e1 = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    pynvml.nvmlShutdown()
    independent_kwh = (e1 - e0) / 1e3 / 3.6e6
    totals = callback.tracker.totals
    assert totals is not None and totals.gpu_energy_kwh is not None
    records = [
        json.loads(line)
        for path in tmp_path.glob("*.jsonl")
        for line in path.read_text().splitlines()
    ]
    epochs = [r for r in records if r["type"] == "lap"]
    assert len(epochs) >= 4 and all(r["gpu_energy_kwh"] > 0 for r in epochs[:4])
    diff_pct = (totals.gpu_energy_kwh - independent_kwh) / independent_kwh * 100
    FIGURES["lightning"] = {
        "epochs": 4,
        "callback_gpu_kwh": totals.gpu_energy_kwh,
        "independent_counter_kwh": independent_kwh,
        "difference_pct": diff_pct,
        "gpu_method": totals.gpu_method,
    }
    # fit() also spans set-up before on_train_start and tear-down after on_train_end.
    assert abs(diff_pct) < 5

"""Fixtures shared by the core tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from carbon_callbacks.sensors import cpu_model, estimate

# A small CPU TDP table with round constants: 10 W per thread for unknown CPUs, a linear
# load curve idle at 25 % of TDP and TDP at full load, one microarchitecture (2 W a thread).
TDP_TABLE: dict[str, Any] = {
    "meta": {"source": "test"},
    "default_w_per_thread": 10.0,
    "load_curve": [[0.0, 0.25], [1.0, 1.0]],
    "families": [
        {"family": "rome", "pattern": "^amd epyc 7\\w\\w2", "w_per_thread": 2.0, "basis": "test"}
    ],
    "cpus": [
        ["Intel Xeon Gold 6248", 150.0],
        ["Intel Xeon Gold 6248R", 205.0],
        ["Intel Xeon E5-2686 v4", 145.0],
        ["AMD EPYC 7742", 225.0],
        ["AMD Opteron 6274", 115.0],
        ["460", 95.0],
        ["Intel Core i5-460M", 35.0],
        ["Apple M1", 10.0],
        ["Intel Core i7-8700K", 95.0],
        ["Intel Xeon Platinum 8480+", 350.0],
    ],
}


@pytest.fixture
def table(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """`TDP_TABLE` in place of the bundled CPU table."""
    monkeypatch.setattr(cpu_model, "read_json", lambda name: TDP_TABLE)
    estimate.reset()
    yield TDP_TABLE
    estimate.reset()

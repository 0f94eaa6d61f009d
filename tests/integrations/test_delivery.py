"""`BackgroundSink`: a sink stuck on a dead server never holds the training thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from carbon_callbacks.delivery import BackgroundSink, Record


class StuckSink(BackgroundSink):
    """Every send blocks until released (a server that does not answer)."""

    def __init__(self, queue_size: int) -> None:
        super().__init__("run-1", name="stuck", queue_size=queue_size)
        self.release = threading.Event()
        self.sent: list[Record] = []

    def _send(self, records: Sequence[Record]) -> None:
        self.release.wait(10)
        self.sent.extend(records)


def test_a_stuck_sink_neither_blocks_nor_loses_track_of_records() -> None:
    sink = StuckSink(queue_size=2)
    began = time.monotonic()
    sink.log_tags({"carbon.country": "FR"})
    time.sleep(0.05)  # the worker takes the first record and blocks on it
    for epoch in range(5):
        sink.log_metrics({"carbon/epoch_energy_kwh": 0.1}, step=epoch)
    assert time.monotonic() - began < 1.0
    assert sink.flush(0.2) is False
    assert sink.dropped == 3
    undelivered = sink.undelivered
    assert len(undelivered) == 6  # 3 dropped, the tags being sent, 2 queued
    assert {(r.run, r.step) for r in undelivered} == {("run-1", s) for s in (None, *range(5))}
    assert "3 dropped" in (sink.describe_undelivered() or "")
    assert sink.errors.messages()  # recorded once, not raised

    sink.release.set()
    sink.close()
    assert [r.kind for r in sink.sent] == ["tags", "metrics", "metrics"]

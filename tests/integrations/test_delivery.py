"""`BackgroundSink`: a sink stuck on a dead server never holds the training thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from carbon_callbacks.delivery import MAX_CPU_SHARE, BackgroundSink, Record


class StuckSink(BackgroundSink):
    """Every send blocks until released (a server that does not answer)."""

    def __init__(self, queue_size: int) -> None:
        super().__init__("run-1", name="stuck", queue_size=queue_size, min_interval_s=0)
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


class CostlySink(BackgroundSink):
    """Each request burns `cpu_s` of CPU on the worker (a tracking client's own work)."""

    def __init__(self, cpu_s: float, min_interval_s: float) -> None:
        super().__init__("run-1", name="costly", min_interval_s=min_interval_s)
        self.cpu_s = cpu_s
        self.requests: list[list[Record]] = []

    def _send(self, records: Sequence[Record]) -> None:
        began = time.thread_time()
        while time.thread_time() - began < self.cpu_s:
            pass
        self.requests.append(list(records))


def test_the_first_request_waits_min_interval_so_tags_go_with_the_first_metrics() -> None:
    sink = CostlySink(cpu_s=0.0, min_interval_s=0.5)
    sink.log_tags({"carbon.country": "FR"})
    sink.log_metrics({"carbon/epoch_energy_kwh": 0.1}, step=0)
    time.sleep(0.1)
    assert sink.requests == []  # held for min_interval_s
    assert sink.flush(5.0) is True  # a flush sends at once
    assert [[r.kind for r in req] for req in sink.requests] == [["tags", "metrics"]]
    sink.close()


def test_waits_longer_than_the_os_allows_are_clamped_not_a_crash() -> None:
    """A huge interval or flush timeout (1e300 s) once crashed the worker thread
    (``OverflowError: timestamp out of range``): waits are capped at ``TIMEOUT_MAX``."""
    sink = CostlySink(cpu_s=0.0, min_interval_s=1e300)
    sink.log_metrics({"carbon/epoch_energy_kwh": 0.1}, step=0)
    time.sleep(0.1)  # the worker now waits for the interval
    assert sink.requests == [] and sink._thread is not None and sink._thread.is_alive()
    assert sink.flush(1e300) is True  # sent at once, and the flush's own wait is capped too
    assert len(sink.requests) == 1 and sink.errors.messages() == []
    sink.close()


def test_requests_are_spaced_by_their_cpu_cost_so_short_epochs_cost_few_requests() -> None:
    # 5 ms of CPU a request: the next one waits 5 ms / MAX_CPU_SHARE = 2.5 s (min_interval 0).
    sink = CostlySink(cpu_s=0.005, min_interval_s=0.0)
    assert 0.005 / MAX_CPU_SHARE >= 2.5
    for epoch in range(50):  # "epochs" of 10 ms: 0.5 s in all
        sink.log_metrics({"carbon/epoch_energy_kwh": 0.1}, step=epoch)
        time.sleep(0.01)
    assert len(sink.requests) == 1  # the first record went at once, the rest wait
    assert sink.flush(5.0) is True
    assert len(sink.requests) == 2
    assert [r.step for req in sink.requests for r in req] == list(range(50))  # in order
    sink.close()


class CountingCondition(threading.Condition):
    def __init__(self) -> None:
        super().__init__()
        self.notified = 0

    def notify_all(self) -> None:
        self.notified += 1
        super().notify_all()


def test_a_record_wakes_the_worker_only_when_the_queue_was_empty() -> None:
    # A paced worker takes new records with the others: waking it for each one would cost the
    # training thread a GIL hand-over per epoch for nothing.
    sink = CostlySink(cpu_s=0.0, min_interval_s=60.0)
    sink._cond = cond = CountingCondition()
    for epoch in range(5):
        sink.log_metrics({"carbon/epoch_energy_kwh": 0.1}, step=epoch)
    assert cond.notified == 1  # the first record, to an empty queue
    assert sink.flush(5.0) is True
    assert [r.step for req in sink.requests for r in req] == [0, 1, 2, 3, 4]
    before = cond.notified
    sink.log_metrics({"carbon/epoch_energy_kwh": 0.1}, step=5)  # the queue is empty again
    assert cond.notified == before + 1
    assert sink.flush(5.0) is True
    assert [r.step for r in sink.requests[-1]] == [5]
    sink.close()

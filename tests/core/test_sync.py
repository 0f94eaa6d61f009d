"""Journal-backed delivery: keys, ledgers, retries with backoff, and `carbon-callbacks sync`.

No tracking client here: sinks and resenders are in-memory fakes. The real MLflow and Comet
resends are exercised in ``tests/integrations/test_faults.py`` and ``test_comet.py``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from carbon_callbacks import Tracker
from carbon_callbacks.delivery import (
    BackgroundSink,
    DeliveryRefused,
    Ledger,
    Record,
    ledger_path,
    sink_id,
)
from carbon_callbacks.journal import read_journal
from carbon_callbacks.session import CarbonSession
from carbon_callbacks.sync import journal_files, main, pending, sync_journal
from tests.fakes.clock import FakeClock


class MemorySink(BackgroundSink):
    """Delivers into a list; `fail_next` sends raise first; `down` makes every send raise."""

    def __init__(self, name: str = "memory", **kwargs: Any) -> None:
        kwargs.setdefault("min_interval_s", 0.0)
        kwargs.setdefault("backoff_s", 0.01)
        super().__init__("run-1", name=name, **kwargs)
        self.sent: list[Record] = []
        self.fail_next = 0
        self.down = False
        self.attempts = 0

    def target(self) -> dict[str, Any]:
        return {"kind": "memory", "run": self.name}

    def _send(self, records: Sequence[Record]) -> None:
        self.attempts += 1
        if self.down:
            raise ConnectionError("server down")
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("connection reset")
        self.sent.extend(records)


class Resender:
    """A fake ``resend`` for kind "memory": keeps what it got, can fail or know some keys."""

    def __init__(self) -> None:
        self.received: list[Mapping[str, Any]] = []
        self.fail: Exception | None = None
        self.known: set[str] = set()

    def __call__(
        self,
        target: Mapping[str, Any],
        records: Sequence[Mapping[str, Any]],
        mark: Any,
        *,
        tracking_uri: str | None = None,
    ) -> None:
        if self.fail is not None:
            raise self.fail
        fresh = [r for r in records if r["key"] not in self.known]
        self.received.extend(fresh)
        mark([r["key"] for r in records if r["key"] in self.known], True)
        mark([r["key"] for r in fresh], False)


def run_session(tmp_path: Path, sinks: Sequence[Any], epochs: int = 3) -> CarbonSession:
    clock = FakeClock()
    tracker = Tracker(
        cpu_power_w=36,
        count_ram=False,
        count_gpu=False,
        intensity_g_per_kwh=100,
        output_dir=tmp_path,
        clock=clock,
    )
    session = CarbonSession(tracker, sinks, summary=False, flush_timeout_s=2.0)
    session.begin()
    for epoch in range(epochs):
        clock.advance(100)
        session.epoch_end(epoch)
    clock.advance(1)
    session.end()
    return session


def payloads(journal: Path) -> list[dict[str, Any]]:
    return [r for r in read_journal(journal) if r["type"] in ("tags", "metrics")]


def test_every_call_is_journaled_with_a_key_and_confirmed_in_the_ledger(tmp_path: Path) -> None:
    sink = MemorySink()
    session = run_session(tmp_path, [sink])
    journal = session.journal_path
    assert journal is not None
    records = read_journal(journal)
    sinks = [r for r in records if r["type"] == "sink"]
    assert sinks == [
        {
            "type": "sink",
            "sink": sink_id(sink.target()),
            "kind": "memory",
            "run": "memory",
            "run_id": session.tracker.run_id,
        }
    ]
    sent = payloads(journal)
    # tags, 3 epochs, the final totals, and the greener-region tag
    assert [r["step"] for r in sent if r["type"] == "metrics"] == [0, 1, 2, 3]
    assert len({r["key"] for r in sent}) == len(sent)
    assert [r.key for r in sink.sent] == [r["key"] for r in sent]
    ledger = Ledger(journal, sinks[0]["sink"])
    assert ledger.path == ledger_path(journal, sinks[0]["sink"])
    assert ledger.delivered() == {r["key"] for r in sent}
    assert pending(journal)[0][2] == []
    assert session.undelivered == []


def test_failures_are_retried_with_backoff_and_the_training_thread_never_waits(
    tmp_path: Path,
) -> None:
    sink = MemorySink(backoff_s=0.05, max_retries=3)
    sink.fail_next = 2
    began = time.monotonic()
    sink.log_metrics({"carbon/energy_kwh": 1.0}, step=0, key="k0")
    sink.log_metrics({"carbon/energy_kwh": 2.0}, step=1, key="k1")
    assert time.monotonic() - began < 0.05
    assert sink.flush(5.0) is True
    assert sink.retries == 2 and sink.attempts == 3
    assert time.monotonic() - began >= 0.05 + 0.1  # backed off 0.05 s, then 0.1 s
    assert [r.step for r in sink.sent] == [0, 1]  # order kept through the retries
    sink.close()


def test_a_refusal_is_not_retried(tmp_path: Path) -> None:
    class Refusing(MemorySink):
        def _send(self, records: Sequence[Record]) -> None:
            self.attempts += 1
            raise DeliveryRefused("the experiment has ended")

    sink = Refusing(max_retries=5, backoff_s=10.0)
    sink.log_metrics({"carbon/energy_kwh": 1.0}, step=0, key="k0")
    began = time.monotonic()
    assert sink.flush(5.0) is False
    assert time.monotonic() - began < 1.0  # no backoff wait
    assert (sink.attempts, sink.retries, sink.failed) == (1, 0, 1)
    assert "has ended" in sink.errors.messages()[0]
    assert "retrying" not in sink.errors.messages()[0]
    sink.close()


def test_a_sink_down_all_run_leaves_everything_pending_then_sync_sends_it_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sink = MemorySink(max_retries=1)
    sink.down = True
    session = run_session(tmp_path, [sink])
    journal = session.journal_path
    assert journal is not None
    assert session.undelivered and "carbon-callbacks sync" in session.undelivered[0]
    [(ident, target, todo)] = pending(journal)
    assert target == {"kind": "memory", "run": "memory"}
    assert len(todo) == len(payloads(journal)) == 6
    errors = [r for r in read_journal(journal) if r["type"] == "error"]
    assert any("server down" in r["message"] for r in errors)  # recorded in the journal too

    resend = Resender()
    [result] = sync_journal(journal, senders={"memory": resend})
    assert (result.pending, result.sent, result.error) == (6, 6, None)
    assert [r["key"] for r in resend.received] == [r["key"] for r in payloads(journal)]
    assert "6 sent" in result.describe()
    [again] = sync_journal(journal, senders={"memory": resend})
    assert (again.pending, again.sent) == (0, 0) and "up to date" in again.describe()
    assert len(resend.received) == 6


def test_sync_skips_what_the_destination_has_and_keeps_failures_pending(tmp_path: Path) -> None:
    sink = MemorySink(max_retries=0)
    sink.down = True
    session = run_session(tmp_path, [sink], epochs=2)
    journal = session.journal_path
    assert journal is not None
    keys = [r["key"] for r in payloads(journal)]

    resend = Resender()
    resend.fail = ConnectionError("still down")
    [failed] = sync_journal(journal, senders={"memory": resend})
    assert failed.error == "ConnectionError: still down"
    assert "FAILED" in failed.describe() and "pending" in failed.describe()
    assert len(pending(journal)[0][2]) == len(keys)

    resend.fail = None
    resend.known = set(keys[:2])  # reached the server, but the answer was lost
    [result] = sync_journal(journal, senders={"memory": resend})
    assert (result.sent, result.already) == (len(keys) - 2, 2)
    assert pending(journal)[0][2] == []


def test_two_sinks_each_have_their_ledger(tmp_path: Path) -> None:
    up, down = MemorySink("up"), MemorySink("down", max_retries=0)
    down.down = True
    session = run_session(tmp_path, [up, down], epochs=1)
    journal = session.journal_path
    assert journal is not None
    by_sink = {target["run"]: todo for _, target, todo in pending(journal)}
    assert by_sink["up"] == []
    assert len(by_sink["down"]) == len(payloads(journal))
    assert len(list(tmp_path.glob("*.delivered"))) == 1  # the down sink confirmed nothing


def test_a_torn_ledger_line_is_not_counted(tmp_path: Path) -> None:
    journal = tmp_path / "run.jsonl"
    ledger = Ledger(journal, "memory-x")
    ledger.mark(["a", "b"])
    with open(ledger.path, "a") as f:
        f.write("c")  # a crash mid-write
    assert ledger.delivered() == {"a", "b"}


def test_sync_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "missing")]) == 2
    assert "no journal or folder" in capsys.readouterr().err
    sink = MemorySink(max_retries=0)
    sink.down = True
    session = run_session(tmp_path, [sink], epochs=1)
    assert session.journal_path is not None
    assert journal_files(tmp_path) == [session.journal_path]
    assert journal_files(session.journal_path) == [session.journal_path]

    assert main(["--dry-run", str(tmp_path)]) == 0
    assert "4 pending" in capsys.readouterr().out
    assert main([str(tmp_path)]) == 1  # no sender for the kind "memory": a clear failure
    err = capsys.readouterr().err
    assert "unknown sink kind 'memory'" in err and "1 sink(s) failed" in err
    assert len(pending(session.journal_path)[0][2]) == 4


def test_default_path_is_the_output_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CARBON_CALLBACKS_OUTPUT_DIR", str(tmp_path))
    run_session(tmp_path, [MemorySink()], epochs=1)
    assert main([]) == 0
    assert "up to date" in capsys.readouterr().out


def test_a_second_sync_at_the_same_time_is_refused(tmp_path: Path) -> None:
    sink = MemorySink(max_retries=0)
    sink.down = True
    session = run_session(tmp_path, [sink], epochs=1)
    journal = session.journal_path
    assert journal is not None
    started, release = threading.Event(), threading.Event()
    inner: list[Any] = []

    def slow(target: Any, records: Any, mark: Any, **kw: Any) -> None:
        started.set()
        release.wait(5)
        mark([r["key"] for r in records], False)

    def first() -> None:
        inner.extend(sync_journal(journal, senders={"memory": slow}))

    thread = threading.Thread(target=first)
    thread.start()
    assert started.wait(5)
    [second] = sync_journal(journal, senders={"memory": Resender()})
    assert second.error is not None and "another sync" in second.error
    release.set()
    thread.join(5)
    assert inner[0].sent == 4 and pending(journal)[0][2] == []


def test_unjournaled_runs_still_deliver(tmp_path: Path) -> None:
    """No journal (output_dir=None): sinks get every record, untracked."""
    sink = MemorySink()
    tracker = Tracker(cpu_power_w=36, count_ram=False, count_gpu=False, intensity_g_per_kwh=1,
                      output_dir=None)  # fmt: skip
    session = CarbonSession(tracker, [sink], summary=False)
    session.begin()
    session.epoch_end(0)
    session.end()
    assert sink.delivered == len(sink.sent) >= 3
    assert all(r.key is None for r in sink.sent) and sink.ledger is None


def test_ledger_and_journal_files_are_private(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        session = run_session(tmp_path, [MemorySink()], epochs=1)
    finally:
        os.umask(old)
    files = list(tmp_path.iterdir())
    assert {p.suffix for p in files} == {".jsonl", ".delivered"}
    for p in files:
        assert p.stat().st_mode & 0o777 == 0o640, p
    assert session.journal_path in files


def test_a_ledger_through_a_symlink_is_refused(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    ledger = Ledger(tmp_path / "run.jsonl", "memory-x")
    ledger.path.symlink_to(victim)
    with pytest.raises(OSError, match="symbolic link"):
        ledger.mark(["a"])
    assert victim.read_text() == "keep me\n"


def test_bad_sink_arguments_raise_naming_the_value() -> None:
    with pytest.raises(ValueError, match="-1"):
        MemorySink(max_retries=-1)
    with pytest.raises(TypeError, match="'x'"):
        MemorySink(backoff_s="x")
    with pytest.raises(ValueError, match="nan"):
        MemorySink(min_interval_s=float("nan"))
    with pytest.raises(ValueError, match="0"):
        MemorySink(queue_size=0)

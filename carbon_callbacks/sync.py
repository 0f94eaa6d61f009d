"""``carbon-callbacks sync [PATH]``: send what the trackers did not confirm, from the journals.

A run's journal (``<run_id>.jsonl``) names the sinks it wrote to (``"sink"`` records: the
kind, the tracking URI without credentials, the MLflow run id or Comet experiment key) and
holds every ``"tags"``, ``"metrics"`` and ``"artifacts"`` record handed to them (the last: the
summary document of ``carbon/summary.json``, from which the chart is drawn again), each with
a unique key. Each
sink's ledger (``<run_id>.<sink>.delivered``, next to the journal) lists the keys it
confirmed. Sync sends the rest to the run they belong to and adds their keys to the ledger,
so a second sync adds nothing. For MLflow, a metric the run already has (same key and step)
is not sent again either, which covers a request that reached the server but whose answer
was lost. Run one sync at a time per journal (a second one waits for nothing: it reports the
ledger busy and skips it).

Before sending, a run priced by a live intensity provider is priced again with the
provider's newer figures (``--no-reprice`` skips it): the corrected metrics are journaled
and sent like the rest (see `carbon_callbacks.intensity.reprice`).

The tracking clients are imported only for the kinds of sink a journal names.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from carbon_callbacks.delivery import Ledger, open_private_append
from carbon_callbacks.journal import JOURNAL_SUFFIX, read_journal
from carbon_callbacks.tracker import DEFAULT_OUTPUT_DIR, OUTPUT_DIR_ENV

__all__ = ["SinkSync", "journal_files", "main", "pending", "sync_journal"]

# kind -> module with `resend(target, records, mark, *, tracking_uri=None)`
SENDERS = {
    "mlflow": "carbon_callbacks.integrations.mlflow",
    "comet": "carbon_callbacks.integrations.comet",
    "wandb": "carbon_callbacks.integrations.wandb",
}
# The journal records a sink is sent: tags, metrics, and the summary document from which the
# end-of-training artifacts are made (the chart is drawn again from its per-epoch values).
RECORD_TYPES = ("tags", "metrics", "artifacts")
# For this command only, when the user has not set them: a dead server fails in seconds,
# not after MLflow's default ~4 minutes of retries per request.
_MLFLOW_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


class Resend(Protocol):
    def __call__(
        self,
        target: Mapping[str, Any],
        records: Sequence[Mapping[str, Any]],
        mark: Callable[[Iterable[str], bool], None],
        *,
        tracking_uri: str | None = None,
    ) -> None: ...


@dataclass
class SinkSync:
    """What a sync did for one sink of one journal."""

    journal: Path
    sink: str
    target: dict[str, Any]
    pending: int
    sent: int = 0
    already: int = 0
    error: str | None = None

    @property
    def where(self) -> str:
        t = self.target
        if t.get("kind") == "mlflow":
            return f"MLflow run {t.get('run')} at {t.get('tracking_uri')}"
        if t.get("kind") == "comet":
            offline = f" (offline archive in {t['offline_directory']})"
            return f"Comet experiment {t.get('experiment_key')}" + (
                offline if t.get("offline_directory") else ""
            )
        if t.get("kind") == "wandb":
            offline = f" (offline, in {t['offline_directory']})"
            return f"W&B run {t.get('run')}" + (offline if t.get("offline_directory") else "")
        return f"{t.get('kind')} sink {self.sink}"

    def describe(self) -> str:
        if self.error is not None:
            done = f" ({self.sent} sent before the failure)" if self.sent else ""
            return (
                f"{self.journal.name} -> {self.where}: FAILED{done}: {self.error}; "
                "the rest stays pending for the next sync"
            )
        if not self.pending:
            return f"{self.journal.name} -> {self.where}: up to date"
        already = f", {self.already} already there" if self.already else ""
        return f"{self.journal.name} -> {self.where}: {self.sent} sent{already}"


def journal_files(path: str | os.PathLike[str]) -> list[Path]:
    """The journal at `path`, or every ``*.jsonl`` journal in the folder `path`.

    Raises:
        FileNotFoundError: nothing at `path`.
    """
    p = Path(path)
    if p.is_dir():
        return sorted(q for q in p.glob(f"*{JOURNAL_SUFFIX}") if q.is_file())
    if p.is_file():
        return [p]
    raise FileNotFoundError(f"no journal or folder at {p}")


def pending(journal: Path) -> list[tuple[str, dict[str, Any], list[dict[str, Any]]]]:
    """``(sink id, target, records not confirmed)`` for each sink the journal names."""
    records = read_journal(journal)
    targets: dict[str, dict[str, Any]] = {}
    for r in records:
        if r.get("type") == "sink" and isinstance(r.get("sink"), str):
            target = {k: v for k, v in r.items() if k not in ("type", "sink", "run_id")}
            targets[r["sink"]] = target
    out = []
    for ident, target in targets.items():
        done = Ledger(journal, ident).delivered()
        todo = [
            r
            for r in records
            if r.get("type") in RECORD_TYPES
            and ident in (r.get("sinks") or ())
            and isinstance(r.get("key"), str)
            and r["key"] not in done
        ]
        out.append((ident, target, todo))
    return out


def sync_journal(
    journal: Path,
    *,
    dry_run: bool = False,
    tracking_uri: str | None = None,
    senders: Mapping[str, Resend] | None = None,
) -> list[SinkSync]:
    """Send the pending records of one journal; one `SinkSync` per sink it names.

    Args:
        journal: a journal file.
        dry_run: only count what is pending.
        tracking_uri: replaces the MLflow tracking URI of the journal (a moved server, or one
            whose URI carries credentials, which journals never store).
        senders: resend functions by sink kind (tests); default: the integrations'.
    """
    results = []
    for ident, target, todo in pending(journal):
        result = SinkSync(journal, ident, target, len(todo))
        results.append(result)
        if not todo or dry_run:
            continue
        ledger = Ledger(journal, ident)
        try:
            resend = _sender(str(target.get("kind")), senders)
            with _locked(ledger.path):
                done = ledger.delivered()  # again, under the lock: a sync may just have ended
                todo = [r for r in todo if r["key"] not in done]
                uri = tracking_uri if target.get("kind") == "mlflow" else None
                resend(target, todo, _marker(ledger, result), tracking_uri=uri)
        except Exception as exc:  # one sink's failure must not stop the others
            result.error = _plain(exc)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="carbon-callbacks sync",
        description=(
            "Send the carbon metrics and tags that did not reach MLflow, Comet or W&B during "
            "training (server down, process killed) from the local journals to the runs "
            "they belong to. Idempotent: running it again sends nothing twice."
        ),
    )
    parser.add_argument(
        "path",
        nargs="?",
        help=f"a journal file or folder (default: ${OUTPUT_DIR_ENV} or ./{DEFAULT_OUTPUT_DIR})",
    )
    parser.add_argument("--dry-run", action="store_true", help="only show what is pending")
    parser.add_argument(
        "--no-reprice",
        action="store_true",
        help="do not ask a run's live intensity provider for corrected figures first",
    )
    parser.add_argument(
        "--tracking-uri",
        help="send MLflow records here instead of the journal's URI (credentials come from "
        "the usual MLFLOW_TRACKING_* variables)",
    )
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    path = args.path or os.environ.get(OUTPUT_DIR_ENV) or DEFAULT_OUTPUT_DIR
    try:
        journals = journal_files(path)
    except FileNotFoundError as exc:
        print(f"carbon-callbacks sync: error: {exc}", file=sys.stderr)
        return 2
    results: list[SinkSync] = []
    with _env_defaults(_MLFLOW_HTTP_DEFAULTS):
        for journal in journals:
            if not args.no_reprice:
                _reprice(journal, dry_run=args.dry_run)
            try:
                found = sync_journal(journal, dry_run=args.dry_run, tracking_uri=args.tracking_uri)
            except (OSError, ValueError) as exc:
                print(f"{journal.name}: cannot read the journal: {exc}", file=sys.stderr)
                continue
            for r in found:
                line = r.describe()
                if args.dry_run and r.pending:
                    line = f"{journal.name} -> {r.where}: {r.pending} pending"
                print(line, file=sys.stderr if r.error else sys.stdout)
            results.extend(found)
    failed = [r for r in results if r.error]
    sent = sum(r.sent for r in results)
    print(
        f"carbon-callbacks sync: {len(journals)} journal(s), {sent} record(s) sent"
        + (f", {len(failed)} sink(s) failed" if failed else ""),
        file=sys.stderr,
    )
    return 1 if failed else 0


def _reprice(journal: Path, *, dry_run: bool) -> None:
    """Re-price a live-priced run with its provider's newer figures (see
    `carbon_callbacks.intensity.reprice`); the corrected metrics it journals are sent below."""
    try:
        from carbon_callbacks.intensity.reprice import reprice_journal

        result = reprice_journal(journal, dry_run=dry_run)
    except (OSError, ValueError) as exc:
        print(f"{journal.name}: cannot re-price: {exc}", file=sys.stderr)
        return
    if result is not None:
        line = result.describe()
        if dry_run and result.laps:
            line = f"{journal.name}: {result.laps} lap(s) would be re-priced ({result.provider})"
        print(line, file=sys.stderr if result.error else sys.stdout)


def _marker(ledger: Ledger, result: SinkSync) -> Callable[[Iterable[str], bool], None]:
    def mark(keys: Iterable[str], already: bool) -> None:
        keys = list(keys)
        ledger.mark(keys)  # before counting: a key counts once it is noted
        if already:
            result.already += len(keys)
        else:
            result.sent += len(keys)

    return mark


def _sender(kind: str, senders: Mapping[str, Resend] | None) -> Resend:
    if senders is not None:
        if kind not in senders:
            raise ValueError(f"no sender for sink kind {kind!r}")
        return senders[kind]
    if kind not in SENDERS:
        raise ValueError(f"unknown sink kind {kind!r} (known: {', '.join(SENDERS)})")
    try:
        module = importlib.import_module(SENDERS[kind])
    except ImportError as exc:
        raise ValueError(str(exc)) from exc
    resend: Resend = module.resend
    return resend


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the ledger (two syncs at once would send twice)."""
    fd = open_private_append(path)
    try:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no lock
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"another sync is sending this run ({path} is locked)") from None
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def _env_defaults(values: Mapping[str, str]) -> Iterator[None]:
    added = [k for k in values if k not in os.environ]
    for k in added:
        os.environ[k] = values[k]
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


def _plain(exc: BaseException) -> str:
    text = str(getattr(exc, "message", None) or exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first}"[:500]

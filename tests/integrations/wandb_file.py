"""Read a W&B offline run back: ``wandb/offline-run-*/run-<id>.wandb``.

wandb 0.31 has no public reader for this file, so it is parsed here: LevelDB's log format (a
7-byte file header, then 32 KiB blocks of records, each with a 7-byte header: CRC32, length
(2 bytes, little-endian), type: 1 full, 2 first, 3 middle, 4 last; a block tail shorter than a
header is zero padding) around serialized ``wandb.proto.wandb_internal_pb2.Record`` messages.
"""

from __future__ import annotations

import json
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2

BLOCK = 32 * 1024
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


@dataclass
class OfflineRun:
    """What an offline run file holds, decoded."""

    run_id: str = ""
    history: list[dict[str, Any]] = field(default_factory=list)  # one dict per row
    summary: dict[str, Any] = field(default_factory=dict)  # the last value of each key
    config: dict[str, Any] = field(default_factory=dict)
    metrics: list[Any] = field(default_factory=list)  # MetricRecord (define_metric)
    finished: bool = False  # the file ends with the run's exit record

    def series(self, key: str, step: str = "carbon/epoch") -> list[tuple[Any, Any]]:
        """``(row[step], row[key])`` for every history row holding `key`."""
        return [(row.get(step), row[key]) for row in self.history if key in row]

    def defined(self, name: str) -> Any:
        """The last exact ``define_metric`` record of `name`, or None."""
        found = [m for m in self.metrics if m.name == name]
        return found[-1] if found else None


def records(path: Path) -> list[Any]:
    """Every `Record` in the file, in order."""
    data = path.read_bytes()
    out: list[Any] = []
    pos, pending = HEADER, b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # zero padding at the end of a block
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        if kind == 0 and length == 0:
            break
        pending += data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            out.append(record)
            pending = b""
    return out


def _key(item: Any) -> str:
    return str(item.key) if item.key else "/".join(item.nested_key)


def read_run(path: Path, timeout_s: float = 30.0) -> OfflineRun:
    """Decode the history rows, summary updates, config updates and metric definitions, once
    the file holds the run's exit record: W&B's service writes the file on its own schedule,
    and ``run.finish()`` may return before the last records are on disk (seen on a loaded
    machine). After `timeout_s` seconds, what is there."""
    deadline = time.monotonic() + timeout_s
    while True:
        run = _decode(path)
        if run.finished or time.monotonic() > deadline:
            return run
        time.sleep(0.1)


def _decode(path: Path) -> OfflineRun:
    run = OfflineRun()
    for record in records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":  # the run's start: its id and the config given to wandb.init
            run.run_id = record.run.run_id or run.run_id
            for item in record.run.config.update:
                run.config[_key(item)] = json.loads(item.value_json)
        elif kind == "history":
            run.history.append({_key(i): json.loads(i.value_json) for i in record.history.item})
        elif kind == "summary":
            for item in record.summary.update:
                run.summary[_key(item)] = json.loads(item.value_json)
        elif kind == "config":
            for item in record.config.update:
                run.config[_key(item)] = json.loads(item.value_json)
        elif kind == "metric":
            run.metrics.append(record.metric)
        elif kind == "exit":
            run.finished = True
    return run


def offline_runs(root: Path) -> list[Path]:
    """The run files under `root` (a ``WANDB_DIR`` or a logger's ``save_dir``), oldest first."""
    return sorted(root.glob("wandb/offline-run-*/run-*.wandb"))

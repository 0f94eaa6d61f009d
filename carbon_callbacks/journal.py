"""Append-only JSON Lines journal: every lap lands on local disk, whatever the trackers do."""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path
from typing import Any

JOURNAL_SUFFIX = ".jsonl"
_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False, check_circular=False).encode


class Journal:
    """One JSONL file per run, opened for append, flushed after every record, never rewritten.

    The file is created with mode 0o640 (never world-writable). A path that is a symbolic link
    is refused, so a journal cannot be redirected to overwrite another file.

    Args:
        path: the journal file (its folder is created if needed).

    Raises:
        OSError: the folder cannot be created or the file cannot be opened.
        ValueError: `path` is a symbolic link.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.is_symlink():
            raise ValueError(f"refusing to write the journal through a symbolic link: {self.path}")
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(self.path, flags, 0o640)
        mode = os.fstat(fd).st_mode
        if mode & stat.S_IWOTH:
            os.fchmod(fd, mode & ~stat.S_IWOTH & 0o7777)
        self._file = os.fdopen(fd, "a", encoding="utf-8")
        self._lock = threading.Lock()  # sinks journal their failures from worker threads

    @property
    def closed(self) -> bool:
        return self._file.closed

    def append(self, record: dict[str, Any]) -> bool:
        """Write one record and flush it; False (nothing written) once the journal is closed.

        Raises:
            OSError: the write failed (disk full, ...).
            ValueError: the record is not JSON-able (NaN, infinity, ...).
        """
        line = _encode(record) + "\n"
        with self._lock:
            if self._file.closed:
                return False
            self._file.write(line)
            self._file.flush()
        return True

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.close()


def read_journal(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """All records of a journal file, in order. A torn last line (crash mid-write) is skipped."""
    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):
                break
            records.append(json.loads(line))
    return records

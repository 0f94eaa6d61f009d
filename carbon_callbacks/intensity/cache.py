"""The disk cache of provider values, next to the journals: a run or a sync that needs an
hour another run already fetched in its final form does not ask the provider again.

One file per provider and zone, ``intensity-<provider>-<zone>.json`` in the journal folder,
created ``0600`` (it says where the runs are), replaced atomically, never written through a
symbolic link. Forecasts are not kept (they change); estimates are kept but fetched again
until the provider publishes the final figure (see `series.first_gap`).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

from carbon_callbacks.intensity.series import FORECAST, STATUS_RANK, Point

logger = logging.getLogger(__name__)

VERSION = 1
_MAX_POINTS = 200_000  # about two years of 5-minute values


def cache_path(folder: str | os.PathLike[str], provider: str, zone: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", zone)
    return Path(folder) / f"intensity-{provider}-{safe}.json"


def load(path: Path) -> tuple[Point, ...]:
    """The cached points, or none when the file is absent or unreadable (then it is
    rebuilt; a broken cache costs requests, never a run)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        rows = data["points"] if data.get("version") == VERSION else []
        points = tuple(
            Point(float(a), float(b), float(g), str(s), str(basis))
            for a, b, g, s, basis in rows
            if s in STATUS_RANK and float(b) > float(a) and float(g) >= 0
        )
    except FileNotFoundError:
        return ()
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        logger.info("carbon-callbacks: ignoring the intensity cache %s (%s)", path, exc)
        return ()
    return tuple(sorted(points, key=lambda p: p.start))


def save(path: Path, points: Sequence[Point]) -> None:
    """Write the non-forecast points (the newest `_MAX_POINTS`), atomically, mode 0600.

    Raises:
        OSError: the folder or the file cannot be written.
    """
    kept = [p for p in points if p.status != FORECAST][-_MAX_POINTS:]
    rows = [[p.start, p.end, p.g_per_kwh, p.status, p.basis] for p in kept]
    text = json.dumps({"version": VERSION, "points": rows}, separators=(",", ":"))
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(temp, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            fd = -1
            f.write(text)
        if path.is_symlink():
            raise OSError(f"refusing to replace a symbolic link: {path}")
        os.replace(temp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        temp.unlink(missing_ok=True)
        raise

"""The package's bundled data files (built by scripts/build_data.py; see DATA_LICENSES.md)."""

from __future__ import annotations

import functools
import json
import os
from typing import Any

DATA_DIR = os.path.dirname(os.path.abspath(__file__))


def read_json(name: str) -> Any:
    """Parse the bundled data file `name` (e.g. ``"countries.json"``)."""
    with open(os.path.join(DATA_DIR, name), encoding="utf-8") as f:
        return json.load(f)


@functools.cache
def load_json(name: str) -> Any:
    """`read_json`, parsed once per process and shared: treat the result as read-only."""
    return read_json(name)

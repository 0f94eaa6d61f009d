"""The package's bundled data files (built by scripts/build_data.py; see DATA_LICENSES.md)."""

from __future__ import annotations

import functools
import json
import os
from typing import Any

DATA_DIR = os.path.dirname(os.path.abspath(__file__))


@functools.cache
def load_json(name: str) -> Any:
    """Parse the bundled data file `name` (e.g. ``"countries.json"``), once per process."""
    with open(os.path.join(DATA_DIR, name), encoding="utf-8") as f:
        return json.load(f)

"""The real-browser check: `scripts/mlflow_ui_screenshots.py` saves the MLflow UI screenshots.

Runs only where Debian's ``chromium`` is installed (``.ci/run`` installs it) and Playwright
for Python is importable; the script starts its own ``mlflow server`` on 127.0.0.1, trains
three tiny runs and stops the server.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "mlflow_ui_screenshots.py"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# name -> smallest (width, height) in pixels
EXPECTED = {
    "mlflow-runs.png": (1200, 300),
    "mlflow-epoch-energy.png": (1000, 500),
    "mlflow-artifacts.png": (1000, 600),
}
TIMEOUT_S = 600

pytestmark = pytest.mark.slow


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    assert data[:8] == PNG_MAGIC, "not a PNG"
    assert data[12:16] == b"IHDR", "no IHDR chunk first"
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def test_mlflow_ui_screenshots(tmp_path: Path) -> None:
    if shutil.which("chromium") is None:
        pytest.skip(reason="Debian chromium is not installed (apt-get install chromium)")
    pytest.importorskip("playwright", reason="Playwright for Python is not installed")
    pytest.importorskip("lightning", reason="Lightning is not installed")
    out = tmp_path / "shots"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert sorted(p.name for p in out.iterdir()) == sorted(EXPECTED)
    for name, (min_width, min_height) in EXPECTED.items():
        data = (out / name).read_bytes()
        assert len(data) > 20_000, f"{name} is only {len(data)} bytes"
        width, height = png_size(data)
        assert width >= min_width and height >= min_height, (name, width, height)
    assert "wrote" in result.stdout
    assert list(tmp_path.iterdir()) == [out], "the script wrote outside its output folder"

"""`TensorBoardSink`: the ``carbon/*`` metrics and ``carbon.*`` tags into a TensorBoard folder.

Used for the Hugging Face `Trainer` with ``report_to`` naming ``tensorboard``. A `Trainer`
callback cannot reach the other callbacks (HF hands each one the model, the optimizer and the
data loaders, never the `Trainer` or its `TensorBoardCallback`), so this sink has a writer of
its own, in a ``carbon`` sub-folder of the folder HF's `TensorBoardCallback` writes to:
TensorBoard shows it as the run ``<HF's run>/carbon`` next to the training run, with the
per-epoch metrics at step = epoch. Not in HF's folder itself: with two event files written at
once in one folder, TensorBoard follows only the newest one live.

HF's folder is ``$TENSORBOARD_LOGGING_DIR`` when set, else ``<output_dir>/runs/<time>_<host>``
(`transformers.integrations.TensorBoardCallback`); the latter is found as the newest folder
under ``<output_dir>/runs`` holding an event file of this process (``events.out.tfevents.
<time>.<host>.<pid>.<n>``), written when HF's callback began training, just before this one.

Writes from a thread of its own (`BackgroundSink`): building a summary per value costs the
training thread four times what a queue does (``bench/bench_logger_sinks.py``). Not
journal-backed: a local file, which cannot be reopened to resend; what a flush that timed out
left behind is reported, and the values stay in the journal's laps.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from carbon_callbacks.delivery import BackgroundSink, Record

__all__ = ["LOGGING_DIR_ENV", "TensorBoardSink", "hf_tensorboard_dir"]

LOGGING_DIR_ENV = "TENSORBOARD_LOGGING_DIR"  # HF's TensorBoardCallback reads it too
SUBFOLDER = "carbon"


class TensorBoardSink(BackgroundSink):
    """Write to a TensorBoard event file in `log_dir` (created), from a background thread.

    Args:
        log_dir: the folder of the event file (a TensorBoard run).

    Raises:
        ImportError: neither ``tensorboard`` nor ``tensorboardX`` is installed.

    Example:
        >>> sink = TensorBoardSink("runs/carbon")
        >>> sink.log_metrics({"carbon/epoch_energy_kwh": 0.01}, step=0)
        >>> sink.flush(10.0)
        True
    """

    def __init__(self, log_dir: str | os.PathLike[str]) -> None:
        super().__init__(str(log_dir), name="tensorboard")
        self.log_dir = str(log_dir)
        self._writer_class = _summary_writer()  # raises now, not on the worker thread
        self._writer: Any = None

    def __repr__(self) -> str:
        return f"TensorBoardSink(log_dir={self.log_dir!r})"

    def _open(self) -> None:
        self._writer = self._writer_class(log_dir=self.log_dir)

    def _send(self, records: Sequence[Record]) -> None:
        for record in records:
            if record.kind == "tags":
                for key, value in record.data.items():
                    self._writer.add_text(key, str(value), 0)
            else:
                for key, value in record.data.items():
                    self._writer.add_scalar(key, float(value), record.step)
        self._writer.flush()

    def _close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def hf_tensorboard_dir(output_dir: str | os.PathLike[str], env: Mapping[str, str]) -> Path:
    """The folder for the carbon run next to HF's TensorBoard run (see the module docstring);
    ``<output_dir>/runs/carbon`` when HF's folder cannot be found."""
    given = env.get(LOGGING_DIR_ENV)
    if given:
        return Path(given).expanduser() / SUBFOLDER
    runs = Path(output_dir) / "runs"
    mine = f".{socket.gethostname()}.{os.getpid()}."
    newest: tuple[float, Path] | None = None
    for event_file in runs.glob("*/events.out.tfevents.*"):
        if mine not in event_file.name:
            continue
        try:
            found = (event_file.stat().st_mtime, event_file.parent)
        except OSError:  # removed meanwhile
            continue
        if newest is None or found[0] > newest[0]:
            newest = found
    return (newest[1] if newest else runs) / SUBFOLDER


def _summary_writer() -> Any:
    """The `SummaryWriter` class HF's TensorBoardCallback uses: PyTorch's, else tensorboardX's."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        try:
            from tensorboardX import SummaryWriter
        except ImportError as exc:
            raise ImportError(
                "TensorBoard logging needs tensorboard or tensorboardX: pip install tensorboard"
            ) from exc
    return SummaryWriter

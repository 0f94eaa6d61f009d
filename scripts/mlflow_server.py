"""A local ``mlflow server`` on 127.0.0.1, for the tests and the screenshot script.

    with MlflowServer(tmp_dir) as uri:
        ...

Flags from experience on 2-core machines: ``--workers 1`` and job execution off make it ready
in 10-15 s instead of 30+. A dead server blocks MLflow clients for minutes, so the start is
polled on ``/health`` with a deadline and the log is shown when it fails.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import TracebackType

START_TIMEOUT_S = 180.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def healthy(uri: str) -> bool:
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


class MlflowServer:
    """An ``mlflow server`` with a sqlite store under `root`, on a port kept across restarts.

    Args:
        root: folder of the database, the artifacts and the logs.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, timeout_s: float = START_TIMEOUT_S) -> str:
        """Start it and wait until ``/health`` answers; return its URI.

        Raises:
            RuntimeError: it exited or did not answer in `timeout_s` (its log is printed).
        """
        self.starts += 1
        log = self.root / f"server-{self.starts}.log"
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        env.pop("MLFLOW_TRACKING_URI", None)
        command = [
            sys.executable, "-m", "mlflow", "server",
            "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
            "--backend-store-uri", f"sqlite:///{self.root / 'server.db'}",
            "--default-artifact-root", str(self.root / "artifacts"),
        ]  # fmt: skip
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=self.root,
                start_new_session=True,  # its own process group: signals reach the workers
            )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while not healthy(self.uri):
            if self.process.poll() is not None or time.monotonic() > deadline:
                sys.stderr.write(log.read_text(errors="replace"))
                self.stop()
                raise RuntimeError(f"mlflow server did not answer {self.uri}/health (log above)")
            time.sleep(0.3)
        return self.uri

    def kill(self) -> None:
        """SIGKILL the server and its workers: no goodbye, as in a crash or an OOM kill."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        deadline = time.monotonic() + 30
        while healthy(self.uri):  # a worker may take a moment to go
            if time.monotonic() > deadline:
                raise RuntimeError("the killed mlflow server still answers")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

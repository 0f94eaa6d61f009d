"""Fakes of a BMC: an ``ipmitool`` script on PATH and a Redfish replay server on 127.0.0.1.

The ipmitool output follows ``ipmitool dcmi power reading``'s layout; the Redfish documents
follow DMTF's ``Chassis``, ``Power`` (``PowerControl[].PowerConsumedWatts``) and
``EnvironmentMetrics`` (``PowerWatts.Reading``) schemas. Both are written here, not copied.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

DCMI_READING = """
    Instantaneous power reading:                 {watts:>4} Watts
    Minimum during sampling period:                14 Watts
    Maximum during sampling period:               460 Watts
    Average power reading over sample period:     226 Watts
    IPMI timestamp:                           Thu Feb 15 08:36:01 2024
    Sampling period:                          00000001 Seconds.
    Power reading state is:                   {state}

"""


class FakeIpmitool:
    """Writes ``bin/ipmitool``, which prints the watts kept in ``watts`` (a file)."""

    def __init__(self, directory: Path, watts: int = 250, state: str = "activated") -> None:
        self.bin = directory / "bin"
        self.bin.mkdir(parents=True, exist_ok=True)
        self.watts_file = directory / "watts"
        self.calls_file = directory / "calls"
        self.set(watts)
        text = DCMI_READING.replace("{state}", state)
        script = self.bin / "ipmitool"
        script.write_text(
            "#!/bin/sh\n"
            f'echo "$@" >> "{self.calls_file}"\n'
            'if [ "$1 $2 $3" != "dcmi power reading" ]; then echo "bad args" >&2; exit 1; fi\n'
            f'w=$(cat "{self.watts_file}")\n'
            f"cat <<EOF\n{text.replace('{watts:>4}', '$w')}EOF\n"
        )
        script.chmod(0o755)

    def set(self, watts: int) -> None:
        self.watts_file.write_text(str(watts))

    @property
    def calls(self) -> list[str]:
        if not self.calls_file.exists():
            return []
        return self.calls_file.read_text().splitlines()


class RedfishState:
    """The documents the replay server answers with, and what it was asked."""

    def __init__(self, user: str, password: str) -> None:
        self.auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.watts = 400.0
        self.requests: list[tuple[str, str | None]] = []
        self.use_environment_metrics = False

    def document(self, path: str) -> dict[str, Any] | None:
        chassis = "/redfish/v1/Chassis/1"
        if path == chassis:
            link = "EnvironmentMetrics" if self.use_environment_metrics else "Power"
            return {"@odata.id": chassis, "Id": "1", link: {"@odata.id": f"{chassis}/{link}"}}
        if path == f"{chassis}/Power":
            return {
                "@odata.id": path,
                "PowerControl": [
                    {
                        "MemberId": "0",
                        "Name": "System Power Control",
                        "PowerConsumedWatts": self.watts,
                    }
                ],
            }
        if path == f"{chassis}/EnvironmentMetrics":
            return {"@odata.id": path, "PowerWatts": {"Reading": self.watts}}
        return None


@contextmanager
def redfish_server(
    user: str = "admin", password: str = "s3cret-pw"
) -> Iterator[tuple[str, RedfishState]]:
    """A Redfish replay server on 127.0.0.1; yields (base URL, state)."""
    state = RedfishState(user, password)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            state.requests.append((self.path, self.headers.get("Authorization")))
            if self.headers.get("Authorization") != state.auth:
                self.send_response(401)
                self.end_headers()
                return
            doc = state.document(self.path)
            body = json.dumps(doc).encode()
            self.send_response(200 if doc is not None else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

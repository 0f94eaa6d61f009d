"""A replay server on 127.0.0.1 speaking the four intensity APIs' documented shapes.

It serves the bodies under ``tests/data/replay/<provider>/`` (written in each API's
documented request and response shapes, see the provider modules' docstrings), cut to the
time range a request asks for, and checks what a real server checks: the path, the query
parameters, the ``auth-token`` header (Electricity Maps), HTTP Basic at ``/login`` and the
bearer token after it (WattTime). ``mode[provider]`` turns a provider into a failing one:
``"401"``, ``"429"``, ``"500"``, ``"garbage"`` (not JSON), ``"slow"`` (answers after
``delay_s``). ``variant = "corrected"`` serves the corrected history files instead.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from carbon_callbacks.intensity.series import parse_time

DATA = Path(__file__).parents[1] / "data" / "replay"
EM_KEY = "em-test-key-7f3a9c"
WT_USER, WT_PASSWORD, WT_TOKEN = "wt-user", "wt-pass-5d1e", "wt-token-b2c4"
GB_REGIONS = {str(i) for i in range(1, 18)}


class ReplayServer:
    """``with ReplayServer() as server: server.url`` is ``http://127.0.0.1:<port>``."""

    def __init__(self) -> None:
        self.mode: dict[str, str] = {}
        self.variant = "initial"
        self.delay_s = 3.0
        self.requests: list[tuple[str, str, dict[str, str], dict[str, str]]] = []
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> ReplayServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def reset(self) -> None:
        self.mode, self.variant, self.requests = {}, "initial", []

    def paths(self, provider: str) -> list[str]:
        return [path for p, path, _, _ in self.requests if p == provider]

    def body(self, provider: str, name: str) -> Any:
        corrected = DATA / provider / f"{name}-corrected.json"
        if self.variant == "corrected" and corrected.exists():
            return json.loads(corrected.read_text())
        return json.loads((DATA / provider / f"{name}.json").read_text())


Answer = tuple[int, Any]


def _handler(server: ReplayServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            parts = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(parts.query))
            provider, route = _route(parts.path)
            server.requests.append((provider, parts.path, query, dict(self.headers)))
            mode = server.mode.get(provider, "ok")
            if mode == "slow":
                time.sleep(server.delay_s)
            if mode in ("401", "429", "500"):
                self._send(int(mode), {"error": {"code": mode, "message": "replayed failure"}})
                return
            if mode == "garbage":
                self._send(200, None, raw=b"<html>Service temporarily unavailable</html>")
                return
            if route is None:
                self._send(404, {"error": {"code": "404", "message": "no such path"}})
                return
            status, body = route(server, parts.path, query, self.headers)
            self._send(status, body)

        def _send(self, status: int, body: Any, raw: bytes | None = None) -> None:
            data = raw if raw is not None else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if status == 429:
                self.send_header("Retry-After", "900")
            self.end_headers()
            with contextlib.suppress(OSError):  # the client gave up (its timeout)
                self.wfile.write(data)

    return Handler


Route = Callable[[ReplayServer, str, dict[str, str], Any], Answer]


def _route(path: str) -> tuple[str, Route | None]:
    if path.startswith("/v3/carbon-intensity/"):
        return "electricitymaps", _electricitymaps
    if path.startswith(("/intensity/", "/regional/intensity/")):
        return "carbonintensity-uk", _carbonintensity_uk
    if path.startswith("/dataset/"):
        return "energidataservice", _energidataservice
    if path == "/login" or path.startswith("/v3/"):
        return "watttime", _watttime
    return "unknown", None


def _electricitymaps(
    server: ReplayServer, path: str, query: dict[str, str], headers: Any
) -> Answer:
    if headers.get("auth-token") != EM_KEY:
        return 401, {"error": "Invalid auth-token"}
    if query.get("shouldUseFallbackCallerLookup") != "false":
        return 400, {"error": "this replay expects shouldUseFallbackCallerLookup=false"}
    endpoint = path.rsplit("/", 1)[1]
    zone = query.get("zone")
    if zone != "FR":
        return 404, {"error": f"Zone '{zone}' does not exist"}
    if endpoint in ("latest", "history", "forecast"):
        return 200, server.body("electricitymaps", endpoint)
    if endpoint == "past-range":
        body = server.body("electricitymaps", "past-range")
        start, end = parse_time(query["start"]), parse_time(query["end"])
        body["data"] = [d for d in body["data"] if start <= parse_time(d["datetime"]) < end]
        return 200, body
    return 404, {"error": "no such endpoint"}


def _carbonintensity_uk(
    server: ReplayServer, path: str, query: dict[str, str], headers: Any
) -> Answer:
    parts = path.strip("/").split("/")
    regional = parts[0] == "regional"
    if regional:
        parts = parts[1:]
        if len(parts) != 5 or parts[3] != "regionid" or parts[4] not in GB_REGIONS:
            return 400, {"error": {"code": "400 Bad Request", "message": "bad region path"}}
    elif len(parts) != 3:
        return 400, {"error": {"code": "400 Bad Request", "message": "bad path"}}
    try:
        start = parse_time(parts[1])
        end = start + 48 * 3600 if parts[2] == "fw48h" else parse_time(parts[2])
    except ValueError:
        return 400, {"error": {"code": "400 Bad Request", "message": "Please use ISO8601"}}
    name = ("regional" if regional else "national") + ("-fw48h" if parts[2] == "fw48h" else "")
    body = server.body("carbonintensity-uk", name)

    def cut(periods: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [p for p in periods if parse_time(p["to"]) > start and parse_time(p["from"]) < end]

    if regional:
        region = body["data"][0]
        if str(region["regionid"]) != parts[4]:
            region = {**region, "regionid": int(parts[4]), "shortname": f"region {parts[4]}"}
        body["data"] = [{**region, "data": cut(region["data"])}]
    else:
        body["data"] = cut(body["data"])
    return 200, body


def _energidataservice(
    server: ReplayServer, path: str, query: dict[str, str], headers: Any
) -> Answer:
    dataset = path.rsplit("/", 1)[1]
    if dataset not in ("CO2Emis", "CO2EmisProg"):
        return 400, {"error": f"dataset {dataset} not found"}
    area = json.loads(query.get("filter", "{}")).get("PriceArea", [None])[0]
    body = server.body("energidataservice", dataset)
    # start and end are Danish local time, compared with Minutes5DK (the API's convention).
    start, end = query.get("start", "0000"), query.get("end", "9999")
    records = [
        r for r in body["records"]
        if r["PriceArea"] == area and start <= r["Minutes5DK"][:16] < end
    ]  # fmt: skip
    records.sort(key=lambda r: r["Minutes5UTC"])
    limit = int(query.get("limit", "100"))
    body.update(total=len(records), limit=limit, records=records[:limit])
    return 200, body


def _watttime(server: ReplayServer, path: str, query: dict[str, str], headers: Any) -> Answer:
    if path == "/login":
        basic = "Basic " + base64.b64encode(f"{WT_USER}:{WT_PASSWORD}".encode()).decode()
        if headers.get("Authorization") != basic:
            return 403, {"error": "invalid credentials"}
        return 200, {"token": WT_TOKEN}
    if headers.get("Authorization") != f"Bearer {WT_TOKEN}":
        return 401, {"error": "invalid token"}
    if query.get("region") != "CAISO_NORTH" or query.get("signal_type") != "co2_moer":
        return 403, {"error": "region or signal_type not in your plan"}
    if path == "/v3/forecast":
        return 200, server.body("watttime", "forecast")
    if path != "/v3/historical":
        return 404, {"error": "no such endpoint"}
    body = server.body("watttime", "historical")
    start, end = parse_time(query["start"]), parse_time(query["end"])
    body["data"] = [d for d in body["data"] if start <= parse_time(d["point_time"]) <= end]
    return 200, body

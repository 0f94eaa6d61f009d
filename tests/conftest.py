"""Shared test set-up: a clean environment, journals in tmp dirs, a socket guard."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

# Tracking clients and hubs phone home unless told not to; tests contact nothing but 127.0.0.1.
for _name, _value in {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_OFFLINE": "1",
    "COMET_ERROR_TRACKING_ENABLE": "false",
}.items():
    os.environ.setdefault(_name, _value)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No CARBON_CALLBACKS_* setting of the developer's leaks into a test; journals go to tmp."""
    for name in list(os.environ):
        if name.startswith("CARBON_CALLBACKS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CARBON_CALLBACKS_OUTPUT_DIR", str(tmp_path_factory.mktemp("journal")))


class NetworkBlocked(AssertionError):
    pass


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[object]]:
    """Fail any attempt to open a network connection or resolve a name; AF_UNIX is allowed."""
    attempts: list[object] = []

    def guard(name: str):  # type: ignore[no-untyped-def]
        def blocked(*args, **kwargs):  # type: ignore[no-untyped-def]
            attempts.append((name, args[1:] if args else kwargs))
            raise NetworkBlocked(f"network access attempted: {name}{args[1:]}")

        return blocked

    real_connect = socket.socket.connect

    def connect(self, address):  # type: ignore[no-untyped-def]
        if self.family == socket.AF_UNIX:
            return real_connect(self, address)
        attempts.append(("connect", address))
        raise NetworkBlocked(f"network access attempted: connect {address}")

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect)
    monkeypatch.setattr(socket, "create_connection", guard("create_connection"))
    monkeypatch.setattr(socket, "getaddrinfo", guard("getaddrinfo"))
    monkeypatch.setattr(socket, "gethostbyname", guard("gethostbyname"))
    yield attempts
    assert attempts == [], f"network access attempted: {attempts}"

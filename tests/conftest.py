"""Shared test set-up: a clean environment, journals in tmp dirs, a socket guard, and the
replay server of the live intensity APIs."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from carbon_callbacks.session import forget_runs
from tests.fakes.replay import EM_KEY, WT_PASSWORD, WT_USER, ReplayServer

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
    """No CARBON_CALLBACKS_* setting or provider key of the developer's leaks into a test;
    journals go to tmp."""
    for name in list(os.environ):
        if name.startswith("CARBON_CALLBACKS_"):
            monkeypatch.delenv(name)
    for name in ("ELECTRICITYMAPS_API_KEY", "WATTTIME_USERNAME", "WATTTIME_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CARBON_CALLBACKS_OUTPUT_DIR", str(tmp_path_factory.mktemp("journal")))
    forget_runs()  # a run one test ended in is not continued by the next (fakes share targets)


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


@pytest.fixture(scope="session")
def _replay_server() -> Iterator[ReplayServer]:
    with ReplayServer() as server:
        yield server


@pytest.fixture
def replay(_replay_server: ReplayServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[ReplayServer]:
    """The intensity APIs' replay server on 127.0.0.1, fresh for each test, with every base
    URL and credential set in the environment (a 1 s request timeout)."""
    _replay_server.reset()
    for name, value in replay_env(_replay_server).items():
        monkeypatch.setenv(name, value)
    yield _replay_server
    _replay_server.reset()


def replay_env(server: ReplayServer) -> dict[str, str]:
    return {
        "CARBON_CALLBACKS_ELECTRICITYMAPS_URL": server.url,
        "CARBON_CALLBACKS_CARBONINTENSITY_UK_URL": server.url,
        "CARBON_CALLBACKS_ENERGIDATASERVICE_URL": server.url,
        "CARBON_CALLBACKS_WATTTIME_URL": server.url,
        "CARBON_CALLBACKS_INTENSITY_TIMEOUT_S": "1",
        "ELECTRICITYMAPS_API_KEY": EM_KEY,
        "WATTTIME_USERNAME": WT_USER,
        "WATTTIME_PASSWORD": WT_PASSWORD,
    }

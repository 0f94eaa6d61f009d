"""Node power meters: the whole machine's input power, opt-in with ``node_power=``.

Sources, in the order ``"auto"`` tries them:

1. ``hwmon``: an ACPI power meter, else NVIDIA Grace Hopper module meters (`hwmon`).
2. NVML module power (``auto`` only): on Grace Hopper, ``nvmlDeviceGetFieldValues`` with
   ``NVML_FI_DEV_POWER_INSTANT`` at scope ``NVML_POWER_SCOPE_MODULE`` ("GPU or Total
   Module", NVML's ``nvmlPowerScopeType_t``), milliwatts, summed over the GPUs.
3. ``ipmi``: ``ipmitool dcmi power reading``, its "Instantaneous power reading: N Watts"
   line (a "Power reading state is: deactivated" BMC gives no reading).
4. ``redfish``: ``GET $CARBON_CALLBACKS_REDFISH_URL``: a ``Power`` resource
   (``PowerControl[0].PowerConsumedWatts``), an ``EnvironmentMetrics`` resource
   (``PowerWatts.Reading``), or a ``Chassis`` whose ``Power`` / ``EnvironmentMetrics`` link
   is followed. Basic authentication from ``CARBON_CALLBACKS_REDFISH_USERNAME`` /
   ``_PASSWORD``; ``CARBON_CALLBACKS_REDFISH_INSECURE=1`` skips TLS verification (BMCs often
   have self-signed certificates). The URL and credentials are never logged, journaled or
   tagged: reports name the source only.

IPMI and Redfish contact the BMC, so ``auto`` tries them only when it may: ``ipmitool`` on
``PATH``, a Redfish URL in the environment. Every power is sampled (IPMI and Redfish every 5 s,
the rest every second) and integrated (`SampledPowerSensor`).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import ssl
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from carbon_callbacks.sensors.base import NODE_METER, SensorReport, SensorUnavailable
from carbon_callbacks.sensors.hwmon import ROOT_ENV as HWMON_ROOT_ENV
from carbon_callbacks.sensors.hwmon import open_node_hwmon
from carbon_callbacks.sensors.sampled import SampledPowerSensor

NODE_POWER_CHOICES = ("auto", "hwmon", "ipmi", "redfish")
URL_ENV = "CARBON_CALLBACKS_REDFISH_URL"
USER_ENV = "CARBON_CALLBACKS_REDFISH_USERNAME"
PASSWORD_ENV = "CARBON_CALLBACKS_REDFISH_PASSWORD"
INSECURE_ENV = "CARBON_CALLBACKS_REDFISH_INSECURE"
BMC_INTERVAL_S = 5.0
_TIMEOUT_S = 10.0
_IPMI_RE = re.compile(r"Instantaneous power reading\s*:\s*(\d+(?:\.\d+)?)\s*Watts", re.I)
_NVML_FI_DEV_POWER_INSTANT = 186  # nvml.h / nvidia-ml-py
_NVML_POWER_SCOPE_MODULE = 1


def check_node_power(value: object) -> str | None:
    """Validate ``node_power=`` (None: off).

    Raises:
        ValueError: not one of `NODE_POWER_CHOICES` or None.
    """
    if value is None or value in NODE_POWER_CHOICES:
        return value
    raise ValueError(
        f"node_power must be one of {', '.join(repr(c) for c in NODE_POWER_CHOICES)} or None "
        f"(off), got {value!r}"
    )


def parse_ipmi_dcmi(text: str) -> float:
    """Watts of ``ipmitool dcmi power reading`` output.

    Raises:
        SensorUnavailable: no reading, or the BMC's power reading is deactivated.
    """
    if re.search(r"Power reading state is\s*:\s*deactivated", text, re.I):
        raise SensorUnavailable("IPMI: the BMC's DCMI power reading is deactivated")
    match = _IPMI_RE.search(text)
    if match is None:
        raise SensorUnavailable("IPMI: no 'Instantaneous power reading' in ipmitool's output")
    return float(match.group(1))


def ipmi_reader(ipmitool: str) -> Callable[[], float]:
    """Read the node's power with ``ipmitool dcmi power reading`` (10 s timeout)."""

    def read() -> float:
        done = subprocess.run(
            [ipmitool, "dcmi", "power", "reading"],
            capture_output=True,
            text=True,
            timeout=_TIMEOUT_S,
            check=False,
        )
        if done.returncode != 0:
            first = (done.stderr or done.stdout).strip().splitlines()[:1]
            raise SensorUnavailable(f"IPMI: ipmitool failed ({done.returncode}): {first}")
        return parse_ipmi_dcmi(done.stdout)

    return read


def parse_redfish(doc: Mapping[str, Any]) -> float | str:
    """Watts from a Redfish ``Power`` or ``EnvironmentMetrics`` document, or the path of
    the resource to read next when `doc` is a ``Chassis``."""
    for control in doc.get("PowerControl") or []:
        watts = control.get("PowerConsumedWatts")
        if isinstance(watts, (int, float)) and not isinstance(watts, bool):
            return float(watts)
    reading = (doc.get("PowerWatts") or {}).get("Reading")
    if isinstance(reading, (int, float)) and not isinstance(reading, bool):
        return float(reading)
    for link in ("EnvironmentMetrics", "Power"):
        target = (doc.get(link) or {}).get("@odata.id")
        if isinstance(target, str):
            return target
    raise SensorUnavailable("Redfish: no PowerControl, PowerWatts or Power link in the resource")


def redfish_reader(env: Mapping[str, str]) -> Callable[[], float]:
    """Read the node's power from the BMC's Redfish service named in `env`."""
    url = env.get(URL_ENV, "")
    if not url:
        raise SensorUnavailable(f"Redfish: {URL_ENV} is not set")
    user, password = env.get(USER_ENV), env.get(PASSWORD_ENV)
    headers = {"Accept": "application/json"}
    if user is not None:
        token = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    context = None
    if url.startswith("https") and env.get(INSECURE_ENV) == "1":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    resolved: list[str] = [url]

    def get(target: str) -> Mapping[str, Any]:
        request = urllib.request.Request(target, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=_TIMEOUT_S, context=context) as r:
                return json.loads(r.read().decode("utf-8"))  # type: ignore[no-any-return]
        except urllib.error.HTTPError as exc:  # the status only: never the URL
            raise SensorUnavailable(f"Redfish: the BMC answered HTTP {exc.code}") from None
        except (OSError, ValueError) as exc:
            raise SensorUnavailable(
                f"Redfish: no answer from the BMC ({type(exc).__name__})"
            ) from None

    def read() -> float:
        for _ in range(3):  # a Chassis -> its Power or EnvironmentMetrics -> a reading
            found = parse_redfish(get(resolved[0]))
            if isinstance(found, float):
                return found
            resolved[0] = urllib.parse.urljoin(resolved[0], found)
        raise SensorUnavailable("Redfish: no power reading within three links")

    return read


def nvml_module_reader(nvml: Any) -> Callable[[], float]:
    """Grace Hopper module power, watts, summed over NVML's GPUs."""
    handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
    field = [(_NVML_FI_DEV_POWER_INSTANT, _NVML_POWER_SCOPE_MODULE)]

    def read() -> float:
        total_mw = 0
        for handle in handles:
            value = nvml.nvmlDeviceGetFieldValues(handle, field)[0]
            if value.nvmlReturn != 0:
                raise SensorUnavailable(f"NVML: no module power (error {value.nvmlReturn})")
            total_mw += value.value.uiVal
        return total_mw / 1000.0

    return read


def _meter(
    source: str, read: Callable[[], float], interval: float | None, clock: Callable[[], float]
) -> SampledPowerSensor:
    read()  # probe: a meter that cannot be read now is not used
    meter = SampledPowerSensor(
        "cpu",
        NODE_METER,
        read,
        name=f"{source} node meter",
        sample_interval_s=interval,
        clock=clock,
    )
    meter.source = source  # type: ignore[attr-defined]
    return meter


def open_node_meter(
    mode: str | None,
    *,
    env: Mapping[str, str] | None = None,
    hwmon_root: str | None = None,
    nvml: Any = None,
    sample_interval_s: float | None = 1.0,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[SampledPowerSensor | None, list[SensorReport]]:
    """The node meter `mode` asks for, with one report line per source tried.

    Args:
        mode: ``"auto"``, ``"hwmon"``, ``"ipmi"``, ``"redfish"`` or None (off).
        env: for ``PATH`` and the Redfish variables (default os.environ).
        hwmon_root: replaces the hwmon root.
        nvml: an initialised pynvml-like module for Grace Hopper module power (auto only).
        sample_interval_s: seconds between hwmon/NVML samples (BMCs: 5 s at least); None:
            no thread (tests).
        clock: the tracker's clock.
    """
    env = os.environ if env is None else env
    if mode is None:
        return None, [
            SensorReport(
                "node",
                "node meter",
                False,
                None,
                "not requested "
                "(node_power=None; opt in with node_power='auto', "
                "'hwmon', 'ipmi' or 'redfish')",
            )
        ]
    bmc_interval = None if sample_interval_s is None else max(sample_interval_s, BMC_INTERVAL_S)
    ipmitool = shutil.which("ipmitool", path=env.get("PATH"))
    tries: list[tuple[str, Callable[[], SampledPowerSensor]]] = []
    root = hwmon_root or env.get(HWMON_ROOT_ENV)
    if mode in ("auto", "hwmon"):
        tries.append(
            (
                "hwmon",
                lambda: open_node_hwmon(root, sample_interval_s=sample_interval_s, clock=clock),
            )
        )
    if mode == "auto" and nvml is not None:
        tries.append(
            (
                "nvml-module",
                lambda: _meter("nvml-module", nvml_module_reader(nvml), sample_interval_s, clock),
            )
        )
    if mode == "ipmi" or (mode == "auto" and ipmitool):

        def ipmi() -> SampledPowerSensor:
            if ipmitool is None:
                raise SensorUnavailable("IPMI: ipmitool is not on PATH")
            return _meter("ipmi", ipmi_reader(ipmitool), bmc_interval, clock)

        tries.append(("ipmi", ipmi))
    if mode == "redfish" or (mode == "auto" and env.get(URL_ENV)):
        tries.append(
            ("redfish", lambda: _meter("redfish", redfish_reader(env), bmc_interval, clock))
        )
    reports: list[SensorReport] = []
    for source, opener in tries:
        try:
            meter = opener()
        except (SensorUnavailable, OSError, subprocess.SubprocessError, ValueError) as exc:
            reports.append(SensorReport("node", source, False, None, str(exc)))
            continue
        describe = getattr(meter, "describe", None)
        what = describe() if callable(describe) else meter.name
        reports.append(SensorReport("node", source, True, NODE_METER, f"measured: {what}"))
        return meter, reports
    if not tries:
        reports.append(
            SensorReport(
                "node",
                "node meter",
                False,
                None,
                "node_power='auto' found no meter to try (no hwmon "
                "meter, no ipmitool on PATH, no " + URL_ENV + ")",
            )
        )
    return None, reports

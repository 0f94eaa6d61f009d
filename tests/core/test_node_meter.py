from __future__ import annotations

import json
from pathlib import Path

import pytest

from carbon_callbacks import Tracker, node_energy
from carbon_callbacks.node_energy import NodeShare, node_method, node_share
from carbon_callbacks.outputs import run_tags, summary
from carbon_callbacks.sensors.base import NODE_METER, SensorUnavailable, SensorWarning
from carbon_callbacks.sensors.estimate import ConstantPowerSensor
from carbon_callbacks.sensors.hwmon import ROOT_ENV, find_meters, open_grace_cpu
from carbon_callbacks.sensors.node import (
    check_node_power,
    open_node_meter,
    parse_ipmi_dcmi,
    parse_redfish,
)
from tests.fakes.bmc import DCMI_READING, FakeIpmitool, redfish_server
from tests.fakes.clock import FakeClock
from tests.fakes.hwmon import FakeHwmon


@pytest.fixture(autouse=True)
def exclusive_node(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test process is not confined to part of the machine unless a test says so."""
    monkeypatch.setattr(node_energy, "confinement", lambda: None)


def components() -> list[ConstantPowerSensor]:
    return [ConstantPowerSensor("cpu", 100.0), ConstantPowerSensor("ram", 20.0)]


def tracker(clock: FakeClock, **kw: object) -> Tracker:
    return Tracker(
        intensity_g_per_kwh=100,
        sensors=components(),
        clock=clock,
        output_dir=None,
        **kw,  # type: ignore[arg-type]
    )


# -- hwmon -------------------------------------------------------------------------------------


def test_acpi_meter_replaces_the_components(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = FakeHwmon(tmp_path / "hwmon")
    tree.add("hwmon0", "coretemp", {"temp1_input": "40000"})
    tree.add_meter("hwmon1", power_uw=300_000_000, accuracy="95.0%", in_device=True)
    monkeypatch.setenv(ROOT_ENV, str(tree.root))
    clock = FakeClock(0.0)
    t = tracker(clock, node_power="hwmon", pue=1.5)
    assert [r.name for r in t.reports if r.component == "node"] == ["hwmon"]
    t.start()
    tree.set("hwmon1", "power1_average", 500_000_000)
    clock.advance(3600.0)
    lap = t.lap()
    # trapezoid: (300 W + 500 W) / 2 x 1 h = 0.4 kWh; x PUE 1.5 = 0.6 kWh
    assert lap.node_energy_kwh == 0.4
    assert lap.energy_kwh == pytest.approx(0.6, rel=1e-15)
    assert lap.node_method == NODE_METER
    # the components are still measured and logged: 100 W + 20 W for an hour
    assert (lap.cpu_energy_kwh, lap.ram_energy_kwh) == (0.1, 0.02)
    assert lap.emissions_kg == pytest.approx(0.06, rel=1e-15)
    tags = run_tags(t)
    assert (tags["carbon.node_method"], tags["carbon.node_source"]) == ("node-meter", "hwmon")
    assert "replaces the components' sum" in summary(t.stop())
    t.close()


def test_energy_counter_preferred_and_rebased(tmp_path: Path) -> None:
    tree = FakeHwmon(tmp_path)
    tree.add_meter("hwmon2", power_uw=1, energy_uj=5_000_000)
    meter, reports = open_node_meter("hwmon", hwmon_root=str(tree.root), sample_interval_s=None)
    assert meter is not None and reports[-1].available
    meter.start(0.0)
    tree.set("hwmon2", "energy1_input", 5_000_000 + 7_200_000_000)  # 7200 J
    assert meter.energy_j(10.0) == 7200.0
    tree.set("hwmon2", "energy1_input", 1_000_000)  # went back: 1 J since the restart
    assert meter.energy_j(20.0) == 7201.0


def test_no_meter_reports_why(tmp_path: Path) -> None:
    tree = FakeHwmon(tmp_path)
    tree.add("hwmon0", "nvme", {"temp1_input": "30000"})
    meter, reports = open_node_meter("hwmon", hwmon_root=str(tree.root), sample_interval_s=None)
    assert meter is None
    assert "no power meter under" in reports[0].reason


def test_node_power_validated() -> None:
    assert check_node_power(None) is None and check_node_power("ipmi") == "ipmi"
    with pytest.raises(ValueError, match="'auto', 'hwmon', 'ipmi', 'redfish'.*got 'bmc'"):
        Tracker(node_power="bmc", output_dir=None, intensity_g_per_kwh=1)


def test_off_by_default_and_says_how_to_opt_in() -> None:
    t = Tracker(intensity_g_per_kwh=1, sensors=components(), output_dir=None)
    node = [r for r in t.reports if r.component == "node"]
    assert len(node) == 1 and not node[0].available and "node_power=None" in node[0].reason
    assert t.node_method == "none" and t.node_source is None
    t.close()


# -- Grace and Grace Hopper ----------------------------------------------------------------------


def test_grace_rails_and_module_meters(tmp_path: Path) -> None:
    tree = FakeHwmon(tmp_path)
    tree.add_grace(sockets=2, module=True)
    kinds = sorted((m.kind, m.socket) for m in find_meters(str(tree.root)))
    assert kinds == sorted((k, s) for s in (0, 1) for k in ("module", "grace", "cpu", "sysio"))
    cpu = open_grace_cpu(str(tree.root), sample_interval_s=None)
    assert cpu.method == "hwmon"
    cpu.start(0.0)
    # socket 0 CPU rail hwmon3, SysIO hwmon4; socket 1 CPU hwmon7, SysIO hwmon8
    for entry, uw in (("hwmon3", 200_000_000), ("hwmon4", 40_000_000), ("hwmon7", 100_000_000)):
        tree.set(entry, "power1_average", uw)
    # trapezoid from 0 W: (0 + 340 W) / 2 x 10 s
    assert cpu.energy_j(10.0) == 1700.0
    module, reports = open_node_meter("auto", hwmon_root=str(tree.root), sample_interval_s=None)
    assert module is not None and "Module Power Socket 0" in reports[-1].reason
    assert [m.kind for m in module.meters] == ["module", "module"]  # type: ignore[attr-defined]


def test_grace_absent() -> None:
    with pytest.raises(SensorUnavailable, match="no Grace CPU telemetry"):
        open_grace_cpu("/nonexistent")


# -- IPMI ---------------------------------------------------------------------------------------


def test_dcmi_output_parsed() -> None:
    assert parse_ipmi_dcmi(DCMI_READING.format(watts=240, state="activated")) == 240.0
    with pytest.raises(SensorUnavailable, match="deactivated"):
        parse_ipmi_dcmi(DCMI_READING.format(watts=0, state="deactivated"))


def test_fake_ipmitool_on_path(tmp_path: Path) -> None:
    tool = FakeIpmitool(tmp_path, watts=200)
    meter, reports = open_node_meter("ipmi", env={"PATH": str(tool.bin)}, sample_interval_s=None)
    assert meter is not None and meter.source == "ipmi"  # type: ignore[attr-defined]
    meter.start(0.0)
    tool.set(400)
    assert meter.energy_j(10.0) == 3000.0  # (200 + 400) / 2 x 10
    assert tool.calls[-1] == "dcmi power reading"
    meter.close()


def test_ipmitool_missing_reported(tmp_path: Path) -> None:
    meter, reports = open_node_meter("ipmi", env={"PATH": str(tmp_path)}, sample_interval_s=None)
    assert meter is None and "ipmitool is not on PATH" in reports[0].reason


# -- Redfish ------------------------------------------------------------------------------------


def test_redfish_documents_parsed() -> None:
    assert parse_redfish({"PowerControl": [{"PowerConsumedWatts": 512}]}) == 512.0
    assert parse_redfish({"PowerWatts": {"Reading": 98.5}}) == 98.5
    assert parse_redfish({"Power": {"@odata.id": "/redfish/v1/Chassis/1/Power"}}) == (
        "/redfish/v1/Chassis/1/Power"
    )


@pytest.mark.parametrize("environment_metrics", [False, True])
def test_redfish_replay_server(environment_metrics: bool) -> None:
    with redfish_server() as (base, state):
        state.use_environment_metrics = environment_metrics
        env = {
            "CARBON_CALLBACKS_REDFISH_URL": base + "/redfish/v1/Chassis/1",
            "CARBON_CALLBACKS_REDFISH_USERNAME": "admin",
            "CARBON_CALLBACKS_REDFISH_PASSWORD": "s3cret-pw",
        }
        meter, _ = open_node_meter("redfish", env=env, sample_interval_s=None)
        assert meter is not None
        meter.start(0.0)
        state.watts = 600.0
        assert meter.energy_j(60.0) == 30000.0  # (400 + 600) / 2 x 60
        link = "EnvironmentMetrics" if environment_metrics else "Power"
        assert state.requests[-1][0] == f"/redfish/v1/Chassis/1/{link}"
        meter.close()


def test_redfish_wrong_password_reported_without_secrets() -> None:
    with redfish_server() as (base, _):
        env = {
            "CARBON_CALLBACKS_REDFISH_URL": base + "/redfish/v1/Chassis/1",
            "CARBON_CALLBACKS_REDFISH_USERNAME": "admin",
            "CARBON_CALLBACKS_REDFISH_PASSWORD": "wrong-pw",
        }
        meter, reports = open_node_meter("redfish", env=env, sample_interval_s=None)
    assert meter is None
    assert reports[0].reason == "Redfish: the BMC answered HTTP 401"


def test_no_credential_in_any_file_log_or_tag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    with redfish_server(user="ops-user", password="Pa55-very-secret") as (base, state):
        url = base + "/redfish/v1/Chassis/1"
        monkeypatch.setenv("CARBON_CALLBACKS_REDFISH_URL", url)
        monkeypatch.setenv("CARBON_CALLBACKS_REDFISH_USERNAME", "ops-user")
        monkeypatch.setenv("CARBON_CALLBACKS_REDFISH_PASSWORD", "Pa55-very-secret")
        clock = FakeClock(0.0)
        out = tmp_path / "journal"
        t = Tracker(
            intensity_g_per_kwh=100,
            sensors=components(),
            clock=clock,
            output_dir=out,
            node_power="redfish",
        )
        t.start()
        clock.advance(10.0)
        t.lap()
        tags = run_tags(t)
        text = summary(t.stop()) + json.dumps(tags)
        t.close()
    assert tags["carbon.node_source"] == "redfish"
    written = "".join(p.read_text() for p in out.rglob("*") if p.is_file())
    for secret in ("Pa55-very-secret", "ops-user", base, "Authorization", "Basic "):
        assert secret not in written and secret not in text and secret not in caplog.text


# -- the share rule -----------------------------------------------------------------------------


def test_share_rule_by_hand() -> None:
    reader = node_share(0.3, (0.28, 0.32), 0.5, on_metered_node=True)
    assert (reader.kwh, reader.meter_kwh, reader.meters) == (0.5, 0.5, 1)
    assert (reader.low_kwh, reader.high_kwh) == (0.25, 1.0)  # the factor of two, unverified
    other_rank = node_share(0.2, (0.19, 0.21), None, on_metered_node=True)
    assert other_rank == NodeShare(0.0, 0.0, 0.0, None, 0)
    unmetered = node_share(0.7, (0.6, 0.8), None, on_metered_node=False)
    assert unmetered == NodeShare(0.7, 0.6, 0.8, None, 0)
    # two nodes, one metered (reader + a GPU rank), one not: 0.5 + 0 + 0.7 = 1.2 kWh
    shares = (reader.as_vector(), other_rank.as_vector(), unmetered.as_vector())
    summed = NodeShare.from_vector([sum(v) for v in zip(*shares, strict=True)])
    assert (summed.kwh, summed.meter_kwh, summed.meters) == (1.2, 0.5, 1)
    assert node_method(summed.meters, 2) == "node-meter+none"
    assert node_method(2, 2) == "node-meter" and node_method(0, 2) == "none"


def test_ranks_other_than_local_zero_do_not_read_the_meter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = FakeHwmon(tmp_path)
    tree.add_meter("hwmon1", power_uw=100_000_000)
    monkeypatch.setenv(ROOT_ENV, str(tree.root))
    t = tracker(FakeClock(0.0), node_power="hwmon")
    asked: list[bool] = []
    t.distribute(
        count_cpu=False, count_ram=False, node_metered=lambda reads: asked.append(reads) or True
    )
    assert asked == [False] and t.node_source is None
    assert "read by local rank 0" in [r for r in t.reports if r.component == "node"][0].reason
    t.close()


def test_shared_node_auto_declines_explicit_warns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = FakeHwmon(tmp_path)
    tree.add_meter("hwmon1", power_uw=100_000_000)
    monkeypatch.setenv(ROOT_ENV, str(tree.root))
    monkeypatch.setattr(node_energy, "confinement", lambda: "this process may run on 4 of 64 CPUs")
    auto = tracker(FakeClock(0.0), node_power="auto")
    assert auto.node_source is None
    assert (
        "declines the node meter: this process may run on 4 of 64"
        in [r.reason for r in auto.reports if r.component == "node"][-1]
    )
    auto.close()
    with pytest.warns(SensorWarning, match="everything the machine draws is charged"):
        explicit = tracker(FakeClock(0.0), node_power="hwmon")
    assert explicit.node_source == "hwmon"
    explicit.close()


def test_meter_failure_falls_back_on_components(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = FakeHwmon(tmp_path)
    tree.add_meter("hwmon1", power_uw=100_000_000)
    monkeypatch.setenv(ROOT_ENV, str(tree.root))
    clock = FakeClock(0.0)
    t = tracker(clock, node_power="hwmon")
    t.start()
    (tree.root / "hwmon1" / "power1_average").write_text("garbage\n")
    clock.advance(3600.0)
    lap = t.lap()
    assert lap.node_method == "none" and lap.energy_kwh == pytest.approx(0.12)
    assert any("node meter failed" in e for e in lap.errors)
    t.stop()
    t.close()


def test_grace_hopper_module_power_from_nvml(tmp_path: Path) -> None:
    from tests.fakes.fake_pynvml import FakeGpu, FakeNvml

    nv = FakeNvml([FakeGpu("NVIDIA GH200 480GB", "GPU-1", module_power_mw=600_000)])
    nv.nvmlInit()
    meter, reports = open_node_meter(
        "auto", env={"PATH": str(tmp_path)}, hwmon_root=str(tmp_path / "none"), nvml=nv,
        sample_interval_s=None,
    )  # fmt: skip
    assert [r.name for r in reports] == ["hwmon", "nvml-module"]
    assert meter is not None and meter.source == "nvml-module"  # type: ignore[attr-defined]
    meter.start(0.0)
    nv.gpus[0].module_power_mw = 800_000
    assert meter.energy_j(10.0) == 7000.0  # (600 + 800) / 2 x 10
    nv.gpus[0].module_power_mw = None
    with pytest.raises(Exception, match="no module power"):
        meter.energy_j(20.0)

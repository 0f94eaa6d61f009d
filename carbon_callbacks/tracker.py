"""`Tracker`: sensors + carbon intensity -> one `Measurement` per lap, totals at the end."""

from __future__ import annotations

import logging
import os
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from carbon_callbacks.distributed import NodeCpus, NodeMetered, Reducer, TakenGpus
from carbon_callbacks.errors import (
    CarbonWarning,
    ErrorLog,
    check_pue,
    check_tracker_arguments,
    check_watts,
)
from carbon_callbacks.intensity import Intensity, resolve
from carbon_callbacks.intensity.lookup import ENV_PROVIDER
from carbon_callbacks.journal import JOURNAL_SUFFIX, Journal
from carbon_callbacks.measurement import Measurement, merge_method
from carbon_callbacks.node_energy import NodeMeterSlot, NodeShare, node_method, node_share
from carbon_callbacks.sensors.base import (
    METHOD_DESCRIPTIONS,
    NONE,
    Component,
    PollingSensor,
    Sensor,
    SensorReport,
    energy_bounds,
)
from carbon_callbacks.units import G_PER_KG, J_PER_KWH

DEFAULT_OUTPUT_DIR = "carbon_runs"
OUTPUT_DIR_ENV = "CARBON_CALLBACKS_OUTPUT_DIR"
COMPONENTS: tuple[Component, ...] = ("cpu", "gpu", "ram")

if TYPE_CHECKING:
    from carbon_callbacks.intensity.live import LiveIntensity

Clock = Callable[[], float]

logger = logging.getLogger(__name__)


def _no_location_message(intensity: Intensity) -> str:
    from carbon_callbacks.hardware import cloud_provider

    text = (
        f"no location configured: emissions use the world average ({intensity.g_per_kwh:g} "
        f"g/kWh, {intensity.source}). Pass country=, region= or cloud=, or set "
        f"CARBON_CALLBACKS_COUNTRY."
    )
    provider = cloud_provider()
    if provider is not None:
        names = {"aws": "an AWS EC2", "gcp": "a Google Compute Engine", "azure": "an Azure"}
        text += (
            f" This machine's firmware says it is {names[provider]} instance: pass "
            f"cloud='{provider}:<region>' ('carbon-callbacks regions --provider {provider}' "
            f"lists them)."
        )
    return text


class Tracker:
    """Measures the energy and emissions of a piece of work, lap by lap.

    `start()` begins a run, each `lap()` returns the `Measurement` since the previous lap (or
    the start) and adds it to the totals, `stop()` takes a final lap and returns the totals.
    Every lap is appended to a JSON Lines journal under `output_dir`. A tracker can be started
    again after `stop()`; each start is a new run with a new `run_id` and fresh totals.

    Args:
        country: ISO 3166 alpha-2 or alpha-3 code (any case) or English name, e.g. ``"FR"``.
        region: a sub-national region such as ``"US-CA"``, ``"CA-QC"`` or ``"IN-MH"``.
        cloud: a cloud region, ``"aws:us-east-1"``, ``"gcp:europe-west1"``,
            ``"azure:westeurope"``.
        pue: data-centre power usage effectiveness (>= 1.0) applied to all components.
        cpu_power_w: force a constant CPU power in watts instead of measuring (an estimate).
        ram_power_w: force a constant RAM power in watts (an estimate).
        gpu_ids: the GPUs to count (indices or UUIDs); default: ``CUDA_VISIBLE_DEVICES`` or all.
        intensity_g_per_kwh: force the carbon intensity (g CO2eq per kWh).
        intensity_provider: price each lap at a live provider's values over the hours it
            spanned: ``"electricitymaps"`` (``"electricitymaps:DE"``),
            ``"carbonintensity-uk"`` (``":13"`` for a region), ``"energidataservice:DK1"``,
            ``"watttime:CAISO_NORTH"``; default ``$CARBON_CALLBACKS_INTENSITY_PROVIDER``.
            Opt-in: nothing is contacted without it. The bundled value of the location is
            the fallback (see `carbon_callbacks.intensity.live`).
        output_dir: folder of the journal; default ``$CARBON_CALLBACKS_OUTPUT_DIR`` or
            ``./carbon_runs``. ``None`` disables the journal.
        count_cpu, count_ram, count_gpu: set False to leave a component out (under
            distributed training only one process per node counts CPU and RAM).
        sensors: ready sensors, replacing detection (tests, custom hardware).
        reducer: sums a vector over all processes (see `carbon_callbacks.distributed`);
            with it every lap is the sum over ranks, and every rank must call `lap()`.
        sync: called before the sensors are read at each lap (``torch.cuda.synchronize``,
            so queued GPU work lands in the right epoch).
        clock: monotonic seconds (injectable for tests); wall_clock: unix seconds.
        env: environment mapping for the ``CARBON_CALLBACKS_*`` variables (default os.environ).
        node_power: read the node's own power meter (opt-in): ``"auto"``, ``"hwmon"``,
            ``"ipmi"`` or ``"redfish"`` (`carbon_callbacks.sensors.node`); its energy
            replaces the components' sum (they are still logged). None (default): off.

    Raises:
        ValueError: a bad location, PUE or power (the message names it and what is accepted).
        TypeError: an argument of the wrong type.

    Example:
        >>> with Tracker(country="FR", output_dir=None) as t:
        ...     train_one_epoch()
        ...     epoch = t.lap()
        >>> t.totals.emissions_kg
    """

    def __init__(
        self,
        *,
        country: str | None = None,
        region: str | None = None,
        cloud: str | None = None,
        pue: float = 1.0,
        cpu_power_w: float | None = None,
        ram_power_w: float | None = None,
        gpu_ids: Sequence[int | str] | None = None,
        intensity_g_per_kwh: float | None = None,
        intensity_provider: str | None = None,
        output_dir: str | os.PathLike[str] | None | object = ...,
        count_cpu: bool = True,
        count_ram: bool = True,
        count_gpu: bool = True,
        sensors: Sequence[Sensor] | None = None,
        reducer: Reducer | None = None,
        sync: Callable[[], None] | None = None,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
        env: Mapping[str, str] | None = None,
        node_power: str | None = None,
    ) -> None:
        check_tracker_arguments({k: v for k, v in locals().items() if k != "self"})
        from carbon_callbacks.sensors.node import check_node_power

        self.node_power = check_node_power(node_power)
        env = os.environ if env is None else env
        self._clock = clock
        self._wall_clock = wall_clock
        self.pue = check_pue(pue)
        self.cpu_power_w = check_watts("cpu_power_w", cpu_power_w)
        self.ram_power_w = check_watts("ram_power_w", ram_power_w)
        self.intensity: Intensity = resolve(
            country=country,
            region=region,
            cloud=cloud,
            intensity_g_per_kwh=intensity_g_per_kwh,
            env=env,
        )
        self.errors = ErrorLog()
        self.live: LiveIntensity | None = None
        if intensity_provider is None:
            intensity_provider = env.get(ENV_PROVIDER) or None
            what = ENV_PROVIDER
        else:
            what = "intensity_provider"
        if intensity_provider is not None and str(intensity_provider).strip():
            from carbon_callbacks.intensity.live import make_live

            self.live, self.intensity = make_live(
                intensity_provider, self.intensity, env, errors=self.errors,
                wall_clock=wall_clock, what=what,
            )  # fmt: skip
        elif intensity_provider is not None and what != ENV_PROVIDER:
            raise ValueError(f"intensity_provider {intensity_provider!r} is empty: name a provider")
        if self.intensity.is_default:
            warnings.warn(_no_location_message(self.intensity), CarbonWarning, stacklevel=2)
        if output_dir is ...:
            output_dir = env.get(OUTPUT_DIR_ENV) or DEFAULT_OUTPUT_DIR
        self.output_dir = None if output_dir is None else Path(output_dir)  # type: ignore[arg-type]
        self.errors.add_listener(self._journal_error)  # every warned failure is journaled
        self.reports: list[Any] = []
        self._poll_interval_s: float | None = None
        # What the user chose, which `distribute` never overrides.
        self._counts = {"cpu": count_cpu, "ram": count_ram, "gpu": count_gpu}
        self._user_gpu_ids = None if gpu_ids is None else [str(g) for g in gpu_ids]
        self._gpu_ids_used = self._user_gpu_ids
        self._injected = sensors is not None
        if sensors is None:
            sensors = self._detect(gpu_ids, count_cpu, count_ram, count_gpu)
        self._node = self._open_node(env, count_cpu or count_ram)
        self._sensors: dict[Component, Sensor] = {}
        for sensor in sensors:
            if sensor.component in self._sensors:
                raise ValueError(f"two sensors for component {sensor.component!r}")
            self._sensors[sensor.component] = sensor
        self._reducer = reducer
        self._sync = sync
        self._gpu_found = "gpu" in self._sensors
        self._counts_node = count_cpu or count_ram
        self.nodes = 1
        self.world_size = 1
        self.gpu_count: int | None = None  # GPUs of all ranks (set at start with a reducer)
        self._lock = threading.Lock()
        self._guard: _PollThread | None = None
        self._journal: Journal | None = None
        self._journal_path: Path | None = None
        self.run_id: str | None = None
        self._running = False
        self._pending_state: Mapping[str, Any] | None = None
        self._run_methods: dict[Component, str] | None = None
        self._run_node_meters: int | None = None
        self._lap_kind = "epoch"
        self._priced: list[tuple[int, str, Measurement]] = []  # laps to re-price (live only)
        self.corrections: list[tuple[int, Measurement, Measurement]] = []
        self._reset_totals()

    # -- set-up --------------------------------------------------------------------------

    def _open_node(self, env: Mapping[str, str], counts_node: bool) -> NodeMeterSlot:
        from carbon_callbacks.node_energy import open_node_slot

        if self.node_power is None:
            slot = open_node_slot(None, env=env, clock=self._clock)
        elif not counts_node:
            slot = NodeMeterSlot(
                None,
                [
                    SensorReport(
                        "node",
                        "node meter",
                        False,
                        None,
                        "not read in this process (count_cpu=False and count_ram=False)",
                    )
                ],
            )
        else:
            slot = open_node_slot(self.node_power, env=env, clock=self._clock)
        self.reports.extend(slot.reports)
        return slot

    def _detect(
        self, gpu_ids: Sequence[int | str] | None, cpu: bool, ram: bool, gpu: bool
    ) -> list[Sensor]:
        from carbon_callbacks.sensors.detect import detect_sensors

        found = detect_sensors(
            cpu_power_w=self.cpu_power_w,
            ram_power_w=self.ram_power_w,
            gpu_ids=gpu_ids,
            count_cpu=cpu,
            count_ram=ram,
            count_gpu=gpu,
            clock=self._clock,
        )
        self.reports = list(found.reports)
        if found.needs_guard_thread:
            self._poll_interval_s = found.poll_interval_s
        return [s for s in (found.cpu, found.gpu, found.ram) if s is not None]

    def distribute(
        self,
        *,
        count_cpu: bool = True,
        count_ram: bool = True,
        gpu_ids: Sequence[int | str] | None = None,
        reducer: Reducer | None = None,
        sync: Callable[[], None] | None = None,
        taken_gpus: TakenGpus | None = None,
        node_cpus: NodeCpus | None = None,
        node_metered: NodeMetered | None = None,
    ) -> None:
        """Apply this process's role in a (distributed) run; call before `start()`.

        For callers that learn the role only when training starts (under Lightning DDP the
        tracker is built before the ranks exist); `carbon_callbacks.distributed.apply_roles`
        calls it. The user's choices win: a component the constructor left out stays out,
        an explicit ``gpu_ids=`` is kept, ``sensors=`` are not re-detected, forced watts
        stay forced.

        Args:
            count_cpu, count_ram: False on every process but one per node (local rank 0);
                a process with either True is counted as a node in ``nodes``.
            gpu_ids: the GPUs this process trains on (as for the constructor); ``[]``: none;
                None keeps the current selection.
            reducer: sums laps over ranks; None keeps the current one. Every rank that has
                one must call `start()`, `lap()` and `stop()` together.
            sync: called before each lap's reads (``torch.cuda.synchronize``); None keeps
                the current one.
            taken_gpus: a collective (every rank calls it here, once) giving, of this
                process's GPU UUIDs, those a lower rank measures too; they are dropped here,
                so two ranks on slices of one GPU count it once.
            node_cpus: a collective (every rank calls it here, once) giving the CPUs of all
                the run's processes on this node; a CPU estimate counted here covers them,
                not only this process's own.
            node_metered: a collective (every rank calls it here, once) telling, from
                whether this process reads a node meter, whether any process of this node
                does (`carbon_callbacks.node_energy`: the share rule).

        Raises:
            RuntimeError: the tracker is running.
        """
        if self._running:
            raise RuntimeError("Tracker.distribute() called on a running tracker")
        roles: tuple[tuple[Component, bool], ...] = (("cpu", count_cpu), ("ram", count_ram))
        for component, role in roles:
            if not (role and self._counts[component]):
                why = f"count_{component}=False" if role else "counted by local rank 0"
                self._drop(component, f"not counted in this process ({why})")
            elif component not in self._sensors and not self._injected:
                self._redetect(component, None)
        if (
            gpu_ids is not None
            and self._counts["gpu"]
            and self._gpu_found
            and not self._injected
            and self._user_gpu_ids is None
            and [str(g) for g in gpu_ids] != self._gpu_ids_used
        ):
            self._drop("gpu", "not counted in this process (it trains on no GPU)")
            self._gpu_ids_used = [str(g) for g in gpu_ids]
            if self._gpu_ids_used:
                self._redetect("gpu", self._gpu_ids_used)
        if taken_gpus is not None:
            self._drop_taken_gpus(taken_gpus)
        if node_cpus is not None:
            self._count_node_cpus(node_cpus)
        if not (count_cpu or count_ram):
            self._node.drop("node meter read by local rank 0, not in this process")
            self.reports = [r for r in self.reports if r.component != "node"]
            self.reports.extend(self._node.reports)
        if node_metered is not None:  # a collective: called on every rank
            self._node.on_metered_node = node_metered(self._node.meter is not None)
        if not self._injected:
            polling = [s for s in self._sensors.values() if isinstance(s, PollingSensor)]
            self._poll_interval_s = min((s.poll_interval_s for s in polling), default=None)
        self._counts_node = count_cpu or count_ram
        if reducer is not None:
            self._reducer = reducer
        if sync is not None:
            self._sync = sync

    def _drop_taken_gpus(self, taken_gpus: TakenGpus) -> None:
        gpu = self._sensors.get("gpu")
        uuids = [] if gpu is None or self._injected else list(getattr(gpu, "uuids", []))
        taken = taken_gpus(uuids)  # a collective: called even with nothing to offer
        if not taken:
            return
        own = [u for u in uuids if u not in taken]
        logger.info("carbon-callbacks: GPU(s) %s counted by a lower rank", sorted(taken))
        names = ", ".join(sorted(taken))
        self._drop("gpu", f"not counted in this process ({names}: by a lower rank)")
        self._gpu_ids_used = own
        if own:
            self._redetect("gpu", own)

    def _count_node_cpus(self, node_cpus: NodeCpus) -> None:
        from carbon_callbacks.sensors import cpuinfo
        from carbon_callbacks.sensors.detect import cpu_estimate_report
        from carbon_callbacks.sensors.estimate import CpuEstimateSensor

        cpu = self._sensors.get("cpu")
        cpus = node_cpus(cpuinfo.usable_cpus())  # a collective: called on every rank
        if not isinstance(cpu, CpuEstimateSensor) or self._injected or cpus == cpu.cpus:
            return
        node = CpuEstimateSensor(
            cpu_model=cpu.cpu_model,
            logical_cpus=cpu.logical_cpus,
            sockets=cpu.sockets,
            cpus=range(cpu.logical_cpus) if cpus is None else cpus,  # None: all of them
            virtual_machine=cpu.virtual_machine,
            cpu_quota=cpu.quota,
        )
        self._sensors["cpu"] = node
        self.reports = [r for r in self.reports if r.component != "cpu"]
        self.reports.append(cpu_estimate_report(node))

    def _drop(self, component: Component, reason: str) -> None:
        sensor = self._sensors.pop(component, None)
        if sensor is None:
            return
        sensor.close()
        self.reports = [r for r in self.reports if r.component != component]
        self.reports.append(SensorReport(component, "-", False, None, reason))

    def _redetect(self, component: Component, gpu_ids: Sequence[str] | None) -> None:
        from carbon_callbacks.sensors.detect import detect_sensors

        # The ids come from the training device, not the user: nothing to warn them about.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                found = detect_sensors(
                    cpu_power_w=self.cpu_power_w,
                    ram_power_w=self.ram_power_w,
                    gpu_ids=gpu_ids,
                    count_cpu=component == "cpu",
                    count_ram=component == "ram",
                    count_gpu=component == "gpu",
                    clock=self._clock,
                )
            except ValueError as exc:  # a GPU id of the training device that NVML lacks
                self.errors.record(f"detect:{component}", f"{component} not counted: {exc}")
                return
        for w in caught:
            logger.info("carbon-callbacks: %s", w.message)
        for s in found.sensors:
            if s.component != component:  # pragma: no cover - detection honours count_*
                s.close()
        sensor = getattr(found, component)
        self.reports = [r for r in self.reports if r.component != component]
        self.reports.extend(r for r in found.reports if r.component == component)
        if sensor is not None:
            self._sensors[component] = sensor

    def _reset_totals(self) -> None:
        self.lap_count = 0
        self._totals: Measurement | None = None
        self._offset: Measurement | None = None  # totals carried over by load_state_dict

    # -- public API ------------------------------------------------------------------------

    @property
    def methods(self) -> dict[Component, str]:
        """The method of each component (``"none"`` when not counted); once a run with a
        reducer has started, those of all its ranks (``"rapl+estimate-tdp"`` when another
        node estimates what this one measures)."""
        if self._run_methods is not None:
            return dict(self._run_methods)
        return self._local_methods()

    @property
    def local_methods(self) -> dict[Component, str]:
        """The method of each component in this process alone (``"none"`` when not counted)."""
        return self._local_methods()

    def _local_methods(self) -> dict[Component, str]:
        return {c: (self._sensors[c].method if c in self._sensors else NONE) for c in COMPONENTS}

    @property
    def sensors(self) -> dict[Component, Sensor]:
        return dict(self._sensors)

    @property
    def running(self) -> bool:
        return self._running

    @property
    def journal_path(self) -> Path | None:
        """The journal file of the current or last run (None when disabled or unwritable)."""
        return self._journal_path

    @property
    def totals(self) -> Measurement | None:
        """Everything measured in this run so far (None before the first lap)."""
        if self._offset is None:
            return self._totals
        if self._totals is None:
            return self._offset
        return self._offset + self._totals

    def start(self, run_id: str | None = None) -> None:
        """Begin a new run (fresh totals), reading every sensor's starting point."""
        if self._running:
            raise RuntimeError("Tracker.start() called on a running tracker; call stop() first")
        self._reset_totals()
        pending, self._pending_state = self._pending_state, None
        if pending is not None:
            self._apply_state(pending)
            run_id = run_id or pending.get("run_id")
        self.run_id = run_id or os.urandom(16).hex()
        now = self._clock()
        for component, sensor in list(self._sensors.items()):
            bind_errors = getattr(sensor, "bind_errors", None)
            if callable(bind_errors):  # e.g. NVML's counter restarts, recorded and warned here
                bind_errors(self.errors)
            try:
                sensor.start(now)
            except Exception as exc:  # any sensor's failure is recorded; the run goes on
                self.errors.record(f"start:{component}", f"{component} sensor failed: {exc}")
                del self._sensors[component]
        self._last_j = dict.fromkeys(self._sensors, 0.0)
        try:
            self._node.start(now)
        except Exception as exc:  # the meter's failure is recorded; components still count
            self.errors.record("start:node", f"node meter failed: {exc}")
            self._node.drop(f"node meter failed at start: {exc}")
        self._methods = self._local_methods()
        self._run_methods = None
        self._run_node_meters = None
        if self._reducer is not None:
            self._start_collective()
        self._lap_start = now
        self._lap_wall_start = self._wall_clock()
        self._open_journal()
        self._priced, self.corrections = [], []
        if self.live is not None and (self._reducer is None or self.output_dir is not None):
            # Under distributed training only the rank that logs fetches (one request a run).
            self.live.start(self._lap_wall_start, self.output_dir)
        if self._poll_interval_s:
            self._guard = _PollThread(self, self._poll_interval_s)
            self._guard.start()
        self._running = True

    def local_only(self, reason: str) -> None:
        """Stop summing laps over ranks: from now on, this process's measurements only.

        For when the other ranks may never reach the next lap (training raised here): a
        collective then would wait for them until the process group's timeout.
        """
        if self._reducer is None:
            return
        self._reducer = None
        self.errors.record(
            "reduce:stopped", f"{reason}: from here on, the measurements of this process only"
        )

    def lap(self, *, interrupted: bool = False) -> Measurement:
        """The measurement since the previous lap (or start), added to the totals.

        Args:
            interrupted: the lap ends where training raised: the journal marks it so, and
                it does not take a lap number (a resume numbers that epoch's lap again).
        """
        if not self._running:
            raise RuntimeError("Tracker.lap() called before start()")
        errors: list[str] = []
        if self._sync is not None:
            try:
                self._sync()
            except Exception as exc:  # a framework call: any failure is recorded, not raised
                self.errors.record("sync", f"device synchronisation failed: {exc}")
        if self._reducer is not None:
            self._barrier()
        now = self._clock()
        wall = self._wall_clock()
        energy_kwh = self._read(now, errors, commit=True)
        bounds = self._bounds(energy_kwh)
        share = self._node_share(energy_kwh, bounds, now, errors, commit=True)
        if self._reducer is not None:
            energy_kwh, bounds, share = self._reduce(energy_kwh, bounds, share)
        m = self._measurement(
            energy_kwh,
            bounds,
            self._lap_start,
            now,
            self._lap_wall_start,
            wall,
            errors,
            share=share,
        )
        self._lap_start = now
        self._lap_wall_start = wall
        self._totals = m if self._totals is None else self._totals + m
        kind = "interrupted" if interrupted else self._lap_kind
        if self.live is not None:
            self._priced.append((self.lap_count, kind, m))
        self._write_lap(m, kind)
        return m

    def peek(self) -> Measurement:
        """This process's measurement since the last lap, without taking a lap: nothing is
        added to the totals or journaled (for progress displays; no reduce across ranks)."""
        if not self._running:
            raise RuntimeError("Tracker.peek() called before start()")
        return self._since_last_lap(reduce=False)

    def _read(
        self, now: float, errors: list[str], *, commit: bool
    ) -> dict[Component, float | None]:
        """kWh of each sensor since the last lap; `commit` moves the lap's starting point."""
        energy_kwh: dict[Component, float | None] = {}
        with self._lock:
            for component, sensor in self._sensors.items():
                try:
                    total_j = sensor.energy_j(now)
                except Exception as exc:  # any sensor's failure is recorded; the run goes on
                    message = f"{component} sensor failed: {exc}"
                    self.errors.record(f"read:{component}:{type(exc).__name__}", message)
                    errors.append(message)
                    energy_kwh[component] = None
                    continue
                energy_kwh[component] = (total_j - self._last_j[component]) / J_PER_KWH
                if commit:
                    self._last_j[component] = total_j
        return energy_kwh

    def _node_share(
        self,
        energy_kwh: Mapping[Component, float | None],
        bounds: tuple[float, float],
        now: float,
        errors: list[str],
        *,
        commit: bool,
    ) -> NodeShare:
        """This process's part of the node-basis energy (`carbon_callbacks.node_energy`)."""
        meter_kwh = None
        try:
            meter_kwh = self._node.read_kwh(now, commit=commit)
        except Exception as exc:  # this lap falls back on the components; the run goes on
            message = f"node meter failed: {exc}"
            self.errors.record(f"read:node:{type(exc).__name__}", message)
            errors.append(message)
        components = sum(v for v in energy_kwh.values() if v is not None)
        on_metered = self._node.on_metered_node and meter_kwh is None and self._node.meter is None
        return node_share(components, bounds, meter_kwh, on_metered_node=on_metered)

    @property
    def node_source(self) -> str | None:
        """The kind of this process's node meter (``hwmon``, ``ipmi``...), or None."""
        return self._node.source

    @property
    def node_method(self) -> str:
        """``node-meter`` when node meters give the energy (``node-meter+none`` when only
        some nodes have one), else ``none``."""
        meters = self._run_node_meters
        if meters is None:
            meters = 1 if self._node.meter is not None else 0
        return node_method(meters, max(self.nodes, 1))

    def stop(self) -> Measurement:
        """Take the final lap, close the journal, and return the run's totals."""
        if not self._running:
            raise RuntimeError("Tracker.stop() called before start()")
        self._lap_kind = "final"
        try:
            self.lap()
        finally:
            self._lap_kind = "epoch"
        self._running = False
        if self._guard is not None:
            self._guard.stop()
            self._guard = None
        if self.live is not None and self.live.running:
            self._reprice()
        totals = self.totals
        assert totals is not None
        if self._journal is not None:
            self._append({"type": "stop", "run_id": self.run_id, **_fields(totals)})
            self._journal.close()
            self._journal = None
        return totals

    def close(self) -> None:
        """Stop if running and release sensor handles and threads."""
        if self._running:
            self.stop()
        if self.live is not None:
            self.live.stop()
        for sensor in self._sensors.values():
            sensor.close()
        self._node.close()

    def __enter__(self) -> Tracker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._running:
            self.stop()

    def state_dict(self, *, current: bool = False, collective: bool = False) -> dict[str, Any]:
        """Totals so far, to save in a checkpoint and continue from with `load_state_dict`.

        Args:
            current: include the energy since the last lap (a checkpoint saved inside an
                epoch: the resumed run carries it in its totals, not in that epoch's lap).
                Nothing is journaled and the next lap is unchanged.
            collective: with a reducer, every rank is calling this now, so that energy is
                summed over ranks; without `collective` a distributed run saves the totals
                of the last lap (summing one rank's part would undercount).
        """
        totals = self.totals
        if current and self._running and (self._reducer is None or collective):
            since = self._since_last_lap(reduce=True)
            totals = since if totals is None else totals + since
        return {
            "run_id": self.run_id,
            "lap_count": self.lap_count,
            "totals": None if totals is None else _fields(totals),
        }

    def _since_last_lap(self, *, reduce: bool) -> Measurement:
        """The energy since the last lap, without moving the lap's starting point; with
        `reduce` and a reducer, summed over ranks (a collective)."""
        now = self._clock()
        errors: list[str] = []
        energy_kwh = self._read(now, errors, commit=False)
        bounds = self._bounds(energy_kwh)
        share = self._node_share(energy_kwh, bounds, now, errors, commit=False)
        if reduce and self._reducer is not None:
            energy_kwh, bounds, share = self._reduce(energy_kwh, bounds, share)
        return self._measurement(
            energy_kwh, bounds, self._lap_start, now, self._lap_wall_start,
            self._wall_clock(), errors, share=share,
        )  # fmt: skip

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue a run saved by `state_dict`: totals and lap numbering carry on.

        Called before `start()`, the state is applied when the run starts (as when a framework
        restores a checkpoint before training begins).
        """
        if self._running:
            self._apply_state(state)
        else:
            self._pending_state = dict(state)

    def _apply_state(self, state: Mapping[str, Any]) -> None:
        totals = state.get("totals")
        if totals is not None:
            # A checkpoint written before the basis was recorded: this run's basis.
            totals = {"intensity_basis": self.intensity.basis, **totals}
        self._offset = None if totals is None else Measurement(**_measurement_args(totals))
        self._totals = None
        self.lap_count = int(state.get("lap_count", 0))

    def wait_for_ranks(self) -> None:
        """Wait until every rank of a distributed run reaches this call (nothing without a
        reducer, or after `local_only`): the session calls it when training ends, after global
        rank 0 has flushed its sinks, so that the ranks leave training together rather than
        one tearing the process group down while rank 0 still writes."""
        if self._reducer is not None:
            self._barrier()

    # -- internals -----------------------------------------------------------------------

    def _barrier(self) -> None:
        """Wait for every rank, so that all read their sensors at the same moment: a rank
        that reaches the epoch's end first is still drawing power while it waits."""
        assert self._reducer is not None
        try:
            self._reducer([0.0])
        except Exception as exc:  # a collective of the framework's process group
            self.errors.record("reduce", f"summing over ranks failed, this rank only: {exc}")

    def _bounds(self, energy_kwh: Mapping[Component, float | None]) -> tuple[float, float]:
        """The range of this process's energy before PUE, from each component's method."""
        low = high = 0.0
        methods = self._methods
        for component, kwh in energy_kwh.items():
            if kwh is not None:
                lo, hi = energy_bounds(methods[component], kwh)
                low += lo
                high += hi
        return low, high

    def _start_collective(self) -> None:
        """One sum over all ranks at start: nodes, processes and GPUs of the run, and the
        methods every rank uses. Labels are exchanged as counts over the known labels, so a
        custom sensor's own label stays this rank's; this rank's label comes first."""
        assert self._reducer is not None
        gpu = self._sensors.get("gpu")
        gpus = 0 if gpu is None else getattr(gpu, "device_count", 1)
        local = self._methods
        known = [m for m in METHOD_DESCRIPTIONS if m != NONE]
        flags = [1.0 if m in local[c].split("+") else 0.0 for c in COMPONENTS for m in known]
        metered = 1.0 if self._node.meter is not None else 0.0
        summed = self._reducer(
            [1.0 if self._counts_node else 0.0, 1.0, float(gpus), metered, *flags]
        )
        self.nodes, self.world_size, self.gpu_count = (round(v) for v in summed[:3])
        self._run_node_meters = round(summed[3])
        joined: dict[Component, str] = {}
        for i, c in enumerate(COMPONENTS):
            label = local[c]
            for j, m in enumerate(known):
                if summed[4 + i * len(known) + j] > 0:
                    label = merge_method(label, m)
            joined[c] = label
        self._run_methods = joined

    def _reduce(
        self,
        energy_kwh: Mapping[Component, float | None],
        bounds: tuple[float, float],
        share: NodeShare,
    ) -> tuple[dict[Component, float | None], tuple[float, float], NodeShare]:
        """Sum each component, the range and the node shares over all ranks; None where no
        rank counted a component."""
        assert self._reducer is not None
        local = [energy_kwh.get(c) for c in COMPONENTS]
        vector = [v or 0.0 for v in local] + [0.0 if v is None else 1.0 for v in local]
        try:
            summed = self._reducer([*vector, *bounds, *share.as_vector()])
        except Exception as exc:  # a collective of the framework's process group
            self.errors.record("reduce", f"summing over ranks failed, this rank only: {exc}")
            return dict(energy_kwh), bounds, share
        n = len(COMPONENTS)
        energies = {c: (summed[i] if summed[n + i] > 0 else None) for i, c in enumerate(COMPONENTS)}
        summed_share = NodeShare.from_vector(summed[2 * n + 2 :])
        return energies, (summed[2 * n], summed[2 * n + 1]), summed_share

    def _measurement(
        self,
        energy_kwh: Mapping[Component, float | None],
        bounds: tuple[float, float],
        start: float,
        end: float,
        wall_start: float,
        wall_end: float,
        errors: list[str],
        *,
        share: NodeShare | None = None,
    ) -> Measurement:
        cpu = energy_kwh.get("cpu")
        gpu = energy_kwh.get("gpu")
        ram = energy_kwh.get("ram")
        it_kwh = (cpu or 0.0) + (gpu or 0.0) + (ram or 0.0)
        metered = share is not None and share.meters > 0
        if share is not None and metered:  # the node meters' energy replaces the components'
            it_kwh, bounds = share.kwh, (share.low_kwh, share.high_kwh)
        pue = self.pue
        facility_kwh = it_kwh * pue
        if self.live is not None and self.live.running:
            g, source, year, basis = self.live.price(wall_start, wall_end)
        else:
            i = self.intensity
            g, source, year, basis = i.g_per_kwh, i.source, i.year, i.basis
        g_per_kg = g / G_PER_KG
        methods = self._run_methods or self._methods
        low_kwh, high_kwh = bounds[0] * pue, bounds[1] * pue
        return Measurement(
            start_time=wall_start,
            end_time=wall_end,
            duration_s=end - start,
            energy_kwh=facility_kwh,
            cpu_energy_kwh=cpu,
            gpu_energy_kwh=gpu,
            ram_energy_kwh=ram,
            emissions_kg=facility_kwh * g_per_kg,
            intensity_g_per_kwh=g,
            intensity_source=source,
            intensity_year=year,
            pue=pue,
            cpu_method=methods["cpu"],
            gpu_method=methods["gpu"],
            ram_method=methods["ram"],
            errors=tuple(errors),
            intensity_basis=basis,
            energy_kwh_low=min(low_kwh, facility_kwh),
            energy_kwh_high=max(high_kwh, facility_kwh),
            emissions_kg_low=min(low_kwh, facility_kwh) * g_per_kg,
            emissions_kg_high=max(high_kwh, facility_kwh) * g_per_kg,
            node_method=node_method(share.meters, max(self.nodes, 1)) if share else "none",
            node_energy_kwh=share.meter_kwh if share else None,
        )

    def _reprice(self) -> None:
        """Price the run's laps again with what the provider has published by now (at most
        `live.SETTLE_WAIT_S` of waiting); journal each change, rebuild the totals."""
        from carbon_callbacks.intensity.reprice import reprice_laps

        assert self.live is not None
        totals, self.corrections, records = reprice_laps(self.live, self._priced, self.run_id)
        if totals is not None:
            self._totals = totals
        if self._journal is not None:
            for record in records:
                self._append(record)
        self.live.stop()

    def _open_journal(self) -> None:
        self._journal_path = None
        if self.output_dir is None:
            return
        try:
            self._journal = Journal(self.output_dir / f"{self.run_id}{JOURNAL_SUFFIX}")
        except (OSError, ValueError) as exc:
            self.errors.record(
                "journal:open",
                f"cannot write the journal in {self.output_dir} ({exc}); "
                "laps are kept in memory and sent to the trackers only",
            )
            return
        self._journal_path = self._journal.path
        self._append(
            {
                "type": "run",
                "run_id": self.run_id,
                "time": self._lap_wall_start,
                "intensity_g_per_kwh": self.intensity.g_per_kwh,
                "intensity_source": self.intensity.source,
                "intensity_basis": self.intensity.basis,
                "intensity_kind": self.intensity.kind,
                "location": self.intensity.location,
                "intensity_provider": None if self.live is None else self.live.spec,
                "pue": self.pue,
                "methods": dict(self.methods),
            }
        )
        for cause, message in self.errors.items():  # failures seen before the journal opened
            self._journal_error(cause, message)

    def journal_append(self, record: Mapping[str, Any]) -> bool:
        """Append `record` (a JSON object with a ``"type"``) to this run's journal.

        For the session's ``"sink"``, ``"tags"`` and ``"metrics"`` records (what
        ``carbon-callbacks sync`` resends) and journaled errors; after `stop()` it still
        appends to the stopped run's journal. Thread-safe. Returns False when there is no
        journal (disabled or unwritable) or the write failed (recorded in `errors`).
        """
        journal, path = self._journal, self._journal_path
        if journal is None and path is None:
            return False
        try:
            if journal is not None and journal.append({**record, "run_id": self.run_id}):
                return True
            if path is None or not path.is_file():  # never re-create a journal removed since
                return False
            # The run has stopped (the final metrics, a sink's last failure): append and close.
            once = Journal(path)
            try:
                return once.append({**record, "run_id": self.run_id})
            finally:
                once.close()
        except (OSError, ValueError) as exc:
            self.errors.record("journal:write", f"cannot append to the journal: {exc}")
            return False

    def _journal_error(self, cause: str, message: str) -> None:
        record = {"type": "error", "cause": cause, "message": message}
        self.journal_append({**record, "time": self._wall_clock()})

    def _write_lap(self, m: Measurement, kind: str) -> None:
        """Journal a lap: an ``"epoch"`` takes the next lap number; the ``"final"`` lap of
        `stop()` and an ``"interrupted"`` one keep the number the next epoch will have."""
        index = self.lap_count
        if kind == "epoch":
            self.lap_count += 1
        if self._journal is not None:
            record = {"type": "lap", "run_id": self.run_id, "lap": index, "kind": kind}
            self._append({**record, **_fields(m)})

    def _append(self, record: dict[str, Any]) -> None:
        assert self._journal is not None
        try:
            self._journal.append(record)
        except (OSError, ValueError) as exc:
            self.errors.record("journal:write", f"cannot append to the journal: {exc}")


class _PollThread(threading.Thread):
    """Reads wrapping counters (RAPL) often enough that no wrap-around is missed."""

    def __init__(self, tracker: Tracker, interval_s: float) -> None:
        super().__init__(name="carbon-callbacks-counter-guard", daemon=True)
        self._tracker = tracker
        self._interval_s = interval_s
        self._stop_event = threading.Event()

    def run(self) -> None:
        tracker = self._tracker
        while not self._stop_event.wait(self._interval_s):
            with tracker._lock:
                for component, sensor in tracker._sensors.items():
                    poll = getattr(sensor, "poll", None)
                    if poll is None:
                        continue
                    try:
                        poll()
                    except Exception as exc:  # any sensor's failure is recorded; the run goes on
                        tracker.errors.record(f"poll:{component}", f"{component} poll: {exc}")

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5.0)


_FIELDS = tuple(Measurement.__dataclass_fields__)


def _fields(m: Measurement) -> dict[str, Any]:
    d = {name: getattr(m, name) for name in _FIELDS}
    d["errors"] = list(m.errors)
    d["estimated"] = m.estimated
    return d


def _measurement_args(d: Mapping[str, Any]) -> dict[str, Any]:
    args = {name: d[name] for name in _FIELDS if name in d}
    args["errors"] = tuple(args.get("errors", ()))
    return args

"""``carbon-callbacks report --all-experiments``: every run with carbon metrics on a server.

Reads runs with MLflow's public client only, in few requests: the experiments page by page
(`MlflowClient.search_experiments`), then their runs page by page (`search_runs`, up to
`PAGE_SIZE` runs a request), asking the server for the runs that have a ``carbon/emissions_kg``
metric (and started on or after ``--since``) and nothing per run afterwards: a run's last
``carbon/*`` values and its tags come with the search. MLflow's search has no column
selection, so that filter is what keeps the transfer small.

Per run (DESIGN.md's contract): the last values of ``carbon/energy_kwh`` and
``carbon/emissions_kg`` are its totals; ``carbon/*_low`` / ``_high`` its range (a run without
them counts its value as both ends); the tag ``carbon.estimated`` whether a component was
estimated; ``carbon.greener_region`` the region where it would have emitted less
(`carbon_callbacks.regions.saving_from_tag` turns it into kg).
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from carbon_callbacks.regions import saving_from_tag

PAGE_SIZE = 1000  # runs a request: MLflow's default page (a server accepts up to 50,000)
EXPERIMENTS_PER_SEARCH = 100  # experiment ids a search_runs request names
CARBON_FILTER = "metrics.`carbon/emissions_kg` >= 0"  # the runs that have carbon metrics
BY_CHOICES = ("experiment", "user", "month", "tag:KEY")
RANGE_KEYS = ("energy_kwh_low", "energy_kwh_high", "emissions_kg_low", "emissions_kg_high")


@dataclass(frozen=True)
class OrgRun:
    """What the organisation view needs of one run. kWh, kg CO2eq; ranges None when absent."""

    run_id: str
    name: str
    experiment: str
    user: str | None
    month: str | None  # "2026-03", from the run's start time (UTC)
    energy_kwh: float
    emissions_kg: float
    energy_kwh_low: float | None
    energy_kwh_high: float | None
    emissions_kg_low: float | None
    emissions_kg_high: float | None
    estimated: bool | None  # the tag carbon.estimated; None when the run does not say
    greener_region: str | None  # the tag carbon.greener_region
    tags: Mapping[str, str]

    @property
    def has_range(self) -> bool:
        return all(getattr(self, key) is not None for key in RANGE_KEYS)


@dataclass(frozen=True)
class Group:
    """Sums over a group of runs: kWh, kg CO2eq; low/high sum the runs' ranges.

    Args:
        key: the group's value (experiment name, user, ``"2026-03"``, a tag's value), or
            None for runs without one (no user, no such tag).
        runs: how many runs.
        energy_kwh, emissions_kg: the sums of the run totals.
        energy_kwh_low, energy_kwh_high, emissions_kg_low, emissions_kg_high: the sums of
            the ends of the runs' ranges; a run without a range adds its value to both.
        runs_without_range: runs without the ``carbon/*_low`` / ``_high`` metrics.
        estimated_runs, estimated_emissions_kg: runs tagged ``carbon.estimated=true``, and
            their kg CO2eq; unlabelled_runs: runs without that tag.
        saving_kg: kg CO2eq that moving each run to the region of its
            ``carbon.greener_region`` tag would have saved; runs_without_advice: runs whose
            tag is missing or names no region known to this version.
        greener_region: the region that holds most of `saving_kg` (None when nothing saved).
    """

    key: str | None
    runs: int
    energy_kwh: float
    emissions_kg: float
    energy_kwh_low: float
    energy_kwh_high: float
    emissions_kg_low: float
    emissions_kg_high: float
    runs_without_range: int
    estimated_runs: int
    estimated_emissions_kg: float
    unlabelled_runs: int
    saving_kg: float
    runs_without_advice: int
    greener_region: str | None

    def to_json(self) -> dict[str, Any]:
        """The group as JSON: ``key``, ``runs``, ``energy_kwh``, ``emissions_kg`` first."""
        return {field: getattr(self, field) for field in self.__dataclass_fields__}


def check_by(by: str) -> str:
    """`by` itself when valid; else ValueError naming the accepted values."""
    if by in BY_CHOICES[:3] or (by.startswith("tag:") and len(by) > 4):
        return by
    raise ValueError(f"--by must be one of {', '.join(BY_CHOICES)}, got {by!r}")


def parse_since(text: str) -> int:
    """``YYYY-MM-DD`` (or ``YYYY-MM``), as the UTC midnight it begins, in ms since the epoch."""
    try:
        day = dt.date.fromisoformat(text + "-01" if len(text) == 7 else text)
    except ValueError:
        raise ValueError(
            f"--since must be a date such as 2026-01-31 or 2026-01, got {text!r}"
        ) from None
    start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc)
    return int(start.timestamp() * 1000)


def load_all_runs(
    client: Any, since_ms: int | None = None, max_runs: int | None = None
) -> list[OrgRun]:
    """Every active run with carbon metrics in every active experiment of `client`'s store.

    Args:
        client: an ``mlflow.tracking.MlflowClient``.
        since_ms: only runs started at or after this time (ms since the epoch, UTC).
        max_runs: stop after this many runs (None: all).
    """
    names: dict[str, str] = {}
    token = None
    while True:
        page = client.search_experiments(max_results=PAGE_SIZE, page_token=token)
        names.update((e.experiment_id, e.name) for e in page)
        token = page.token
        if not token:
            break
    query = CARBON_FILTER
    if since_ms is not None:
        query += f" AND attributes.start_time >= {since_ms}"
    ids = sorted(names)
    runs: list[OrgRun] = []
    for first in range(0, len(ids), EXPERIMENTS_PER_SEARCH):
        token = None
        while max_runs is None or len(runs) < max_runs:
            size = PAGE_SIZE if max_runs is None else min(PAGE_SIZE, max_runs - len(runs))
            page = client.search_runs(
                ids[first : first + EXPERIMENTS_PER_SEARCH],
                filter_string=query,
                max_results=size,
                page_token=token,
            )
            runs.extend(r for r in (_org_run(run, names) for run in page) if r is not None)
            token = page.token
            if not token:
                break
    return runs


def _org_run(run: Any, names: Mapping[str, str]) -> OrgRun | None:
    metrics, tags, info = run.data.metrics, run.data.tags, run.info
    energy, emissions = metrics.get("carbon/energy_kwh"), metrics.get("carbon/emissions_kg")
    if energy is None or emissions is None:
        return None
    user = tags.get("mlflow.user") or info.user_id
    month = None
    if info.start_time:
        month = dt.datetime.fromtimestamp(info.start_time / 1000, dt.timezone.utc).strftime("%Y-%m")
    return OrgRun(
        run_id=info.run_id,
        name=info.run_name or tags.get("mlflow.runName") or info.run_id[:8],
        experiment=names.get(info.experiment_id, info.experiment_id),
        user=None if user in (None, "", "unknown") else user,
        month=month,
        energy_kwh=energy,
        emissions_kg=emissions,
        estimated={"true": True, "false": False}.get(tags.get("carbon.estimated", "")),
        greener_region=tags.get("carbon.greener_region"),
        tags=tags,
        **{key: metrics.get(f"carbon/{key}") for key in RANGE_KEYS},
    )


def key_function(by: str) -> Callable[[OrgRun], str | None]:
    """What `by` (see `check_by`) groups a run by."""
    if by == "experiment":
        return lambda r: r.experiment
    if by == "user":
        return lambda r: r.user
    if by == "month":
        return lambda r: r.month
    tag = check_by(by)[4:]
    return lambda r: r.tags.get(tag)


def group_runs(runs: Iterable[OrgRun], by: str) -> list[Group]:
    """Groups by `by`: months in order, others with the most emissions first; None last."""
    key_of = key_function(by)
    members: dict[str | None, list[OrgRun]] = defaultdict(list)
    for run in runs:
        members[key_of(run)].append(run)
    groups = [summarize(key, rows) for key, rows in members.items()]
    if by == "month":
        return sorted(groups, key=lambda g: (g.key is None, g.key or ""))
    return sorted(groups, key=lambda g: (g.key is None, -g.emissions_kg, g.key or ""))


def summarize(key: str | None, runs: Sequence[OrgRun]) -> Group:
    """One `Group` of `runs`. Sums with `math.fsum`: correctly rounded, whatever the order."""
    savings: dict[str, list[float]] = defaultdict(list)
    without_advice = 0
    for r in runs:
        found = _saving(r)
        if found is None:
            without_advice += 1
        elif found[1] > 0:
            savings[found[0]].append(found[1])
    by_region = {region: math.fsum(kg) for region, kg in savings.items()}
    estimated = [r for r in runs if r.estimated]
    return Group(
        key=key,
        runs=len(runs),
        energy_kwh=math.fsum(r.energy_kwh for r in runs),
        emissions_kg=math.fsum(r.emissions_kg for r in runs),
        **{k: math.fsum(_end(r, k) for r in runs) for k in RANGE_KEYS},
        runs_without_range=sum(not r.has_range for r in runs),
        estimated_runs=len(estimated),
        estimated_emissions_kg=math.fsum(r.emissions_kg for r in estimated),
        unlabelled_runs=sum(r.estimated is None for r in runs),
        saving_kg=math.fsum(kg for region in savings.values() for kg in region),
        runs_without_advice=without_advice,
        greener_region=max(by_region, key=lambda k: (by_region[k], k)) if by_region else None,
    )


def _end(run: OrgRun, key: str) -> float:
    """One end of a run's range; the value itself when the run has no range."""
    if not run.has_range:
        return run.energy_kwh if key.startswith("energy") else run.emissions_kg
    value: float = getattr(run, key)
    return value


def _saving(run: OrgRun) -> tuple[str, float] | None:
    """(region, kg saved) from the run's ``carbon.greener_region`` tag; None without one."""
    if run.greener_region is None:
        return None
    return saving_from_tag(run.greener_region, run.energy_kwh, run.emissions_kg)


def to_json(runs: Sequence[OrgRun], by: str, top: int) -> dict[str, Any]:
    """The ``--json`` document: ``groups``, ``total`` (no key), ``months``, ``top_runs``."""
    total = summarize(None, runs).to_json()
    del total["key"]
    return {
        "by": by,
        "groups": [g.to_json() for g in group_runs(runs, by)],
        "total": total,
        "months": [g.to_json() for g in group_runs(runs, "month")],
        "top_runs": [
            {
                "run_id": r.run_id,
                "name": r.name,
                "experiment": r.experiment,
                "user": r.user,
                "month": r.month,
                "energy_kwh": r.energy_kwh,
                "emissions_kg": r.emissions_kg,
                "emissions_kg_low": r.emissions_kg_low,
                "emissions_kg_high": r.emissions_kg_high,
                "estimated": r.estimated,
            }
            for r in top_runs(runs, top)
        ],
    }


def top_runs(runs: Iterable[OrgRun], n: int) -> list[OrgRun]:
    """The `n` runs with the most emissions (ties by run id)."""
    return sorted(runs, key=lambda r: (-r.emissions_kg, r.run_id))[:n]

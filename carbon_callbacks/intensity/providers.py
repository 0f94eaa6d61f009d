"""Live intensity providers: the names, the shared base, and building one from a spec.

A spec is ``"name"`` or ``"name:ZONE"`` (``"electricitymaps:DE"``,
``"carbonintensity-uk:13"``, ``"energidataservice:DK1"``, ``"watttime:CAISO_NORTH"``). Each
provider lives in its own module, imported only when named, and talks to one public API with
the standard library's HTTP client. Building a provider never touches the network: it checks
the name, the zone, the base URL and the credentials, and raises ValueError naming what is
accepted (a missing key: the variable to set).

Example:
    >>> from carbon_callbacks.intensity import resolve
    >>> p = make_provider("carbonintensity-uk", resolve(country="GB"), {})
    >>> p.spec, p.basis
    ('carbonintensity-uk', 'direct')
"""

from __future__ import annotations

import importlib
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

from carbon_callbacks.intensity import _http
from carbon_callbacks.intensity._model import Intensity
from carbon_callbacks.intensity.lookup import ENV_PROVIDER as ENV_PROVIDER
from carbon_callbacks.intensity.series import Point

logger = logging.getLogger(__name__)

ENV_TIMEOUT = "CARBON_CALLBACKS_INTENSITY_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 10.0

# name -> module holding the provider class `PROVIDER`
MODULES = {
    "electricitymaps": "carbon_callbacks.intensity.electricitymaps",
    "carbonintensity-uk": "carbon_callbacks.intensity.carbonintensity_uk",
    "energidataservice": "carbon_callbacks.intensity.energidataservice",
    "watttime": "carbon_callbacks.intensity.watttime",
}
EXAMPLES = (
    "'electricitymaps' or 'electricitymaps:DE', 'carbonintensity-uk' or "
    "'carbonintensity-uk:13', 'energidataservice:DK1' or ':DK2', 'watttime:CAISO_NORTH'"
)


@runtime_checkable
class IntensityProvider(Protocol):
    """What `LiveIntensity` needs of a provider (`Provider` implements it for the four
    bundled ones; a custom source can too).

    ``name``/``label``: ``"electricitymaps"`` / ``"Electricity Maps"``; ``zone``: its zone
    key; ``spec``: ``"name:zone"``; ``source``: provider, zone and resolution in words;
    ``basis``: ``"life-cycle"``, ``"direct"``, ``"co2-only"`` or ``"marginal"``;
    ``period_s``: the length of one value in seconds; ``country``: the ISO alpha-2 country
    whose bundled value is the fallback, or None.
    """

    @property
    def name(self) -> str: ...

    @property
    def label(self) -> str: ...

    @property
    def zone(self) -> str: ...

    @property
    def basis(self) -> str: ...

    @property
    def period_s(self) -> float: ...

    @property
    def has_forecast(self) -> bool: ...

    @property
    def country(self) -> str | None: ...

    @property
    def spec(self) -> str: ...

    @property
    def source(self) -> str: ...

    def history(self, start: float, end: float, now: float) -> list[Point]:
        """Values over ``[start, end)`` (unix s); raises `ProviderError` on any failure."""

    def forecast(self, now: float) -> list[Point]:
        """The current forecast from about `now`; raises `ProviderError` on any failure."""


class Provider:
    """The shared part of the providers; a subclass sets the class attributes and
    implements `history` (and `forecast` when ``has_forecast``).

    Args:
        zone: the provider's own zone key (``"DE"``, ``"national"``, ``"DK1"``...).
        env: where the base URL, the timeout and the credentials are read.
        spec: the setting as the user wrote it, for messages.
    """

    name: ClassVar[str]  # "electricitymaps"
    label: ClassVar[str]  # "Electricity Maps"
    url_env: ClassVar[str]
    default_url: ClassVar[str]
    period_s: ClassVar[float]  # the length of one value, in seconds
    resolution: ClassVar[str]  # "hourly"
    default_basis: ClassVar[str]
    has_forecast: ClassVar[bool] = True
    max_range_s: ClassVar[float] = 10 * 86400.0  # one request covers at most this
    credentials: ClassVar[tuple[str, ...]] = ()  # environment variables holding secrets
    country: str | None = None  # the country whose bundled value is the fallback

    def __init__(self, zone: str, env: Mapping[str, str], spec: object = None) -> None:
        self.zone = zone
        self.basis = self.default_basis
        self.base_url = base_url(self.url_env, env.get(self.url_env), self.default_url)
        self.timeout_s = timeout_s(env)
        missing = [name for name in self.credentials if not (env.get(name) or "").strip()]
        if missing:
            raise ValueError(
                f"intensity_provider={self.spec if spec is None else spec!r} needs "
                f"{' and '.join(missing)}: set "
                f"{'them' if len(missing) > 1 else 'it'} in the environment (from your "
                f"{self.label} account)"
            )
        self._secrets = [env[name] for name in self.credentials]

    @property
    def spec(self) -> str:
        """``"name:zone"``, or the bare name for a provider's default zone."""
        return self.name if self.zone == "national" else f"{self.name}:{self.zone}"

    @property
    def zone_label(self) -> str:
        return self.zone

    @property
    def source(self) -> str:
        """What a lap priced from this provider names: provider, zone and resolution."""
        return f"{self.label} {self.zone_label} {self.resolution}"

    def history(self, start: float, end: float, now: float) -> list[Point]:
        """The values over ``[start, end)`` (unix seconds; `now` is the wall clock).

        Raises:
            ProviderError: the request failed or the answer is not in the documented shape.
        """
        raise NotImplementedError

    def forecast(self, now: float) -> list[Point]:
        """The provider's current forecast, from about `now` on.

        Raises:
            ProviderError: as `history`; also for a provider without forecasts.
        """
        raise _http.ProviderError(_http.REFUSED, f"{self.label} publishes no forecast")

    def _get(self, path: str, query: Mapping[str, str] | None = None, **headers: str) -> Any:
        return _http.get_json(
            _http.url(self.base_url, path, query),
            name=self.label,
            headers=headers,
            timeout_s=self.timeout_s,
            secrets=self._secrets,
        )

    def _garbage(self, what: str) -> _http.ProviderError:
        return _http.ProviderError(
            _http.GARBAGE, f"{self.label} answered in an unexpected shape ({what})"
        )

    def _number(self, value: object, what: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self._garbage(f"{what} is {value!r}, not a number")
        number = float(value)
        if not math.isfinite(number) or number < 0:
            raise self._garbage(f"{what} is {value!r}")
        return number

    def _time(self, value: object, what: str) -> float:
        from carbon_callbacks.intensity.series import parse_time

        try:
            return parse_time(value)
        except ValueError:
            raise self._garbage(f"{what} is {value!r}, not a time") from None


def chunks(start: float, end: float, size_s: float) -> list[tuple[float, float]]:
    """``[start, end)`` cut into consecutive pieces of at most `size_s` seconds."""
    out = []
    while start < end:
        out.append((start, min(end, start + size_s)))
        start += size_s
    return out


def base_url(variable: str, value: str | None, default: str) -> str:
    """The provider's base URL: `value` when set (an ``http://`` or ``https://`` URL)."""
    if value is None or not value.strip():
        return default
    text = value.strip()
    if not text.startswith(("http://", "https://")) or "?" in text or "#" in text:
        raise ValueError(
            f"{variable}={value!r} must be an http:// or https:// base URL without a query, "
            f"e.g. {default!r}"
        )
    return text.rstrip("/")


def timeout_s(env: Mapping[str, str]) -> float:
    """Seconds a request may take: ``$CARBON_CALLBACKS_INTENSITY_TIMEOUT_S`` or 10 s."""
    raw = env.get(ENV_TIMEOUT)
    if raw is None or not raw.strip():
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{ENV_TIMEOUT}={raw!r} must be a number of seconds > 0, e.g. '10'")
    return value


def parse_spec(spec: object, *, what: str = "intensity_provider") -> tuple[str, str | None]:
    """``(name, zone or None)`` of a spec such as ``"electricitymaps:DE"``.

    Raises:
        TypeError: not a string.
        ValueError: an unknown name; the message lists the accepted ones.
    """
    if not isinstance(spec, str):
        raise TypeError(f"{what} must be a string such as {EXAMPLES}, or None; got {spec!r}")
    name, colon, zone = spec.strip().partition(":")
    key = name.strip().lower()
    if key not in MODULES:
        raise ValueError(
            f"unknown {what} {spec!r}: accepted providers are {', '.join(MODULES)} "
            f"(optionally with ':ZONE'), e.g. {EXAMPLES}"
        )
    zone = zone.strip()
    if colon and not zone:
        raise ValueError(f"{what}={spec!r} names no zone after ':'; e.g. {EXAMPLES}")
    return key, zone or None


def make_provider(
    spec: object,
    location: Intensity | None,
    env: Mapping[str, str],
    *,
    what: str = "intensity_provider",
) -> Provider:
    """Build the provider a spec names, for the run's location (no network).

    Args:
        spec: ``"name"`` or ``"name:ZONE"``.
        location: the run's bundled intensity (its country, region or cloud region give the
            zone when the spec has none); None when no location is known.
        env: the environment (base URL, timeout, credentials).
        what: how the setting is called in messages.

    Raises:
        ValueError: an unknown name or zone, a zone that does not fit the location, a bad
            base URL or timeout, or missing credentials.
        TypeError: `spec` is not a string.
    """
    name, zone = parse_spec(spec, what=what)
    module = importlib.import_module(MODULES[name])
    provider: Provider = module.build(zone, location, env, spec)
    return provider


def location_country(location: Intensity | None) -> str | None:
    """The ISO alpha-2 country of a location, unless it is the world default."""
    if location is None or location.is_default:
        return None
    return location.country


def wrong_country(spec: object, location: Intensity, covered: str, country: str) -> ValueError:
    where = location.location if location.kind != "forced" else location.country
    return ValueError(
        f"intensity_provider={spec!r} covers {covered} only, but the run's location is "
        f"{where} (country {country}): drop the provider or the location"
    )


def names() -> Sequence[str]:
    return tuple(MODULES)

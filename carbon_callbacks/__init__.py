"""carbon-callbacks: the energy and CO2 of ML training runs, per epoch, in the tools you use.

The core (this package) imports no ML framework and no tracking client. Framework callbacks
live in `carbon_callbacks.integrations`; `autolog()` adds them to every trainer without code
changes (importing the package patches nothing). The public names below load on first use,
so ``import carbon_callbacks`` costs well under a millisecond.
"""

from __future__ import annotations

from carbon_callbacks._version import __version__

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing would triple this import
if TYPE_CHECKING:
    from carbon_callbacks.autologging import autolog
    from carbon_callbacks.errors import CarbonWarning
    from carbon_callbacks.measurement import Measurement
    from carbon_callbacks.tracker import Tracker

__all__ = ["CarbonWarning", "Measurement", "Tracker", "__version__", "autolog"]

_LAZY = {
    "autolog": "carbon_callbacks.autologging",
    "CarbonWarning": "carbon_callbacks.errors",
    "Measurement": "carbon_callbacks.measurement",
    "Tracker": "carbon_callbacks.tracker",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'carbon_callbacks' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)

"""A post-import hook: call a function once a given module has been imported (executed).

Used by `carbon_callbacks.autologging` to patch a framework's trainer when the user imports
it, so that enabling autolog imports no framework itself.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

__all__ = ["PostImportFinder"]


class PostImportFinder(importlib.abc.MetaPathFinder):
    """Calls `loaded(module)` once one of `modules` has been imported (executed).

    It finds nothing itself: it asks the finders after it for the spec and wraps its loader.
    """

    def __init__(self, modules: set[str], loaded: Callable[[ModuleType], None]) -> None:
        self.modules = frozenset(modules)
        self.loaded = loaded
        self._busy = threading.local()

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.modules or getattr(self._busy, "name", None) == fullname:
            return None
        self._busy.name = fullname
        try:
            spec = _find_with_others(self, fullname, path, target)
        finally:
            self._busy.name = None
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return None
        spec.loader = _NotifyingLoader(spec.loader, self.loaded)
        return spec


class _NotifyingLoader(importlib.abc.Loader):
    def __init__(self, loader: Any, loaded: Callable[[ModuleType], None]) -> None:
        self._loader = loader
        self._loaded = loaded

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        module: ModuleType | None = self._loader.create_module(spec)
        return module

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        self._loaded(module)

    def __getattr__(self, name: str) -> Any:  # get_data, get_resource_reader... as before
        return getattr(self._loader, name)


def _find_with_others(
    me: object, fullname: str, path: Sequence[str] | None, target: ModuleType | None
) -> importlib.machinery.ModuleSpec | None:
    for finder in list(sys.meta_path):
        find = getattr(finder, "find_spec", None)
        if finder is me or find is None:
            continue
        spec: importlib.machinery.ModuleSpec | None = find(fullname, path, target)
        if spec is not None:
            return spec
    return None

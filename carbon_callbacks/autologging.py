"""Zero code: `autolog()` adds a `CarbonCallback` to every trainer created afterwards.

Patched, once `autolog()` is called (importing this package patches nothing):

- ``lightning.pytorch.Trainer.__init__`` and ``pytorch_lightning.Trainer.__init__``: the
  callback joins ``callbacks=`` (so Lightning still runs checkpoint callbacks last);
- ``transformers.Trainer.__init__`` (and so every subclass): ``trainer.add_callback(...)``;
- ``keras.Model.fit``: the callback joins ``callbacks=`` (one per model, kept across fits, so
  a second ``fit`` into the same run continues its totals, as a callback passed by hand does).

A trainer that has a `CarbonCallback` already keeps its own. A framework imported before
`autolog()` is patched at once; one imported later, when its module is imported (an import
hook on ``sys.meta_path``), so no framework is imported here. ``autolog(disable=True)`` removes
the hook and restores every patched method; trainers made meanwhile keep their callback.

``carbon-callbacks run --autolog -- COMMAND`` does the same in COMMAND's Python processes
(torchrun's and Lightning's workers included) without touching its scripts: it puts the folder
of this package's ``_autolog_site/sitecustomize.py`` first on ``PYTHONPATH`` (the user's own
entries after it) and the arguments, as JSON, in ``CARBON_CALLBACKS_AUTOLOG``; Python imports
``sitecustomize`` at start-up, which calls `autolog_from_env` and then runs the user's own
``sitecustomize``, if any, that it hides.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import threading
import warnings
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from carbon_callbacks._import_hook import PostImportFinder
from carbon_callbacks.errors import CarbonWarning

logger = logging.getLogger(__name__)

__all__ = [
    "AUTOLOG_ENV",
    "PostImportFinder",
    "autolog",
    "autolog_from_env",
    "checked_config",
    "child_environment",
]

AUTOLOG_ENV = "CARBON_CALLBACKS_AUTOLOG"
SITE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_autolog_site")

Config = dict[str, Any]  # the CarbonCallback arguments
Wrap = Callable[[Callable[..., Any], "Patcher"], Callable[..., Any]]


@dataclass(frozen=True)
class Target:
    """A method to wrap: ``module.cls.method``, by ``wrap(original, patcher)``."""

    module: str
    cls: str
    method: str
    wrap: Wrap


def autolog(*, disable: bool = False, summary: bool = True, **tracker_kwargs: Any) -> None:
    """Add a `CarbonCallback` to every Lightning and HF `Trainer` and Keras ``Model.fit``
    created from now on (unless it has one); ``disable=True`` undoes it.

    Calling it again replaces the arguments for trainers created afterwards (nothing is
    patched twice). The callbacks log where a hand-added one would (``sinks="auto"``: the
    script's own MLflow run, Comet experiment, W&B run, Lightning loggers).

    Args:
        disable: remove the patches and the import hook.
        summary: print the end-of-training summary of each run.
        **tracker_kwargs: `Tracker` arguments for every callback: ``country="FR"``,
            ``pue=1.2``, ``cpu_power_w=50`` (W), ``output_dir=...``, ...

    Raises:
        ValueError, TypeError: a bad Tracker argument (checked now, by building a tracker
            once: its warnings, e.g. no location given, are shown now, not per trainer).

    Example:
        >>> import carbon_callbacks
        >>> carbon_callbacks.autolog(country="FR")
        >>> trainer = lightning.pytorch.Trainer(max_epochs=3)  # has a CarbonCallback
    """
    if disable:
        PATCHER.disable()
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        config = checked_config(summary=summary, **tracker_kwargs)
    for w in caught:  # re-issued, so that they name the user's line
        warnings.warn(w.message, w.category, stacklevel=2)
    PATCHER.enable(config)


def checked_config(*, summary: bool = True, **tracker_kwargs: Any) -> Config:
    """The callbacks' arguments, checked by building a tracker from them once (it starts
    nothing and writes nothing; its warnings, e.g. no location given, are issued here).

    Args:
        summary: print each run's end-of-training summary.
        **tracker_kwargs: `Tracker` arguments (``country="FR"``, ``pue=1.2``...).

    Returns:
        ``{"summary": summary, **tracker_kwargs}``, for `autolog` or `child_environment`.

    Raises:
        ValueError, TypeError: a bad argument, named with what is accepted.
    """
    from carbon_callbacks.tracker import Tracker

    for name in ("tracker", "sinks"):
        if name in tracker_kwargs:
            raise TypeError(
                f"autolog takes Tracker arguments (country=, pue=...), not {name}=: every "
                "trainer gets its own tracker and finds its own run"
            )
    if not isinstance(summary, bool):
        raise TypeError(f"summary must be True or False, got {summary!r}")
    Tracker(**tracker_kwargs).close()
    return {"summary": summary, **tracker_kwargs}


def autolog_from_env(env: Mapping[str, str] | None = None) -> bool:
    """`autolog()` with the JSON arguments of ``$CARBON_CALLBACKS_AUTOLOG`` (set by
    ``carbon-callbacks run --autolog``, which checked them). Never raises: a bad value is
    reported in one line on stderr and nothing is patched. True when enabled."""
    raw = (os.environ if env is None else env).get(AUTOLOG_ENV)
    if not raw:
        return False
    try:
        config = json.loads(raw)
        if not isinstance(config, dict):
            raise ValueError("expected a JSON object")
    except ValueError as exc:
        print(f"carbon-callbacks: autolog not enabled: {AUTOLOG_ENV}: {exc}", file=sys.stderr)
        return False
    PATCHER.enable(config)
    return True


def child_environment(config: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, str]:
    """`env` for a command whose Python processes autolog with `config` (JSON-able)."""
    child = dict(env)
    child[AUTOLOG_ENV] = json.dumps(dict(config), sort_keys=True)
    rest = env.get("PYTHONPATH")
    child["PYTHONPATH"] = SITE_DIR + (os.pathsep + rest if rest else "")
    return child


# -- the patcher ---------------------------------------------------------------------------------


class Patcher:
    """Wraps the `targets`' methods while enabled: at once for modules already imported, at
    import for the others (`PostImportFinder`).

    Args:
        targets: the methods to wrap.
    """

    def __init__(self, targets: Sequence[Target]) -> None:
        self.targets = tuple(targets)
        self.config: Config | None = None
        self._lock = threading.RLock()
        self._finder: PostImportFinder | None = None
        # (class, method) -> (what the class itself held before, None: inherited; our wrapper)
        self._saved: dict[tuple[type, str], tuple[Any, Any]] = {}
        self._warned: set[str] = set()

    @property
    def enabled(self) -> bool:
        return self.config is not None

    def enable(self, config: Config) -> None:
        with self._lock:
            self.config = dict(config)
            if self._finder is None:
                modules = {t.module for t in self.targets}
                self._finder = PostImportFinder(modules, self._module_loaded)
                sys.meta_path.insert(0, self._finder)
            for name in sorted({t.module for t in self.targets}):
                module = sys.modules.get(name)
                if module is not None:
                    self._module_loaded(module)

    def disable(self) -> None:
        with self._lock:
            self.config = None
            if self._finder is not None:
                if self._finder in sys.meta_path:
                    sys.meta_path.remove(self._finder)
                self._finder = None
            for (cls, method), (before, wrapper) in self._saved.items():
                if cls.__dict__.get(method) is not wrapper:
                    continue  # wrapped again by someone else: ours stays, passing through
                if before is None:
                    delattr(cls, method)
                else:
                    setattr(cls, method, before)
            self._saved.clear()

    def patched(self) -> list[str]:
        """``module.Class.method`` of every method wrapped now."""
        return sorted(f"{c.__module__}.{c.__qualname__}.{m}" for c, m in self._saved)

    def _module_loaded(self, module: ModuleType) -> None:
        with self._lock:
            if self.config is None:
                return
            for target in self.targets:
                if target.module != module.__name__:
                    continue
                cls = getattr(module, target.cls, None)
                if not isinstance(cls, type) or (cls, target.method) in self._saved:
                    continue
                original = getattr(cls, target.method)
                wrapper = target.wrap(original, self)
                self._saved[(cls, target.method)] = (cls.__dict__.get(target.method), wrapper)
                setattr(cls, target.method, wrapper)

    # -- for the wrappers --------------------------------------------------------------------

    def make(self, build: Callable[..., Any]) -> Any | None:
        """``build(**config)`` (a `CarbonCallback`), or None when disabled or when it fails:
        the user's trainer is made anyway, and the failure is warned once."""
        config = self.config
        if config is None:
            return None
        try:
            with warnings.catch_warnings():
                # Shown once already, when autolog() (or `carbon-callbacks run`) checked them.
                warnings.simplefilter("ignore", CarbonWarning)
                return build(**config)
        except Exception as exc:  # the user's trainer must be made: never raise into it
            self.warn_once("make", f"could not add a CarbonCallback: {exc}")
            return None

    def warn_once(self, cause: str, message: str) -> None:
        logger.debug("carbon-callbacks autolog: %s", message, exc_info=True)
        if cause not in self._warned:
            self._warned.add(cause)
            warnings.warn(
                f"carbon-callbacks autolog: {message}; training goes on without it",
                CarbonWarning,
                stacklevel=4,
            )


# -- the frameworks --------------------------------------------------------------------------------


def _lightning_init(original: Callable[..., Any], patcher: Patcher) -> Callable[..., Any]:
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if patcher.enabled:
            kwargs["callbacks"] = _joined(kwargs.get("callbacks"), "lightning", patcher)
        original(self, *args, **kwargs)

    return _named(__init__, original)


def _transformers_init(original: Callable[..., Any], patcher: Patcher) -> Callable[..., Any]:
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        if not patcher.enabled:
            return
        try:
            cls = _callback_class("transformers")
            if any(isinstance(c, cls) for c in self.callback_handler.callbacks):
                return
        except Exception as exc:  # never raise into the user's Trainer
            patcher.warn_once("transformers", f"could not add a CarbonCallback: {exc}")
            return
        callback = patcher.make(cls)
        if callback is not None:
            self.add_callback(callback)

    return _named(__init__, original)


_KERAS_CALLBACKS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
_KERAS_CALLBACKS_POSITION = 5  # fit(x, y, batch_size, epochs, verbose, callbacks, ...)


def _keras_fit(original: Callable[..., Any], patcher: Patcher) -> Callable[..., Any]:
    def fit(self: Any, *args: Any, **kwargs: Any) -> Any:
        if patcher.enabled:
            if len(args) > _KERAS_CALLBACKS_POSITION:
                i = _KERAS_CALLBACKS_POSITION
                joined = _joined(args[i], "keras", patcher, model=self)
                args = (*args[:i], joined, *args[i + 1 :])
            else:
                kwargs["callbacks"] = _joined(kwargs.get("callbacks"), "keras", patcher, model=self)
        return original(self, *args, **kwargs)

    return _named(fit, original)


def _joined(callbacks: Any, framework: str, patcher: Patcher, model: Any = None) -> Any:
    """`callbacks` (None, one callback, a list, Keras' `CallbackList`) with a `CarbonCallback`
    added, unless it has one already; unchanged when anything fails."""
    try:
        cls = _callback_class(framework)
        items = list(_items(callbacks))
        if any(isinstance(c, cls) for c in items):
            return callbacks
        callback = _KERAS_CALLBACKS.get(model) if model is not None else None
        if callback is None:
            callback = patcher.make(cls)
            if callback is None:
                return callbacks
            if model is not None:
                _KERAS_CALLBACKS[model] = callback
        if hasattr(callbacks, "append") and not isinstance(callbacks, list):  # CallbackList
            callbacks.append(callback)
            return callbacks
        return [*items, callback]
    except Exception as exc:  # never raise into the user's trainer
        patcher.warn_once(framework, f"could not add a CarbonCallback: {exc}")
        return callbacks


def _callback_class(framework: str) -> type:
    """`CarbonCallback` of `framework` (imports the framework: it is imported already)."""
    module = importlib.import_module(f"carbon_callbacks.integrations.{framework}")
    cls: type = module.CarbonCallback
    return cls


def _items(callbacks: Any) -> Iterator[Any]:
    if callbacks is None:
        return iter(())
    if isinstance(callbacks, (list, tuple)):
        return iter(callbacks)
    inner = getattr(callbacks, "callbacks", None)  # Keras' CallbackList
    if isinstance(inner, list):
        return iter(inner)
    return iter((callbacks,))


def _named(wrapper: Callable[..., Any], original: Callable[..., Any]) -> Callable[..., Any]:
    for attr in ("__module__", "__name__", "__qualname__", "__doc__"):
        value = getattr(original, attr, None)
        if value is not None:
            setattr(wrapper, attr, value)
    wrapper.__wrapped__ = original  # type: ignore[attr-defined]
    return wrapper


TARGETS = (
    Target("lightning.pytorch.trainer.trainer", "Trainer", "__init__", _lightning_init),
    Target("pytorch_lightning.trainer.trainer", "Trainer", "__init__", _lightning_init),
    Target("transformers.trainer", "Trainer", "__init__", _transformers_init),
    Target("keras.src.models.model", "Model", "fit", _keras_fit),
)
PATCHER = Patcher(TARGETS)

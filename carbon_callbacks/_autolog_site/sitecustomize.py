"""Run by Python at start-up in the processes of ``carbon-callbacks run --autolog -- COMMAND``.

``carbon-callbacks run --autolog`` puts this file's folder first on ``PYTHONPATH``, so Python's
``site`` imports it as ``sitecustomize``. It enables `carbon_callbacks.autolog()` from
``$CARBON_CALLBACKS_AUTOLOG`` (a Python without carbon-callbacks skips that), then runs the
``sitecustomize`` it hides (the next one on ``sys.path``: the user's, or the environment's),
as ``site`` would have.
"""

from __future__ import annotations

import importlib
import os
import sys


def _enable_autolog() -> None:
    try:
        from carbon_callbacks.autologging import autolog_from_env
    except ImportError:  # another Python, without carbon-callbacks: nothing to patch there
        return
    autolog_from_env()


def _run_hidden_sitecustomize() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    ours = sys.modules.pop("sitecustomize", None)
    saved = list(sys.path)
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    try:
        importlib.import_module("sitecustomize")
    except ImportError as exc:
        if exc.name != "sitecustomize":
            raise  # the user's own sitecustomize failed: site reports it as usual
        if ours is not None:
            sys.modules["sitecustomize"] = ours
    finally:
        sys.path[:] = saved


_enable_autolog()
_run_hidden_sitecustomize()

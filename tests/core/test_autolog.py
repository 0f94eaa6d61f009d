"""`autolog`'s machinery without a framework: a fake framework module, the import hook, undo,
the ``sitecustomize`` chain and the child environment of ``carbon-callbacks run --autolog``."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from carbon_callbacks import autologging
from carbon_callbacks.autologging import (
    AUTOLOG_ENV,
    SITE_DIR,
    Patcher,
    PostImportFinder,
    Target,
    autolog,
    checked_config,
    child_environment,
)

FRAMEWORKS = ("torch", "lightning", "pytorch_lightning", "transformers", "keras", "wandb")
FAKE = "carbon_fake_framework"

# What a fake trainer records: the config it was given by the wrapper, per construction.
made: list[dict[str, Any]] = []


def fake_wrap(original: Callable[..., Any], patcher: Patcher) -> Callable[..., Any]:
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        config = patcher.make(lambda **kw: dict(kw))
        if config is not None:
            self.callback = config
            made.append(config)

    return __init__


@pytest.fixture
def fake_framework(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Patcher]:
    """A package `carbon_fake_framework.trainer` with a `Trainer`, not imported yet, and a
    patcher for it (removed afterwards)."""
    package = tmp_path / FAKE
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "trainer.py").write_text(
        "class Trainer:\n    def __init__(self, epochs=1):\n        self.epochs = epochs\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    made.clear()
    patcher = Patcher([Target(f"{FAKE}.trainer", "Trainer", "__init__", fake_wrap)])
    yield patcher
    patcher.disable()
    for name in [m for m in sys.modules if m.startswith(FAKE)]:
        del sys.modules[name]


def test_patches_a_module_imported_later_and_undoes_it(fake_framework: Patcher) -> None:
    patcher = fake_framework
    patcher.enable({"country": "FR"})
    assert f"{FAKE}.trainer" not in sys.modules  # nothing imported by enabling
    from carbon_fake_framework.trainer import Trainer

    assert patcher.patched() == [f"{FAKE}.trainer.Trainer.__init__"]
    trainer = Trainer(epochs=3)
    assert (trainer.epochs, trainer.callback) == (3, {"country": "FR"})

    patcher.disable()
    assert "__init__" in Trainer.__dict__ and not hasattr(Trainer.__init__, "__wrapped__")
    assert not any(isinstance(f, PostImportFinder) for f in sys.meta_path)
    assert not hasattr(Trainer(), "callback")
    assert made == [{"country": "FR"}]


def test_patches_a_module_already_imported_once_and_updates_its_arguments(
    fake_framework: Patcher,
) -> None:
    patcher = fake_framework
    module = importlib.import_module(f"{FAKE}.trainer")
    original = module.Trainer.__init__
    patcher.enable({"country": "FR"})
    patcher.enable({"country": "DE"})  # again: the same single patch, new arguments
    assert patcher.patched() == [f"{FAKE}.trainer.Trainer.__init__"]
    assert sum(isinstance(f, PostImportFinder) for f in sys.meta_path) == 1
    assert module.Trainer().callback == {"country": "DE"}
    assert made == [{"country": "DE"}]  # wrapped once: one callback per trainer
    patcher.disable()
    patcher.disable()  # idempotent
    assert module.Trainer.__init__ is original


def test_a_patch_wrapped_by_someone_else_passes_through_after_disable(
    fake_framework: Patcher,
) -> None:
    patcher = fake_framework
    module = importlib.import_module(f"{FAKE}.trainer")
    patcher.enable({"country": "FR"})
    ours = module.Trainer.__init__

    def theirs(self: Any, *args: Any, **kwargs: Any) -> None:  # another library's patch
        ours(self, *args, **kwargs)
        self.theirs = True

    module.Trainer.__init__ = theirs
    patcher.disable()
    assert module.Trainer.__init__ is theirs  # theirs is kept; ours inside it does nothing
    trainer = module.Trainer()
    assert trainer.theirs and not hasattr(trainer, "callback")


def test_a_failing_callback_never_stops_the_trainer(fake_framework: Patcher) -> None:
    patcher = fake_framework

    def broken(**kwargs: Any) -> Any:
        raise RuntimeError("no sensors today")

    patcher.enable({})
    with pytest.warns(Warning, match="could not add a CarbonCallback: no sensors today"):
        assert patcher.make(broken) is None
    assert patcher.make(broken) is None  # warned once


def test_autolog_checks_its_arguments_before_patching() -> None:
    with pytest.raises(ValueError, match="pue"):
        autolog(pue=0.5)
    with pytest.raises(TypeError, match="not sinks="):
        autolog(sinks=None)
    with pytest.raises(TypeError, match="summary must be True or False, got 'yes'"):
        checked_config(summary="yes")  # type: ignore[arg-type]
    assert not autologging.PATCHER.enabled
    assert checked_config(country="FR", output_dir=None) == {
        "summary": True,
        "country": "FR",
        "output_dir": None,
    }


def run_python(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
    )


def test_import_patches_nothing_and_autolog_imports_no_framework() -> None:
    out = run_python(
        f"""
        import sys
        before = list(sys.meta_path)
        import carbon_callbacks
        assert sys.meta_path == before, "import patched something"
        carbon_callbacks.autolog(intensity_g_per_kwh=100, output_dir=None)
        from carbon_callbacks.autologging import PATCHER
        assert PATCHER.enabled and sys.meta_path[0] is not before[0]
        print(sorted(m for m in {FRAMEWORKS!r} if m in sys.modules))
        carbon_callbacks.autolog(disable=True)
        assert sys.meta_path == before
        """
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_child_environment_puts_the_site_folder_first_and_keeps_the_users() -> None:
    env = child_environment({"country": "FR"}, {"PYTHONPATH": "/a:/b", "HOME": "/h"})
    assert env["PYTHONPATH"] == os.pathsep.join([SITE_DIR, "/a:/b"])
    assert json.loads(env[AUTOLOG_ENV]) == {"country": "FR"}
    assert env["HOME"] == "/h"
    assert child_environment({}, {})["PYTHONPATH"] == SITE_DIR
    assert (Path(SITE_DIR) / "sitecustomize.py").is_file()


def test_sitecustomize_enables_autolog_and_runs_the_users_own(tmp_path: Path) -> None:
    users = tmp_path / "users"
    users.mkdir()
    (users / "sitecustomize.py").write_text("import builtins\nbuiltins.USERS_SITE = 'ran'\n")
    env = child_environment({"country": "FR", "summary": False}, {"PYTHONPATH": str(users)})
    out = run_python(
        """
        import builtins, sys
        from carbon_callbacks.autologging import PATCHER
        print(PATCHER.enabled, PATCHER.config, builtins.USERS_SITE)
        print(sys.modules["sitecustomize"].__file__)
        """,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "True {'country': 'FR', 'summary': False} ran"
    assert lines[1] == str(users / "sitecustomize.py")


def test_sitecustomize_without_a_users_own_and_with_a_bad_value() -> None:
    env = child_environment({"country": "FR"}, {})
    out = run_python(
        "from carbon_callbacks.autologging import PATCHER; print(PATCHER.enabled)", env
    )
    assert (out.returncode, out.stdout.strip()) == (0, "True")
    env[AUTOLOG_ENV] = "{not json"
    out = run_python(
        "from carbon_callbacks.autologging import PATCHER; print(PATCHER.enabled)", env
    )
    assert (out.returncode, out.stdout.strip()) == (0, "False")
    assert f"carbon-callbacks: autolog not enabled: {AUTOLOG_ENV}:" in out.stderr

"""Wrong arguments to the three `CarbonCallback` classes, as a user types them, and the
README's error examples checked against the real messages.

Found trying it as a user: ``contry="FR"`` got Python's ``Tracker.__init__() got an
unexpected keyword argument`` with no suggestion, ``summary="no"`` was accepted, and
``sinks="mlflow"`` raised only after an unrelated world-average warning.
"""

from __future__ import annotations

import importlib
import re
import warnings
from pathlib import Path
from typing import Any

import pytest

from carbon_callbacks import Tracker

REPO = Path(__file__).resolve().parents[2]
FRAMEWORKS = {
    "lightning": "lightning",
    "keras": "keras",
    "transformers": "transformers",
}
SINKS_MESSAGE = "sinks must be \"auto\", None or a list of sinks, got 'mlflow'"
# In the README: `Tracker(...)` → `message`, or `CarbonCallback(...)` → `message`.
EXAMPLE = re.compile(r"`((?:Tracker|CarbonCallback)\([^`]*\))` → `([^`]*)`")


def callback_class(module: str) -> Any:
    pytest.importorskip(FRAMEWORKS[module], reason=f"{module} is not installed")
    return importlib.import_module(f"carbon_callbacks.integrations.{module}").CarbonCallback


@pytest.mark.parametrize("module", sorted(FRAMEWORKS))
@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"contry": "FR"},
            TypeError,
            "CarbonCallback got an unexpected keyword argument 'contry'; did you mean 'country'?",
        ),
        ({"country": "FR", "summary": "no"}, TypeError, "summary must be True or False, got 'no'"),
        ({"country": "FR", "artifacts": 1}, TypeError, "artifacts must be True or False, got 1"),
        ({"sinks": "mlflow"}, ValueError, SINKS_MESSAGE),
    ],
)  # fmt: skip
def test_a_wrong_argument_raises_at_once_naming_it_and_nothing_warns_first(
    module: str, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    cls = callback_class(module)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(error) as info:
            cls(**kwargs)
    assert str(info.value) == message
    assert [str(w.message) for w in caught] == []  # no world-average warning before it


def test_an_unknown_name_without_a_close_match_lists_what_is_accepted() -> None:
    cls = callback_class("lightning")
    with pytest.raises(TypeError) as info:
        cls(country="FR", verbose=True)
    text = str(info.value)
    assert text.startswith("CarbonCallback got an unexpected keyword argument 'verbose'; ")
    assert "accepted: tracker, sinks, summary, artifacts, country, region" in text


def test_the_readmes_error_examples_are_the_real_messages() -> None:
    readme = " ".join((REPO / "README.md").read_text(encoding="utf-8").split())
    examples = EXAMPLE.findall(readme)
    assert {call.split("(")[0] for call, _ in examples} == {"Tracker", "CarbonCallback"}
    names = {"Tracker": Tracker, "CarbonCallback": callback_class("lightning")}
    for call, message in examples:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pytest.raises((ValueError, TypeError)) as info:
                eval(call, dict(names))  # the README's own line, e.g. Tracker(country="Frnace")
        assert str(info.value) == message, call

"""Close-match suggestions for error messages (difflib on codes and names)."""

from __future__ import annotations

import difflib
from collections.abc import Mapping


def close_matches(
    word: str, choices: Mapping[str, str], n: int = 5, cutoff: float = 0.6
) -> list[str]:
    """The canonical values whose labels are closest to `word`, best first, without repeats.

    Args:
        word: what the user typed.
        choices: casefolded label (a code, a name, an alias) -> canonical value.
        n: at most this many values.
        cutoff: difflib similarity in [0, 1] below which a label is not suggested.
    """
    labels = difflib.get_close_matches(
        word.strip().casefold(), list(choices), n=4 * n, cutoff=cutoff
    )
    found: list[str] = []
    for label in labels:
        value = choices[label]
        if value not in found:
            found.append(value)
    return found[:n]


def listing(values: list[str], limit: int = 60) -> str:
    """`values` joined with commas, shortened to `limit` entries."""
    if len(values) <= limit:
        return ", ".join(values)
    return ", ".join(values[:limit]) + f", ... ({len(values) - limit} more)"

"""What report tests share: the figures every report has, and a walk over its JSON."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

# The report's figures, in page order (each an inline SVG with this aria-label).
PLOT_NAMES = [
    "roc",
    "precision-recall",
    "calibration",
    "decision-curve",
    "subgroups",
    "importance",
    "contributions",
]


def lists_in(value: Any) -> Iterator[list]:
    """Every list inside a JSON-like value: per-row data would be one as long as the rows."""
    if isinstance(value, dict):
        for item in value.values():
            yield from lists_in(item)
    elif isinstance(value, list):
        yield value
        for item in value:
            yield from lists_in(item)

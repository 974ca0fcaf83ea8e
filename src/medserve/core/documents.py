"""JSON documents without null or empty members, as FHIR and CDS Hooks both require
("JSON elements SHALL NOT be null or empty"): remove them, or find them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def is_empty(value: Any) -> bool:
    """None, "", [] or {}: a member neither standard allows. ``False`` and ``0`` are values."""
    return value is None or (isinstance(value, str | list | tuple | dict) and len(value) == 0)


def without_empty(value: Any) -> Any:
    """``value`` with every null or empty member removed, at any depth (a member emptied by
    the removal goes too)."""
    if isinstance(value, Mapping):
        cleaned = {key: without_empty(item) for key, item in value.items()}
        return {key: item for key, item in cleaned.items() if not is_empty(item)}
    if isinstance(value, list | tuple):
        return [item for item in (without_empty(item) for item in value) if not is_empty(item)]
    return value


def empty_members(document: Any, where: str = "$") -> list[str]:
    """The paths ("$.prediction[0].rationale") of null or empty members in ``document``;
    [] when there are none."""
    found = []
    if isinstance(document, Mapping):
        items = [(f"{where}.{key}", value) for key, value in document.items()]
    elif isinstance(document, list | tuple):
        items = [(f"{where}[{i}]", value) for i, value in enumerate(document)]
    else:
        return []
    for path, value in items:
        found += [path] if is_empty(value) else empty_members(value, path)
    return found

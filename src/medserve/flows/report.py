"""The stored model report of a version: its JSON and the HTML page beside it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from medserve.config import Settings
from medserve.errors import ModelNotFound
from medserve.reporting.html import html_for_json_file
from medserve.storage import ModelVersion, Registry
from medserve.storage.artifacts import resolve_in_home


@dataclass
class StoredReport:
    """A version's report: the JSON file, and the HTML beside it (rendered if missing)."""

    version: ModelVersion
    json_path: Path
    html_path: Path


def stored_report(registry: Registry, settings: Settings, ref: str) -> StoredReport:
    """The training report of ``ref``; ModelNotFound when it was registered without one."""
    version = registry.get(ref)
    json_path = resolve_in_home(settings, version.report_path) if version.report_path else None
    if json_path is None or not json_path.is_file():
        raise ModelNotFound(
            f"{version.ref} has no report (it was registered without one); "
            "train it again with `medserve train` to get one"
        )
    return StoredReport(version, json_path, html_for_json_file(json_path, version.ref))

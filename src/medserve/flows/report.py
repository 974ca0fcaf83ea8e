"""A version's stored model report: the JSON file and the HTML page beside it.

Reading never writes: a report stored without its page (by an older release) has its page
rendered in memory for whoever asks. Writing puts the page and the JSON down together, each
atomically, and takes both away again when either cannot be written.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from medserve.config import Settings
from medserve.core.files import write_file_atomic
from medserve.errors import IntegrityError, ModelNotFound
from medserve.evaluation.report_types import Report, parse_report
from medserve.reporting.html import page_path, render_html
from medserve.storage import ModelVersion, Registry
from medserve.storage.artifacts import resolve_in_home


@dataclass(frozen=True)
class StoredReport:
    """A version's report: the JSON file, and the HTML page beside it (None when the report
    was stored without one; ``page()`` renders it then)."""

    version: ModelVersion
    json_path: Path
    html_path: Path | None

    def page(self) -> str:
        """The HTML page: the stored one, or rendered in memory from the JSON."""
        if self.html_path is not None:
            return self.html_path.read_text(encoding="utf-8")
        return render_html(read_report(self.json_path), self.version.ref)


def stored_report(registry: Registry, settings: Settings, ref: str) -> StoredReport:
    """The training report of ``ref``; ModelNotFound when it was registered without one."""
    version = registry.get(ref)
    json_path = resolve_in_home(settings, version.report_path) if version.report_path else None
    if json_path is None or not json_path.is_file():
        raise ModelNotFound(
            f"{version.ref} has no report (it was registered without one); "
            "train it again with `medserve train` to get one"
        )
    html_path = page_path(json_path)
    return StoredReport(version, json_path, html_path if html_path.is_file() else None)


def restore_page(found: StoredReport) -> Path:
    """Write the page of a report stored without one beside its JSON (`medserve report`
    does, on the user's command; a GET never does)."""
    if found.html_path is not None:
        return found.html_path
    return write_page(found.json_path, found.page())


def read_report(json_path: Path) -> Report:
    """The typed report stored at ``json_path``; IntegrityError when it is not a report."""
    try:
        return parse_report(json.loads(json_path.read_text(encoding="utf-8")))
    except (ValueError, ValidationError) as error:
        reason = error.errors()[0]["msg"] if isinstance(error, ValidationError) else error
        raise IntegrityError(f"{json_path.name} is not a medserve report ({reason})") from None


def write_page(json_path: Path, page: str) -> Path:
    """Write ``page`` atomically beside the JSON report at ``json_path``."""
    html_path = page_path(json_path)
    write_file_atomic(html_path, page.encode("utf-8"))
    return html_path


def write_report_files(json_path: Path, report: Report, model_ref: str | None) -> Path:
    """The report's page (rendered first: a page that cannot be drawn writes nothing), then
    its JSON, each atomically; neither is left behind when either fails. The page's path."""
    page = render_html(report, model_ref)
    html_path = write_page(json_path, page)
    try:
        write_file_atomic(json_path, report.model_dump_json(indent=2).encode("utf-8"))
    except BaseException:
        remove_files(html_path)
        raise
    return html_path


def remove_files(*paths: Path) -> None:
    """Remove what was written (a file that is not there is already gone)."""
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
